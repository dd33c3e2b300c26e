"""``PullSource``: a pull relay as the publisher of a local live stream.

It is the ``IRelayConsumer`` of a playing ``Relay`` and the ``IPublisher`` the hub sees: what the
origin sends goes into the hub's ``LiveStream`` exactly as a local publisher's messages would, so
players, recorders and HLS see no difference.  A local publisher may take the stream over (the
app's ``publisher_clash`` policy applies: a pull source that is not receiving counts as closing);
the relay is then stopped.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.interfaces import IMonitoredClient, IPublisher, IRelayConsumer

__all__ = ["PullSource"]


@implementer(IRelayConsumer, IPublisher, IMonitoredClient)
class PullSource:
    _log = Logger()

    def __init__(self, hub, app: str, name: str, clock, *, gop_cache: bool = True, gop_max_frames: int = 600, gop_max_bytes: int = 16 << 20) -> None:
        self.hub = hub
        self.app = app
        self.name = name
        self.clock = clock
        self._gop = {"gop_cache": gop_cache, "gop_max_frames": gop_max_frames, "gop_max_bytes": gop_max_bytes}
        self.relay = None
        self.live = None  # the LiveStream while we publish it
        self.last_media_time = clock.seconds()
        self.evicted = False
        self.starts = 0

    def attach(self, relay) -> None:
        """The ``Relay`` (play mode) feeding this source; ``evict`` stops it."""
        self.relay = relay

    # -- IPublisher ---------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Not receiving from the origin right now: a local publisher may take the stream."""
        return self.live is None or self.relay is None or self.relay.state != "playing"

    def evict(self, reason: str) -> None:
        self._log.info("pull relay {app}/{name}: {reason}; stopping it", app=self.app, name=self.name, reason=reason)
        self.evicted = True
        self.live = None
        if self.relay is not None:
            self.relay.stop()

    # -- IMonitoredClient ------------------------------------------------------------------------------

    def describe(self, now: float) -> dict:
        """The stream's publisher as /stat and /api show it: the upstream (public URL, no query)."""
        r = self.relay
        url = r.url.public if r is not None else ""
        return {
            "id": 0, "address": url, "port": 0, "protocol": "relay", "app": self.app, "streams": [self.name],
            "role": "publisher", "time": (now - self.live.started_at) if self.live is not None else 0,
            "flashver": "", "swfurl": "", "pageurl": "", "tcurl": url,
            "bytes_in": r.bytes_in if r is not None else 0, "bytes_out": r.bytes_out if r is not None else 0,
            "dropped": 0, "timestamp": 0,
        }

    # -- IRelayConsumer -------------------------------------------------------------------------------

    def relay_started(self) -> None:
        if self.evicted:
            return
        live = self.hub.get_or_create(self.app, self.name, **self._gop)
        if live.publisher is not None and live.publisher is not self:
            # A local publisher has the stream: it wins, we do not evict it.
            self._log.info("pull relay {app}/{name}: published locally; not taking over", app=self.app, name=self.name)
            return
        self.live = live
        self.starts += 1
        self.last_media_time = self.clock.seconds()
        live.start(self, self.last_media_time)

    def metadata(self, timestamp: int, payload: bytes) -> None:
        if self.live is not None:
            self.live.set_metadata(timestamp, payload)

    def data(self, timestamp: int, payload: bytes) -> None:
        if self.live is not None:
            self.live.data(timestamp, payload)

    def video(self, timestamp: int, payload: bytes) -> None:
        live = self.live
        if live is not None:
            self.last_media_time = self.clock.seconds()
            live.video(timestamp, payload)

    def audio(self, timestamp: int, payload: bytes) -> None:
        live = self.live
        if live is not None:
            self.last_media_time = self.clock.seconds()
            live.audio(timestamp, payload)

    def relay_stopped(self, reason: str) -> None:
        live, self.live = self.live, None
        if live is not None and live.publisher is self:
            live.stop()

    def close(self) -> None:
        """No longer wanted (no players left): stop the relay and end the local stream."""
        if self.relay is not None:
            self.relay.stop()
        self.relay_stopped("relay closed")
