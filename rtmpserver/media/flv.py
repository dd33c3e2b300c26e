"""FLV tags and files, sans-IO: audio/video tag headers, a file writer, an incremental reader.

The same tag-header layout appears in three places: the body of every RTMP audio (8) and video (9)
message, FLV files (recordings, HTTP-FLV), and the sub-messages of RTMP aggregate messages (type 22).
References: Adobe "Video File Format Specification" v10 (annex E, "The FLV File Format"), RTMP 1.0
section 7.1.6 (aggregate message), and Veovera's Enhanced RTMP v2 ("Enhanced Audio", "Enhanced
Video") for the FourCC headers that FFmpeg 6.1+ and OBS 29.1+ send for HEVC/AV1/VP9.

``video_info``/``audio_info`` and the ``is_*`` predicates run once per media message on the live
path, so they look only at the first bytes of the payload and never copy it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from rtmpserver.errors import FLVError, LimitExceeded, LocalProtocolError

__all__ = [
    "TAG_AUDIO",
    "TAG_VIDEO",
    "TAG_SCRIPT",
    "FLV_HEADER_SIZE",
    "TAG_HEADER_SIZE",
    "DEFAULT_MAX_TAG_SIZE",
    "MAX_TAG_DATA_SIZE",
    "FLVTagTooLarge",
    "VideoInfo",
    "AudioInfo",
    "FLVTag",
    "video_info",
    "audio_info",
    "video_flags",
    "is_video_keyframe",
    "is_video_sequence_header",
    "is_audio_sequence_header",
    "file_header",
    "tag_header",
    "previous_tag_size",
    "encode_tag",
    "FLVWriter",
    "FLVReader",
    "read_file",
    "parse_aggregate",
]

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

FLV_HEADER_SIZE = 9
TAG_HEADER_SIZE = 11
# DataSize is a UI24 (FLV spec E.4.1), so no tag body can be larger.
MAX_TAG_DATA_SIZE = 0xFFFFFF
# Default bound for FLVReader: generous for 4K keyframes, far below what a 24-bit size could claim.
DEFAULT_MAX_TAG_SIZE = 8 * 1024 * 1024

# Legacy VideoTagHeader CodecID values (FLV spec E.4.3.1).
_CODEC_AVC = 7
# Not in Adobe's table: the pre-Enhanced-RTMP convention of Chinese CDNs and encoders for HEVC
# with the AVC header layout (packet type + SI24 composition time).
_CODEC_HEVC_LEGACY = 12

# Enhanced RTMP VideoPacketType values.
_VPT_SEQUENCE_START = 0
_VPT_CODED_FRAMES = 1
_VPT_SEQUENCE_END = 2
_VPT_CODED_FRAMES_X = 3
_VPT_METADATA = 4
_VPT_MPEG2TS_SEQUENCE_START = 5
_VPT_MULTITRACK = 6
_VPT_MODEX = 7

# Enhanced RTMP AudioPacketType values.
_APT_SEQUENCE_START = 0
_APT_CODED_FRAMES = 1
_APT_SEQUENCE_END = 2
_APT_MULTICHANNEL_CONFIG = 4
_APT_MULTITRACK = 5
_APT_MODEX = 7

# AvMultitrackType values.
_MT_ONE_TRACK = 0
_MT_MANY_TRACKS_MANY_CODECS = 2

_FRAME_KEY = 1
_FRAME_COMMAND = 5

_SOUND_EX_HEADER = 9
_SOUND_AAC = 10

# FourCCs whose CodedFrames carry an SI24 composition time offset (Enhanced RTMP, ExVideoTagBody).
_CTS_FOURCCS = frozenset(("avc1", "hvc1", "vvc1"))
_LEGACY_VIDEO_FOURCC = {_CODEC_AVC: "avc1", _CODEC_HEVC_LEGACY: "hvc1"}
# SoundFormat values that have an Enhanced RTMP FourCC, so callers can switch on one name.
_LEGACY_AUDIO_FOURCC = {2: ".mp3", 14: ".mp3", _SOUND_AAC: "mp4a"}
# SoundRate index -> Hz. 5.5 kHz is 5512.5 Hz in practice; FFmpeg and Flash use 5512.
_SOUND_RATES = (5512, 11025, 22050, 44100)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
# Tag header as two big-endian words plus StreamID (always 0): (type << 24 | DataSize),
# (Timestamp << 8 | TimestampExtended).
_TAG_HEADER = struct.Struct(">II3x")
_FILE_HEADER = struct.Struct(">3sBBI")


class FLVTagTooLarge(FLVError, LimitExceeded):
    """A tag claims more bytes than the reader's configured bound (docs/architecture.md, "Rules we keep", 3)."""


class VideoInfo(NamedTuple):
    """What the media path needs to know about one video message.

    ``codec`` is a FourCC string for codecs Enhanced RTMP names (legacy AVC is ``'avc1'``, legacy
    codec id 12 is ``'hvc1'``), the legacy CodecID int otherwise, and None for Enhanced command
    frames, which carry no FourCC. ``packet_type`` is the AVCPacketType (legacy AVC/HEVC) or the
    Enhanced VideoPacketType after ModEx/Multitrack unwrapping, None for codecs that have neither.
    ``header_size`` counts every byte before the codec data (for a multitrack message, before the
    first track's data).
    """

    codec: int | str | None
    frame_type: int
    is_keyframe: bool
    is_sequence_header: bool
    is_sequence_end: bool
    composition_time: int
    enhanced: bool
    packet_type: int | None
    header_size: int
    command: int | None = None
    multitrack: bool = False


class AudioInfo(NamedTuple):
    """What the media path needs to know about one audio message.

    ``rate`` is in Hz, ``size`` in bits, ``channels`` 1 or 2: the legacy header fields, which
    Enhanced RTMP headers (``sound_format`` 9) do not carry, so they are None there. ``codec`` is
    the FourCC for AAC (``'mp4a'``), MP3 (``'.mp3'``) and every Enhanced codec, else the
    SoundFormat int. ``packet_type`` is the AACPacketType or Enhanced AudioPacketType.
    """

    sound_format: int
    rate: int | None
    size: int | None
    channels: int | None
    is_sequence_header: bool
    header_size: int
    codec: int | str
    packet_type: int | None = None
    enhanced: bool = False
    multitrack: bool = False


class FLVTag(NamedTuple):
    """One FLV tag; ``offset`` is where its 11-byte header starts (in the file or aggregate)."""

    type: int
    timestamp: int
    payload: bytes
    offset: int


# --------------------------------------------------------------------------- tag body headers


def _fourcc(payload, pos: int, what: str) -> str:
    if len(payload) < pos + 4:
        raise FLVError(f"{what}: truncated FourCC at offset {pos}")
    return str(payload[pos : pos + 4], "latin-1")


def _skip_modex(payload, pos: int, packet_type: int, modex: int, what: str) -> tuple[int, int]:
    """Step over ModEx blocks (Enhanced RTMP v2): size, data, then (ModExType, PacketType).

    Every defined ModEx (only TimestampOffsetNano so far) is size-delimited, so unknown ones are
    skipped as well; each round consumes at least two bytes, so the loop ends.
    """
    n = len(payload)
    while packet_type == modex:
        if pos >= n:
            raise FLVError(f"{what}: truncated ModEx size at offset {pos}")
        size = payload[pos] + 1
        pos += 1
        if size == 256:
            if pos + 2 > n:
                raise FLVError(f"{what}: truncated ModEx 16-bit size at offset {pos}")
            size = _U16.unpack_from(payload, pos)[0] + 1
            pos += 2
        pos += size
        if pos >= n:
            raise FLVError(f"{what}: truncated ModEx data or packet type at offset {pos}")
        packet_type = payload[pos] & 0x0F
        pos += 1
    return packet_type, pos


def _multitrack_header(payload, pos: int, multitrack: int, modex: int, what: str) -> tuple[int, str, int]:
    """Read the Multitrack prelude up to the first track's data: (packet type, FourCC, pos)."""
    n = len(payload)
    if pos >= n:
        raise FLVError(f"{what}: truncated multitrack type at offset {pos}")
    b = payload[pos]
    mt_type, packet_type = b >> 4, b & 0x0F
    pos += 1
    if mt_type > _MT_MANY_TRACKS_MANY_CODECS:
        raise FLVError(f"{what}: reserved AvMultitrackType {mt_type} at offset {pos - 1}")
    if packet_type == multitrack or packet_type == modex:
        # The spec forbids a nested Multitrack and orders ModEx before Multitrack, never inside.
        raise FLVError(f"{what}: packet type {packet_type} inside Multitrack at offset {pos - 1}")
    # One FourCC for all tracks, or (ManyTracksManyCodecs) the first track's own FourCC: either
    # way it sits here, before the first trackId.
    fourcc = _fourcc(payload, pos, what)
    pos += 4
    # trackId UI8, then for several tracks a UI24 size of this track.
    pos += 1 if mt_type == _MT_ONE_TRACK else 4
    if pos > n:
        raise FLVError(f"{what}: truncated multitrack track header at offset {pos}")
    return packet_type, fourcc, pos


def video_info(payload) -> VideoInfo:
    """Parse the (Ex)VideoTagHeader at the start of a video message body."""
    n = len(payload)
    if n == 0:
        raise FLVError("video: empty message body")
    b0 = payload[0]
    frame_type = (b0 >> 4) & 7
    if b0 & 0x80:
        return _enhanced_video_info(payload, frame_type, b0 & 0x0F)
    codec_id = b0 & 0x0F
    if codec_id != _CODEC_AVC and codec_id != _CODEC_HEVC_LEGACY:
        if frame_type == _FRAME_COMMAND:
            if n < 2:
                raise FLVError("video: truncated command frame at offset 1")
            return VideoInfo(codec_id, frame_type, False, False, False, 0, False, None, 2, payload[1])
        return VideoInfo(codec_id, frame_type, frame_type == _FRAME_KEY, False, False, 0, False, None, 1)
    codec = _LEGACY_VIDEO_FOURCC[codec_id]
    if frame_type == _FRAME_COMMAND:
        # Video info/command frame: a UI8 command follows, no AVCPacketType (E-RTMP v2, legacy header).
        if n < 2:
            raise FLVError("video: truncated command frame at offset 1")
        return VideoInfo(codec, frame_type, False, False, False, 0, False, None, 2, payload[1])
    if n < 5:
        raise FLVError(f"video: AVC header needs 5 bytes, got {n}")
    packet_type = payload[1]
    if packet_type == 1:
        cts = (payload[2] << 16) | (payload[3] << 8) | payload[4]
        if cts & 0x800000:
            cts -= 0x1000000
        return VideoInfo(codec, frame_type, frame_type == _FRAME_KEY, False, False, cts, False, 1, 5)
    if packet_type == 0:
        return VideoInfo(codec, frame_type, False, True, False, 0, False, 0, 5)
    if packet_type == 2:
        return VideoInfo(codec, frame_type, False, False, True, 0, False, 2, 5)
    raise FLVError(f"video: unknown AVCPacketType {packet_type} at offset 1")


def _enhanced_video_info(payload, frame_type: int, packet_type: int) -> VideoInfo:
    pos = 1
    if packet_type == _VPT_MODEX:
        packet_type, pos = _skip_modex(payload, pos, packet_type, _VPT_MODEX, "video")
    if frame_type == _FRAME_COMMAND and packet_type != _VPT_METADATA:
        # Command frames carry a UI8 VideoCommand instead of a FourCC and body.
        if pos >= len(payload):
            raise FLVError(f"video: truncated command frame at offset {pos}")
        return VideoInfo(None, frame_type, False, False, False, 0, True, packet_type, pos + 1, payload[pos])
    multitrack = packet_type == _VPT_MULTITRACK
    if multitrack:
        packet_type, codec, pos = _multitrack_header(payload, pos, _VPT_MULTITRACK, _VPT_MODEX, "video")
    else:
        codec = _fourcc(payload, pos, "video")
        pos += 4
    if packet_type > _VPT_MPEG2TS_SEQUENCE_START:
        raise FLVError(f"video: reserved VideoPacketType {packet_type}")
    cts = 0
    if packet_type == _VPT_CODED_FRAMES and codec in _CTS_FOURCCS:
        if len(payload) < pos + 3:
            raise FLVError(f"video: truncated composition time at offset {pos}")
        cts = (payload[pos] << 16) | (payload[pos + 1] << 8) | payload[pos + 2]
        if cts & 0x800000:
            cts -= 0x1000000
        pos += 3
    return VideoInfo(
        codec,
        frame_type,
        frame_type == _FRAME_KEY
        and (packet_type == _VPT_CODED_FRAMES or packet_type == _VPT_CODED_FRAMES_X),
        # Both carry the decoder configuration a late player needs; the spec makes them exclusive.
        packet_type == _VPT_SEQUENCE_START or packet_type == _VPT_MPEG2TS_SEQUENCE_START,
        packet_type == _VPT_SEQUENCE_END,
        cts,
        True,
        packet_type,
        pos,
        None,
        multitrack,
    )


def audio_info(payload) -> AudioInfo:
    """Parse the (Ex)AudioTagHeader at the start of an audio message body.

    An empty audio message is the RTMP "silence" signal (E-RTMP v2, AudioPacketType notes); it has
    no header, so this raises FLVError and the caller decides whether to forward it.
    """
    n = len(payload)
    if n == 0:
        raise FLVError("audio: empty message body")
    b0 = payload[0]
    sound_format = b0 >> 4
    if sound_format == _SOUND_EX_HEADER:
        return _enhanced_audio_info(payload, b0 & 0x0F)
    rate = _SOUND_RATES[(b0 >> 2) & 3]
    size = 16 if b0 & 2 else 8
    channels = 2 if b0 & 1 else 1
    if sound_format == _SOUND_AAC:
        if n < 2:
            raise FLVError("audio: truncated AACPacketType at offset 1")
        packet_type = payload[1]
        if packet_type > 1:
            raise FLVError(f"audio: unknown AACPacketType {packet_type} at offset 1")
        return AudioInfo(sound_format, rate, size, channels, packet_type == 0, 2, "mp4a", packet_type)
    return AudioInfo(
        sound_format, rate, size, channels, False, 1, _LEGACY_AUDIO_FOURCC.get(sound_format, sound_format)
    )


def _enhanced_audio_info(payload, packet_type: int) -> AudioInfo:
    pos = 1
    if packet_type == _APT_MODEX:
        packet_type, pos = _skip_modex(payload, pos, packet_type, _APT_MODEX, "audio")
    multitrack = packet_type == _APT_MULTITRACK
    if multitrack:
        packet_type, codec, pos = _multitrack_header(payload, pos, _APT_MULTITRACK, _APT_MODEX, "audio")
    else:
        codec = _fourcc(payload, pos, "audio")
        pos += 4
    if packet_type not in (_APT_SEQUENCE_START, _APT_CODED_FRAMES, _APT_SEQUENCE_END, _APT_MULTICHANNEL_CONFIG):
        raise FLVError(f"audio: reserved AudioPacketType {packet_type}")
    return AudioInfo(
        _SOUND_EX_HEADER, None, None, None, packet_type == _APT_SEQUENCE_START, pos,
        codec, packet_type, True, multitrack,
    )


def video_flags(payload) -> tuple[bool, bool]:
    """(key frame carrying picture data, sequence header) of a video message body. Never raises.

    The one video frame classifier: the hub calls it once per published video message, so the
    usual headers are decided from their first bytes; only Enhanced RTMP ModEx and multitrack
    headers are parsed in full.  A key frame here is what a decoder can start from: FrameType 1
    with coded picture data (not a sequence header, end of sequence, metadata or command frame).
    """
    # Literals rather than the module's names: this runs per message and global lookups show.
    n = len(payload)
    if n == 0:
        return False, False
    b0 = payload[0]
    if b0 < 0x80:  # legacy VideoTagHeader: FrameType(4) CodecID(4)
        codec = b0 & 0x0F
        if codec != 7 and codec != 12:  # not AVC / legacy HEVC: no packet type
            return b0 >> 4 == 1, False
        # AVCPacketType: 0 sequence header, 1 NAL units, 2 end of sequence; then a 24-bit CTS.
        if n < 5 or b0 >> 4 == 5:  # truncated / command frame
            return False, False
        packet_type = payload[1]
        if packet_type == 1:
            return b0 >> 4 == 1, False
        return False, packet_type == 0
    # Enhanced RTMP: FrameType in bits 4..6, VideoPacketType in the low nibble, then a FourCC.
    packet_type = b0 & 0x0F
    if packet_type == _VPT_MODEX or packet_type == _VPT_MULTITRACK:
        try:
            info = video_info(payload)
        except FLVError:
            return False, False
        return info.is_keyframe, info.is_sequence_header
    frame_type = (b0 >> 4) & 7
    if n < 5 or frame_type == _FRAME_COMMAND:
        return False, False
    key = frame_type == _FRAME_KEY and (packet_type == _VPT_CODED_FRAMES or packet_type == _VPT_CODED_FRAMES_X)
    return key, packet_type == _VPT_SEQUENCE_START or packet_type == _VPT_MPEG2TS_SEQUENCE_START


def is_video_keyframe(payload) -> bool:
    """True for a key frame carrying picture data (not a sequence header). Never raises."""
    return video_flags(payload)[0]


def is_video_sequence_header(payload) -> bool:
    """True for an AVC sequence header or Enhanced SequenceStart. Never raises."""
    if not payload:
        return False
    b0 = payload[0]
    if b0 & 0x80:
        if 1 <= (b0 & 0x0F) <= 4:  # coded frames, sequence end, metadata
            return False
    elif (b0 & 0x0F) not in _LEGACY_VIDEO_FOURCC or len(payload) < 2 or payload[1] != 0:
        return False
    try:
        return video_info(payload).is_sequence_header
    except FLVError:
        return False


def is_audio_sequence_header(payload) -> bool:
    """True for an AAC sequence header or Enhanced audio SequenceStart. Never raises."""
    if not payload:
        return False
    sound_format = payload[0] >> 4
    if sound_format == _SOUND_AAC:
        return len(payload) >= 2 and payload[1] == 0
    if sound_format != _SOUND_EX_HEADER:
        return False
    try:
        return audio_info(payload).is_sequence_header
    except FLVError:
        return False


# --------------------------------------------------------------------------- writing


def file_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The 9-byte FLV header (version 1) followed by PreviousTagSize0 (always 0)."""
    flags = (4 if has_audio else 0) | (1 if has_video else 0)
    return _FILE_HEADER.pack(b"FLV", 1, flags, FLV_HEADER_SIZE) + b"\x00\x00\x00\x00"


def tag_header(tag_type: int, timestamp_ms: int, size: int) -> bytes:
    """The 11-byte tag header alone, so a sender can write header, payload, back-pointer without a copy."""
    if tag_type not in (TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT):
        raise LocalProtocolError(f"FLV tag type must be 8, 9 or 18, not {tag_type!r}")
    if not 0 <= size <= MAX_TAG_DATA_SIZE:
        raise LocalProtocolError(f"FLV tag body of {size} bytes does not fit the 24-bit DataSize")
    if not 0 <= timestamp_ms <= 0xFFFFFFFF:
        raise LocalProtocolError(f"FLV timestamp {timestamp_ms} is outside 0..2**32-1")
    # Low 24 bits first, then TimestampExtended as the high byte (FLV spec E.4.1).
    return _TAG_HEADER.pack((tag_type << 24) | size, ((timestamp_ms & 0xFFFFFF) << 8) | (timestamp_ms >> 24))


def previous_tag_size(size: int) -> bytes:
    """The back-pointer after a tag whose body has ``size`` bytes."""
    return _U32.pack(TAG_HEADER_SIZE + size)


def encode_tag(tag_type: int, timestamp_ms: int, payload) -> bytes:
    """One complete tag: header, body, PreviousTagSize."""
    size = len(payload)
    return b"".join((tag_header(tag_type, timestamp_ms, size), payload, _U32.pack(TAG_HEADER_SIZE + size)))


class FLVWriter:
    """Produces the bytes of one FLV file; ``offset`` is how many bytes it has produced so far.

    The offset is what a recorder puts in the ``keyframes.filepositions`` array of onMetaData.
    """

    def __init__(self, has_audio: bool = True, has_video: bool = True) -> None:
        self.has_audio = has_audio
        self.has_video = has_video
        self.offset = 0

    def start(self) -> bytes:
        if self.offset:
            raise LocalProtocolError("FLVWriter.start() called twice")
        data = file_header(self.has_audio, self.has_video)
        self.offset = len(data)
        return data

    def write(self, tag_type: int, timestamp_ms: int, payload) -> bytes:
        if not self.offset:
            raise LocalProtocolError("FLVWriter.write() before start()")
        data = encode_tag(tag_type, timestamp_ms, payload)
        self.offset += len(data)
        return data


# --------------------------------------------------------------------------- reading


def _parse_tag_header(buf, pos: int, limit: int, what: str, base: int = 0) -> tuple[int, int, int]:
    """Validate the 11-byte tag header at ``pos``: (type, DataSize, timestamp).

    ``base`` is the offset of ``buf[0]`` in the whole input, for error messages.
    """
    word, ts_word = _TAG_HEADER.unpack_from(buf, pos)
    flags = word >> 24
    if flags & 0xC0:
        raise FLVError(f"{what}: reserved bits set in tag header at offset {base + pos}")
    if flags & 0x20:
        raise FLVError(f"{what}: encrypted (Filter=1) tag at offset {base + pos} is not supported")
    size = word & 0xFFFFFF
    if size > limit:
        raise FLVTagTooLarge(f"{what}: tag at offset {base + pos} claims {size} bytes, limit is {limit}")
    return flags, size, (ts_word >> 8) | ((ts_word & 0xFF) << 24)


class FLVReader:
    """Incremental FLV file parser: feed any split of the file, get complete tags back.

    The StreamID field is ignored (the spec fixes it at 0 and nothing depends on it). Back-pointers
    are checked because a wrong one is the first sign of a truncated or spliced file.
    """

    def __init__(self, max_tag_size: int = DEFAULT_MAX_TAG_SIZE, check_back_pointers: bool = True) -> None:
        if not 0 <= max_tag_size <= MAX_TAG_DATA_SIZE:
            raise LocalProtocolError(f"max_tag_size must be within 0..{MAX_TAG_DATA_SIZE}")
        self.max_tag_size = max_tag_size
        self.check_back_pointers = check_back_pointers
        self.has_audio: bool | None = None
        self.has_video: bool | None = None
        self._buf = bytearray()
        self._base = 0  # file offset of self._buf[0]
        self._header_done = False
        self._failed: FLVError | None = None

    @property
    def offset(self) -> int:
        """File offset of the first byte not yet returned as part of a tag."""
        return self._base

    def feed(self, data) -> list[FLVTag]:
        if self._failed is not None:
            raise FLVError(f"reader already failed: {self._failed}")
        try:
            return self._feed(data)
        except FLVError as e:
            self._failed = e
            raise

    def _feed(self, data) -> list[FLVTag]:
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        tags: list[FLVTag] = []
        if not self._header_done:
            if buf[:3] != b"FLV"[: min(n, 3)]:
                raise FLVError(f"not an FLV file: bad signature {bytes(buf[:3])!r} at offset 0")
            if n < FLV_HEADER_SIZE + 4:
                return tags
            _, version, flags, data_offset = _FILE_HEADER.unpack_from(buf, 0)
            if version != 1:
                raise FLVError(f"unsupported FLV version {version} at offset 3")
            if data_offset != FLV_HEADER_SIZE:
                raise FLVError(f"FLV header size {data_offset} at offset 5, version 1 requires 9")
            if _U32.unpack_from(buf, FLV_HEADER_SIZE)[0] != 0:
                raise FLVError(f"PreviousTagSize0 at offset {FLV_HEADER_SIZE} is not 0")
            self.has_audio = bool(flags & 4)
            self.has_video = bool(flags & 1)
            self._header_done = True
            pos = FLV_HEADER_SIZE + 4
        base = self._base
        limit = self.max_tag_size
        while n - pos >= TAG_HEADER_SIZE:
            tag_type, size, timestamp = _parse_tag_header(buf, pos, limit, "FLV", base)
            end = pos + TAG_HEADER_SIZE + size
            if n < end + 4:
                break
            if self.check_back_pointers:
                back = _U32.unpack_from(buf, end)[0]
                if back != TAG_HEADER_SIZE + size:
                    raise FLVError(
                        f"PreviousTagSize {back} at offset {base + end} does not match the tag at "
                        f"offset {base + pos} ({TAG_HEADER_SIZE + size} bytes)"
                    )
            tags.append(FLVTag(tag_type, timestamp, bytes(buf[pos + TAG_HEADER_SIZE : end]), base + pos))
            pos = end + 4
        if pos:
            del buf[:pos]
            self._base = base + pos
        return tags

    def close(self) -> None:
        """Declare end of input; raises FLVError if it stopped inside the header or a tag."""
        if self._failed is not None:
            raise FLVError(f"reader already failed: {self._failed}")
        if not self._header_done:
            raise FLVError(f"truncated FLV header: {len(self._buf)} of 13 bytes")
        if self._buf:
            raise FLVError(f"truncated tag at offset {self._base} ({len(self._buf)} bytes left over)")


def read_file(path, max_tag_size: int = DEFAULT_MAX_TAG_SIZE) -> list[FLVTag]:
    """Every tag of an FLV file; raises FLVError if the file is malformed or truncated."""
    reader = FLVReader(max_tag_size)
    tags: list[FLVTag] = []
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            tags.extend(reader.feed(chunk))
    reader.close()
    return tags


def parse_aggregate(payload) -> list[FLVTag]:
    """Split an RTMP aggregate message (type 22, RTMP 1.0 section 7.1.6) into its sub-messages.

    Each sub-message is an FLV tag followed by a back-pointer of 11 + body size. Timestamps are
    returned as sent (the first is usually the aggregate's own); rebasing is the caller's job.
    Offsets are relative to the aggregate body.
    """
    n = len(payload)
    pos = 0
    tags: list[FLVTag] = []
    while pos < n:
        if n - pos < TAG_HEADER_SIZE:
            raise FLVError(f"aggregate: truncated sub-message header at offset {pos}")
        tag_type, size, timestamp = _parse_tag_header(payload, pos, MAX_TAG_DATA_SIZE, "aggregate")
        end = pos + TAG_HEADER_SIZE + size
        if end + 4 > n:
            raise FLVError(f"aggregate: sub-message at offset {pos} claims {size} bytes, only {n - pos - 11} left")
        back = _U32.unpack_from(payload, end)[0]
        if back != TAG_HEADER_SIZE + size:
            raise FLVError(f"aggregate: back-pointer {back} at offset {end} should be {TAG_HEADER_SIZE + size}")
        tags.append(FLVTag(tag_type, timestamp, bytes(payload[pos + TAG_HEADER_SIZE : end]), pos))
        pos = end + 4
    return tags
