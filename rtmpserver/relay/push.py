"""``PushSink``: a hub sink that republishes a live stream to another server through a ``Relay``.

It is an ``IMediaSink`` on the local ``LiveStream`` and the ``IRelayFeeder`` of a publish-mode
relay.  Delivery follows the player rules of ``rtmpserver.sinks.LiveSink``: timestamps rebased to
start near zero and never go backwards, start at a keyframe (after metadata and sequence headers),
and while the upstream connection is full frames queue up to ``backlog_bytes`` / ``backlog_time``,
past which the queue is dropped and delivery resumes at the next keyframe.  While the upstream is
not publishing (connecting, backing off) frames are dropped; when it comes (back), delivery
restarts from the stream's cache (metadata, headers, GOP).
"""

from __future__ import annotations

from zope.interface import implementer

from rtmpserver.interfaces import IMediaSink, IRelayFeeder
from rtmpserver.sinks import LiveSink

__all__ = ["PushSink"]


@implementer(IMediaSink, IRelayFeeder)
class PushSink(LiveSink):
    def __init__(self, live, relay, *, backlog_bytes: int = 4 << 20, backlog_time: float = 5.0) -> None:
        super().__init__(live, live.name, backlog_bytes, backlog_time, relay.url.public)
        self.relay = relay
        relay.feed(self)

    # -- LiveSink -------------------------------------------------------------------------------

    def transport_full(self) -> bool:
        return self.relay.full

    def write_frame(self, frame, ts: int) -> None:
        self.relay.send_frame(frame, ts)

    def frame(self, frame) -> None:
        if not self.relay.ready:
            # Nobody to send to: queueing would only delay the restart from the cache.
            self.need_key = True
            return
        super().frame(frame)

    # -- IRelayFeeder ---------------------------------------------------------------------------

    def relay_ready(self) -> None:
        if self.live.active:
            self.restart()

    def relay_writable(self) -> None:
        self.flush()

    def relay_down(self, reason: str) -> None:
        self.backlog.clear()
        self.backlog_bytes = 0
        self.need_key = True

    def close(self) -> None:
        """Stop pushing: detach from the stream and stop the relay."""
        self.detach()
        self.relay.stop()
