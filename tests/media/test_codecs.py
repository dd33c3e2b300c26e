"""Tests for rtmpserver.media.codecs: AVC decoder configuration, H.264 SPS dimensions, AAC config, ADTS.

Real vectors are the bodies of the AVC sequence-header tags that FFmpeg 5.1 + libx264 wrote for one
frame of ``testsrc``, with the dimensions ffprobe reports for the same files:

    ffmpeg -f lavfi -i testsrc=size=WxH:rate=25 -frames:v 1 -pix_fmt PIXFMT [EXTRA] \
        -c:v libx264 -preset ultrafast -f flv out.flv

Hand-built SPSs come from a small bit writer below that follows H.264 7.3.2.1.1.
"""

from __future__ import annotations

import hashlib
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.errors import FLVError
from rtmpserver.media.codecs import (
    AAC_SAMPLE_RATES,
    AACConfig,
    adts_header,
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_sps_dimensions,
    unescape_rbsp,
)
from rtmpserver.media.flv import audio_info, read_file, video_info

DATA_FILE = pathlib.Path(__file__).parent.parent / "data" / "media-testsrc-320x240-aac.flv"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (name, pix_fmt and extra options, sequence header tag body, (width, height), codec string)
REAL_SEQUENCE_HEADERS = [
    (
        "1280x720 yuv420p (Constrained Baseline)",
        "17000000000142c01fffe100176742c01fda014016ec0440000003004000000c83c60ca801000468ce0fc8",
        (1280, 720),
        "avc1.42c01f",
    ),
    (
        "1920x1080 yuv420p, coded as 1088 lines and cropped",
        "17000000000142c028ffe100196742c028da01e0089f97011000000300100000030320f1832a01000468ce0fc8",
        (1920, 1080),
        "avc1.42c028",
    ),
    (
        "1920x1080 yuv420p -flags +ildct+ilme -x264opts interlaced=1 (Main, field coding)",
        "1700000000014d4028ffe10019674d4028f403c0227ef011000003000100000300321f162ea001000468de0fc8",
        (1920, 1080),
        "avc1.4d4028",
    ),
    (
        "1918x1078 yuv444p (High 4:4:4 Predictive, crop unit 1)",
        "170000000001f40028ffe1001a67f40028919680780227b8bc0440000003004000000c83c60ca801000568ce0f1920fff8f800",
        (1918, 1078),
        "avc1.f40028",
    ),
    (
        "640x362 yuv422p (High 4:2:2, vertical crop unit 1)",
        "1700000000017a001effe10019677a001ebcb405017fcf80880000030008000003019078b17501000468ce0fc8fef8f800",
        (640, 362),
        "avc1.7a001e",
    ),
    (
        "174x142 gray (High, chroma_format_idc 0)",
        "17000000000164000bffe100186764000bf2d0589f7780b640000003004000000c83c50aa801000468ce0fc8fcf8f800",
        (174, 142),
        "avc1.64000b",
    ),
    (
        "352x288 yuv420p -x264opts cqm=jvt (High)",
        "17000000000164000dffe100176764000dacb40b04b60220000003002000000641e2855401000568ce0fc40cfdf8f800",
        (352, 288),
        "avc1.64000d",
    ),
    (
        "176x144 yuv420p -profile:v baseline",
        "17000000000142c00bffe100176742c00bda0b13b011000003000100000300320f142aa001000468ce0fc8",
        (176, 144),
        "avc1.42c00b",
    ),
]


# --------------------------------------------------------------------------- AVC decoder configuration


@pytest.mark.parametrize("name, hex_body, size, codec", REAL_SEQUENCE_HEADERS, ids=[v[0] for v in REAL_SEQUENCE_HEADERS])
def test_real_sequence_headers(name, hex_body, size, codec):
    body = bytes.fromhex(hex_body)
    info = video_info(body)
    assert info.is_sequence_header and info.codec == "avc1"
    config = parse_avc_decoder_config(body[info.header_size :])
    assert config.codec_string == codec
    assert config.nal_length_size == 4
    assert len(config.sps) == 1 and len(config.pps) == 1
    assert config.sps[0][0] == 0x67 and config.pps[0][0] == 0x68
    assert (config.profile, config.level) == (config.sps[0][1], config.sps[0][3])
    assert parse_sps_dimensions(config.sps[0]) == size


def test_data_file_sps_is_320x240_high():
    seq = next(t.payload for t in read_file(DATA_FILE) if t.type == 9)
    config = parse_avc_decoder_config(seq[5:])
    assert config.profile == 100 and config.codec_string == "avc1.64000d"
    assert parse_sps_dimensions(config.sps[0]) == (320, 240)


def _record(sps_list, pps_list, length_size_minus_one=3, version=1) -> bytes:
    out = bytearray([version, 0x64, 0x00, 0x1F, 0xFC | length_size_minus_one, 0xE0 | len(sps_list)])
    for sps in sps_list:
        out += len(sps).to_bytes(2, "big") + sps
    out.append(len(pps_list))
    for pps in pps_list:
        out += len(pps).to_bytes(2, "big") + pps
    return bytes(out)


def test_config_with_several_parameter_sets_and_short_lengths():
    config = parse_avc_decoder_config(_record([b"\x67\x64\x00\x1f", b"\x67\x42"], [b"\x68\xce", b"\x68\x01", b"\x68"], 1))
    assert config.nal_length_size == 2
    assert config.sps == [b"\x67\x64\x00\x1f", b"\x67\x42"]
    assert config.pps == [b"\x68\xce", b"\x68\x01", b"\x68"]
    assert parse_avc_decoder_config(_record([], [], 0)).nal_length_size == 1


@pytest.mark.parametrize(
    "data, what",
    [
        (b"\x01\x64\x00", "need at least 7"),
        (_record([b"\x67\x64"], [b"\x68"], version=0), "configurationVersion"),
        (_record([b"\x67\x64"], [b"\x68"], length_size_minus_one=2), "lengthSizeMinusOne"),
        (_record([b"\x68\x64"], [b"\x68"]), "NAL unit type 8"),
        (_record([b"\x67\x64"], [b"\x67"]), "NAL unit type 7"),
        (_record([b""], [b"\x68"]), "SPS of 0 bytes"),
        (_record([b"\x67\x64"], [b"\x68"])[:-1], "PPS of 1 bytes"),
        (_record([b"\x67\x64"], [b"\x68"])[:10], "numOfPictureParameterSets"),
        (_record([b"\x67\x64"], [b"\x68"])[:9], "SPS of 2 bytes"),
        (_record([b"\x67\x64"], [b"\x68"])[:7], "truncated SPS length"),
    ],
)
def test_bad_config_raises(data, what):
    with pytest.raises(FLVError, match=what):
        parse_avc_decoder_config(data)


@pytest.mark.parametrize("name, hex_body, size, codec", REAL_SEQUENCE_HEADERS[:2])
def test_every_truncation_of_a_real_config_raises(name, hex_body, size, codec):
    record = bytes.fromhex(hex_body)[5:]
    for cut in range(len(record)):
        with pytest.raises(FLVError):
            parse_avc_decoder_config(record[:cut])


@SETTINGS
@given(st.binary(max_size=64))
def test_random_config_raises_only_flv_error(data):
    try:
        config = parse_avc_decoder_config(data)
    except FLVError:
        return
    assert 1 <= config.nal_length_size <= 4


# --------------------------------------------------------------------------- emulation prevention


@pytest.mark.parametrize(
    "escaped, raw",
    [
        (b"\x00\x00\x03\x01", b"\x00\x00\x01"),
        (b"\x00\x00\x03\x00\x00\x03", b"\x00\x00\x00\x00"),
        (b"\x00\x00\x03\x03", b"\x00\x00\x03"),
        (b"\x00\x03\x00\x00", b"\x00\x03\x00\x00"),
        (b"\x12\x00\x00\x03", b"\x12\x00\x00"),
        (b"", b""),
    ],
)
def test_unescape_rbsp(escaped, raw):
    assert unescape_rbsp(escaped) == raw


def escape_rbsp(raw: bytes) -> bytes:
    """H.264 7.4.1: after two zero bytes, a byte <= 3 gets an emulation_prevention_three_byte."""
    out = bytearray()
    zeros = 0
    for b in raw:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@SETTINGS
@given(st.binary(max_size=64))
def test_escape_unescape_round_trip(raw):
    escaped = escape_rbsp(raw)
    assert b"\x00\x00\x00" not in escaped[:-1] or raw.endswith(b"\x00\x00")
    assert unescape_rbsp(escaped) == raw


# --------------------------------------------------------------------------- hand-built SPS


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = self.bits + [1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


HIGH = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]
# (SubWidthC, SubHeightC) by ChromaArrayType (H.264 table 6-1); type 0 crops in luma samples.
SUB = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}


@st.composite
def sps_params(draw):
    profile = draw(st.sampled_from([66, 77, 88] + HIGH))
    high = profile in HIGH
    chroma = draw(st.integers(0, 3)) if high else 1
    separate = draw(st.integers(0, 1)) if chroma == 3 else 0
    n_lists = 12 if chroma == 3 else 8
    scaling = draw(
        st.none() | st.lists(st.none() | st.lists(st.integers(-128, 127), max_size=64), min_size=n_lists, max_size=n_lists)
    )
    poc_type = draw(st.integers(0, 2))
    frame_mbs_only = draw(st.integers(0, 1))
    width_mbs = draw(st.integers(1, 600))
    height_units = draw(st.integers(1, 300))
    array_type = 0 if separate else chroma
    sub_w, sub_h = SUB[array_type]
    unit_x, unit_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    crop = None
    if draw(st.booleans()):
        left = draw(st.integers(0, (width - 1) // unit_x))
        right = draw(st.integers(0, (width - 1) // unit_x - left))
        top = draw(st.integers(0, (height - 1) // unit_y))
        bottom = draw(st.integers(0, (height - 1) // unit_y - top))
        crop = (left, right, top, bottom)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    return dict(
        profile=profile,
        high=high,
        chroma=chroma,
        separate=separate,
        scaling=scaling,
        poc_type=poc_type,
        poc_cycle=draw(st.lists(st.integers(-(1 << 20), 1 << 20), max_size=5)),
        ref_frames=draw(st.integers(0, 1 << 30)),  # large values put zero bytes in the RBSP
        frame_mbs_only=frame_mbs_only,
        width_mbs=width_mbs,
        height_units=height_units,
        crop=crop,
        expected=(width, height),
    )


def build_sps(p) -> bytes:
    w = BitWriter()
    w.u(8, p["profile"])
    w.u(8, 0)  # constraint flags
    w.u(8, 31)  # level_idc
    w.ue(0)  # seq_parameter_set_id
    if p["high"]:
        w.ue(p["chroma"])
        if p["chroma"] == 3:
            w.u(1, p["separate"])
        w.ue(2)  # bit_depth_luma_minus8
        w.ue(2)  # bit_depth_chroma_minus8
        w.u(1, 0)
        w.u(1, p["scaling"] is not None)
        for i, lst in enumerate(p["scaling"] or []):
            w.u(1, lst is not None)
            if lst is not None:
                size = 16 if i < 6 else 64
                lst = lst[:size]
                # delta_scale values; a delta that makes nextScale 0 ends the list early.
                last = 8
                for delta in lst:
                    w.se(delta)
                    nxt = (last + delta + 256) % 256
                    if nxt == 0:
                        break
                    last = nxt
                else:
                    # Pad the list to its full size with zero deltas (nextScale stays non-zero).
                    for _ in range(size - len(lst)):
                        w.se(0)
    w.ue(4)  # log2_max_frame_num_minus4
    w.ue(p["poc_type"])
    if p["poc_type"] == 0:
        w.ue(2)
    elif p["poc_type"] == 1:
        w.u(1, 0)
        w.se(-3)
        w.se(7)
        w.ue(len(p["poc_cycle"]))
        for v in p["poc_cycle"]:
            w.se(v)
    w.ue(p["ref_frames"])
    w.u(1, 0)
    w.ue(p["width_mbs"] - 1)
    w.ue(p["height_units"] - 1)
    w.u(1, p["frame_mbs_only"])
    if not p["frame_mbs_only"]:
        w.u(1, 1)
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, p["crop"] is not None)
    for v in p["crop"] or ():
        w.ue(v)
    w.u(1, 0)  # vui_parameters_present_flag
    return b"\x67" + escape_rbsp(w.rbsp())


def test_scaling_list_sizes_line_up():
    # Each padded list must be exactly 16 or 64 entries, or the parser would read the wrong bits;
    # the round-trip property below relies on this helper being right.
    p = dict(
        profile=100, high=True, chroma=1, separate=0, scaling=[[1, 2]] * 6 + [[3]] * 2, poc_type=0,
        poc_cycle=[], ref_frames=1, frame_mbs_only=1, width_mbs=20, height_units=15, crop=None,
    )
    assert parse_sps_dimensions(build_sps(p)) == (320, 240)


@SETTINGS
@given(sps_params())
def test_hand_built_sps_dimensions(p):
    assert parse_sps_dimensions(build_sps(p)) == p["expected"]


def test_emulation_prevention_inside_parsed_fields():
    # max_num_ref_frames = 2**27 is an Exp-Golomb code with 27 leading zeros and 26 more zero bits:
    # the RBSP has a zero run that needs escaping before width/height are reached.
    p = dict(
        profile=66, high=False, chroma=1, separate=0, scaling=None, poc_type=2, poc_cycle=[],
        ref_frames=1 << 27, frame_mbs_only=1, width_mbs=80, height_units=45, crop=None,
    )
    sps = build_sps(p)
    assert b"\x00\x00\x03" in sps
    assert parse_sps_dimensions(sps) == (1280, 720)
    # Without unescaping the same bytes decode to something else (or fail).
    try:
        wrong = parse_sps_dimensions(b"\x67" + sps[1:].replace(b"\x00\x00\x03", b"\x00\x00\x00\x03"))
    except FLVError:
        wrong = None
    assert wrong != (1280, 720)


@pytest.mark.parametrize(
    "sps, what",
    [
        (b"\x68\x42\x00\x1f\xda", "NAL unit type 8"),
        (b"\x67\x42\x00", "too short"),
        (b"\x67\x42\x00\x1f\xda", "truncated"),
        (b"\x67\x42\x00\x1f" + bytes(8) + b"\x80", "longer than 32 bits"),
    ],
)
def test_bad_sps_raises(sps, what):
    with pytest.raises(FLVError, match=what):
        parse_sps_dimensions(sps)


def test_sps_cropping_everything_away_raises():
    p = dict(
        profile=66, high=False, chroma=1, separate=0, scaling=None, poc_type=2, poc_cycle=[],
        ref_frames=1, frame_mbs_only=1, width_mbs=1, height_units=1, crop=(4, 4, 0, 0),
    )
    with pytest.raises(FLVError, match="cropping"):
        parse_sps_dimensions(build_sps(p))


@SETTINGS
@given(st.binary(max_size=40))
def test_random_sps_raises_only_flv_error(data):
    try:
        width, height = parse_sps_dimensions(b"\x67" + data)
    except FLVError:
        return
    assert width > 0 and height > 0


# --------------------------------------------------------------------------- AAC


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x12\x10", AACConfig(2, 4, 44100, 2)),  # AAC LC, 44.1 kHz, stereo
        (b"\x11\x90", AACConfig(2, 3, 48000, 2)),
        (b"\x13\x88", AACConfig(2, 7, 22050, 1)),
        (b"\x0a\x10", AACConfig(1, 4, 44100, 2)),  # AAC Main
        (b"\x12\x10\x56\xe5\x00", AACConfig(2, 4, 44100, 2)),  # FFmpeg's sync extension is ignored
        # HE-AAC explicit: AOT 5, 24 kHz core, stereo, 48 kHz extension, core AOT 2.
        (b"\x2b\x11\x88", AACConfig(2, 6, 24000, 2, True, False, 48000)),
        # Escape object type: 31 then 6 bits -> 32 + 10 = 42 (USAC), 44.1 kHz, stereo.
        (b"\xf9\x48\x40", AACConfig(42, 4, 44100, 2)),
        # Explicit rate: index 15 then a 24-bit frequency, mono.
        (b"\x17\x80\x56\x0c\x08", AACConfig(2, 15, 44056, 1)),
    ],
)
def test_audio_specific_config(data, expected):
    assert parse_audio_specific_config(data) == expected


def test_audio_specific_config_hev2_signals_ps():
    # AOT 29 (PS), index 8 (16 kHz), 1 channel, extension index 5 (32 kHz), core AOT 2.
    bits = "11101" "1000" "0001" "0101" "00010"
    bits += "0" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    assert parse_audio_specific_config(data) == AACConfig(2, 8, 16000, 1, True, True, 32000)


@pytest.mark.parametrize(
    "data, what",
    [
        (b"\x12", "need at least 2"),
        (b"\x00\x10", "audioObjectType 0"),
        (b"\x16\x90", "samplingFrequencyIndex 13"),
        (b"\x12\x40", "channelConfiguration 8"),
        (b"\x17\x80\x56", "truncated"),
        (b"\x2b\x11\x80", "core audioObjectType 0"),
    ],
)
def test_bad_audio_specific_config_raises(data, what):
    with pytest.raises(FLVError, match=what):
        parse_audio_specific_config(data)


@SETTINGS
@given(st.binary(max_size=8))
def test_random_audio_specific_config_raises_only_flv_error(data):
    try:
        config = parse_audio_specific_config(data)
    except FLVError:
        return
    assert config.object_type > 0 and config.sample_rate > 0


def test_adts_header_bytes():
    # AAC LC (profile 1), index 4, 2 channels, frame length 107 = 100 + 7.
    assert adts_header(AACConfig(2, 4, 44100, 2), 100) == bytes.fromhex("fff150800d7ffc")


def test_adts_stream_matches_ffmpeg():
    # `ffmpeg -i media-testsrc-320x240-aac.flv -vn -c:a copy -f adts out.aac` gives 4218 bytes with
    # this SHA-256; our headers plus the raw frames must give the same bytes.
    out = bytearray()
    config = None
    for tag in read_file(DATA_FILE):
        if tag.type != 8:
            continue
        info = audio_info(tag.payload)
        if info.is_sequence_header:
            config = parse_audio_specific_config(tag.payload[info.header_size :])
        else:
            frame = tag.payload[info.header_size :]
            out += adts_header(config, len(frame)) + frame
    assert len(out) == 4218
    assert hashlib.sha256(out).hexdigest() == "11e4b4987a6724998b9251810496cf844c2f9317718eef2c1849227e26e70ad7"


@pytest.mark.parametrize(
    "config, size",
    [
        (AACConfig(5, 4, 44100, 2), 10),
        (AACConfig(42, 4, 44100, 2), 10),
        (AACConfig(2, 15, 44056, 2), 10),
        (AACConfig(2, 4, 44100, 11), 10),
        (AACConfig(2, 4, 44100, 2), 0x1FFF - 6),
    ],
)
def test_adts_refuses_what_it_cannot_carry(config, size):
    with pytest.raises(FLVError):
        adts_header(config, size)


def test_sample_rate_table():
    assert AAC_SAMPLE_RATES[3] == 48000 and AAC_SAMPLE_RATES[12] == 7350 and len(AAC_SAMPLE_RATES) == 13
