"""The ``hls`` handler: segments every published stream of its app into HLS for HTTP delivery.

On publish (once the chain has let it through) an ``HLSSink`` attaches to the live stream and
feeds ``rtmpserver.media.hls.HLSSegmenter``, which cuts MPEG-TS segments at keyframes and keeps
them in memory (a bounded sliding window).  The HTTP site serves them as
``/hls/<app>/<stream>.m3u8`` and ``/hls/<app>/<stream>-<n>.ts``.  A publisher restart adds
``#EXT-X-DISCONTINUITY``; on unpublish ``#EXT-X-ENDLIST`` is written when ``hls.endlist = yes``,
and the playlist stays served for ``hls.linger`` seconds before it is forgotten.

``hls.format = fmp4`` makes fragmented MP4 segments (H.264, HEVC, AV1; AAC) with an init segment,
``hls.low_latency = yes`` adds LL-HLS partial segments of ``hls.part`` seconds with blocking
playlist reload (at most ``hls.max_blocked`` requests held per app), and ``hls.path = DIR``
writes playlists and segments to ``DIR/<app>/`` as well (``rtmpserver.handlers.hlsdir``), within
``hls.max_disk_bytes``, with ``hls.file_mode``/``hls.dir_mode`` permissions.
"""

from __future__ import annotations

import os

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import ConfigError, RemoteProtocolError
from rtmpserver.handlers.hlsdir import DiskBudget, HLSDirectory, safe_name
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHLSProvider,
    IMediaSink,
)
from rtmpserver.media.hls import HLSSegmenter
from rtmpserver.settings import (
    Invalid,
    Section,
    boolean,
    choice,
    integer,
    seconds,
    size,
)

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
        self.segmenter = HLSSegmenter(live.name, handler.fragment, handler.window, fmt=handler.format,
                                      part=handler.part if handler.low_latency else None)  # fmt: skip
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
        except OSError as e:
            # hls.path: the directory went away or is not writable; the stream goes on.
            self.errors += 1
            if self.errors <= 3:
                self._log.error("hls {app}/{name}: {error}", app=live_app(self.live), name=self.live.name, error=e)

    def stream_stopped(self, live) -> None:
        if self.handler.endlist:
            self.segmenter.end()
        live.remove_sink(self)
        self.handler._linger(self)


def live_app(live) -> str:
    return live.app


@implementer(IAppHandler, IHLSProvider)
class HLSHandler:
    _log = Logger()

    def __init__(self, registry: HLSRegistry, clock, fragment: float, window: int, endlist: bool, linger: float,
                 *, format: str = "ts", low_latency: bool = False, part: float = 0.5, max_blocked: int = 1000,
                 path: str | None = None, max_disk_bytes: int = 1 << 30, file_mode: int = 0o640,
                 dir_mode: int = 0o750) -> None:  # fmt: skip
        self.registry = registry
        self.clock = clock
        self.fragment = fragment
        self.window = window
        self.endlist = endlist
        self.linger = linger
        self.format = format
        self.low_latency = low_latency
        self.part = part
        self.max_blocked = max_blocked
        self.path = path
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.budget = DiskBudget(max_disk_bytes)
        self.directories: dict[tuple[str, str], HLSDirectory] = {}
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
        if self.path is not None and key not in self.directories:
            self._directory(key, sink.segmenter)
        live.add_sink(sink)
        return live

    def _directory(self, key: tuple[str, str], segmenter) -> None:
        app, name = key
        if not safe_name(name):
            # Renaming would let two streams share files; such a stream is served from memory only.
            self._log.warn("hls {app}/{name}: not written to hls.path (the name is not a safe file name)",
                           app=app, name=name)  # fmt: skip
            return
        try:
            directory = HLSDirectory(self.path, app, name, self.budget, self.file_mode, self.dir_mode)
        except OSError as e:
            self._log.error("hls {app}/{name}: cannot use hls.path: {error}", app=app, name=name, error=e.strerror or e)
            return
        directory.attach(segmenter)
        self.directories[key] = directory

    def _linger(self, sink: HLSSink) -> None:
        key = (sink.live.app, sink.live.name)

        def forget():
            self._expiry.pop(key, None)
            if self.registry.streams.get(key) is sink.segmenter and not sink.live.active:
                del self.registry.streams[key]
                directory = self.directories.pop(key, None)
                if directory is not None:
                    directory.remove_all()

        self._expiry[key] = self.clock.callLater(self.linger, forget)


@implementer(IPlugin, IAppHandlerFactory)
class HLSHandlerFactory:
    name = "hls"
    description = "HLS (MPEG-TS or fMP4 segments, LL-HLS parts; in memory, optionally on disk) for every stream of the app"

    def build(self, settings, context):
        section = Section.for_handler(self.name, settings, context)
        values = section.convert({
            "fragment": (seconds(0.5, 60.0), "2"),
            "window": (integer(1, 100, "a number of segments"), "5"),
            "endlist": (boolean, "yes"),
            "linger": (seconds(0.0, 3600.0, allow_zero=True), "30"),
            "format": (choice("ts", "fmp4"), "ts"),
            "low_latency": (boolean, "no"),
            "part": (seconds(0.1, 5.0), "0.5"),
            "max_blocked": (integer(0, 1_000_000, "a number of requests"), "1000"),
            "max_disk_bytes": (size(1 << 20, 1 << 50), str(1 << 30)),
            "file_mode": (_mode, "0640"),
            "dir_mode": (_mode, "0750"),
        }, extra=("path",))
        if values["low_latency"] and values["part"] > values["fragment"]:
            raise section.error("part", f"must not be longer than hls.fragment ({values['fragment']:g} s)")
        path = section.path("path") if "path" in section else None
        if path is not None:
            try:
                os.makedirs(path, mode=values["dir_mode"], exist_ok=True)
            except OSError as e:
                raise ConfigError(f"{section.where} {section.key('path')}: cannot create {path}: {e.strerror or e}") from None
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"{section.where} {section.key('path')}: {path} is not a writable directory")
        return HLSHandler(HLSRegistry(), context.clock, values["fragment"], values["window"], values["endlist"], values["linger"],
                          format=values["format"], low_latency=values["low_latency"], part=values["part"],
                          max_blocked=values["max_blocked"], path=path, max_disk_bytes=values["max_disk_bytes"],
                          file_mode=values["file_mode"], dir_mode=values["dir_mode"])  # fmt: skip


def _mode(text: str) -> int:
    """File permission bits in octal (``0640``), no set-id or sticky bits."""
    if not 3 <= len(text) <= 4 or any(c not in "01234567" for c in text) or int(text, 8) > 0o777:
        raise Invalid("permission bits in octal, such as 0640")
    return int(text, 8)


factory = HLSHandlerFactory()
