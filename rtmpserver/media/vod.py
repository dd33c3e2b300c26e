"""Recorded playback sources, sans-IO: MP4 and FLV files as a sequence of RTMP media messages.

A source yields ``VodMessage(type_id, timestamp, payload)`` (type 8 audio, 9 video) with
timestamps in milliseconds from the file's start, from the start or from a ``seek``. Pacing is the
caller's: ``next_due_ms()`` is the timestamp of the message ``read()`` returns next, so a caller
sends while it is at most (elapsed play time + client buffer) and waits otherwise. The caller also
sends ``metadata()`` (as an onMetaData data message, AMF0-encoded by the caller) and
``sequence_headers()`` before the first message and again after every seek.

MP4 samples become FLV tag bodies as RTMP carries them (Adobe FLV spec annex E, Enhanced RTMP v2):

- H.264: ``0x17``/``0x27``, AVCPacketType 1, SI24 composition time, then the sample unchanged (MP4
  and RTMP both frame NAL units with the length size of avcC). Sequence header: ``0x17 00 000000``
  and the avcC record.
- AAC: ``0xAF 01`` and the raw frame; sequence header ``0xAF 00`` and the AudioSpecificConfig.
- HEVC, AV1, VP9: the Enhanced RTMP ExVideoTagHeader (IsExHeader bit, FrameType, PacketType,
  FourCC ``hvc1``/``av01``/``vp09``): SequenceStart with the hvcC/av1C/vpcC record, CodedFrames
  (with SI24 composition time for HEVC) or CodedFramesX for HEVC frames whose composition time is 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rtmpserver.errors import FLVError
from rtmpserver.media.codecs import (
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_sps_dimensions,
)
from rtmpserver.media.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, FLVTag
from rtmpserver.media.flvfile import FLVFile
from rtmpserver.media.mp4 import DEFAULT_MAX_SAMPLE_SIZE, MP4File, Sample, Track

__all__ = [
    "VodMessage",
    "MP4Source",
    "FLVSource",
    "video_sequence_header",
    "video_payload",
    "audio_sequence_header",
    "audio_payload",
    "mp4_metadata",
]

# Enhanced RTMP VideoPacketType values used here.
_SEQUENCE_START = 0
_CODED_FRAMES = 1
_CODED_FRAMES_X = 3
_EX_HEADER = 0x80
_KEY = 1 << 4
_INTER = 2 << 4
# FLV VideoTagHeader/AudioTagHeader constants.
_AVC = 7
_AAC_HEADER = 0xAF  # SoundFormat 10, 44 kHz, 16-bit, stereo: what the spec requires for AAC
_FOURCC = {"hvc1": b"hvc1", "av01": b"av01", "vp09": b"vp09"}


class VodMessage(NamedTuple):
    type_id: int
    timestamp: int
    payload: bytes


def _si24(v: int) -> bytes:
    if not -0x800000 <= v <= 0x7FFFFF:
        raise FLVError(f"composition time {v} ms does not fit SI24")
    return (v & 0xFFFFFF).to_bytes(3, "big")


def video_sequence_header(track: Track) -> bytes:
    """The video sequence header message body for ``track``'s decoder configuration record."""
    if track.codec == "avc1":
        return b"\x17\x00\x00\x00\x00" + track.config
    fourcc = _FOURCC.get(track.codec)
    if fourcc is None:
        raise FLVError(f"video codec {track.codec!r} cannot be sent over RTMP")
    return bytes((_EX_HEADER | _KEY | _SEQUENCE_START,)) + fourcc + track.config


def video_payload(track: Track, data: bytes, keyframe: bool, cts_ms: int) -> bytes:
    """The video message body for one sample."""
    frame = _KEY if keyframe else _INTER
    if track.codec == "avc1":
        return bytes((frame | _AVC, 1)) + _si24(cts_ms) + data
    fourcc = _FOURCC.get(track.codec)
    if fourcc is None:
        raise FLVError(f"video codec {track.codec!r} cannot be sent over RTMP")
    if track.codec == "hvc1" and cts_ms:
        return bytes((_EX_HEADER | frame | _CODED_FRAMES,)) + fourcc + _si24(cts_ms) + data
    # AV1 and VP9 CodedFrames carry no composition time; for HEVC CodedFramesX means it is 0.
    packet_type = _CODED_FRAMES_X if track.codec == "hvc1" else _CODED_FRAMES
    return bytes((_EX_HEADER | frame | packet_type,)) + fourcc + data


def audio_sequence_header(track: Track) -> bytes:
    if track.codec != "mp4a":
        raise FLVError(f"audio codec {track.codec!r} cannot be sent over RTMP")
    return bytes((_AAC_HEADER, 0)) + track.config


def audio_payload(track: Track, data: bytes) -> bytes:
    return bytes((_AAC_HEADER, 1)) + data


def _fourcc_number(codec: str) -> int:
    return int.from_bytes(codec.encode("latin-1"), "big")


def mp4_metadata(mp4: MP4File) -> dict[str, Any]:
    """onMetaData values for an MP4 file (duration in seconds, as FLV metadata has it)."""
    meta: dict[str, Any] = {"duration": mp4.duration_ms / 1000.0}
    v = mp4.video
    if v is not None:
        width, height = v.width, v.height
        if v.codec == "avc1":
            meta["videocodecid"] = _AVC
            try:
                config = parse_avc_decoder_config(v.config)
                if config.sps:
                    width, height = parse_sps_dimensions(config.sps[0])
            except FLVError:
                pass  # tkhd/sample entry dimensions stand
        else:
            # Enhanced RTMP: the FourCC as a number.
            meta["videocodecid"] = _fourcc_number(v.codec)
        meta["width"] = float(width)
        meta["height"] = float(height)
        end = mp4.end_dts(v)
        if v.sample_count and end:
            meta["framerate"] = round(v.sample_count * v.timescale / end, 3)
    a = mp4.audio
    if a is not None:
        meta["audiocodecid"] = 10
        rate, channels = a.sample_rate or a.timescale, a.channels
        try:
            asc = parse_audio_specific_config(a.config)
            rate = asc.extension_sample_rate or asc.sample_rate
            channels = asc.channel_config or channels
        except FLVError:
            pass
        meta["audiosamplerate"] = float(rate)
        meta["audiosamplesize"] = 16.0
        meta["audiochannels"] = float(channels)
        meta["stereo"] = channels == 2
    return meta


class MP4Source:
    """Media messages of an MP4 file's selected video and audio tracks."""

    def __init__(self, mp4: MP4File, *, max_sample_size: int = DEFAULT_MAX_SAMPLE_SIZE) -> None:
        self.mp4 = mp4
        self.max_sample_size = max_sample_size
        self.duration_ms = mp4.duration_ms
        self.position_ms = 0
        self._samples = mp4.samples()
        self._pending: Sample | None = None

    def metadata(self) -> dict[str, Any]:
        return mp4_metadata(self.mp4)

    def sequence_headers(self) -> list[VodMessage]:
        """Decoder configuration messages, stamped with the current position."""
        out = []
        if self.mp4.video is not None:
            out.append(VodMessage(TAG_VIDEO, self.position_ms, video_sequence_header(self.mp4.video)))
        if self.mp4.audio is not None:
            out.append(VodMessage(TAG_AUDIO, self.position_ms, audio_sequence_header(self.mp4.audio)))
        return out

    def seek(self, ms: int) -> int:
        """Continue from the keyframe at or before ``ms``; returns its time."""
        position = self.mp4.seek(ms)
        self._samples = self.mp4.samples(position)
        self._pending = None
        self.position_ms = position.ms
        return position.ms

    def _peek(self) -> Sample | None:
        if self._pending is None:
            self._pending = next(self._samples, None)
        return self._pending

    def next_due_ms(self) -> int | None:
        """Timestamp of the next message, None at the end."""
        s = self._peek()
        return None if s is None else s.dts_ms

    def read(self) -> VodMessage | None:
        """The next message (its sample read from the file), None at the end."""
        s = self._peek()
        if s is None:
            return None
        self._pending = None
        data = self.mp4.read_sample(s, self.max_sample_size)
        self.position_ms = s.dts_ms
        video = self.mp4.video
        if video is not None and s.track_id == video.track_id:
            return VodMessage(TAG_VIDEO, s.dts_ms, video_payload(video, data, s.keyframe, s.cts_offset_ms))
        assert self.mp4.audio is not None
        return VodMessage(TAG_AUDIO, s.dts_ms, audio_payload(self.mp4.audio, data))


class FLVSource:
    """Media messages of an FLV file. Script tags are not forwarded (``metadata()`` has
    onMetaData), nor are repeats of the sequence headers that ``sequence_headers()`` returns."""

    def __init__(self, flv: FLVFile) -> None:
        self.flv = flv
        self.duration_ms = flv.duration_ms
        self.position_ms = 0
        self._tags = flv.tags()
        self._pending: FLVTag | None = None
        self._headers = {t.payload for t in (flv.video_header, flv.audio_header) if t is not None}

    def metadata(self) -> dict[str, Any]:
        """The file's onMetaData without the ``keyframes`` index (an HTTP seeking aid, large and of
        no use to an RTMP player), with ``duration`` filled in if the file lacks it."""
        meta = {k: v for k, v in self.flv.metadata.items() if k != "keyframes"}
        meta.setdefault("duration", self.duration_ms / 1000.0)
        return meta

    def sequence_headers(self) -> list[VodMessage]:
        return [
            VodMessage(t.type, self.position_ms, t.payload)
            for t in (self.flv.video_header, self.flv.audio_header)
            if t is not None
        ]

    def seek(self, ms: int) -> int:
        offset, landed = self.flv.seek(ms)
        self._tags = self.flv.tags(offset)
        self._pending = None
        self.position_ms = landed
        return landed

    def _peek(self) -> FLVTag | None:
        while self._pending is None:
            tag = next(self._tags, None)
            if tag is None:
                return None
            if tag.type == TAG_SCRIPT or not tag.payload or tag.payload in self._headers:
                continue
            self._pending = tag
        return self._pending

    def next_due_ms(self) -> int | None:
        t = self._peek()
        return None if t is None else max(0, t.timestamp - self.flv.start_ms)

    def read(self) -> VodMessage | None:
        t = self._peek()
        if t is None:
            return None
        self._pending = None
        ts = max(0, t.timestamp - self.flv.start_ms)
        self.position_ms = ts
        return VodMessage(t.type, ts, t.payload)
