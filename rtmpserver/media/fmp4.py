"""Fragmented MP4 (CMAF) for HLS, sans-IO: RTMP messages in, an init segment and fragments out.

References: ISO/IEC 14496-12 (ISO base media file format: ftyp 4.3, moov/mvhd/trak/tkhd/mdia/
mdhd/hdlr/minf/stbl 8.2-8.7, mvex/trex 8.8.1-8.8.3, moof/mfhd/traf/tfhd/trun 8.8.4-8.8.8, tfdt
8.8.12, styp 8.16.2), ISO/IEC 14496-14 (esds, the MPEG-4 elementary stream descriptor),
ISO/IEC 14496-15 (avcC 5.3.3, hvcC 8.3.3), the AV1 Codec ISO Media File Format Binding (av1C,
section 2.3), ISO/IEC 23000-19 (CMAF) for the fragment shape, RFC 8216 sections 3.3 and 4.3.2.5
(fMP4 segments in HLS, EXT-X-MAP).  Enhanced RTMP carries the same decoder configuration records
as MP4 sample entries do (avcC/hvcC/av1C in the sequence start, the raw AudioSpecificConfig for
AAC) and the same sample format (length-prefixed NAL units, low-overhead AV1 OBUs), so samples
are copied, never rewritten.

``FMP4Muxer.video()``/``audio()`` turn one RTMP message into a ``Sample`` (or None for sequence
headers and other messages without media); ``pack(samples, end_ms)`` makes one fragment
(``moof`` + ``mdat``) of a run of samples, which is what an LL-HLS partial segment is; a segment
is its parts back to back.  ``init_segment()`` freezes the tracks (video track 1, audio track 2,
whichever have a configuration) and returns ``ftyp`` + ``moov``.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from rtmpserver.errors import FLVError
from rtmpserver.media.codecs import (
    _BitReader,
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_sps_dimensions,
    unescape_rbsp,
)
from rtmpserver.media.flv import AudioInfo, VideoInfo, audio_info, video_info

__all__ = ["Sample", "FMP4Muxer", "box", "full_box", "hevc_dimensions", "av1_dimensions"]

VIDEO_TRACK = 1
AUDIO_TRACK = 2
VIDEO_TIMESCALE = 90000
_AAC_FRAME = 1024  # samples per AAC frame (ISO/IEC 14496-3 4.5.2.1, frameLengthFlag 0)

_FRAME_KEY = 1
_FRAME_COMMAND = 5
_VIDEO_CODECS = ("avc1", "hvc1", "av01")

# trun sample_flags (14496-12 8.8.3.1): sample_depends_on 2 (an I picture) for sync samples;
# depends_on 1 plus sample_is_non_sync_sample for the others.
_SYNC = 0x02000000
_NON_SYNC = 0x01010000
# trun flags: data-offset, sample-duration, sample-size, sample-flags, composition-time-offset.
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


class Sample(NamedTuple):
    """One access unit (video) or frame (audio) as it goes into ``mdat``."""

    track: int
    dts: int  # in the track's timescale
    cts_offset: int  # composition - decode time, track timescale
    sync: bool
    data: bytes

    def __len__(self) -> int:
        return len(self.data)


# --------------------------------------------------------------------------- dimensions


def hevc_dimensions(sps) -> tuple[int, int]:
    """Display width and height from an HEVC SPS NAL unit (H.265 7.3.2.2, conformance window 7.4.3.2)."""
    if len(sps) < 4:
        raise FLVError("HEVC SPS: too short")
    r = _BitReader(unescape_rbsp(bytes(sps[2:])))
    r.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    r.u(1)
    # profile_tier_level(1, max_sub_layers_minus1), H.265 7.3.3: 88 bits of general profile, level.
    r.u(32), r.u(32), r.u(24), r.u(8)
    present = [(r.u(1), r.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        for _ in range(max_sub_layers_minus1, 8):
            r.u(2)
    for profile, level in present:
        if profile:
            r.u(32), r.u(32), r.u(24)
        if level:
            r.u(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    if chroma > 3:
        raise FLVError(f"HEVC SPS: chroma_format_idc {chroma} out of range")
    if chroma == 3 and r.u(1):  # separate_colour_plane_flag
        chroma = 0
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance_window_flag; offsets in chroma units (table 6-1)
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if not (0 < width <= 16888 and 0 < height <= 16888):
        raise FLVError(f"HEVC SPS: {width}x{height} out of range")
    return width, height


def _leb128(data, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise FLVError("AV1: truncated leb128")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos
    raise FLVError("AV1: leb128 longer than 8 bytes")


def _av1_sequence_header(obus) -> bytes | None:
    """The payload of the first sequence header OBU in a low-overhead OBU stream (AV1 5.3)."""
    pos, n = 0, len(obus)
    while pos < n:
        header = obus[pos]
        kind = (header >> 3) & 0x0F
        pos += 2 if header & 0x04 else 1
        if header & 0x02:
            size, pos = _leb128(obus, pos)
        else:
            size = n - pos
        if pos + size > n:
            raise FLVError("AV1: OBU overruns its buffer")
        if kind == 1:
            return bytes(obus[pos : pos + size])
        pos += size
    return None


def av1_dimensions(seq: bytes) -> tuple[int, int]:
    """max_frame_width/height from an AV1 sequence header OBU payload (AV1 5.5.1)."""
    r = _BitReader(seq)

    def uvlc() -> int:
        zeros = 0
        while not r.u(1):
            zeros += 1
            if zeros >= 32:
                raise FLVError("AV1: uvlc too long")
        return r.u(zeros) + (1 << zeros) - 1 if zeros else 0

    r.u(3)  # seq_profile
    r.u(1)  # still_picture
    if r.u(1):  # reduced_still_picture_header
        r.u(5)
    else:
        decoder_model = False
        buffer_delay_bits = 0
        if r.u(1):  # timing_info_present_flag
            r.u(32), r.u(32)
            if r.u(1):  # equal_picture_interval
                uvlc()
            decoder_model = bool(r.u(1))
            if decoder_model:
                buffer_delay_bits = r.u(5) + 1
                r.u(32), r.u(5), r.u(5)
        initial_display_delay = r.u(1)
        for _ in range(r.u(5) + 1):  # operating points
            r.u(12)
            if r.u(5) > 7:
                r.u(1)  # seq_tier
            if decoder_model and r.u(1):
                r.u(buffer_delay_bits), r.u(buffer_delay_bits), r.u(1)
            if initial_display_delay and r.u(1):
                r.u(4)
    wbits, hbits = r.u(4) + 1, r.u(4) + 1
    return r.u(wbits) + 1, r.u(hbits) + 1


# --------------------------------------------------------------------------- the muxer


class FMP4Muxer:
    """One stream's tracks; ``init_segment()`` once, then ``pack()`` per fragment."""

    def __init__(self, has_video: bool = True, has_audio: bool = True) -> None:
        self.has_video = has_video
        self.has_audio = has_audio
        self.video_codec: str | None = None
        self.video_config: bytes | None = None
        self.audio_config: bytes | None = None
        self.audio_rate = 0
        self.audio_frame = _AAC_FRAME
        self.audio_channels = 0
        self.size: tuple[int, int] | None = None
        self.tracks: tuple[int, ...] | None = None  # frozen by init_segment()
        self._sequence = 0
        self.codecs: list[str] = []  # RFC 6381 names of the frozen tracks
        self.video_name = ""
        self.audio_name = ""

    # -- samples ------------------------------------------------------------------------------

    def video(self, ts_ms: int, payload, info: VideoInfo | None = None, *, psi: bool = False) -> Sample | None:
        """The sample of one video message; None for sequence headers and frames without media.

        ``psi`` is accepted for symmetry with ``TSMuxer`` and ignored: an fMP4 segment needs
        nothing in front of its first fragment.
        """
        if not self.has_video:
            return None
        if info is None:
            info = video_info(payload)
        if info.frame_type == _FRAME_COMMAND:
            return None
        if info.multitrack:
            raise FLVError("video: Enhanced RTMP multitrack messages are not supported for fMP4")
        codec = info.codec
        if codec not in _VIDEO_CODECS:
            raise FLVError(f"video: codec {codec!r} cannot be carried in fMP4 here (H.264, HEVC, AV1)")
        if info.is_sequence_header:
            if info.enhanced and info.packet_type != 0:
                return None  # MPEG2TSSequenceStart: an av1C is expected in SequenceStart
            self._set_video_config(codec, bytes(memoryview(payload)[info.header_size :]))
            return None
        pt = info.packet_type
        if info.enhanced:
            if pt != 1 and pt != 3:
                return None
        elif pt != 1:
            return None
        if self.video_config is None or codec != self.video_codec:
            raise FLVError("video: frame before its sequence header")
        if self.tracks is not None and VIDEO_TRACK not in self.tracks:
            return None
        data = bytes(memoryview(payload)[info.header_size :])
        if not data:
            return None
        sync = info.frame_type == _FRAME_KEY
        if self.size is None and sync and codec == "av01":
            seq = _av1_sequence_header(data)
            if seq is not None:
                self.size = av1_dimensions(seq)
        return Sample(VIDEO_TRACK, ts_ms * 90, info.composition_time * 90, sync, data)

    def _set_video_config(self, codec: str, record: bytes) -> None:
        if codec == "avc1":
            config = parse_avc_decoder_config(record)
            if not config.sps:
                raise FLVError("video: AVCDecoderConfigurationRecord without an SPS")
            size = parse_sps_dimensions(config.sps[0])
            name = config.codec_string
        elif codec == "hvc1":
            size = None
            for sps in _hevc_nal_units(record, 33):
                size = hevc_dimensions(sps)
                break
            name = _hevc_codec_string(record)
        else:
            if len(record) < 4 or record[0] != 0x81:
                raise FLVError("video: AV1CodecConfigurationRecord must start with marker/version 0x81")
            seq = _av1_sequence_header(memoryview(record)[4:]) if len(record) > 4 else None
            size = av1_dimensions(seq) if seq is not None else None
            profile, level, tier = record[1] >> 5, record[1] & 0x1F, record[2] >> 7
            depth = 12 if record[2] & 0x20 else 10 if record[2] & 0x40 else 8
            name = f"av01.{profile}.{level:02d}{'H' if tier else 'M'}.{depth:02d}"
        if self.tracks is not None and VIDEO_TRACK in self.tracks and (codec != self.video_codec or record != self.video_config):
            # The init segment is frozen; a new configuration needs a discontinuity first.
            raise FLVError("video: decoder configuration changed within a stream")
        self.video_codec = codec
        self.video_config = record
        self.video_name = name
        if size is not None:
            self.size = size

    def audio(self, ts_ms: int, payload, info: AudioInfo | None = None, *, psi: bool = False) -> Sample | None:
        if not self.has_audio:
            return None
        if info is None:
            info = audio_info(payload)
        if info.multitrack:
            raise FLVError("audio: Enhanced RTMP multitrack messages are not supported for fMP4")
        if info.codec != "mp4a":
            raise FLVError(f"audio: codec {info.codec!r} cannot be carried in fMP4 here (AAC only)")
        body = bytes(memoryview(payload)[info.header_size :])
        if info.is_sequence_header:
            config = parse_audio_specific_config(body)
            if self.tracks is not None and AUDIO_TRACK in self.tracks and body != self.audio_config:
                raise FLVError("audio: AudioSpecificConfig changed within a stream")
            self.audio_config = body
            self.audio_rate = config.extension_sample_rate or config.sample_rate
            # With SBR signalled, a frame is 2048 samples at the output rate (14496-3 4.6.18).
            self.audio_frame = 2 * _AAC_FRAME if config.sbr and config.extension_sample_rate else _AAC_FRAME
            self.audio_channels = config.channel_config or 2
            self.audio_name = f"mp4a.40.{config.object_type}"
            return None
        if info.packet_type != 1:
            return None
        if self.audio_config is None:
            raise FLVError("audio: AAC frame before the AudioSpecificConfig")
        if self.tracks is not None and AUDIO_TRACK not in self.tracks:
            return None
        if not body:
            return None
        return Sample(AUDIO_TRACK, ts_ms * self.audio_rate // 1000, 0, True, body)

    # -- output -------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.video_config is not None or self.audio_config is not None

    def init_segment(self) -> bytes:
        """``ftyp`` + ``moov`` for the tracks configured so far; freezes them."""
        tracks = []
        traks = []
        trexs = []
        self.codecs = []
        if self.has_video and self.video_config is not None:
            tracks.append(VIDEO_TRACK)
            traks.append(self._trak(VIDEO_TRACK))
            self.codecs.append(self.video_name)
        if self.has_audio and self.audio_config is not None:
            tracks.append(AUDIO_TRACK)
            traks.append(self._trak(AUDIO_TRACK))
            self.codecs.append(self.audio_name)
        if not tracks:
            raise FLVError("fMP4: no decoder configuration for any track")
        for t in tracks:
            trexs.append(full_box(b"trex", 0, 0, struct.pack(">5I", t, 1, 0, 0, 0)))
        self.tracks = tuple(tracks)
        ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcmp41")
        mvhd = full_box(
            b"mvhd", 0, 0,
            struct.pack(">IIII", 0, 0, 1000, 0), struct.pack(">IH10x", 0x10000, 0x0100), _MATRIX,
            bytes(24), struct.pack(">I", AUDIO_TRACK + 1),
        )  # fmt: skip
        return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))

    def _trak(self, track: int) -> bytes:
        video = track == VIDEO_TRACK
        width, height = self.size or (0, 0)
        if video and not (width and height):
            raise FLVError("fMP4: video dimensions unknown (no SPS / sequence header OBU)")
        tkhd = full_box(
            b"tkhd", 0, 3,
            struct.pack(">IIII", 0, 0, track, 0), struct.pack(">I8xhhH2x", 0, 0, 0, 0 if video else 0x0100),
            _MATRIX, struct.pack(">II", (width << 16) if video else 0, (height << 16) if video else 0),
        )  # fmt: skip
        timescale = VIDEO_TIMESCALE if video else self.audio_rate
        mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))  # 'und'
        hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide" if video else b"soun"),
                        b"VideoHandler\0" if video else b"SoundHandler\0")  # fmt: skip
        media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
        dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
        entry = self._video_entry(width, height) if video else self._audio_entry()
        stbl = box(
            b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
            full_box(b"stts", 0, 0, bytes(4)), full_box(b"stsc", 0, 0, bytes(4)),
            full_box(b"stsz", 0, 0, bytes(8)), full_box(b"stco", 0, 0, bytes(4)),
        )  # fmt: skip
        minf = box(b"minf", media_header, dinf, stbl)
        return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))

    def _video_entry(self, width: int, height: int) -> bytes:
        kind, config_box = {
            "avc1": (b"avc1", b"avcC"),
            "hvc1": (b"hvc1", b"hvcC"),
            "av01": (b"av01", b"av1C"),
        }[self.video_codec]
        # VisualSampleEntry (14496-12 12.1.3): 72 dpi, one frame per sample, depth 0x18.
        fields = struct.pack(">6xH16xHHIIIH32sHh", 1, width, height, 0x00480000, 0x00480000, 0, 1, b"", 0x18, -1)
        return box(kind, fields, box(config_box, self.video_config))

    def _audio_entry(self) -> bytes:
        asc = self.audio_config
        # ES_Descriptor (14496-1 7.2.6.5) with DecoderConfigDescriptor (OTI 0x40: MPEG-4 audio,
        # streamType 5 audio) and DecoderSpecificInfo = the AudioSpecificConfig, SLConfig 2.
        dsi = _descriptor(0x05, asc)
        dcd = _descriptor(0x04, struct.pack(">BBBHII", 0x40, 0x15, 0, 0, 0, 0) + dsi)
        es = _descriptor(0x03, struct.pack(">HB", 0, 0) + dcd + _descriptor(0x06, b"\x02"))
        rate = self.audio_rate if self.audio_rate < 0x10000 else 0
        fields = struct.pack(">6xH8xHHHHI", 1, self.audio_channels, 16, 0, 0, rate << 16)
        return box(b"mp4a", fields, full_box(b"esds", 0, 0, es))

    def pack(self, samples: list[Sample], end_ms: int | None) -> bytes:
        """One fragment (``moof`` + ``mdat``) of ``samples`` in arrival order.

        Durations are the distance to the next sample of the same track; the last video sample
        lasts until ``end_ms`` (where the next fragment starts), or as long as the one before it;
        the last AAC frame lasts its 1024 samples.
        """
        if not samples:
            return b""
        self._sequence += 1
        by_track: dict[int, list[Sample]] = {}
        for s in samples:
            if self.tracks is None or s.track in self.tracks:
                by_track.setdefault(s.track, []).append(s)
        order = [t for t in (VIDEO_TRACK, AUDIO_TRACK) if t in by_track]
        # The moof's size does not depend on the data offsets, so build it twice.
        trafs = [self._traf(t, by_track[t], end_ms, 0) for t in order]
        moof_size = 8 + 16 + sum(len(t) for t in trafs)
        offset = moof_size + 8
        trafs = []
        for t in order:
            trafs.append(self._traf(t, by_track[t], end_ms, offset))
            offset += sum(len(s.data) for s in by_track[t])
        moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", self._sequence)), *trafs)
        payload = [s.data for t in order for s in by_track[t]]
        mdat_size = 8 + sum(len(p) for p in payload)
        return b"".join([moof, struct.pack(">I4s", mdat_size, b"mdat"), *payload])

    def _traf(self, track: int, samples: list[Sample], end_ms: int | None, data_offset: int) -> bytes:
        entries = []
        last = len(samples) - 1
        step = 0
        for i, s in enumerate(samples):
            if i < last:
                duration = samples[i + 1].dts - s.dts
            elif track == AUDIO_TRACK:
                duration = self.audio_frame
            else:
                duration = end_ms * 90 - s.dts if end_ms is not None else 0
                if duration <= 0:
                    duration = step or 3000
            if duration < 0:
                duration = 0
            if duration:
                step = duration
            entries.append(struct.pack(">IIIi", duration, len(s.data), _SYNC if s.sync else _NON_SYNC, s.cts_offset))
        tfhd = full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track))
        tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", max(0, samples[0].dts)))
        trun = full_box(b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", len(samples), data_offset), *entries)
        return box(b"traf", tfhd, tfdt, trun)


def _descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n >= 1 << 28:
        raise FLVError("esds: descriptor too large")
    size = bytes([0x80 | ((n >> 21) & 0x7F), 0x80 | ((n >> 14) & 0x7F), 0x80 | ((n >> 7) & 0x7F), n & 0x7F])
    return bytes([tag]) + size + body


def _hevc_nal_units(record: bytes, nal_type: int):
    """The NAL units of one type in an HEVCDecoderConfigurationRecord (14496-15 8.3.3.1.2)."""
    n = len(record)
    if n < 23 or record[0] != 1:
        raise FLVError("video: malformed HEVCDecoderConfigurationRecord")
    pos = 23
    for _ in range(record[22]):
        if pos + 3 > n:
            raise FLVError("video: truncated HEVCDecoderConfigurationRecord")
        kind = record[pos] & 0x3F
        count = (record[pos + 1] << 8) | record[pos + 2]
        pos += 3
        for _ in range(count):
            if pos + 2 > n:
                raise FLVError("video: truncated HEVCDecoderConfigurationRecord")
            length = (record[pos] << 8) | record[pos + 1]
            pos += 2
            if pos + length > n:
                raise FLVError("video: truncated HEVCDecoderConfigurationRecord")
            if kind == nal_type:
                yield record[pos : pos + length]
            pos += length


def _hevc_codec_string(record: bytes) -> str:
    """RFC 6381 / ISO/IEC 14496-15 annex E ``hvc1.<profile>.<compat>.<tier><level>.<constraints>``."""
    space = "ABC"[(record[1] >> 6) - 1] if record[1] >> 6 else ""
    profile = record[1] & 0x1F
    compat = int.from_bytes(record[2:6], "big")
    compat = int(f"{compat:032b}"[::-1], 2)  # written bit-reversed
    tier = "H" if record[1] & 0x20 else "L"
    constraints = bytes(record[6:12]).rstrip(b"\0")
    parts = [f"hvc1.{space}{profile}", f"{compat:X}", f"{tier}{record[12]}"]
    parts += [f"{b:X}" for b in constraints]
    return ".".join(parts)

