"""The ``vod`` handler: recorded playback of FLV and MP4 files from one directory per application.

``play NAME`` with ``vod.path = DIR`` plays ``DIR/NAME.flv``; ``mp4:NAME.mp4``, ``mp4:NAME`` (the
``.mp4`` is added) and ``NAME.mp4`` (also ``.m4v``, ``.mov``, ``.f4v``) play an MP4 file, plain or
fragmented; ``flv:NAME`` and ``NAME.flv`` an FLV file.  Names may name subdirectories
(``shows/ep1``) but never leave DIR: absolute names, ``..`` components, NUL bytes and symbolic
links that lead outside DIR are treated as "no such stream".  The file's format is taken from
its first bytes, not from its name.

The handler only provides files (``IVodProvider``); the session decides when a play is a
recorded one (``rtmpserver.session.vod``), after the whole chain has said yes, so ``access``,
``auth`` and ``notify`` apply to recorded streams exactly as to live ones.

Files are opened on the reactor's thread pool (an MP4 file's whole ``moov`` is read and parsed,
bounded by ``vod.max_index_bytes``), then read with ``os.pread`` on the reactor thread, one FLV
tag or one MP4 sample at a time as it is sent: on a local disk these are page-cache reads of a
few kilobytes.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.internet import threads
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.codec import amf0
from rtmpserver.errors import FLVError, Rejected, RemoteProtocolError
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IVodProvider,
    IVodStream,
)
from rtmpserver.media.flvfile import FLVFile
from rtmpserver.media.mp4 import MP4File
from rtmpserver.media.vod import FLVSource, MP4Source
from rtmpserver.settings import Invalid, Section, integer, seconds

__all__ = ["VodHandler", "VodFactory", "VodFile", "resolve", "factory"]

DEFAULT_MAX_BUFFER = 10.0  # seconds sent ahead of real time at most
DEFAULT_MAX_INDEX_BYTES = 64 * 1024 * 1024  # an MP4 moov / moof, read whole

_MP4_SUFFIXES = (".mp4", ".m4v", ".m4a", ".mov", ".f4v")
_log = Logger(namespace="rtmpserver.handlers.vod")


def _candidate(name: str) -> str | None:
    """The relative file name a stream name stands for, or None for a name that cannot be one."""
    kind = ""
    for prefix in ("mp4:", "flv:"):
        if name.startswith(prefix):
            kind, name = prefix[:3], name[len(prefix):]
            break
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    lower = name.lower()
    if kind == "mp4":
        return name if lower.endswith(_MP4_SUFFIXES) else name + ".mp4"
    if lower.endswith(_MP4_SUFFIXES) or lower.endswith(".flv"):
        return name
    return name + ".flv"


def resolve(root: str, name: str) -> str | None:
    """The path of the regular file ``name`` plays under the directory ``root`` (a real path),
    or None: no such file, or a name or symbolic link that leads outside ``root``."""
    rel = _candidate(name)
    if rel is None:
        return None
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, path]) != root or path == root:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) else None


def _decode_script(payload: bytes) -> list:
    return amf0.Decoder(payload).read_all()


class _Closed:
    """What a closed VodFile reads from: nothing."""

    duration_ms = 0

    def metadata(self) -> dict:
        return {}

    def sequence_headers(self) -> list:
        return []

    def seek(self, ms: int) -> int:
        return 0

    def next_due_ms(self) -> None:
        return None

    def read(self) -> None:
        return None


@implementer(IVodStream)
class VodFile:
    """An opened FLV or MP4 file as an ``IVodStream`` (reads with ``os.pread`` on its descriptor)."""

    def __init__(self, name: str, path: str, *, max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(self._fd).st_size
            head = self._read_at(0, 3)
            if head == b"FLV":
                self._source: Any = FLVSource(FLVFile(self._read_at, size, decode_script=_decode_script))
            else:
                mp4 = MP4File(self._read_at, size, max_moov_bytes=max_index_bytes, max_moof_bytes=max_index_bytes)
                if mp4.video is None and mp4.audio is None:
                    raise FLVError("no H.264/HEVC/AV1/VP9 video or AAC audio track")
                self._source = MP4Source(mp4)
            if self._source.next_due_ms() is None:
                raise FLVError("no audio or video to play")
        except BaseException:
            self.close()
            raise
        self.duration_ms = self._source.duration_ms

    def _read_at(self, offset: int, size: int) -> bytes:
        if self._fd is None:
            return b""
        return os.pread(self._fd, size, offset)

    def metadata(self) -> dict:
        return self._source.metadata()

    def sequence_headers(self) -> list:
        return self._source.sequence_headers()

    def seek(self, ms: int) -> int:
        return self._source.seek(ms)

    def next_due_ms(self) -> int | None:
        return self._source.next_due_ms()

    def read(self):
        return self._source.read()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        # The source's reader holds our bound _read_at: a cycle. Breaking it here frees the MP4
        # index (megabytes for a long film) now rather than at the next cyclic collection.
        self._source = _Closed()


@implementer(IAppHandler, IVodProvider)
class VodHandler:
    """Serves the files under one directory; lets every request through (the session decides
    whether a play is recorded, see the module docstring)."""

    def __init__(self, root: str, max_buffer: float, max_index_bytes: int, reactor=None) -> None:
        self.root = root
        self.max_buffer = max_buffer
        self.max_index_bytes = max_index_bytes
        # With a reactor, files are opened on its thread pool (see open_stream); without one
        # (tests, tools), right away.
        self.reactor = reactor

    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        return proceed(request)

    def play(self, request, proceed):
        return proceed(request)

    def close_stream(self, event):
        return None

    # -- IVodProvider ---------------------------------------------------------------------------

    def buffer_limit_ms(self) -> int:
        return int(self.max_buffer * 1000)

    def open_stream(self, name: str):
        """None for a name that is not a playable file here; else the opened ``VodFile``, or a
        Deferred firing with it: opening reads the head of an FLV file or the whole ``moov`` of
        an MP4 (15 MB and about 0.2 s of parsing for a 5-hour film), which is done on the
        reactor's thread pool so that other connections are not held up meanwhile."""
        path = resolve(self.root, name)
        if path is None:
            return None
        if self.reactor is None:
            try:
                return VodFile(name, path, max_index_bytes=self.max_index_bytes)
            except (RemoteProtocolError, OSError) as e:
                raise self._unplayable(name, path, e) from None
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), VodFile, name, path,
                                      max_index_bytes=self.max_index_bytes)

        def failed(f):
            f.trap(RemoteProtocolError, OSError)
            raise self._unplayable(name, path, f.value)

        return d.addErrback(failed)

    @staticmethod
    def _unplayable(name: str, path: str, e: Exception) -> Rejected:
        # Malformed or unreadable: the operator's file, so the log says why; the player only
        # learns that it cannot be played.
        _log.warn("vod: cannot play {path}: {error}", path=path, error=e)
        return Rejected("NetStream.Play.Failed", f"{name} cannot be played")


def _directory(base_dir: str):
    def convert(text: str) -> str:
        if not text or "\x00" in text:
            raise Invalid("a directory")
        path = os.path.realpath(os.path.join(base_dir, text))
        if not os.path.isdir(path):
            raise Invalid(f"an existing directory ({path} is not one)")
        return path

    return convert


@implementer(IPlugin, IAppHandlerFactory)
class VodFactory:
    name = "vod"
    description = "recorded playback (VOD) of FLV and MP4 files with seek and pause"

    def build(self, settings, context):
        section = Section.for_handler(self.name, settings, context)
        values = section.convert({
            "path": (_directory(section.base_dir), ""),
            "max_buffer": (seconds(0.1, 600.0), str(DEFAULT_MAX_BUFFER)),
            "max_index_bytes": (integer(1024, 1 << 31), str(DEFAULT_MAX_INDEX_BYTES)),
        }) if "path" in section else None
        if values is None:
            raise section.problem("path", "required: the directory recorded streams are played from")
        return VodHandler(values["path"], values["max_buffer"], values["max_index_bytes"], reactor=context.reactor)


factory = VodFactory()
