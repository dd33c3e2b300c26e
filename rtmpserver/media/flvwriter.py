"""An FLV file writer for recordings, sans-IO: bytes in, bytes out, no file access.

``FLVRecording`` turns a stream's tags into the bytes of one FLV file whose layout survives a
crash and is seekable once finished:

- The bytes are produced strictly front to back, one complete tag (header, body, back-pointer)
  after another, so a file cut anywhere still parses up to its last complete tag.
- Its first tag is an ``onMetaData`` of a fixed size (``metadata_reserve``), large enough for
  ``max_index`` keyframe entries.  The first one carries what is known at that point (codecs,
  dimensions) with duration 0, which players and FFmpeg treat as "unknown".  When the file is
  finished, ``final_prefix`` gives the final metadata (duration, filesize, frame rate, the
  ``keyframes`` index of ``times`` and ``filepositions`` that yamdi and FFmpeg's
  ``add_keyframe_index`` write) to be written over it in place, the same size: a ``padding``
  array of short strings takes up the room the index does not use.  Nothing after it moves, so
  every file position in the index and every back-pointer stays valid.

Used by the record handler; meant as well for anything else that writes FLV (VOD, relays).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rtmpserver.codec import amf0
from rtmpserver.codec.amftypes import ECMAArray
from rtmpserver.errors import FLVError, LocalProtocolError, RemoteProtocolError
from rtmpserver.media.codecs import (
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_sps_dimensions,
)
from rtmpserver.media.flv import (
    FLV_HEADER_SIZE,
    TAG_AUDIO,
    TAG_HEADER_SIZE,
    TAG_SCRIPT,
    TAG_VIDEO,
    audio_info,
    file_header,
    previous_tag_size,
    tag_header,
    video_info,
)

__all__ = [
    "AUDIO_SEEK_SPACING_MS",
    "FLVRecording",
    "MASK32",
    "MAX_INDEX",
    "METADATA_OFFSET",
    "metadata_reserve",
    "publisher_metadata",
]

# The onMetaData tag starts right after the file header and PreviousTagSize0.
METADATA_OFFSET = FLV_HEADER_SIZE + 4

# Each keyframe costs two AMF0 numbers (marker + double) in the index.
_INDEX_ENTRY_SIZE = 18
# An AMF0 decoder bounded at 100 000 values (ours, by default) must still read our metadata.
MAX_INDEX = 40_000
# Audio-only recordings have no keyframes: a seek point (and a flush) at most once a second.
AUDIO_SEEK_SPACING_MS = 1000
MASK32 = 0xFFFFFFFF

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
        self._last = {TAG_VIDEO: -1, TAG_AUDIO: -1}
        self._delta = {TAG_VIDEO: 0, TAG_AUDIO: 0}
        self._bytes = {TAG_VIDEO: 0, TAG_AUDIO: 0}
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
            self._tag(TAG_VIDEO, 0, video_header)
        if audio_header is not None:
            self._tag(TAG_AUDIO, 0, audio_header)
        self.add(first_type, 0, first_payload, seek_point=True)

    def add(self, type_id: int, ts: int, payload, *, header: bool = False, seek_point: bool = False) -> bool:
        """Append one tag (``ts`` already rebased); True if it went into the seek index."""
        if not self.size:
            raise LocalProtocolError("FLVRecording.add() before start()")
        indexed = False
        if header:
            if type_id == TAG_VIDEO:
                self._inspect_video(payload, True)
            else:
                self._inspect_audio(payload, True)
        else:
            self._inspect(type_id, payload)
            if seek_point and len(self.times) < self.max_index and (
                self.has_video or not self.times or ts - self.times[-1] >= AUDIO_SEEK_SPACING_MS
            ):
                self.times.append(ts)
                self.positions.append(self.size)
                indexed = True
            last = self._last[type_id]
            if last >= 0 and ts > last:
                self._delta[type_id] = ts - last
            self._last[type_id] = ts
            self._bytes[type_id] += len(payload)
            if type_id == TAG_VIDEO:
                self._video_frames += 1
                if self._first_video_ts < 0:
                    self._first_video_ts = ts
            if (type_id == TAG_VIDEO) == self.has_video:
                self.frames += 1
            if type_id == TAG_AUDIO:
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
        self._pending += tag_header(type_id, ts & MASK32, n)
        self._pending += payload
        self._pending += previous_tag_size(n)
        self.size += TAG_HEADER_SIZE + n + 4

    # -- what the headers say ---------------------------------------------------------------------

    def _inspect(self, type_id: int, payload) -> None:
        # Codecs without a sequence header (MP3, Nellymoser, Sorenson...) say it in every frame.
        if type_id == TAG_VIDEO and self.videocodecid is None:
            self._inspect_video(payload, False)
        elif type_id == TAG_AUDIO and self.audiocodecid is None:
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
        for t in (TAG_VIDEO, TAG_AUDIO):
            if self._last[t] >= 0:
                end = max(end, self._last[t] + self._delta[t])
        return end

    def _framerate(self) -> float | None:
        span = self._last[TAG_VIDEO] - self._first_video_ts
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
                v["videodatarate"] = round(self._bytes[TAG_VIDEO] * 8 / 1000.0 / duration, 3)
            v["framerate"] = self._framerate()
            v["videocodecid"] = self.videocodecid if self.videocodecid is not None else fb.get("videocodecid")
        if self.has_audio:
            if duration > 0:
                v["audiodatarate"] = round(self._bytes[TAG_AUDIO] * 8 / 1000.0 / duration, 3)
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


def publisher_metadata(payload) -> dict[str, Any]:
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
