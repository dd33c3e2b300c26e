"""HTTP-FLV: ``GET /<app>/<stream>.flv`` streams the live stream as an FLV file over chunked HTTP.

Each client is a ``LiveSink`` like an RTMP player: FLV header, onMetaData, sequence headers, the
GOP cache, then live tags with rebased timestamps; a client that cannot keep up is dropped to the
next keyframe, bounded by the app's player backlog settings.  The request is the producer's
consumer, so Twisted's write buffer tells us when the client is full.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import server
from zope.interface import implementer

from rtmpserver.hub import Frame
from rtmpserver.interfaces import IMonitoredClient
from rtmpserver.media.flv import file_header, previous_tag_size, tag_header
from rtmpserver.sinks import LiveSink

__all__ = ["FLVClient", "serve_flv"]


@implementer(IPushProducer, IMonitoredClient)
class FLVClient(LiveSink):
    _log = Logger()

    def __init__(self, request, live, app_config, registry: set) -> None:
        peer = request.getClientAddress()
        super().__init__(live, live.name, app_config.player_backlog_bytes, app_config.player_backlog_time,
                         f"http:{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '')}")
        self.request = request
        self.host = str(getattr(peer, "host", "?"))  # the address alone, as /stat shows it
        self.registry = registry
        self.bytes_out = 0
        self.started = 0.0
        self._full = False
        self._done = False

    # LiveSink
    def transport_full(self) -> bool:
        return self._full

    def write_frame(self, frame: Frame, ts: int) -> None:
        n = len(frame.payload)
        data = b"".join((tag_header(frame.type_id, ts, n), frame.payload, previous_tag_size(n)))
        self.bytes_out += len(data)
        self.request.write(data)

    def on_stopped(self) -> None:
        # The FLV "file" ends with its publisher; players reconnect for the next one.
        self.finish()

    # IMonitoredClient
    def describe(self, now: float) -> dict:
        return {
            "id": -id(self) & 0xFFFFFFFF, "address": self.host, "port": 0, "protocol": "http-flv",
            "app": self.live.app, "streams": [self.name], "role": "player", "time": now - self.started,
            "flashver": "", "swfurl": "", "pageurl": "", "tcurl": "", "bytes_in": 0,
            "bytes_out": self.bytes_out, "dropped": self.dropped, "timestamp": self.last_ts,
        }

    # IPushProducer
    def pauseProducing(self) -> None:
        self._full = True

    def resumeProducing(self) -> None:
        self._full = False
        if self.backlog:
            self.flush()

    def stopProducing(self) -> None:
        self._full = True

    def start(self, now: float) -> None:
        self.started = now
        self.registry.add(self)
        self.request.registerProducer(self, True)
        live = self.live
        # Both tracks are announced, as SRS does: a viewer joining before the video sequence
        # header would otherwise be told "audio only", and flv.js/mpegts.js trust the flags.
        self.request.write(file_header(has_audio=True, has_video=True))
        self.request.notifyFinish().addBoth(self._gone)
        live.add_sink(self)

    def _gone(self, _):
        self._done = True
        self.registry.discard(self)
        self.detach()

    def finish(self) -> None:
        if not self._done:
            self._done = True
            self.registry.discard(self)
            self.detach()
            self.request.unregisterProducer()
            self.request.finish()


def serve_flv(request, factory, http_config, registry: set, app: str, name: str):
    """Render an HTTP-FLV request (called by the site's router)."""
    app_config = factory.config.apps.get(app)
    live = factory.hub.get(app, name) if app_config is not None else None
    if live is None or not live.active:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"no live stream {app}/{name}\n".encode()
    if len(registry) >= http_config.max_flv_clients:
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"too many HTTP-FLV clients\n"
    request.setHeader(b"content-type", b"video/x-flv")
    request.setHeader(b"cache-control", b"no-cache")
    FLVClient(request, live, app_config, registry).start(factory.clock.seconds())
    return server.NOT_DONE_YET
