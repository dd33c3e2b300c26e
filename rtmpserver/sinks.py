"""Live sinks that deliver a stream to one client: timestamp rebasing, keyframe gating, backlog.

``LiveSink`` holds what RTMP players and HTTP-FLV clients share; subclasses say how a frame is
written and whether their transport is full.  Timestamps: the client sees
``client_base + (publisher ts - pub_base)``, never less than the last it was sent, so they start
near zero when it joins and never go backwards, across publisher restarts too (each rebases).
Backlog: while the transport is full, frames queue up to ``backlog_bytes`` / ``backlog_time``;
past that the queue is dropped whole and delivery resumes at the next keyframe (counted), so the
publisher and other clients never wait for a slow one (docs/performance.md).
"""

from __future__ import annotations

from collections import deque

from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.hub import AUDIO, VIDEO, Frame, LiveStream
from rtmpserver.interfaces import IDetachableSink

__all__ = ["LiveSink"]

_MASK32 = 0xFFFFFFFF


def _signed32(v: int) -> int:
    v &= _MASK32
    return v - 0x100000000 if v & 0x80000000 else v


@implementer(IDetachableSink)
class LiveSink:
    _log = Logger()

    def __init__(self, live: LiveStream, name: str, backlog_bytes: int, backlog_time: float, peer: str) -> None:
        self.live = live
        self.name = name
        self.peer = peer
        self.backlog_limit = backlog_bytes
        self.backlog_ms = backlog_time * 1000
        self.receive_audio = True
        self.receive_video = True
        self.paused = False
        self.need_key = True
        # Audio may go ahead of the first keyframe only at a (re)start, until a video frame is
        # skipped: a player there from the publisher's start then gets every message.
        self._audio_free = False
        self.pub_base: int | None = None
        self.player_base = 0
        self.last_ts = 0
        self.backlog: deque = deque()
        self.backlog_bytes = 0
        self.dropped = 0  # messages dropped because the client could not keep up
        self.resyncs = 0
        self.frames_sent = 0
        self._seen_publish = 0
        # Optional: an object whose ``paused`` attribute says the transport is full (an RTMP
        # connection, an HTTP-FLV client). Read as an attribute on the media path, one call less
        # per player per message than ``transport_full()``, which is used when this is None.
        self.flow = None

    # -- what subclasses provide -----------------------------------------------------------

    def transport_full(self) -> bool:
        raise NotImplementedError

    def write_frame(self, frame: Frame, ts: int) -> None:
        raise NotImplementedError

    def on_started(self, republished: bool) -> None:
        """A publisher began (``republished``: not the first one this sink has seen)."""

    def on_stopped(self) -> None:
        """The publisher left."""

    # -- IMediaSink ---------------------------------------------------------------------------

    def stream_started(self, live: LiveStream) -> None:
        republished = bool(self._seen_publish) and self._seen_publish != live.publish_count
        self._seen_publish = live.publish_count
        self.on_started(republished)
        self.restart()

    def stream_stopped(self, live: LiveStream) -> None:
        self.on_stopped()
        self.need_key = True

    def frame(self, frame: Frame) -> None:
        # The hot path: once per player per message (docs/performance.md). What _send and
        # _timestamp do is written out here so a message costs one Python call less each.
        if self.paused:
            return
        t = frame.type_id
        header = frame.header
        if t == VIDEO:
            if not self.receive_video:
                return
            if self.need_key and not header:
                self._audio_free = False
                if not frame.keyframe:
                    return
                self.need_key = False
        elif t == AUDIO:
            if not self.receive_audio:
                return
            if self.need_key and not header:
                if self.live.has_video and self.receive_video:
                    # Hold audio back until video (re)starts at a keyframe, so they start together.
                    if not self._audio_free:
                        return
                else:
                    self.need_key = False
        # Timestamp rebasing, exactly as _timestamp (and _send's last_ts update).
        base = self.pub_base
        if base is None and header:
            ts = self.player_base
            if ts > self.last_ts:
                self.last_ts = ts
        else:
            if base is None:
                self.pub_base = base = frame.timestamp
            d = (frame.timestamp - base) & _MASK32
            ts = self.player_base + (d - 0x100000000 if d & 0x80000000 else d)
            last = self.last_ts
            if ts > last:
                self.last_ts = ts
            elif ts < last:
                ts = last
        flow = self.flow
        if self.backlog or (flow.paused if flow is not None else self.transport_full()):
            self._enqueue(frame, ts)
            return
        self.write_frame(frame, ts)
        self.frames_sent += 1

    # -- delivery ---------------------------------------------------------------------------

    def restart(self) -> None:
        """(Re)start from what the stream has cached: metadata, sequence headers, GOP."""
        self.pub_base = None
        # After a previous publisher, continue one millisecond on: repeating the last timestamp
        # gives the new stream's first frames the old one's last DTS (FFmpeg: "non monotonically
        # increasing dts").
        self.player_base = self.last_ts + 1 if self.frames_sent else 0
        self.need_key = True
        self._audio_free = True
        self.backlog.clear()
        self.backlog_bytes = 0
        for frame in self.live.startup_frames():
            self.frame(frame)

    def rewind_to_live(self) -> None:
        """Unpause / seek on a live stream: resume from the cached GOP, timestamps still monotonic."""
        if self.live.active:
            self.pub_base = None
            self.player_base = self.last_ts
            self.need_key = True
            self.backlog.clear()
            self.backlog_bytes = 0
            for frame in self.live.gop:
                self.frame(frame)

    def _timestamp(self, frame: Frame) -> int:
        if frame.header and self.pub_base is None:
            # Configuration before the first frame: its publisher timestamp may be far from the
            # GOP's (metadata is often sent at 0), so it is not a base to rebase on.
            return self.player_base
        if self.pub_base is None:
            self.pub_base = frame.timestamp
        ts = self.player_base + _signed32(frame.timestamp - self.pub_base)
        if ts < self.last_ts:
            ts = self.last_ts
        return ts

    def _send(self, frame: Frame) -> None:
        ts = self._timestamp(frame)
        if ts > self.last_ts:
            self.last_ts = ts
        if self.backlog or self.transport_full():
            self._enqueue(frame, ts)
            return
        self.write_frame(frame, ts)
        self.frames_sent += 1

    def _enqueue(self, frame: Frame, ts: int) -> None:
        self.backlog.append((frame, ts))
        self.backlog_bytes += len(frame.payload)
        span_ms = self.backlog[-1][1] - self.backlog[0][1]
        if self.backlog_bytes > self.backlog_limit or span_ms > self.backlog_ms:
            self.dropped += len(self.backlog)
            self.resyncs += 1
            self._log.info(
                "{peer} playing {app}/{name} fell behind ({nbytes} bytes, {span} ms queued): "
                "dropped {count} messages, waiting for a keyframe",
                peer=self.peer, app=self.live.app, name=self.name, nbytes=self.backlog_bytes,
                span=span_ms, count=len(self.backlog),
            )
            self.backlog.clear()
            self.backlog_bytes = 0
            self.need_key = True

    def flush(self) -> None:
        """The transport drained: send what is queued until it is full again."""
        backlog = self.backlog
        flow = self.flow
        while backlog and not (flow.paused if flow is not None else self.transport_full()):
            frame, ts = backlog.popleft()
            self.backlog_bytes -= len(frame.payload)
            self.write_frame(frame, ts)
            self.frames_sent += 1

    def detach(self) -> None:
        self.live.remove_sink(self)
        self.backlog.clear()
        self.backlog_bytes = 0
