"""MPEG-2 transport stream muxing of RTMP audio/video message bodies, sans-IO.

HLS (RFC 8216 section 3.2) carries media as MPEG-TS; this module turns the FLV-style payloads a
publisher sends into 188-byte TS packets.  References: ISO/IEC 13818-1 sections 2.4.3 (transport
packet, adaptation field, PCR), 2.4.3.6/2.4.3.7 (PES packet, PTS/DTS), 2.4.4 (PAT/PMT and the
CRC_32 of annex A), table 2-34 (stream types); ITU-T H.264 7.3.2.4 and annex B (access unit
delimiter, byte stream format); ITU-T H.265 7.3.2.5 and annex B; ISO/IEC 14496-15 8.3.3.1
(HEVCDecoderConfigurationRecord); Apple's HLS authoring notes and hls.js/FFmpeg behaviour for
what players need at each segment start (PAT/PMT first, parameter sets in front of every IDR).

Timestamps go in as milliseconds on one clock shared by audio and video.  RTMP timestamps are
32-bit and wrap, so a caller that sees raw RTMP timestamps unwraps them first (``HLSSegmenter``
does); the muxer reduces 90 kHz values modulo 2**33 as the PES syntax requires.

Everything a publisher can get wrong raises ``FLVError``, and a call that raises leaves the muxer's
state (continuity counters, configurations) as it was.
"""

from __future__ import annotations

from rtmpserver.errors import FLVError, LocalProtocolError
from rtmpserver.media.codecs import (
    AACConfig,
    AVCConfig,
    adts_header,
    parse_audio_specific_config,
    parse_avc_decoder_config,
)
from rtmpserver.media.flv import AudioInfo, VideoInfo, audio_info, video_info

__all__ = [
    "PACKET_SIZE",
    "PID_PAT",
    "PID_PMT",
    "PID_VIDEO",
    "PID_AUDIO",
    "STREAM_TYPE_MPEG1_AUDIO",
    "STREAM_TYPE_MPEG2_AUDIO",
    "STREAM_TYPE_AAC",
    "STREAM_TYPE_H264",
    "STREAM_TYPE_HEVC",
    "HEVCConfig",
    "parse_hevc_decoder_config",
    "crc32_mpeg2",
    "encode_timestamp",
    "encode_pcr",
    "TSMuxer",
]

PACKET_SIZE = 188
_PAYLOAD_SIZE = PACKET_SIZE - 4
_SYNC = 0x47

# PIDs as FFmpeg's mpegts muxer assigns them, so captures from either look alike.
PID_PAT = 0x0000
PID_PMT = 0x1000
PID_VIDEO = 0x0100
PID_AUDIO = 0x0101
_PROGRAM_NUMBER = 1
_TRANSPORT_STREAM_ID = 1

# ISO/IEC 13818-1 table 2-34 (0x24 from its amendment for HEVC).
STREAM_TYPE_MPEG1_AUDIO = 0x03
STREAM_TYPE_MPEG2_AUDIO = 0x04
STREAM_TYPE_AAC = 0x0F  # ISO/IEC 13818-7 audio with ADTS transport syntax
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_HEVC = 0x24

# PES stream_id values (13818-1 table 2-22): first video / first audio stream.
_STREAM_ID_VIDEO = 0xE0
_STREAM_ID_AUDIO = 0xC0

# PES_packet_length is 16 bits and counts 3 flag bytes + the PTS field; only video may use 0.
_MAX_AUDIO_ES = 0xFFFF - 3 - 5
_TS_MOD = 1 << 33  # PTS/DTS/PCR base are 33-bit (2.4.3.6, 2.4.3.5)
# PCR runs this far behind DTS: the decoder model needs a frame to arrive before it is due, and
# FFmpeg/nginx-rtmp use similar delays (FFmpeg's max_delay 0.7 s, nginx-rtmp's HLS_DELAY 63000).
DEFAULT_PCR_DELAY_MS = 700

_AVC_AUD = b"\x00\x00\x00\x01\x09\xf0"  # primary_pic_type 7 (any slice type), rbsp stop bit
_HEVC_AUD = b"\x00\x00\x00\x01\x46\x01\x50"  # nal_unit_type 35, tid 1; pic_type 2, stop bit
_START_CODE = b"\x00\x00\x00\x01"

_AVC_NAL_IDR = 5
_AVC_NAL_SPS = 7
_AVC_NAL_AUD = 9
_HEVC_NAL_IRAP_FIRST = 16  # BLA_W_LP ... RSV_IRAP_VCL23 (H.265 table 7-1)
_HEVC_NAL_IRAP_LAST = 23
_HEVC_NAL_VPS = 32
_HEVC_NAL_SPS = 33
_HEVC_NAL_PPS = 34
_HEVC_NAL_AUD = 35

# Enhanced RTMP VideoPacketType / AudioPacketType values the muxer acts on.
_VPT_SEQUENCE_START = 0
_VPT_CODED_FRAMES = 1
_VPT_CODED_FRAMES_X = 3
_APT_SEQUENCE_START = 0
_APT_CODED_FRAMES = 1

_FRAME_COMMAND = 5
_SOUND_MP3 = 2
_SOUND_MP3_8K = 14
_SOUND_AAC = 10


# --------------------------------------------------------------------------- CRC and time fields


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data) -> int:
    """CRC_32 of 13818-1 annex A: polynomial 0x04C11DB7, MSB first, initial 0xFFFFFFFF, no final xor.

    A decoder runs it over a whole section including the CRC and expects 0.
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc


def encode_timestamp(prefix: int, ticks: int) -> bytes:
    """A 5-byte PTS or DTS field (13818-1 2.4.3.7): 4-bit prefix, 33 bits split 3/15/15 by marker bits."""
    ticks %= _TS_MOD
    return bytes(
        (
            (prefix << 4) | ((ticks >> 29) & 0x0E) | 1,
            (ticks >> 22) & 0xFF,
            ((ticks >> 14) & 0xFE) | 1,
            (ticks >> 7) & 0xFF,
            ((ticks << 1) & 0xFE) | 1,
        )
    )


def encode_pcr(base: int, extension: int = 0) -> bytes:
    """The 6-byte program_clock_reference (2.4.3.5): 33-bit base, 6 reserved ones, 9-bit extension."""
    base %= _TS_MOD
    return bytes(
        (
            (base >> 25) & 0xFF,
            (base >> 17) & 0xFF,
            (base >> 9) & 0xFF,
            (base >> 1) & 0xFF,
            ((base & 1) << 7) | 0x7E | ((extension >> 8) & 1),
            extension & 0xFF,
        )
    )


# --------------------------------------------------------------------------- HEVC configuration


class HEVCConfig:
    """The parts of an HEVCDecoderConfigurationRecord that Annex B output needs.

    ``parameter_sets`` holds the VPS, SPS and PPS NAL units (with their 2-byte NAL headers) in
    the record's order, which is the order a decoder needs them in.
    """

    __slots__ = ("nal_length_size", "parameter_sets")

    def __init__(self, nal_length_size: int, parameter_sets: list[bytes]) -> None:
        self.nal_length_size = nal_length_size
        self.parameter_sets = parameter_sets

    def __repr__(self) -> str:
        return f"HEVCConfig(nal_length_size={self.nal_length_size}, {len(self.parameter_sets)} parameter sets)"


def parse_hevc_decoder_config(data) -> HEVCConfig:
    """Parse an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1.2).

    The 22-byte fixed part (profile/tier/level, chroma format, bit depths, frame rate) is not
    needed to produce Annex B, so only lengthSizeMinusOne (low 2 bits of byte 21) is read from it.
    SEI arrays are skipped: SEI belongs to the access unit it was sent with.
    """
    n = len(data)
    if n < 23:
        raise FLVError(f"HEVCDecoderConfigurationRecord: {n} bytes, need at least 23")
    if data[0] != 1:
        raise FLVError(f"HEVCDecoderConfigurationRecord: configurationVersion {data[0]} at offset 0, expected 1")
    nal_length_size = (data[21] & 3) + 1
    if nal_length_size == 3:
        raise FLVError("HEVCDecoderConfigurationRecord: lengthSizeMinusOne 2 at offset 21 is not allowed")
    arrays = data[22]
    pos = 23
    sets: list[bytes] = []
    for _ in range(arrays):
        if pos + 3 > n:
            raise FLVError(f"HEVCDecoderConfigurationRecord: truncated NAL unit array header at offset {pos}")
        array_type = data[pos] & 0x3F
        count = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        for _ in range(count):
            if pos + 2 > n:
                raise FLVError(f"HEVCDecoderConfigurationRecord: truncated nalUnitLength at offset {pos}")
            length = (data[pos] << 8) | data[pos + 1]
            pos += 2
            if length < 2 or pos + length > n:
                raise FLVError(
                    f"HEVCDecoderConfigurationRecord: NAL unit of {length} bytes at offset {pos} does not fit"
                )
            nal_type = (data[pos] >> 1) & 0x3F
            if nal_type != array_type:
                raise FLVError(
                    f"HEVCDecoderConfigurationRecord: NAL unit type {nal_type} at offset {pos} "
                    f"in an array of type {array_type}"
                )
            if _HEVC_NAL_VPS <= nal_type <= _HEVC_NAL_PPS:
                sets.append(bytes(data[pos : pos + length]))
            pos += length
    return HEVCConfig(nal_length_size, sets)


def _split_nal_units(data, pos: int, length_size: int, what: str) -> list:
    """Length-prefixed NAL units (ISO/IEC 14496-15 AVCC/HVCC sample format) as memoryviews.

    Zero-length entries are dropped: they carry nothing and Annex B cannot express them.
    """
    view = memoryview(data)
    end = len(data)
    units = []
    while pos < end:
        if pos + length_size > end:
            raise FLVError(f"{what}: truncated NAL unit length at offset {pos}")
        length = int.from_bytes(view[pos : pos + length_size], "big")
        pos += length_size
        if length > end - pos:
            raise FLVError(f"{what}: NAL unit of {length} bytes at offset {pos} overruns the {end}-byte payload")
        if length:
            units.append(view[pos : pos + length])
        pos += length
    return units


# --------------------------------------------------------------------------- the muxer


class _Stream:
    __slots__ = ("pid", "stream_id", "cc")

    def __init__(self, pid: int, stream_id: int) -> None:
        self.pid = pid
        self.stream_id = stream_id
        self.cc = 0


class TSMuxer:
    """Turns RTMP audio/video message bodies into MPEG-TS packets for one program.

    ``video()``/``audio()`` return whole 188-byte packets (one PES per message), ``b""`` for
    sequence headers (they only update the stored configuration) and for messages TS has no place
    for (command frames, sequence end, Enhanced RTMP metadata).  ``psi()`` returns PAT and PMT; a
    segmenter puts it at the start of every segment so each one can be decoded on its own.  The
    PMT lists the streams whose codec has been seen; when that changes (a stream appears or its
    codec does) the PMT version is bumped and PAT+PMT are put in front of the next PES, so an
    audio configuration that arrives after the first video keyframe still reaches the player.

    ``has_video``/``has_audio`` choose what is muxed; messages of the other kind return ``b""``.
    PCR goes on the video PID when there is video, else on the audio PID, in the first packet
    of every PES on that PID.
    """

    def __init__(self, has_video: bool = True, has_audio: bool = True, *, pcr_delay_ms: int = DEFAULT_PCR_DELAY_MS) -> None:
        if not 0 <= pcr_delay_ms <= 10_000:
            raise LocalProtocolError(f"pcr_delay_ms must be within 0..10000, not {pcr_delay_ms!r}")
        self.has_video = has_video
        self.has_audio = has_audio
        self._delay = pcr_delay_ms * 90
        self._video = _Stream(PID_VIDEO, _STREAM_ID_VIDEO)
        self._audio = _Stream(PID_AUDIO, _STREAM_ID_AUDIO)
        self._pat_cc = 0
        self._pmt_cc = 0
        self._pmt_version = 0
        self._pmt_key: tuple | None = None  # what the last PMT we emitted described
        # Codec state, learnt from the stream itself.
        self.video_codec: str | None = None  # "avc1" or "hvc1"
        self.audio_codec: str | None = None  # "mp4a" or ".mp3"
        self.avc_config: AVCConfig | None = None
        self.hevc_config: HEVCConfig | None = None
        self.aac_config: AACConfig | None = None
        self._mp3_stream_type = STREAM_TYPE_MPEG1_AUDIO

    # -- PSI ----------------------------------------------------------------------------------

    def _current_pmt_key(self) -> tuple:
        streams = []
        if self.video_codec is not None:
            streams.append((STREAM_TYPE_H264 if self.video_codec == "avc1" else STREAM_TYPE_HEVC, PID_VIDEO))
        if self.audio_codec is not None:
            streams.append((STREAM_TYPE_AAC if self.audio_codec == "mp4a" else self._mp3_stream_type, PID_AUDIO))
        return (self.pcr_pid, tuple(streams))

    @property
    def pcr_pid(self) -> int:
        return PID_VIDEO if self.video_codec is not None or (self.has_video and not self.has_audio) else PID_AUDIO

    def psi(self) -> bytes:
        """PAT and PMT, two packets, describing the streams seen so far."""
        key = self._current_pmt_key()
        if self._pmt_key is not None and key != self._pmt_key:
            # A changed PMT needs a new version_number (13818-1 2.4.4.9) or decoders ignore it.
            self._pmt_version = (self._pmt_version + 1) & 0x1F
        self._pmt_key = key
        pat = self._section(0x00, _TRANSPORT_STREAM_ID, 0, _PROGRAM_NUMBER.to_bytes(2, "big") + (0xE000 | PID_PMT).to_bytes(2, "big"))
        pcr_pid, streams = key
        body = bytearray((0xE000 | pcr_pid).to_bytes(2, "big") + b"\xf0\x00")  # program_info_length 0
        for stream_type, pid in streams:
            body.append(stream_type)
            body += (0xE000 | pid).to_bytes(2, "big") + b"\xf0\x00"  # ES_info_length 0
        pmt = self._section(0x02, _PROGRAM_NUMBER, self._pmt_version, bytes(body))
        out = self._psi_packet(PID_PAT, self._pat_cc, pat) + self._psi_packet(PID_PMT, self._pmt_cc, pmt)
        self._pat_cc = (self._pat_cc + 1) & 0x0F
        self._pmt_cc = (self._pmt_cc + 1) & 0x0F
        return out

    @staticmethod
    def _section(table_id: int, id_ext: int, version: int, body: bytes) -> bytes:
        # Long-form section (2.4.4.3/2.4.4.8): section_length counts from after itself to the
        # end of the CRC, i.e. 5 header bytes + body + 4.
        length = 5 + len(body) + 4
        head = bytes(
            (
                table_id,
                0xB0 | (length >> 8),  # section_syntax_indicator 1, '0', reserved '11'
                length & 0xFF,
                id_ext >> 8,
                id_ext & 0xFF,
                0xC1 | (version << 1),  # reserved '11', version_number, current_next_indicator 1
                0,  # section_number
                0,  # last_section_number
            )
        )
        section = head + body
        return section + crc32_mpeg2(section).to_bytes(4, "big")

    @staticmethod
    def _psi_packet(pid: int, cc: int, section: bytes) -> bytes:
        # PUSI set, pointer_field 0, then the section; the rest is 0xFF stuffing (2.4.4.2).
        payload = b"\x00" + section
        header = bytes((_SYNC, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | cc))
        return header + payload + b"\xff" * (_PAYLOAD_SIZE - len(payload))

    def _psi_if_changed(self) -> bytes:
        # Before the first PES, and whenever the stream list changed since the last PAT/PMT.
        return self.psi() if self._current_pmt_key() != self._pmt_key else b""

    # -- video --------------------------------------------------------------------------------

    def video(self, ts_ms: int, payload, info: VideoInfo | None = None, *, psi: bool = False) -> bytes:
        """Packets for one video message; ``info`` may be passed if the caller already parsed it.

        ``psi=True`` puts PAT and PMT in front of the PES (a segment starts here).  Doing it
        in the same call keeps the PSI continuity counters in step with what is output: if the
        message is refused, no PSI was made either.
        """
        if not self.has_video:
            return b""
        if info is None:
            info = video_info(payload)
        if info.frame_type == _FRAME_COMMAND:
            return b""
        codec = info.codec
        if info.multitrack:
            raise FLVError("video: Enhanced RTMP multitrack messages are not supported for MPEG-TS")
        if codec != "avc1" and codec != "hvc1":
            raise FLVError(f"video: codec {codec!r} cannot be carried in MPEG-TS here (H.264 and HEVC only)")
        pt = info.packet_type
        body_at = info.header_size
        if info.enhanced:
            if pt == _VPT_SEQUENCE_START:
                self._set_video_config(codec, payload, body_at)
                return b""
            if pt != _VPT_CODED_FRAMES and pt != _VPT_CODED_FRAMES_X:
                return b""  # SequenceEnd, Metadata, MPEG2TSSequenceStart
        else:
            if pt == 0:
                self._set_video_config(codec, payload, body_at)
                return b""
            if pt != 1:
                return b""  # end of sequence
        if codec == "avc1":
            es = self._avc_access_unit(payload, body_at)
        else:
            es = self._hevc_access_unit(payload, body_at)
        self.video_codec = codec
        tables = self.psi() if psi else self._psi_if_changed()
        dts = ts_ms * 90 + self._delay
        pts = dts + info.composition_time * 90
        random_access = info.frame_type == 1
        return tables + self._pes(self._video, es, pts, dts, random_access)

    def _set_video_config(self, codec: str, payload, pos: int) -> None:
        body = memoryview(payload)[pos:]
        if codec == "avc1":
            self.avc_config = parse_avc_decoder_config(body)
        else:
            self.hevc_config = parse_hevc_decoder_config(body)
        # The PMT follows the codec of the sequence header even before the first frame, so a
        # segment started at the next keyframe has the right stream type from its first packet.
        self.video_codec = codec

    def _avc_access_unit(self, payload, pos: int) -> list:
        config = self.avc_config
        units = _split_nal_units(payload, pos, config.nal_length_size if config else 4, "video")
        idr = has_sps = False
        for nal in units:
            t = nal[0] & 0x1F
            if t == _AVC_NAL_IDR:
                idr = True
            elif t == _AVC_NAL_SPS:
                has_sps = True
        parts = [_AVC_AUD]
        if idr and not has_sps and config is not None:
            # H.264 7.4.1.2.3: parameter sets go after the AUD and before SEI/slices.  FLV keeps
            # them in the sequence header only, but a TS decoder that joins at a segment boundary
            # has nothing else to start from.
            for nal in config.sps:
                parts += (_START_CODE, nal)
            for nal in config.pps:
                parts += (_START_CODE, nal)
        for nal in units:
            if nal[0] & 0x1F != _AVC_NAL_AUD:  # ours is already first; a second would split the AU
                parts += (_START_CODE, nal)
        return parts

    def _hevc_access_unit(self, payload, pos: int) -> list:
        config = self.hevc_config
        units = _split_nal_units(payload, pos, config.nal_length_size if config else 4, "video")
        irap = has_params = False
        for nal in units:
            if len(nal) < 2:
                raise FLVError("video: HEVC NAL unit shorter than its 2-byte header")
            t = (nal[0] >> 1) & 0x3F
            if _HEVC_NAL_IRAP_FIRST <= t <= _HEVC_NAL_IRAP_LAST:
                irap = True
            elif t == _HEVC_NAL_VPS or t == _HEVC_NAL_SPS:
                has_params = True
        parts = [_HEVC_AUD]
        if irap and not has_params and config is not None:
            for nal in config.parameter_sets:
                parts += (_START_CODE, nal)
        for nal in units:
            if (nal[0] >> 1) & 0x3F != _HEVC_NAL_AUD:
                parts += (_START_CODE, nal)
        return parts

    # -- audio --------------------------------------------------------------------------------

    def audio(self, ts_ms: int, payload, info: AudioInfo | None = None, *, psi: bool = False) -> bytes:
        """Packets for one audio message: one PES holding one ADTS frame or the MP3 frames as sent.

        ``psi`` as for ``video()``.
        """
        if not self.has_audio:
            return b""
        if info is None:
            info = audio_info(payload)
        if info.multitrack:
            raise FLVError("audio: Enhanced RTMP multitrack messages are not supported for MPEG-TS")
        codec = info.codec
        pos = info.header_size
        if codec == "mp4a":
            if info.packet_type == (_APT_SEQUENCE_START if info.enhanced else 0):
                config = parse_audio_specific_config(memoryview(payload)[pos:])
                adts_header(config, 0)  # refuse a configuration ADTS cannot describe now, not per frame
                self.aac_config = config
                self.audio_codec = codec
                return b""
            if info.packet_type != (_APT_CODED_FRAMES if info.enhanced else 1):
                return b""
            if self.aac_config is None:
                raise FLVError("audio: AAC frame before the AudioSpecificConfig")
            raw = memoryview(payload)[pos:]
            if not raw:
                return b""
            es = [adts_header(self.aac_config, len(raw)), raw]
        elif codec == ".mp3":
            if info.enhanced and info.packet_type != _APT_CODED_FRAMES:
                return b""
            raw = memoryview(payload)[pos:]
            if not raw:
                return b""
            es = [raw]
        else:
            raise FLVError(f"audio: codec {codec!r} cannot be carried in MPEG-TS here (AAC and MP3 only)")
        if len(raw) > _MAX_AUDIO_ES - 7:
            raise FLVError(f"audio: frame of {len(raw)} bytes does not fit one PES packet")
        if codec == ".mp3" and self.audio_codec != codec and len(raw) >= 2 and raw[0] == 0xFF and raw[1] & 0xE0 == 0xE0:
            # Frame header version bits (ISO/IEC 11172-3 2.4.1.3, 13818-3): '11' is MPEG-1;
            # MPEG-2 (and 2.5) low-sampling-frequency audio is stream type 0x04.
            self._mp3_stream_type = STREAM_TYPE_MPEG1_AUDIO if (raw[1] >> 3) & 3 == 3 else STREAM_TYPE_MPEG2_AUDIO
        self.audio_codec = codec
        tables = self.psi() if psi else self._psi_if_changed()
        ticks = ts_ms * 90 + self._delay
        return tables + self._pes(self._audio, es, ticks, ticks, self.pcr_pid == PID_AUDIO)

    # -- PES and packets ----------------------------------------------------------------------

    def _pes(self, stream: _Stream, es: list, pts: int, dts: int, random_access: bool) -> bytes:
        pts %= _TS_MOD
        dts %= _TS_MOD
        if pts == dts:
            fields = encode_timestamp(0b0010, pts)
            flags = 0x80
        else:
            fields = encode_timestamp(0b0011, pts) + encode_timestamp(0b0001, dts)
            flags = 0xC0
        es_size = sum(len(p) for p in es)
        length = 3 + len(fields) + es_size
        if length > 0xFFFF:
            length = 0  # unbounded, allowed for video elementary streams only (2.4.3.7)
        header = bytes(
            (0, 0, 1, stream.stream_id, length >> 8, length & 0xFF,
             0x84,  # '10', data_alignment_indicator: every PES starts with an AUD or ADTS/MP3 sync
             flags, len(fields))
        ) + fields
        pes = b"".join([header, *es])
        pcr = (dts - self._delay) % _TS_MOD if stream.pid == self.pcr_pid else None
        return self._packetize(stream, pes, pcr, random_access)

    @staticmethod
    def _packetize(stream: _Stream, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        out = bytearray()
        n = len(pes)
        pos = 0
        pid_hi = pid_hi_first = stream.pid >> 8
        pid_hi_first |= 0x40  # payload_unit_start_indicator
        pid_lo = stream.pid & 0xFF
        cc = stream.cc
        first = True
        view = memoryview(pes)
        while pos < n:
            if first and (pcr is not None or random_access):
                # 2.4.3.4: random_access_indicator tells a player it can start here; the PCR
                # lets it lock its clock to ours.
                af = bytearray(((0x40 if random_access else 0) | (0x10 if pcr is not None else 0),))
                if pcr is not None:
                    af += encode_pcr(pcr)
            else:
                af = None
            room = _PAYLOAD_SIZE - (1 + len(af) if af is not None else 0)
            left = n - pos
            if left < room:
                # The last packet is padded with adaptation-field stuffing bytes (2.4.3.5): PES
                # data cannot be padded with 0xFF, it would become part of the stream.
                stuffing = room - left
                if af is None:
                    # adaptation_field_length 0 (just the length byte) pads one byte; more needs
                    # the flags byte, then 0xFF stuffing.
                    af = bytearray() if stuffing == 1 else bytearray((0,)) + b"\xff" * (stuffing - 2)
                else:
                    af += b"\xff" * stuffing
                room = left
            if af is not None:
                out += bytes((_SYNC, pid_hi_first if first else pid_hi, pid_lo, 0x30 | cc, len(af)))
                out += af
            else:
                out += bytes((_SYNC, pid_hi_first if first else pid_hi, pid_lo, 0x10 | cc))
            out += view[pos : pos + room]
            pos += room
            cc = (cc + 1) & 0x0F
            first = False
        stream.cc = cc
        return bytes(out)
