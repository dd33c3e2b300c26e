"""``RecordHandler`` (the ``record`` handler of one application) and its plugin factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.handlers.record.recorder import Recorder, RecordingDone
from rtmpserver.handlers.record.settings import RecordSettings, parse_settings
from rtmpserver.hub import LiveStream
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHandlerService,
    IRecordingController,
    IRecordingSource,
)

__all__ = ["RecordFactory", "RecordHandler", "factory"]


@implementer(IAppHandler, IRecordingController, IRecordingSource, IHandlerService)
class RecordHandler:
    """Starts a ``Recorder`` for each publish (modes all/audio/video/keyframes) or on request.

    ``on_record_done`` is a list of callables, each called with a ``RecordingDone`` for every
    finished file; ``add_observer`` hangs an ``IRecordingObserver`` (the notify handler's
    ``on_record_done``) off it.  Callback errors are logged and never reach the media path.
    When the server stops (``IHandlerService.stop``) every file still open is finished.
    """

    _log = Logger()

    def __init__(self, settings: RecordSettings, context: Any) -> None:
        self.settings = settings
        self.app = context.app.name
        self.hub = context.hub
        self.clock = context.clock
        self.on_record_done: list[Callable[[RecordingDone], Any]] = []
        self.recorders: dict[str, Recorder] = {}

    def connect(self, request, proceed):
        return proceed(request)

    def play(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        # request.mode ("record"/"append" from the client) is ignored, as nginx-rtmp does: what
        # gets recorded is the operator's decision (record.mode), not the publisher's.
        d = proceed(request)
        if self.settings.mode in ("off", "manual"):
            return d
        return d.addCallback(self._published, request)

    def _published(self, stream, request):
        if isinstance(stream, LiveStream):
            try:
                self._attach(stream, self.settings.mode, request.session, request.args)
            except Exception:
                self._log.failure("record {app}/{name}: could not start recording", app=self.app, name=request.name)
        return stream

    def close_stream(self, event):
        # Recorders follow the stream itself (IMediaSink.stream_stopped), which is exact even
        # when a new publisher takes the stream over before the old one's close event arrives.
        return None

    # -- control API --------------------------------------------------------------------------

    def _lookup(self, stream: LiveStream | str) -> LiveStream | None:
        if isinstance(stream, str):
            return self.hub.get(self.app, stream)
        return stream

    def start(self, stream: LiveStream | str) -> Recorder:
        """Record a live stream now (``record.mode = manual``, or any mode but off).

        Returns the stream's recorder (the running one if it is already being recorded); raises
        LookupError for a stream that is not live and ValueError when ``record.mode = off``.
        """
        if self.settings.mode == "off":
            raise ValueError(f"recording is off for app {self.app}")
        live = self._lookup(stream)
        if live is None or not live.active:
            raise LookupError(f"{self.app}/{stream if isinstance(stream, str) else stream.name} is not live")
        mode = "all" if self.settings.mode == "manual" else self.settings.mode
        session = getattr(getattr(live.publisher, "session", None), "view", None)
        args = getattr(live.publisher, "args", None)
        return self._attach(live, mode, session, args)

    def stop(self, stream: LiveStream | str) -> str | None:
        """Finish recording a stream; returns the path of its last file (None if none was made)."""
        name = stream if isinstance(stream, str) else stream.name
        recorder = self.recorders.get(name)
        if recorder is None:
            return None
        recorder.stop("manual")
        return recorder.paths[-1] if recorder.paths else None

    def stop_all(self, reason: str = "shutdown") -> None:
        for recorder in list(self.recorders.values()):
            recorder.stop(reason)

    # -- IRecordingSource, IHandlerService ------------------------------------------------------

    def add_observer(self, observer: Any) -> None:
        self.on_record_done.append(observer.recording_done)

    def start_service(self) -> None:
        return None

    def stop_service(self) -> None:
        self.stop_all("shutdown")

    # -- internals ----------------------------------------------------------------------------

    def _attach(self, stream: LiveStream, mode: str, session: Any, args: Mapping[str, str] | None) -> Recorder:
        current = self.recorders.get(stream.name)
        if current is not None and not current.closed:
            if current.stream is stream:
                return current
            current.stop("restart")
        recorder = Recorder(
            self.settings, self.app, stream.name, self.clock,
            mode=mode, on_done=self._done, on_closed=self._closed, session=session, args=args,
        )
        self.recorders[stream.name] = recorder
        stream.add_sink(recorder)
        return recorder

    def _closed(self, recorder: Recorder) -> None:
        if self.recorders.get(recorder.name) is recorder:
            del self.recorders[recorder.name]

    def _done(self, done: RecordingDone) -> None:
        for callback in list(self.on_record_done):
            try:
                r = callback(done)
                if isinstance(r, defer.Deferred):
                    r.addErrback(lambda f: self._log.failure("record done callback failed for {path}", f, path=done.path))
            except Exception:
                self._log.failure("record done callback failed for {path}", path=done.path)


@implementer(IPlugin, IAppHandlerFactory)
class RecordFactory:
    name = "record"
    description = "record live streams to seekable FLV files (record.path, record.mode, record.max_*)"

    def build(self, settings, context):
        parsed = parse_settings(settings, context)
        return RecordHandler(parsed, context)


factory = RecordFactory()
