"""Codec configuration records carried in sequence headers, sans-IO.

Recordings need width/height/sample rate for onMetaData, HLS needs the AAC configuration for
ADTS headers and the SPS/PPS to put before each IDR. References: ISO/IEC 14496-15 section 5.2.4.1
(AVCDecoderConfigurationRecord), ITU-T H.264 sections 7.3.1 (NAL unit, emulation prevention),
7.3.2.1.1 (SPS syntax), 7.4.2.1.1 (frame cropping semantics) and 9.1 (Exp-Golomb codes),
ISO/IEC 14496-3 section 1.6.2.1 (AudioSpecificConfig) and 1.A.2.2.1 (ADTS header).

Every parser raises FLVError on malformed input: these bytes come from the publisher.
"""

from __future__ import annotations

from typing import NamedTuple

from rtmpserver.errors import FLVError

__all__ = [
    "AVCConfig",
    "AACConfig",
    "AAC_SAMPLE_RATES",
    "parse_avc_decoder_config",
    "unescape_rbsp",
    "parse_sps_dimensions",
    "parse_audio_specific_config",
    "adts_header",
]

_NAL_SPS = 7
_NAL_PPS = 8

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (H.264 7.3.2.1.1).
_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))

# samplingFrequencyIndex -> Hz (ISO/IEC 14496-3 table 1.18); 13 and 14 are reserved, 15 = explicit.
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

_AOT_SBR = 5
_AOT_PS = 29


class AVCConfig(NamedTuple):
    """An AVCDecoderConfigurationRecord; ``sps``/``pps`` include their NAL header byte."""

    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: list[bytes]
    pps: list[bytes]

    @property
    def codec_string(self) -> str:
        """RFC 6381 ``avc1.PPCCLL``, as HLS master playlists and MSE want it."""
        return f"avc1.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


class AACConfig(NamedTuple):
    """An AudioSpecificConfig reduced to what ADTS and onMetaData need.

    With explicit HE-AAC signalling (object type 5 or 29 first) ``object_type``,
    ``sample_rate_index`` and ``sample_rate`` describe the core AAC layer, which is what an ADTS
    header must carry; ``sbr``/``ps`` say the extension was signalled and ``extension_sample_rate``
    is the output rate.
    """

    object_type: int
    sample_rate_index: int
    sample_rate: int
    channel_config: int
    sbr: bool = False
    ps: bool = False
    extension_sample_rate: int | None = None


# --------------------------------------------------------------------------- H.264


def parse_avc_decoder_config(data) -> AVCConfig:
    """Parse the body of an AVC sequence header (after the 5-byte FLV video header)."""
    n = len(data)
    if n < 7:
        raise FLVError(f"AVCDecoderConfigurationRecord: {n} bytes, need at least 7")
    if data[0] != 1:
        raise FLVError(f"AVCDecoderConfigurationRecord: configurationVersion {data[0]} at offset 0, expected 1")
    nal_length_size = (data[4] & 3) + 1
    if nal_length_size == 3:
        # lengthSizeMinusOne 2 is not allowed (ISO/IEC 14496-15 5.2.4.1.2).
        raise FLVError("AVCDecoderConfigurationRecord: lengthSizeMinusOne 2 at offset 4 is not allowed")
    pos = 5
    sps, pos = _nal_list(data, pos, data[pos] & 0x1F, _NAL_SPS, "SPS")
    if pos >= n:
        raise FLVError(f"AVCDecoderConfigurationRecord: truncated numOfPictureParameterSets at offset {pos}")
    pps, pos = _nal_list(data, pos, data[pos], _NAL_PPS, "PPS")
    # Bytes after the PPS (High profile chroma/bit-depth/SPSExt fields) are not needed here.
    return AVCConfig(data[1], data[2], data[3], nal_length_size, sps, pps)


def _nal_list(data, pos: int, count: int, nal_type: int, what: str) -> tuple[list[bytes], int]:
    pos += 1  # the count byte
    n = len(data)
    units = []
    for _ in range(count):
        if pos + 2 > n:
            raise FLVError(f"AVCDecoderConfigurationRecord: truncated {what} length at offset {pos}")
        length = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if length == 0 or pos + length > n:
            raise FLVError(f"AVCDecoderConfigurationRecord: {what} of {length} bytes at offset {pos} does not fit")
        if data[pos] & 0x1F != nal_type:
            raise FLVError(
                f"AVCDecoderConfigurationRecord: NAL unit type {data[pos] & 0x1F} at offset {pos}, "
                f"expected {nal_type} ({what})"
            )
        units.append(bytes(data[pos : pos + length]))
        pos += length
    return units, pos


def unescape_rbsp(nal) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00, H.264 7.4.1)."""
    data = bytes(nal)
    if b"\x00\x00\x03" not in data:
        return data
    out = bytearray()
    start = 0
    zeros = 0
    for i, b in enumerate(data):
        if zeros >= 2 and b == 3:
            out += data[start:i]
            start = i + 1
            zeros = 0
            continue
        zeros = zeros + 1 if b == 0 else 0
    out += data[start:]
    return bytes(out)


class _BitReader:
    """MSB-first bit reader over an RBSP, holding it as one big int (SPSs are tens of bytes)."""

    __slots__ = ("_value", "_bits", "_pos")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        end = self._pos + n
        if end > self._bits:
            raise FLVError(f"SPS: truncated at bit {self._pos} reading {n} bits")
        self._pos = end
        return (self._value >> (self._bits - end)) & ((1 << n) - 1)

    def ue(self) -> int:
        # Exp-Golomb (H.264 9.1): leading zeros, a 1, then that many bits. 32 zeros would exceed
        # every syntax element's range, so stop there instead of reading an unbounded prefix.
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise FLVError(f"SPS: Exp-Golomb code longer than 32 bits at bit {self._pos}")
        return (1 << zeros) - 1 + (self.u(zeros) if zeros else 0)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)


def _skip_scaling_list(r: _BitReader, size: int) -> None:
    # scaling_list() (H.264 7.3.2.1.1.1): deltas are read until nextScale becomes 0; the rest of
    # the list repeats the last value without reading anything.
    last = 8
    for _ in range(size):
        delta = r.se()
        if not -128 <= delta <= 127:
            raise FLVError(f"SPS: delta_scale {delta} out of range")
        last = (last + delta + 256) % 256
        if last == 0:
            return


def parse_sps_dimensions(sps) -> tuple[int, int]:
    """Display width and height from an H.264 SPS NAL unit (with its NAL header byte).

    Follows H.264 7.3.2.1.1 up to frame_cropping and applies the crop as 7.4.2.1.1 says, so a
    1920x1080 stream (coded as 1088 lines) reports 1080.
    """
    if len(sps) < 4:
        raise FLVError(f"SPS: {len(sps)} bytes is too short")
    if sps[0] & 0x1F != _NAL_SPS:
        raise FLVError(f"SPS: NAL unit type {sps[0] & 0x1F}, expected 7")
    r = _BitReader(unescape_rbsp(sps[1:]))
    profile_idc = r.u(8)
    r.u(16)  # constraint flags, level_idc
    if r.ue() > 31:
        raise FLVError("SPS: seq_parameter_set_id out of range")
    chroma_format_idc = 1
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise FLVError(f"SPS: chroma_format_idc {chroma_format_idc} out of range")
        if chroma_format_idc == 3:
            # separate_colour_plane_flag makes ChromaArrayType 0, whose crop units (1, 1) are
            # those of 4:4:4 anyway, so it does not change the dimensions.
            r.u(1)
        if r.ue() > 6 or r.ue() > 6:
            raise FLVError("SPS: bit_depth_minus8 out of range")
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    if r.ue() > 12:
        raise FLVError("SPS: log2_max_frame_num_minus4 out of range")
    poc_type = r.ue()
    if poc_type == 0:
        if r.ue() > 12:
            raise FLVError("SPS: log2_max_pic_order_cnt_lsb_minus4 out of range")
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        cycle = r.ue()
        if cycle > 255:
            raise FLVError(f"SPS: num_ref_frames_in_pic_order_cnt_cycle {cycle} out of range")
        for _ in range(cycle):
            r.se()
    elif poc_type != 2:
        raise FLVError(f"SPS: pic_order_cnt_type {poc_type} out of range")
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if r.u(1):  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()
    # CropUnitX/Y (7.4.2.1.1) from SubWidthC/SubHeightC (table 6-1): 4:2:0 halves both, 4:2:2
    # halves only the width, 4:4:4 and monochrome crop in luma samples.
    sub_width = 2 if chroma_format_idc in (1, 2) else 1
    sub_height = 2 if chroma_format_idc == 1 else 1
    crop_unit_x, crop_unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise FLVError(f"SPS: cropping leaves {width}x{height}")
    return width, height


# --------------------------------------------------------------------------- AAC


def parse_audio_specific_config(data) -> AACConfig:
    """Parse the body of an AAC sequence header (after the 2-byte FLV audio header)."""
    n = len(data)
    if n < 2:
        raise FLVError(f"AudioSpecificConfig: {n} bytes, need at least 2")
    value = int.from_bytes(data[:16], "big")
    total = min(n, 16) * 8
    pos = 0

    def bits(count: int) -> int:
        nonlocal pos
        if pos + count > total:
            raise FLVError(f"AudioSpecificConfig: truncated at bit {pos}")
        pos += count
        return (value >> (total - pos)) & ((1 << count) - 1)

    def object_type() -> int:
        aot = bits(5)
        return 32 + bits(6) if aot == 31 else aot

    def sample_rate() -> tuple[int, int]:
        index = bits(4)
        if index == 15:
            return index, bits(24)
        if index >= len(AAC_SAMPLE_RATES):
            raise FLVError(f"AudioSpecificConfig: reserved samplingFrequencyIndex {index}")
        return index, AAC_SAMPLE_RATES[index]

    aot = object_type()
    if aot == 0:
        raise FLVError("AudioSpecificConfig: audioObjectType 0 (null)")
    index, rate = sample_rate()
    channels = bits(4)
    if channels > 7 and channels not in (11, 12, 14):
        raise FLVError(f"AudioSpecificConfig: reserved channelConfiguration {channels}")
    if aot == _AOT_SBR or aot == _AOT_PS:
        # Explicit hierarchical signalling: extension rate, then the core object type.
        _, ext_rate = sample_rate()
        core = object_type()
        if core == 0 or core == _AOT_SBR or core == _AOT_PS:
            raise FLVError(f"AudioSpecificConfig: core audioObjectType {core} after SBR/PS")
        return AACConfig(core, index, rate, channels, True, aot == _AOT_PS, ext_rate)
    return AACConfig(aot, index, rate, channels)


def adts_header(config: AACConfig, payload_size: int) -> bytes:
    """The 7-byte ADTS header (no CRC) for one raw AAC frame of ``payload_size`` bytes.

    ADTS has a 2-bit profile (object type - 1) and a 4-bit rate index, so configurations outside
    that (object types above 4, explicit rates, channel configs above 7) cannot be carried; they
    came from the publisher, hence FLVError.
    """
    profile = config.object_type - 1
    if not 0 <= profile <= 3:
        raise FLVError(f"AAC object type {config.object_type} cannot be carried in ADTS")
    if config.sample_rate_index > 12:
        raise FLVError(f"AAC explicit sample rate {config.sample_rate} cannot be carried in ADTS")
    if config.channel_config > 7:
        raise FLVError(f"AAC channel configuration {config.channel_config} cannot be carried in ADTS")
    frame_length = payload_size + 7
    if frame_length > 0x1FFF:
        raise FLVError(f"AAC frame of {payload_size} bytes is too large for ADTS")
    return bytes(
        (
            0xFF,
            0xF1,  # syncword, MPEG-4, layer 0, protection_absent
            (profile << 6) | (config.sample_rate_index << 2) | (config.channel_config >> 2),
            ((config.channel_config & 3) << 6) | (frame_length >> 11),
            (frame_length >> 3) & 0xFF,
            ((frame_length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF (VBR)
            0xFC,  # rest of buffer fullness, one raw data block
        )
    )
