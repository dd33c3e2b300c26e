"""Shared pieces of the relay tests: a recording consumer and synthetic media."""

from __future__ import annotations

from zope.interface import implementer

from rtmpserver.codec import amf0
from rtmpserver.interfaces import IRelayConsumer

AVC_SEQ = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1"
AAC_SEQ = b"\xaf\x00\x12\x10"
METADATA = amf0.encode("onMetaData", {"width": 320.0, "height": 240.0})


def key(i: int, n: int = 300) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes([i & 0xFF]) * n


def inter(i: int, n: int = 100) -> bytes:
    return b"\x27\x01\x00\x00\x00" + bytes([i & 0xFF]) * n


def aac(i: int, n: int = 20) -> bytes:
    return b"\xaf\x01" + bytes([i & 0xFF]) * n


def media(seconds: int = 3, fps: int = 30, gop: int = 30) -> list[tuple[str, int, bytes]]:
    """Video at ``fps`` with a keyframe every ``gop`` frames and AAC every 23 ms, in timestamp order.

    Frames are large enough (some > 4096 bytes) to need several chunks.
    """
    out = []
    for i in range(seconds * fps):
        ts = i * 1000 // fps
        out.append(("video", ts, key(i, 5000) if i % gop == 0 else inter(i, 100 + i)))
    for j in range(seconds * 1000 // 23):
        out.append(("audio", j * 23, aac(j)))
    out.sort(key=lambda e: (e[1], e[0] != "video"))
    return out


@implementer(IRelayConsumer)
class Recorder:
    def __init__(self):
        self.events: list = []

    def relay_started(self):
        self.events.append(("started",))

    def metadata(self, ts, payload):
        self.events.append(("metadata", ts, payload))

    def data(self, ts, payload):
        self.events.append(("data", ts, payload))

    def video(self, ts, payload):
        self.events.append(("video", ts, payload))

    def audio(self, ts, payload):
        self.events.append(("audio", ts, payload))

    def relay_stopped(self, reason):
        self.events.append(("stopped", reason))

    def kinds(self):
        return [e[0] for e in self.events]

    def media(self):
        return [e for e in self.events if e[0] in ("video", "audio")]
