"""The ``hls`` handler: segments every published stream of its app into HLS for HTTP delivery.

On publish (once the chain has let it through) an ``HLSSink`` attaches to the live stream and
feeds ``rtmpserver.media.hls.HLSSegmenter``, which cuts MPEG-TS segments at keyframes and keeps
them in memory (a bounded sliding window).  The HTTP site serves them as
``/hls/<app>/<stream>.m3u8`` and ``/hls/<app>/<stream>-<n>.ts``.  A publisher restart adds
``#EXT-X-DISCONTINUITY``; on unpublish ``#EXT-X-ENDLIST`` is written when ``hls.endlist = yes``,
and the playlist stays served for ``hls.linger`` seconds before it is forgotten.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import RemoteProtocolError
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHLSProvider,
    IMediaSink,
)
from rtmpserver.media.hls import HLSSegmenter
from rtmpserver.settings import Section, boolean, integer, seconds

__all__ = ["HLSRegistry", "HLSSink", "HLSHandler", "factory"]


class HLSRegistry:
    """Segmenters by (app, stream) of one application's hls handler."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], HLSSegmenter] = {}


@implementer(IMediaSink)
class HLSSink:
    _log = Logger()

    def __init__(self, handler: HLSHandler, live) -> None:
        self.handler = handler
        self.live = live
        self.segmenter = HLSSegmenter(live.name, handler.fragment, handler.window)
        self.errors = 0

    def stream_started(self, live) -> None:
        self.segmenter.discontinuity()

    def frame(self, frame) -> None:
        try:
            self.segmenter.feed(frame.type_id, frame.timestamp, frame.payload)
        except RemoteProtocolError as e:
            # One bad message must not stop segmenting (nor the live stream); log the first few.
            self.errors += 1
            if self.errors <= 3:
                self._log.warn("hls {app}/{name}: message not segmented: {error}", app=live_app(self.live), name=self.live.name, error=e)

    def stream_stopped(self, live) -> None:
        if self.handler.endlist:
            self.segmenter.end()
        live.remove_sink(self)
        self.handler._linger(self)


def live_app(live) -> str:
    return live.app


@implementer(IAppHandler, IHLSProvider)
class HLSHandler:
    def __init__(self, registry: HLSRegistry, clock, fragment: float, window: int, endlist: bool, linger: float) -> None:
        self.registry = registry
        self.clock = clock
        self.fragment = fragment
        self.window = window
        self.endlist = endlist
        self.linger = linger
        self._expiry: dict = {}

    def segmenter(self, app: str, name: str):
        """IHLSProvider: the segmenter the site serves ``/hls/<app>/<name>.m3u8`` from."""
        return self.registry.streams.get((app, name))

    def connect(self, request, proceed):
        return proceed(request)

    def play(self, request, proceed):
        return proceed(request)

    def close_stream(self, event):
        return None

    def publish(self, request, proceed):
        d = proceed(request)
        d.addCallback(self._attach)
        d.addErrback(lambda f: None)  # refused later in the chain: nothing to segment
        return d

    def _attach(self, live):
        key = (live.app, live.name)
        old = self._expiry.pop(key, None)
        if old is not None and old.active():
            old.cancel()
        sink = HLSSink(self, live)
        previous = self.registry.streams.get(key)
        if previous is not None:
            # Same name published again while its old playlist lingers: continue its numbering
            # behind a discontinuity so players keep going.
            sink.segmenter = previous
        self.registry.streams[key] = sink.segmenter
        live.add_sink(sink)
        return live

    def _linger(self, sink: HLSSink) -> None:
        key = (sink.live.app, sink.live.name)

        def forget():
            self._expiry.pop(key, None)
            if self.registry.streams.get(key) is sink.segmenter and not sink.live.active:
                del self.registry.streams[key]

        self._expiry[key] = self.clock.callLater(self.linger, forget)


@implementer(IPlugin, IAppHandlerFactory)
class HLSHandlerFactory:
    name = "hls"
    description = "HLS (MPEG-TS segments, in memory) for every stream published to the app"

    def build(self, settings, context):
        section = Section.for_handler(self.name, settings, context)
        values = section.convert({
            "fragment": (seconds(0.5, 60.0), "2"),
            "window": (integer(1, 100, "a number of segments"), "5"),
            "endlist": (boolean, "yes"),
            "linger": (seconds(0.0, 3600.0, allow_zero=True), "30"),
        })
        return HLSHandler(HLSRegistry(), context.clock, values["fragment"], values["window"], values["endlist"], values["linger"])


factory = HLSHandlerFactory()
