"""``Recorder``: one recorded publish, an ``IMediaSink`` writing ``FLVRecording`` bytes to files.

Writes are synchronous appends on the reactor thread: tags collect in a small buffer that goes to
the file at every keyframe (for audio only files, at least once a second) and whenever it holds
64 KiB, so a crash loses at most that.  A write error (disk full, a path that cannot be created)
stops that recording with one error line and nothing else: the live stream and its players never
see it.  Finished files are closed, not fsynced.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.errors import LocalProtocolError
from rtmpserver.handlers.record.paths import render_path
from rtmpserver.handlers.record.settings import RecordSettings
from rtmpserver.hub import AUDIO, DATA, VIDEO, LiveStream
from rtmpserver.interfaces import IMediaSink, IRecording
from rtmpserver.media.flv import is_video_keyframe
from rtmpserver.media.flvwriter import (
    AUDIO_SEEK_SPACING_MS,
    MASK32,
    FLVRecording,
    publisher_metadata,
)

__all__ = ["Recorder", "RecordingDone"]

_FLUSH_BYTES = 64 * 1024
_MAX_UNIQUE = 1000


@dataclass(frozen=True)
class RecordingDone:
    """A finished recording file, as given to ``RecordHandler.on_record_done`` callbacks.

    ``reason``: ``stopped`` (the publisher left), ``split`` (a ``max_*`` bound), ``manual``
    (``RecordHandler.stop``), ``shutdown``, ``restart`` (a new publisher on the same sink) or
    ``error`` (a write failed; the file holds what was written before).  ``session`` and ``args``
    are the publisher's (None/empty for a recording started with ``RecordHandler.start``);
    ``recorder`` is always "" (one recorder per app; nginx-rtmp's ``recorder`` field).
    """

    app: str
    name: str
    path: str
    size: int
    duration: float
    reason: str
    session: Any = field(default=None, compare=False, repr=False)
    args: Mapping[str, str] = field(default_factory=dict, compare=False)
    recorder: str = ""


class _File:
    """An fd opened for one recording: appends, one overwrite in place, close."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            if n <= 0:
                raise OSError(errno.ENOSPC, "short write")
            view = view[n:]

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            if n <= 0:
                raise OSError(errno.ENOSPC, "short write")
            view = view[n:]
            offset += n

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


@implementer(IMediaSink, IRecording)
class Recorder:
    """Records one publish of one stream; detaches itself when the publisher leaves.

    Every entry point catches everything: a recorder runs inside the hub's fan-out, where an
    exception would reach the publisher's connection.
    """

    _log = Logger()

    def __init__(
        self,
        settings: RecordSettings,
        app: str,
        name: str,
        clock: Any,
        *,
        mode: str | None = None,
        on_done: Callable[[RecordingDone], Any] | None = None,
        on_closed: Callable[[Recorder], Any] | None = None,
        session: Any = None,
        args: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.mode = mode or settings.mode
        if self.mode not in ("all", "audio", "video", "keyframes"):
            raise LocalProtocolError(f"a recorder cannot record in mode {self.mode!r}")
        self.app = app
        self.name = name
        self.clock = clock
        self.on_done = on_done
        self.on_closed = on_closed
        self.session = session
        self.args = dict(args or {})
        self.stream: LiveStream | None = None
        self.closed = False  # detached for good
        self.failed = False  # a write failed: inert until detached
        self.path: str | None = None  # the file being written
        self.paths: list[str] = []  # every file this recorder created
        self._file: _File | None = None
        self._rec: FLVRecording | None = None
        self._reset_stream_state()

    def _reset_stream_state(self) -> None:
        self._video_header = None
        self._audio_header = None
        self._meta: dict[str, Any] = {}
        self._has_video = False
        self._seen_audio = False
        self._last_raw = -1
        self._ext = 0
        self._base = 0
        self._split = False
        self._last_flush_ts = 0

    def __repr__(self) -> str:
        return f"<Recorder {self.app}/{self.name} {self.mode} {self.path or '(no file)'}>"

    # -- IMediaSink ---------------------------------------------------------------------------

    def stream_started(self, stream) -> None:
        try:
            self.stream = stream
            if self._rec is not None:
                self._finish("restart")
            self._reset_stream_state()
            self._has_video = bool(stream.has_video)
            for frame in stream.startup_frames():
                self.frame(frame)
        except Exception:
            self._log.failure("record {app}/{name}: recorder failed; recording stopped", app=self.app, name=self.name)
            self._abandon()

    def frame(self, frame) -> None:
        if self.failed or self.closed:
            return
        try:
            self._frame(frame)
        except OSError as e:
            self._fail(e)
        except Exception:
            self._log.failure("record {app}/{name}: recorder failed; recording stopped", app=self.app, name=self.name)
            self._abandon()

    def stream_stopped(self, stream) -> None:
        self.stop("stopped")

    # -- control ------------------------------------------------------------------------------

    def stop(self, reason: str = "manual") -> None:
        """Finish the current file (if any) and detach from the stream; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._rec is not None and not self.failed:
                self._finish(reason)
        except OSError as e:
            self._fail(e)
        except Exception:
            self._log.failure("record {app}/{name}: recorder failed while finishing", app=self.app, name=self.name)
            self._abandon()
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.remove_sink(self)
        if self.on_closed is not None:
            try:
                self.on_closed(self)
            except Exception:
                self._log.failure("record {app}/{name}: on_closed callback failed", app=self.app, name=self.name)

    # -- the media path -----------------------------------------------------------------------

    def _wants(self, frame) -> bool:
        t = frame.type_id
        mode = self.mode
        if mode == "all":
            return True
        if mode == "audio":
            return t == AUDIO
        if t != VIDEO:
            return False
        if mode == "video":
            return True
        return frame.header or (frame.keyframe and is_video_keyframe(frame.payload))

    def _file_has_video(self) -> bool:
        return self.mode in ("video", "keyframes") or (self.mode == "all" and self._has_video)

    def _is_start(self, frame) -> bool:
        """A frame a file may begin with (and split at): a video keyframe, or any audio frame
        when the file is audio only."""
        if self._file_has_video():
            return frame.type_id == VIDEO and frame.keyframe and is_video_keyframe(frame.payload)
        return frame.type_id == AUDIO

    def _extend(self, ts: int) -> int:
        """The publisher's 32-bit timestamp unwrapped (RTMP 1.0 5.3.1: compare modulo 2**32)."""
        if self._last_raw < 0:
            self._ext = ts
        else:
            self._ext += ((ts - self._last_raw + 0x80000000) & MASK32) - 0x80000000
        self._last_raw = ts
        return self._ext

    def _frame(self, frame) -> None:
        t = frame.type_id
        if t == DATA:
            # Our onMetaData replaces the publisher's; other data messages (onTextData,
            # onCuePoint) are not recorded. The publisher's values are fallbacks only.
            if frame.header:
                self._meta = publisher_metadata(frame.payload)
            return
        if t == VIDEO:
            if self.mode == "all" and not self._has_video:
                self._has_video = True
                if self._rec is not None and not self._rec.has_video:
                    # Video after an audio-only start: a new file with video from its next keyframe.
                    self._split = True
        else:
            self._seen_audio = True
        if frame.header:
            if t == VIDEO:
                self._video_header = frame.payload
            else:
                self._audio_header = frame.payload
            rec = self._rec
            if rec is not None and self._wants(frame) and (rec.has_video if t == VIDEO else rec.has_audio):
                # A new decoder configuration mid-file (resolution change): players take it from here.
                rec.add(t, rec.last_ts, frame.payload, header=True)
            return
        if not self._wants(frame):
            return
        ext = self._extend(frame.timestamp)
        start = self._is_start(frame)
        rec = self._rec
        if rec is None:
            if start:
                self._open(frame, ext)
            return
        if start and (self._split or self._bound_passed(rec, ext)):
            self._finish("split")
            self._open(frame, ext)
            return
        if t == VIDEO and not rec.has_video:
            return  # waiting for the keyframe that starts the file with video
        ts = ext - self._base
        if ts < 0:
            ts = 0  # a frame from before the first keyframe (audio interleaving): no negative times
        rec.add(t, ts, frame.payload, seek_point=start)
        if start and (rec.has_video or ts - self._last_flush_ts >= AUDIO_SEEK_SPACING_MS):
            self._flush()
            self._last_flush_ts = ts
        elif rec.pending >= _FLUSH_BYTES:
            self._flush()

    def _bound_passed(self, rec: FLVRecording, ext: int) -> bool:
        s = self.settings
        return bool(
            (s.max_size and rec.size >= s.max_size)
            or (s.max_duration and ext - self._base >= s.max_duration * 1000)
            or (s.max_frames and rec.frames >= s.max_frames)
        )

    # -- files --------------------------------------------------------------------------------

    def _create(self) -> _File:
        s = self.settings
        path = render_path(s.path, self.app, self.name, self.clock.seconds())
        root = s.root
        if os.path.commonpath([root, path]) != root:
            # sanitize() makes this impossible; refuse rather than trust that.
            raise OSError(errno.EPERM, f"{path} is outside {root}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stem, ext = os.path.splitext(path)
        for n in range(_MAX_UNIQUE):
            candidate = path if n == 0 else f"{stem}-{n}{ext}"
            try:
                return _File(candidate)
            except FileExistsError:
                continue
        raise OSError(errno.EEXIST, f"{path} and {_MAX_UNIQUE - 1} numbered variants exist")

    def _open(self, frame, ext: int) -> None:
        self._split = False
        mode = self.mode
        has_video = self._file_has_video()
        has_audio = mode == "audio" or (mode == "all" and (self._audio_header is not None or self._seen_audio))
        f = self._create()
        self._file = f
        self.path = f.path
        self.paths.append(f.path)
        rec = FLVRecording(has_video=has_video, has_audio=has_audio, max_index=self.settings.max_index, fallback=self._meta)
        self._rec = rec
        self._base = ext
        self._last_flush_ts = 0
        rec.start(
            frame.type_id,
            frame.payload,
            video_header=self._video_header if has_video else None,
            audio_header=self._audio_header if has_audio else None,
        )
        self._flush()
        self._log.info("record {app}/{name}: recording to {path}", app=self.app, name=self.name, path=f.path)

    def _flush(self) -> None:
        if self._rec is not None and self._file is not None and self._rec.pending:
            self._file.write(self._rec.take())

    def _finish(self, reason: str) -> None:
        """Flush, write the final onMetaData over the placeholder, close, report."""
        rec, f = self._rec, self._file
        if rec is None or f is None:
            return
        self._flush()
        f.pwrite(rec.final_prefix(), 0)
        self._rec = self._file = None
        self.path = None
        f.close()
        self._done(f.path, rec.size, rec.duration_ms / 1000.0, reason)

    def _done(self, path: str, size: int, duration: float, reason: str) -> None:
        self._log.info(
            "record done {app}/{name}: {path} ({size} bytes, {duration} s, {reason})",
            app=self.app, name=self.name, path=path, size=size, duration=duration, reason=reason,
        )
        if self.on_done is not None:
            self.on_done(RecordingDone(self.app, self.name, path, size, duration, reason, self.session, self.args))

    def _fail(self, error: OSError) -> None:
        where = error.filename or getattr(self._file, "path", None) or self.settings.path
        self._log.error(
            "record {app}/{name}: {path}: {error}; recording stopped, the live stream goes on",
            app=self.app, name=self.name, path=where, error=error.strerror or str(error),
        )
        self._abandon()

    def _abandon(self) -> None:
        """Stop recording without touching the file again (it may be what failed)."""
        self.failed = True
        rec, f = self._rec, self._file
        self._rec = self._file = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
            if rec is not None:
                try:
                    self._done(f.path, rec.size, rec.duration_ms / 1000.0, "error")
                except Exception:
                    self._log.failure("record {app}/{name}: on_done callback failed", app=self.app, name=self.name)
