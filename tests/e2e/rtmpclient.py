"""A small blocking RTMP player for end-to-end tests that need commands FFmpeg and rtmpdump do not
send (pause/unpause, seek, playlists, play2).  It runs on the project's sans-IO codec
(``rtmpserver.codec.connection``) over a plain socket; the server it talks to is the real
``twistd rtmp`` process.  Everything it receives is kept as ``Event``s with the time it arrived.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection


@dataclass
class Event:
    arrived: float  # time.monotonic()
    kind: str  # "status" (onStatus code), "data" (data message name), "user" (user control), "audio", "video"
    value: Any  # the status code, the data message name, the user control event, the timestamp
    info: Any = None  # the status object / data values / payload


class Player:
    def __init__(self, port: int, app: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = RTMPConnection(server=False)
        self.events: list[Event] = []
        self.results: dict[float, list] = {}
        self._tid = 1.0
        self.conn.initiate()
        self._flush()
        deadline = time.monotonic() + timeout
        while not self.conn.handshake_complete:
            if time.monotonic() > deadline or not self.pump(0.2):
                raise AssertionError("RTMP handshake did not complete")
        self.call("connect", {"app": app, "tcUrl": f"rtmp://127.0.0.1:{port}/{app}", "flashVer": "LNX 9,0,124,2",
                              "capabilities": 15.0, "audioCodecs": 4071.0, "videoCodecs": 252.0, "objectEncoding": 0.0})
        self.wait_result(self._tid - 1)
        tid = self.call("createStream", None)
        self.stream_id = int(self.wait_result(tid)[0])

    # -- sending

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def call(self, name: str, obj=None, *args, stream_id: int = 0) -> float:
        tid = self._tid
        self._tid += 1
        self.conn.send_command(name, tid, obj, *args, stream_id=stream_id)
        self._flush()
        return tid

    def stream_command(self, name: str, *args) -> None:
        self.conn.send_command(name, 0.0, None, *args, stream_id=self.stream_id)
        self._flush()

    def set_buffer(self, ms: int) -> None:
        self.conn.send(m.UserControl.set_buffer_length(self.stream_id, ms))
        self._flush()

    def close(self) -> None:
        self.sock.close()

    # -- receiving

    def pump(self, timeout: float) -> bool:
        """Read what arrives within ``timeout`` seconds; False when the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        if not data:
            return False
        now = time.monotonic()
        for msg in self.conn.receive_data(data):
            t = type(msg)
            if t is m.CommandMessage:
                if msg.name == "_result" or msg.name == "_error":
                    self.results[msg.transaction_id] = list(msg.arguments)
                elif msg.name == "onStatus":
                    info = msg.arguments[0] if msg.arguments else {}
                    self.events.append(Event(now, "status", info.get("code"), info))
            elif t is m.DataMessage:
                values = msg.values
                name = values[0] if values else None
                if name == "onPlayStatus":
                    self.events.append(Event(now, "status", values[1].get("code"), values[1]))
                self.events.append(Event(now, "data", name, values[1:]))
            elif t is m.UserControl:
                self.events.append(Event(now, "user", msg.event, msg.value))
            elif t is m.VideoMessage:
                self.events.append(Event(now, "video", msg.timestamp, msg.payload))
            elif t is m.AudioMessage:
                self.events.append(Event(now, "audio", msg.timestamp, msg.payload))
        self._flush()  # acknowledgements
        return True

    def wait_result(self, tid: float, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while tid not in self.results:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to transaction {tid}; events {self.codes()}")
            if not self.pump(0.2):
                raise AssertionError(f"connection closed waiting for transaction {tid}")
        return self.results.pop(tid)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if not self.pump(0.05):
                return predicate()
        return predicate()

    def codes(self) -> list[str]:
        return [e.value for e in self.events if e.kind == "status"]

    def has(self, code: str) -> bool:
        return code in self.codes()

    def media(self, since: int = 0) -> list[Event]:
        return [e for e in self.events[since:] if e.kind in ("audio", "video")]

    def play(self, name: str, start: float = -2000.0, duration: float = -1.0, reset: bool = True) -> None:
        self.stream_command("play", name, start, duration, reset)
