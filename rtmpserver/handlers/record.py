"""``record``: live streams to FLV files, seekable once finished, playable after a crash.

One ``Recorder`` (an ``IMediaSink``) per recorded publish writes files named by the
``record.path`` template.  The file layout is what lets a recording survive ``kill -9``:

- The file is written strictly front to back, one complete tag (header, body, back-pointer) after
  another, so a file cut anywhere still parses up to its last complete tag.
- Its first tag is an ``onMetaData`` of a fixed size reserved when the file is opened, large
  enough for ``record.max_index`` keyframe entries.  The first one written carries what is known
  at that point (codecs, dimensions) with duration 0, which players and FFmpeg treat as "unknown"
  and work out from the timestamps.  When the file is finished, the final metadata (duration,
  filesize, frame rate, the ``keyframes`` index of ``times`` and ``filepositions`` that yamdi and
  FFmpeg's ``add_keyframe_index`` write) is written over it in place, the same size: a
  ``padding`` array of short strings takes up the room the index does not use.  Nothing after it
  moves, so every file position in the index and every back-pointer stays valid.
- Every file starts with that metadata, the latest sequence headers, then a keyframe (for audio
  only recordings, any audio frame) at timestamp 0; later timestamps are the publisher's,
  unwrapped (32-bit wrap, RTMP 1.0 section 5.3.1) and rebased to that first frame.

Writes are synchronous appends on the reactor thread: tags collect in a small buffer that goes to
the file at every keyframe (for audio only files, at least once a second) and whenever it holds
64 KiB, so a crash loses at most that.  A write error (disk full, a path that cannot be created)
stops that recording with one error line and nothing else: the live stream and its players never
see it.  Finished files are closed, not fsynced.

Nothing a publisher names can leave the directory the template puts recordings in: app and
stream names are reduced to ``[A-Za-z0-9._-]`` with leading dots removed before they are put into
the template (``sanitize``).
"""

from __future__ import annotations

import errno
import math
import os
import re
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.internet import defer
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.codec import amf0
from rtmpserver.codec.amftypes import ECMAArray
from rtmpserver.errors import ConfigError, FLVError, LocalProtocolError, RemoteProtocolError
from rtmpserver.hub import AUDIO, DATA, VIDEO, LiveStream
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHandlerService,
    IMediaSink,
    IRecording,
    IRecordingController,
    IRecordingSource,
)
from rtmpserver.media.codecs import parse_audio_specific_config, parse_avc_decoder_config, parse_sps_dimensions
from rtmpserver.media.flv import (
    FLV_HEADER_SIZE,
    TAG_HEADER_SIZE,
    TAG_SCRIPT,
    audio_info,
    file_header,
    is_video_keyframe,
    previous_tag_size,
    tag_header,
    video_info,
)

__all__ = [
    "MODES",
    "METADATA_OFFSET",
    "RecordSettings",
    "RecordingDone",
    "FLVRecording",
    "Recorder",
    "RecordHandler",
    "RecordFactory",
    "metadata_reserve",
    "parse_settings",
    "render_path",
    "sanitize",
    "factory",
]

MODES = ("all", "audio", "video", "keyframes", "off", "manual")

# The onMetaData tag starts right after the file header and PreviousTagSize0.
METADATA_OFFSET = FLV_HEADER_SIZE + 4

# Each keyframe costs two AMF0 numbers (marker + double) in the index.
_INDEX_ENTRY_SIZE = 18
# An AMF0 decoder bounded at 100 000 values (ours, by default) must still read our metadata.
_MAX_INDEX = 40_000
_FLUSH_BYTES = 64 * 1024
# Audio-only recordings have no keyframes: a seek point (and a flush) at most once a second.
_AUDIO_SEEK_SPACING_MS = 1000
# Leaves room for the time, a uniqueness counter and an extension within NAME_MAX (255).
_MAX_COMPONENT = 128
_MAX_UNIQUE = 1000
_MASK32 = 0xFFFFFFFF

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_PLACEHOLDERS = ("app", "name", "time")


def sanitize(text: str) -> str:
    """``text`` made safe as one file name component.

    Everything outside ``[A-Za-z0-9._-]`` (separators, NUL, non-ASCII) becomes ``_`` and leading
    dots go, so the result is never ``.``, ``..``, hidden, absolute or more than one component;
    an empty result is ``_``.  Two names may map to the same text: files are never overwritten
    (``render_path`` callers open with O_EXCL and add a counter), so that only affects naming.
    """
    safe = _UNSAFE.sub("_", text).lstrip(".")[:_MAX_COMPONENT]
    return safe or "_"


def render_path(template: str, app: str, name: str, when: float) -> str:
    """The path for a recording of ``app``/``name`` started at ``when`` (UTC seconds)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    return os.path.normpath(template.format(app=sanitize(app), name=sanitize(name), time=stamp))


def _template_root(template: str) -> str:
    """The directory every rendering of ``template`` stays inside: the part before any placeholder."""
    literal = []
    for text, field_name, _, _ in string.Formatter().parse(template):
        literal.append(text)  # already unescaped: "{{" is "{" here
        if field_name is not None:
            break
    return os.path.dirname(os.path.normpath("".join(literal) + "x")) or os.sep


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RecordSettings:
    """``record.*`` of one application; 0 means "no bound" for the ``max_*`` splitting bounds."""

    path: str = ""  # absolute template with {app}, {name}, {time}
    mode: str = "all"
    max_size: int = 0  # bytes
    max_duration: float = 0.0  # seconds
    max_frames: int = 0  # video frames (audio frames in audio-only files)
    max_index: int = 10_000  # keyframes in the onMetaData index

    @property
    def root(self) -> str:
        return _template_root(self.path)


class _Bad(Exception):
    pass


def _count(high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _DIGITS.fullmatch(text) or int(text) > high:
            raise _Bad(f"an integer from 0 to {high}")
        return int(text)

    return convert


def _seconds(text: str) -> float:
    if not _DECIMAL.fullmatch(text) or not math.isfinite(float(text)):
        raise _Bad("a number of seconds >= 0")
    return float(text)


def _mode(text: str) -> str:
    if text not in MODES:
        raise _Bad(f"one of {' | '.join(MODES)}")
    return text


def _path_template(base_dir: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        expected = "a file path template using only the placeholders {app}, {name} and {time}"
        if not text or "\x00" in text:
            raise _Bad(expected)
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError:
            raise _Bad(f"{expected} (unbalanced braces; write {{{{ or }}}} for a literal brace)") from None
        for _, field_name, spec, conversion in fields:
            if field_name is None:
                continue
            if field_name not in _PLACEHOLDERS or spec or conversion:
                raise _Bad(expected)
        if text.endswith(("/", os.sep)):
            raise _Bad(f"{expected} (it names a directory)")
        # Not normalised here: "{name}/.." would collapse to nothing and hide the placeholder.
        path = os.path.join(base_dir, text)
        root = _template_root(path)
        if os.path.commonpath([root, render_path(path, "app", "name", 0)]) != root:
            raise _Bad(f"{expected}, whose files stay inside {root} ('..' after a placeholder leaves it)")
        return path

    return convert


def parse_settings(settings: Mapping[str, str], context: Any) -> RecordSettings:
    """Check ``record.*``; relative paths are resolved against the config file's directory."""
    config_path = context.server.path
    base_dir = os.getcwd() if config_path == "<string>" else os.path.dirname(os.path.abspath(config_path))
    keys: dict[str, Callable[[str], Any]] = {
        "path": _path_template(base_dir),
        "mode": _mode,
        "max_size": _count(2**50),
        "max_duration": _seconds,
        "max_frames": _count(2**40),
        "max_index": _count(_MAX_INDEX),
    }
    where = f"{config_path}: [app:{context.app.name}]"
    values: dict[str, Any] = {}
    for key, raw in settings.items():
        text = raw.strip()
        convert = keys.get(key)
        if convert is None:
            raise ConfigError(f"{where} record.{key}: unknown key (record has {', '.join(keys)})")
        try:
            values[key] = convert(text)
        except _Bad as e:
            raise ConfigError(f"{where} record.{key}: expected {e}, got '{text}'") from None
    result = RecordSettings(**values)
    if result.mode != "off" and not result.path:
        raise ConfigError(
            f"{where} record.path: expected a file path template such as "
            f"/var/rec/{{app}}/{{name}}-{{time}}.flv (required unless record.mode = off), got ''"
        )
    return result


# --------------------------------------------------------------------------- the FLV file, sans-IO

# Every key our onMetaData may carry, in the order written, with a value of its AMF0 type.  The
# size reserved for the tag is that of all of them plus a full index, so whatever subset a file
# ends up with fits.
_METADATA_TEMPLATE: tuple[tuple[str, Any], ...] = (
    ("duration", 0.0),
    ("filesize", 0.0),
    ("width", 0.0),
    ("height", 0.0),
    ("videodatarate", 0.0),
    ("framerate", 0.0),
    ("videocodecid", 0.0),
    ("audiodatarate", 0.0),
    ("audiosamplerate", 0.0),
    ("audiosamplesize", 0.0),
    ("stereo", False),
    ("audiocodecid", 0.0),
    ("hasVideo", False),
    ("hasAudio", False),
    ("hasMetadata", False),
    ("hasKeyframes", False),
    ("lasttimestamp", 0.0),
    ("lastkeyframetimestamp", 0.0),
    ("lastkeyframelocation", 0.0),
    ("metadatacreator", "rtmpserver"),
)
_METADATA_TYPES = {key: type(value) for key, value in _METADATA_TEMPLATE}
# The publisher's onMetaData values we fall back on when the sequence headers don't tell.
_FALLBACK_KEYS = ("width", "height", "framerate", "videocodecid", "audiocodecid", "audiosamplerate", "audiosamplesize", "stereo")
# "padding" key (2 + 7 bytes) plus the strict array marker and count (1 + 4).
_PADDING_OVERHEAD = 14
_reserves: dict[int, int] = {}


def _filler(room: int) -> list:
    """A strict array body of exactly ``room`` bytes.

    Short strings (3 + at most 255 bytes each), then nulls (1 byte) for a remainder of 1 or 2:
    FFmpeg's flv demuxer reads strings into a 256-byte buffer and fails the whole metadata on a
    longer one, and skips array members without storing them, so the padding stays invisible.
    """
    items: list = []
    while room >= 258:
        items.append(" " * 255)
        room -= 258
    if room >= 3:
        items.append(" " * (room - 3))
    else:
        items.extend([None] * room)
    return items


def metadata_reserve(max_index: int) -> int:
    """Body size of the onMetaData tag of every recording with this index bound."""
    size = _reserves.get(max_index)
    if size is None:
        worst = ECMAArray(_METADATA_TEMPLATE)
        if max_index:
            worst["keyframes"] = {"times": [0.0] * max_index, "filepositions": [0.0] * max_index}
        worst["padding"] = []
        size = _reserves[max_index] = len(amf0.encode("onMetaData", worst, references=False))
    return size


def _fourcc_number(fourcc: str) -> float:
    """An Enhanced RTMP FourCC as the number FFmpeg's FLV muxer writes for ``*codecid``."""
    return float(int.from_bytes(fourcc.encode("latin-1")[:4].ljust(4, b"\0"), "big"))


class FLVRecording:
    """The bytes of one recording and what its onMetaData will say; no file access here.

    ``start`` produces the file header, the placeholder metadata, the sequence headers and the
    first frame; ``add`` each later tag; ``take`` hands over what was produced since the last
    call; ``final_prefix`` is the file header and final onMetaData, to be written over the
    first ``METADATA_OFFSET + TAG_HEADER_SIZE + reserve + 4`` bytes when the file is finished.
    """

    def __init__(self, *, has_video: bool, has_audio: bool, max_index: int, fallback: Mapping[str, Any] | None = None) -> None:
        self.has_video = has_video
        self.has_audio = has_audio
        self.max_index = max_index
        self.reserve = metadata_reserve(max_index)
        self.fallback = dict(fallback or {})
        self.size = 0  # bytes produced: the file offset of the next tag
        self.frames = 0  # video frames, or audio frames in an audio-only file
        self.last_ts = 0
        self.times: list[int] = []  # ms
        self.positions: list[int] = []
        self._pending = bytearray()
        self._last = {VIDEO: -1, AUDIO: -1}
        self._delta = {VIDEO: 0, AUDIO: 0}
        self._bytes = {VIDEO: 0, AUDIO: 0}
        self._video_frames = 0
        self._first_video_ts = -1
        self.width: float | None = None
        self.height: float | None = None
        self.videocodecid: float | None = None
        self.audiocodecid: float | None = None
        self.audiosamplerate: float | None = None
        self.audiosamplesize: float | None = None
        self.stereo: bool | None = None

    # -- producing ----------------------------------------------------------------------------

    def start(self, first_type: int, first_payload, *, video_header=None, audio_header=None) -> None:
        if self.size:
            raise LocalProtocolError("FLVRecording.start() called twice")
        if video_header is not None:
            self._inspect_video(video_header, True)
        if audio_header is not None:
            self._inspect_audio(audio_header, True)
        self._inspect(first_type, first_payload)
        self._emit(file_header(self.has_audio, self.has_video))
        self._emit(self.metadata_tag(final=False))
        if video_header is not None:
            self._tag(VIDEO, 0, video_header)
        if audio_header is not None:
            self._tag(AUDIO, 0, audio_header)
        self.add(first_type, 0, first_payload, seek_point=True)

    def add(self, type_id: int, ts: int, payload, *, header: bool = False, seek_point: bool = False) -> bool:
        """Append one tag (``ts`` already rebased); True if it went into the seek index."""
        if not self.size:
            raise LocalProtocolError("FLVRecording.add() before start()")
        indexed = False
        if header:
            if type_id == VIDEO:
                self._inspect_video(payload, True)
            else:
                self._inspect_audio(payload, True)
        else:
            self._inspect(type_id, payload)
            if seek_point and len(self.times) < self.max_index and (
                self.has_video or not self.times or ts - self.times[-1] >= _AUDIO_SEEK_SPACING_MS
            ):
                self.times.append(ts)
                self.positions.append(self.size)
                indexed = True
            last = self._last[type_id]
            if last >= 0 and ts > last:
                self._delta[type_id] = ts - last
            self._last[type_id] = ts
            self._bytes[type_id] += len(payload)
            if type_id == VIDEO:
                self._video_frames += 1
                if self._first_video_ts < 0:
                    self._first_video_ts = ts
            if (type_id == VIDEO) == self.has_video:
                self.frames += 1
            if type_id == AUDIO:
                # Audio that starts after the file did: the header flags are rewritten at the end.
                self.has_audio = True
        if ts > self.last_ts:
            self.last_ts = ts
        self._tag(type_id, ts, payload)
        return indexed

    def take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _emit(self, data) -> None:
        self._pending += data
        self.size += len(data)

    def _tag(self, type_id: int, ts: int, payload) -> None:
        n = len(payload)
        self._pending += tag_header(type_id, ts & _MASK32, n)
        self._pending += payload
        self._pending += previous_tag_size(n)
        self.size += TAG_HEADER_SIZE + n + 4

    # -- what the headers say ---------------------------------------------------------------------

    def _inspect(self, type_id: int, payload) -> None:
        # Codecs without a sequence header (MP3, Nellymoser, Sorenson...) say it in every frame.
        if type_id == VIDEO and self.videocodecid is None:
            self._inspect_video(payload, False)
        elif type_id == AUDIO and self.audiocodecid is None:
            self._inspect_audio(payload, False)

    def _inspect_video(self, payload, header: bool) -> None:
        try:
            info = video_info(payload)
        except FLVError:
            return
        if info.command is not None:
            return
        if self.videocodecid is None or header:
            if info.enhanced and isinstance(info.codec, str):
                self.videocodecid = _fourcc_number(info.codec)
            elif not info.enhanced:
                self.videocodecid = float(payload[0] & 0x0F)
        if header and info.is_sequence_header and info.codec == "avc1" and not info.multitrack and self.width is None:
            try:
                config = parse_avc_decoder_config(payload[info.header_size:])
                if config.sps:
                    w, h = parse_sps_dimensions(config.sps[0])
                    self.width, self.height = float(w), float(h)
            except FLVError:
                pass

    def _inspect_audio(self, payload, header: bool) -> None:
        try:
            info = audio_info(payload)
        except FLVError:
            return
        if self.audiocodecid is None or header:
            self.audiocodecid = _fourcc_number(info.codec) if info.enhanced and isinstance(info.codec, str) else float(info.sound_format)
        if info.enhanced:
            return
        if info.sound_format == 10:
            # For AAC the FLV header's rate and channel bits are fixed at 44 kHz stereo (FLV spec
            # E.4.2.1); only the AudioSpecificConfig tells the truth.
            self.audiosamplesize = float(info.size)
            if header and info.is_sequence_header:
                try:
                    asc = parse_audio_specific_config(payload[info.header_size:])
                except FLVError:
                    return
                self.audiosamplerate = float(asc.extension_sample_rate or asc.sample_rate)
                self.stereo = asc.channel_config >= 2 or asc.ps
            return
        self.audiosamplerate = float(info.rate)
        self.audiosamplesize = float(info.size)
        self.stereo = info.channels == 2

    # -- metadata -----------------------------------------------------------------------------

    @property
    def duration_ms(self) -> int:
        """Last timestamp plus one frame of the stream that ends last (as FFmpeg's muxer does)."""
        end = self.last_ts
        for t in (VIDEO, AUDIO):
            if self._last[t] >= 0:
                end = max(end, self._last[t] + self._delta[t])
        return end

    def _framerate(self) -> float | None:
        span = self._last[VIDEO] - self._first_video_ts
        if self._video_frames >= 2 and span > 0:
            return round((self._video_frames - 1) * 1000.0 / span, 3)
        return self.fallback.get("framerate")

    def metadata(self, final: bool = True) -> ECMAArray:
        """The onMetaData values as of now (without padding).

        The placeholder (``final=False``) says duration 0 and filesize 0: "unknown" to FFmpeg,
        which then takes the duration from the last tag, and to players, which treat it as live.
        """
        fb = self.fallback
        duration = self.duration_ms / 1000.0 if final else 0.0
        v: dict[str, Any] = {"duration": duration, "filesize": float(self.size) if final else 0.0}
        if self.has_video:
            v["width"] = self.width if self.width is not None else fb.get("width")
            v["height"] = self.height if self.height is not None else fb.get("height")
            if duration > 0:
                v["videodatarate"] = round(self._bytes[VIDEO] * 8 / 1000.0 / duration, 3)
            v["framerate"] = self._framerate()
            v["videocodecid"] = self.videocodecid if self.videocodecid is not None else fb.get("videocodecid")
        if self.has_audio:
            if duration > 0:
                v["audiodatarate"] = round(self._bytes[AUDIO] * 8 / 1000.0 / duration, 3)
            v["audiosamplerate"] = self.audiosamplerate if self.audiosamplerate is not None else fb.get("audiosamplerate")
            v["audiosamplesize"] = self.audiosamplesize if self.audiosamplesize is not None else fb.get("audiosamplesize")
            v["stereo"] = self.stereo if self.stereo is not None else fb.get("stereo")
            v["audiocodecid"] = self.audiocodecid if self.audiocodecid is not None else fb.get("audiocodecid")
        v["hasVideo"] = self.has_video
        v["hasAudio"] = self.has_audio
        v["hasMetadata"] = True
        v["hasKeyframes"] = bool(self.times)
        v["lasttimestamp"] = self.last_ts / 1000.0
        if self.times:
            v["lastkeyframetimestamp"] = self.times[-1] / 1000.0
            v["lastkeyframelocation"] = float(self.positions[-1])
        v["metadatacreator"] = "rtmpserver"
        meta = ECMAArray()
        for key, _ in _METADATA_TEMPLATE:
            value = v.get(key)
            if value is None:
                continue
            meta[key] = _METADATA_TYPES[key](value)
        if self.times:
            # FLV has no spec for this; yamdi, flvtool2 and FFmpeg (flvdec.c parse_keyframes_index)
            # agree on an object of two equally long arrays: seconds and tag start offsets.
            meta["keyframes"] = {"times": [t / 1000.0 for t in self.times], "filepositions": [float(p) for p in self.positions]}
        return meta

    def final_prefix(self) -> bytes:
        """What goes over the start of the finished file: header (flags as written) and metadata."""
        return file_header(self.has_audio, self.has_video) + self.metadata_tag()

    def metadata_tag(self, final: bool = True) -> bytes:
        """The complete onMetaData tag, always ``TAG_HEADER_SIZE + reserve + 4`` bytes."""
        meta = self.metadata(final)
        room = self.reserve - len(amf0.encode("onMetaData", meta, references=False)) - _PADDING_OVERHEAD
        if room < 0:
            raise LocalProtocolError(f"onMetaData needs {-room} bytes more than the {self.reserve} reserved")
        meta["padding"] = _filler(room)
        body = amf0.encode("onMetaData", meta, references=False)
        if len(body) != self.reserve:
            raise LocalProtocolError(f"onMetaData is {len(body)} bytes, {self.reserve} were reserved")
        return b"".join((tag_header(TAG_SCRIPT, 0, len(body)), body, previous_tag_size(len(body))))


# --------------------------------------------------------------------------- the sink


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


def _publisher_metadata(payload) -> dict[str, Any]:
    """The numbers we may fall back on from the publisher's ``onMetaData`` (AMF0 body)."""
    try:
        values = amf0.decode(payload, max_depth=8, max_elements=4096)
    except RemoteProtocolError:
        return {}
    obj = next((v for v in values[1:2] if isinstance(v, dict)), None) if values else None
    if obj is None:
        return {}
    out: dict[str, Any] = {}
    for key in _FALLBACK_KEYS:
        value = obj.get(key)
        if key == "stereo":
            if isinstance(value, bool):
                out[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            out[key] = float(value)
    return out


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
        on_closed: Callable[["Recorder"], Any] | None = None,
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
            self._ext += ((ts - self._last_raw + 0x80000000) & _MASK32) - 0x80000000
        self._last_raw = ts
        return self._ext

    def _frame(self, frame) -> None:
        t = frame.type_id
        if t == DATA:
            # Our onMetaData replaces the publisher's; other data messages (onTextData,
            # onCuePoint) are not recorded. The publisher's values are fallbacks only.
            if frame.header:
                self._meta = _publisher_metadata(frame.payload)
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
        if start and (rec.has_video or ts - self._last_flush_ts >= _AUDIO_SEEK_SPACING_MS):
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


# --------------------------------------------------------------------------- the handler


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
