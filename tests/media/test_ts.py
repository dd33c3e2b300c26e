"""Tests for rtmpserver.media.ts: PSI and CRC, PES/PTS/PCR fields, packetization, H.264/HEVC/AAC/MP3.

Reference bytes come from FFmpeg 5.1's own mpegts muxer, which uses the same PIDs and program:

    ffmpeg -f lavfi -i testsrc=size=160x120:rate=30 -f lavfi -i sine=sample_rate=44100 -t 0.2 \
        -c:v libx264 -preset ultrafast -c:a aac -f mpegts ref.ts

Its first packets are a PAT, a PMT (H.264 on 0x100, AAC on 0x101, PCR on 0x100) and a video PES
whose adaptation field carries PCR 65090 and whose PES header carries PTS 128090.

The small demuxer below (``demux``) is deliberately independent of the muxer: it checks sync
bytes, continuity counters, adaptation fields, section CRCs and PES lengths as a decoder would.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.errors import FLVError, LocalProtocolError
from rtmpserver.media.codecs import AACConfig, adts_header
from rtmpserver.media.flv import read_file
from rtmpserver.media.ts import (
    PID_AUDIO,
    PID_PAT,
    PID_PMT,
    PID_VIDEO,
    TSMuxer,
    crc32_mpeg2,
    encode_pcr,
    encode_timestamp,
    parse_hevc_decoder_config,
)

DATA_FILE = pathlib.Path(__file__).parent.parent / "data" / "media-testsrc-320x240-aac.flv"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FFMPEG_PAT = bytes.fromhex("474000100000b00d0001c100000001f0002ab104b2") + b"\xff" * 167
FFMPEG_PMT = bytes.fromhex("475000100002b0170001c10000e100f0001be100f0000fe101f0002f44b99b") + b"\xff" * 157
DELAY = 700 * 90  # the muxer's default PCR delay, in 90 kHz ticks


# --------------------------------------------------------------------------- a small independent demuxer


class TSError(AssertionError):
    pass


def packets(data: bytes) -> list[dict]:
    """Split and parse transport packets (13818-1 2.4.3.2/2.4.3.4)."""
    if len(data) % 188:
        raise TSError(f"{len(data)} bytes is not a whole number of packets")
    out = []
    for off in range(0, len(data), 188):
        p = data[off : off + 188]
        if p[0] != 0x47:
            raise TSError(f"bad sync byte at {off}")
        if p[1] & 0x80:
            raise TSError("transport_error_indicator set")
        afc = (p[3] >> 4) & 3
        pkt = {
            "pid": ((p[1] & 0x1F) << 8) | p[2],
            "pusi": bool(p[1] & 0x40),
            "cc": p[3] & 0x0F,
            "has_payload": bool(afc & 1),
            "pcr": None,
            "rai": False,
            "af_len": None,
        }
        if afc == 0:
            raise TSError("adaptation_field_control 00 is reserved")
        pos = 4
        if afc & 2:
            af_len = p[4]
            pkt["af_len"] = af_len
            if af_len > 183 or (afc == 3 and af_len > 182):
                raise TSError(f"adaptation_field_length {af_len} too large")
            af = p[5 : 5 + af_len]
            if af_len:
                flags = af[0]
                pkt["rai"] = bool(flags & 0x40)
                rest = af[1:]
                if flags & 0x10:
                    base = int.from_bytes(rest[:4], "big") << 1 | rest[4] >> 7
                    if rest[4] & 0x7E != 0x7E:
                        raise TSError("PCR reserved bits not set")
                    pkt["pcr"] = base
                    rest = rest[6:]
                if flags & ~0x50 & 0xFF:
                    raise TSError(f"unexpected adaptation field flags {flags:#x}")
                if any(b != 0xFF for b in rest):
                    raise TSError("adaptation field stuffing is not 0xFF")
            pos = 5 + af_len
        pkt["payload"] = p[pos:] if afc & 1 else b""
        out.append(pkt)
    return out


def demux(data: bytes, check_cc: bool = True) -> dict:
    """Per PID: 'pes' (list of parsed PES) or 'sections' (list of PSI sections); CC checked."""
    pids: dict[int, dict] = {}
    for pkt in packets(data):
        state = pids.setdefault(pkt["pid"], {"cc": None, "units": [], "current": None, "pcr": [], "rai": []})
        if check_cc and pkt["has_payload"]:
            if state["cc"] is not None and pkt["cc"] != (state["cc"] + 1) & 0x0F:
                raise TSError(f"continuity counter on PID {pkt['pid']:#x}: {state['cc']} then {pkt['cc']}")
            state["cc"] = pkt["cc"]
        if pkt["pcr"] is not None:
            state["pcr"].append(pkt["pcr"])
        if pkt["pusi"]:
            if state["current"] is not None:
                state["units"].append(bytes(state["current"]))
            state["current"] = bytearray(pkt["payload"])
            state["rai"].append(pkt["rai"])
        elif state["current"] is not None:
            state["current"] += pkt["payload"]
        elif pkt["has_payload"]:
            raise TSError(f"payload on PID {pkt['pid']:#x} before any unit start")
    result = {}
    for pid, state in pids.items():
        if state["current"] is not None:
            state["units"].append(bytes(state["current"]))
        if pid in (PID_PAT, PID_PMT):
            result[pid] = {"sections": [parse_section(u) for u in state["units"]]}
        else:
            result[pid] = {"pes": [parse_pes(u) for u in state["units"]], "pcr": state["pcr"], "rai": state["rai"]}
    return result


def parse_section(unit: bytes) -> dict:
    pointer = unit[0]
    s = unit[1 + pointer :]
    length = ((s[1] & 0x0F) << 8) | s[2]
    section = s[: 3 + length]
    if any(b != 0xFF for b in s[3 + length :]):
        raise TSError("PSI stuffing is not 0xFF")
    if crc32_mpeg2(section) != 0:
        raise TSError("section CRC_32 does not check")
    out = {"table_id": s[0], "id": (s[3] << 8) | s[4], "version": (s[5] >> 1) & 0x1F, "raw": section}
    body = section[8:-4]
    if s[0] == 0:
        out["programs"] = [
            ((body[i] << 8) | body[i + 1], ((body[i + 2] & 0x1F) << 8) | body[i + 3]) for i in range(0, len(body), 4)
        ]
    elif s[0] == 2:
        out["pcr_pid"] = ((body[0] & 0x1F) << 8) | body[1]
        info_len = ((body[2] & 0x0F) << 8) | body[3]
        i = 4 + info_len
        streams = []
        while i < len(body):
            es_len = ((body[i + 3] & 0x0F) << 8) | body[i + 4]
            streams.append((body[i], ((body[i + 1] & 0x1F) << 8) | body[i + 2]))
            i += 5 + es_len
        out["streams"] = streams
    return out


def decode_timestamp(b: bytes) -> int:
    for i in (0, 2, 4):
        if not b[i] & 1:
            raise TSError("PTS/DTS marker bit missing")
    return ((b[0] >> 1) & 7) << 30 | (b[1] << 7 | b[2] >> 1) << 15 | (b[3] << 7 | b[4] >> 1)


def parse_pes(unit: bytes) -> dict:
    if unit[:3] != b"\x00\x00\x01":
        raise TSError("PES start code missing")
    length = (unit[4] << 8) | unit[5]
    if length and len(unit) != 6 + length:
        raise TSError(f"PES_packet_length {length} but {len(unit) - 6} bytes follow")
    if unit[6] & 0xC0 != 0x80:
        raise TSError("PES header marker bits")
    flags = unit[7] >> 6
    hlen = unit[8]
    fields = unit[9 : 9 + hlen]
    pts = dts = None
    if flags == 2:
        if fields[0] >> 4 != 0b0010:
            raise TSError("PTS-only prefix must be 0010")
        pts = dts = decode_timestamp(fields[:5])
    elif flags == 3:
        if fields[0] >> 4 != 0b0011 or fields[5] >> 4 != 0b0001:
            raise TSError("PTS/DTS prefixes must be 0011/0001")
        pts, dts = decode_timestamp(fields[:5]), decode_timestamp(fields[5:10])
    else:
        raise TSError(f"PTS_DTS_flags {flags}")
    return {"stream_id": unit[3], "length": length, "pts": pts, "dts": dts, "dts_only_pts": flags == 2, "es": unit[9 + hlen :]}


# --------------------------------------------------------------------------- FLV payload builders

SPS = bytes.fromhex("6764000dacd9414190")
PPS = bytes.fromhex("68ebe3cb22c0")
IDR = b"\x65\x88\x84\x00\x33"
SLICE = b"\x41\x9a\x21\x6c"
SEI = b"\x06\x05\x01\x02\x80"


def avc_record(sps=SPS, pps=PPS, length_size=4) -> bytes:
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFC | (length_size - 1), 0xE1])
        + len(sps).to_bytes(2, "big") + sps + b"\x01" + len(pps).to_bytes(2, "big") + pps
    )


def avc_header(record=None) -> bytes:
    return b"\x17\x00\x00\x00\x00" + (record if record is not None else avc_record())


def avcc(nals, length_size=4) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


def avc_frame(key: bool, nals, cts: int = 0, length_size: int = 4) -> bytes:
    return bytes([0x17 if key else 0x27, 1]) + cts.to_bytes(3, "big", signed=True) + avcc(nals, length_size)


AAC_HEADER = b"\xaf\x00\x12\x10"  # AAC LC, 44.1 kHz, stereo


def aac_frame(raw: bytes) -> bytes:
    return b"\xaf\x01" + raw


VPS = bytes.fromhex("40010c01ffff016000000300b0000003000003005d9598")
HEVC_SPS = bytes.fromhex("420101016000000300b0000003000003005da00a080f165965")
HEVC_PPS = bytes.fromhex("4401c172b46240")
HEVC_IDR = b"\x26\x01\xaf\x09\x40"  # nal_unit_type 19 (IDR_W_RADL)
HEVC_CRA = b"\x2a\x01\xaf\x09\x40"  # 21 (CRA_NUT)
HEVC_TRAIL = b"\x02\x01\xd0\x09\x7e"  # 1 (TRAIL_R)


def hvcc_record(sets=((32, VPS), (33, HEVC_SPS), (34, HEVC_PPS)), length_size=4, extra_arrays=()) -> bytes:
    fixed = bytearray(22)
    fixed[0] = 1
    fixed[21] = 0xF0 | (length_size - 1)
    arrays = [(t, [n]) for t, n in sets] + list(extra_arrays)
    out = bytes(fixed) + bytes([len(arrays)])
    for t, nals in arrays:
        out += bytes([0x80 | t]) + len(nals).to_bytes(2, "big")
        for n in nals:
            out += len(n).to_bytes(2, "big") + n
    return out


def hevc_header(record=None) -> bytes:
    # Enhanced RTMP: IsExHeader | FrameType 1 | PacketType 0 (SequenceStart), FourCC.
    return b"\x90hvc1" + (record if record is not None else hvcc_record())


def hevc_frame(key: bool, nals, cts: int | None = None) -> bytes:
    ft = 0x10 if key else 0x20
    if cts is None:  # CodedFramesX: no composition time
        return bytes([0x80 | ft | 3]) + b"hvc1" + avcc(nals)
    return bytes([0x80 | ft | 1]) + b"hvc1" + cts.to_bytes(3, "big", signed=True) + avcc(nals)


def annexb(*nals) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


AUD = b"\x00\x00\x00\x01\x09\xf0"
HEVC_AUD = b"\x00\x00\x00\x01\x46\x01\x50"


def av_muxer(**kw) -> TSMuxer:
    mux = TSMuxer(**kw)
    assert mux.video(0, avc_header()) == b""
    assert mux.audio(0, AAC_HEADER) == b""
    return mux


# --------------------------------------------------------------------------- CRC, PSI, time fields


def test_crc32_mpeg2_check_value():
    # The catalogue check value of CRC-32/MPEG-2 over "123456789".
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7
    assert crc32_mpeg2(b"") == 0xFFFFFFFF


@pytest.mark.parametrize("packet", [FFMPEG_PAT, FFMPEG_PMT])
def test_crc32_checks_ffmpeg_sections(packet):
    length = ((packet[6] & 0x0F) << 8) | packet[7]
    section = packet[5 : 5 + 3 + length]
    assert crc32_mpeg2(section) == 0
    assert crc32_mpeg2(section[:-4]).to_bytes(4, "big") == section[-4:]


def test_psi_matches_ffmpeg_for_h264_and_aac():
    mux = av_muxer()
    psi = mux.psi()
    assert psi == FFMPEG_PAT + FFMPEG_PMT


def test_psi_continuity_counters_advance_and_version_stays():
    mux = av_muxer()
    first = mux.psi()
    second = mux.psi()
    assert first[3] & 0x0F == 0 and second[3] & 0x0F == 1
    assert first[188 + 3] & 0x0F == 0 and second[188 + 3] & 0x0F == 1
    assert first[4:188] == second[4:188] and first[192:] == second[192:]


def test_pmt_version_bumps_when_streams_change_and_tables_go_inline():
    mux = TSMuxer()
    mux.video(0, avc_header())
    out = mux.video(0, avc_frame(True, [IDR]))
    ts = demux(out)
    (pmt,) = ts[PID_PMT]["sections"]
    assert pmt["version"] == 0 and pmt["streams"] == [(0x1B, PID_VIDEO)] and pmt["pcr_pid"] == PID_VIDEO
    assert ts[PID_PAT]["sections"][0]["programs"] == [(1, PID_PMT)]
    # No change: no tables in front of the next frame.
    assert PID_PMT not in demux(mux.video(40, avc_frame(False, [SLICE])))
    # Audio appears: PAT+PMT (version 1, both streams) come first, then the audio PES.
    mux.audio(50, AAC_HEADER)
    out = mux.audio(50, aac_frame(b"\x21\x00"))
    assert [p["pid"] for p in packets(out)] == [PID_PAT, PID_PMT, PID_AUDIO]
    pmt = demux(out)[PID_PMT]["sections"][0]
    assert pmt["version"] == 1 and pmt["streams"] == [(0x1B, PID_VIDEO), (0x0F, PID_AUDIO)]


def test_explicit_psi_flag_puts_tables_first():
    mux = av_muxer()
    mux.video(0, avc_frame(True, [IDR]))
    out = mux.video(40, avc_frame(False, [SLICE]), psi=True)
    assert [p["pid"] for p in packets(out)][:3] == [PID_PAT, PID_PMT, PID_VIDEO]
    # A message that produces nothing produces no tables either.
    assert mux.video(80, avc_header(), psi=True) == b""


@pytest.mark.parametrize(
    "prefix, ticks, expected",
    [
        (0b0010, 90000, "210005bf21"),  # 1 s
        (0b0010, 128090, "210007e8b5"),  # FFmpeg's first PTS in ref.ts
        (0b0011, 0, "3100010001"),
        (0b0001, (1 << 33) - 1, "1fffffffff"),
        (0b0010, 1 << 33, "2100010001"),  # reduced modulo 2**33
        (0b0010, 0x123456789, "298d15cf13"),
    ],
)
def test_encode_timestamp(prefix, ticks, expected):
    assert encode_timestamp(prefix, ticks).hex() == expected
    assert decode_timestamp(encode_timestamp(prefix, ticks)) == ticks % (1 << 33)


@pytest.mark.parametrize(
    "base, expected",
    [
        (65090, "00007f217e00"),  # FFmpeg's first PCR in ref.ts
        (0, "0000 0000 7e00"),
        ((1 << 33) - 1, "fffffffffe00"),
        (1, "000000 00fe00"),
    ],
)
def test_encode_pcr(base, expected):
    assert encode_pcr(base) == bytes.fromhex(expected.replace(" ", ""))


def test_encode_pcr_extension():
    assert encode_pcr(0, 0x1FF) == bytes.fromhex("000000007fff")


# --------------------------------------------------------------------------- H.264


def test_idr_gets_aud_and_parameter_sets_and_pcr():
    mux = av_muxer()
    out = mux.video(1000, avc_frame(True, [SEI, IDR], cts=40))
    ts = demux(out)
    (pes,) = ts[PID_VIDEO]["pes"]
    assert pes["stream_id"] == 0xE0
    assert pes["es"] == AUD + annexb(SPS, PPS, SEI, IDR)
    assert pes["dts"] == 1000 * 90 + DELAY and pes["pts"] == 1040 * 90 + DELAY
    assert ts[PID_VIDEO]["pcr"] == [1000 * 90]
    assert ts[PID_VIDEO]["rai"] == [True]
    assert pes["length"] == len(pes["es"]) + 3 + 10


def test_inter_frame_has_no_parameter_sets_and_pts_only():
    mux = av_muxer()
    mux.video(0, avc_frame(True, [IDR]))
    ts = demux(mux.video(33, avc_frame(False, [SLICE])), check_cc=False)
    (pes,) = ts[PID_VIDEO]["pes"]
    assert pes["es"] == AUD + annexb(SLICE)
    assert pes["dts_only_pts"] and pes["pts"] == 33 * 90 + DELAY
    assert ts[PID_VIDEO]["rai"] == [False]
    assert ts[PID_VIDEO]["pcr"] == [33 * 90]


def test_in_band_parameter_sets_and_aud_are_not_duplicated():
    mux = av_muxer()
    own_sps = SPS[:-1] + b"\x01"
    out = mux.video(0, avc_frame(True, [b"\x09\x10", own_sps, PPS, IDR]))
    assert demux(out)[PID_VIDEO]["pes"][0]["es"] == AUD + annexb(own_sps, PPS, IDR)


def test_keyframe_without_idr_gets_no_parameter_sets():
    # FrameType 1 with a recovery-point I slice (no NAL type 5): nothing to insert before.
    mux = av_muxer()
    out = mux.video(0, avc_frame(True, [SEI, SLICE]))
    assert demux(out)[PID_VIDEO]["pes"][0]["es"] == AUD + annexb(SEI, SLICE)


@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_nal_length_size_from_the_record(length_size):
    mux = TSMuxer()
    mux.video(0, avc_header(avc_record(length_size=length_size)))
    out = mux.video(0, avc_frame(True, [IDR, b"\x65\x00"], length_size=length_size))
    assert demux(out)[PID_VIDEO]["pes"][0]["es"] == AUD + annexb(SPS, PPS, IDR, b"\x65\x00")


def test_negative_composition_time_and_timestamp_wrap():
    mux = av_muxer()
    ms = (1 << 33) // 90 + 5  # beyond the 33-bit range at 90 kHz
    out = mux.video(ms, avc_frame(True, [IDR], cts=-10))
    pes = demux(out)[PID_VIDEO]["pes"][0]
    assert pes["dts"] == (ms * 90 + DELAY) % (1 << 33)
    assert pes["pts"] == ((ms - 10) * 90 + DELAY) % (1 << 33)


def test_large_frame_spans_packets_and_uses_unbounded_length():
    mux = av_muxer()
    big = b"\x65" + bytes(range(256)) * 300
    out = mux.video(0, avc_frame(True, [big]))
    ts = demux(out)
    pes = ts[PID_VIDEO]["pes"][0]
    assert pes["length"] == 0 and pes["es"] == AUD + annexb(SPS, PPS, big)
    pkts = [p for p in packets(out) if p["pid"] == PID_VIDEO]
    assert [p["pusi"] for p in pkts] == [True] + [False] * (len(pkts) - 1)
    assert all(p["af_len"] is None for p in pkts[1:-1])


def test_sequence_end_and_command_frames_produce_nothing():
    mux = av_muxer()
    assert mux.video(0, b"\x17\x02\x00\x00\x00") == b""
    assert mux.video(0, b"\x57\x00") == b""  # command frame (FrameType 5)
    assert mux.video(0, b"\x92hvc1") == b""  # Enhanced SequenceEnd


def test_has_video_false_ignores_video():
    mux = TSMuxer(has_video=False)
    assert mux.video(0, avc_header()) == b"" and mux.video(0, avc_frame(True, [IDR])) == b""
    mux.audio(0, AAC_HEADER)
    ts = demux(mux.audio(0, aac_frame(b"\x21")))
    assert ts[PID_PMT]["sections"][0]["pcr_pid"] == PID_AUDIO
    assert ts[PID_AUDIO]["pcr"] == [0]


# --------------------------------------------------------------------------- HEVC


def test_hevc_record_parsing():
    sei = b"\x4e\x01\x05\x01\x02\x80"
    config = parse_hevc_decoder_config(hvcc_record(length_size=2, extra_arrays=[(39, [sei])]))
    assert config.nal_length_size == 2
    assert config.parameter_sets == [VPS, HEVC_SPS, HEVC_PPS]


@pytest.mark.parametrize(
    "record, what",
    [
        (hvcc_record()[:22], "need at least 23"),
        (b"\x00" + hvcc_record()[1:], "configurationVersion"),
        (hvcc_record()[:21] + b"\xf2" + hvcc_record()[22:], "lengthSizeMinusOne"),
        (hvcc_record()[:-1], "does not fit"),
        (hvcc_record()[:27], "truncated nalUnitLength"),
        (hvcc_record()[:25], "truncated NAL unit array header"),
        (hvcc_record(sets=((33, VPS),)), "NAL unit type 32"),
    ],
)
def test_bad_hevc_record_raises(record, what):
    with pytest.raises(FLVError, match=what):
        parse_hevc_decoder_config(record)


def test_every_truncation_of_an_hevc_record_raises():
    record = hvcc_record()
    for cut in range(len(record)):
        with pytest.raises(FLVError):
            parse_hevc_decoder_config(record[:cut])


def test_hevc_irap_gets_aud_and_parameter_sets_stream_type_0x24():
    mux = TSMuxer(has_audio=False)
    assert mux.video(0, hevc_header()) == b""
    out = mux.video(0, hevc_frame(True, [HEVC_IDR]))
    ts = demux(out)
    assert ts[PID_PMT]["sections"][0]["streams"] == [(0x24, PID_VIDEO)]
    pes = ts[PID_VIDEO]["pes"][0]
    assert pes["es"] == HEVC_AUD + annexb(VPS, HEVC_SPS, HEVC_PPS, HEVC_IDR)
    assert ts[PID_VIDEO]["rai"] == [True] and ts[PID_VIDEO]["pcr"] == [0]
    # CodedFrames with a composition time; a trailing picture gets no parameter sets.
    pes = demux(mux.video(40, hevc_frame(False, [HEVC_TRAIL], cts=80)), check_cc=False)[PID_VIDEO]["pes"][0]
    assert pes["es"] == HEVC_AUD + annexb(HEVC_TRAIL)
    assert pes["pts"] - pes["dts"] == 80 * 90
    # A CRA is an IRAP too; in-band parameter sets and AUDs are not duplicated.
    pes = demux(mux.video(80, hevc_frame(True, [HEVC_CRA])), check_cc=False)[PID_VIDEO]["pes"][0]
    assert pes["es"] == HEVC_AUD + annexb(VPS, HEVC_SPS, HEVC_PPS, HEVC_CRA)
    own = [b"\x46\x01\x50", VPS, HEVC_SPS, HEVC_PPS, HEVC_IDR]
    pes = demux(mux.video(120, hevc_frame(True, own)), check_cc=False)[PID_VIDEO]["pes"][0]
    assert pes["es"] == HEVC_AUD + annexb(VPS, HEVC_SPS, HEVC_PPS, HEVC_IDR)


def test_legacy_codec_id_12_hevc():
    mux = TSMuxer(has_audio=False)
    mux.video(0, b"\x1c\x00\x00\x00\x00" + hvcc_record())
    pes = demux(mux.video(0, b"\x1c\x01\x00\x00\x00" + avcc([HEVC_IDR])))[PID_VIDEO]["pes"][0]
    assert pes["es"] == HEVC_AUD + annexb(VPS, HEVC_SPS, HEVC_PPS, HEVC_IDR)


def test_codec_switch_bumps_pmt():
    mux = TSMuxer(has_audio=False)
    mux.video(0, avc_header())
    mux.video(0, avc_frame(True, [IDR]))
    mux.video(40, hevc_header())
    out = mux.video(40, hevc_frame(True, [HEVC_IDR]))
    pmt = demux(out)[PID_PMT]["sections"][0]
    assert pmt["version"] == 1 and pmt["streams"] == [(0x24, PID_VIDEO)]


# --------------------------------------------------------------------------- audio


def test_aac_frame_becomes_one_adts_pes():
    mux = av_muxer()
    mux.video(0, avc_frame(True, [IDR]))
    raw = bytes(100)
    ts = demux(mux.audio(23, aac_frame(raw)), check_cc=False)
    pes = ts[PID_AUDIO]["pes"][0]
    assert pes["stream_id"] == 0xC0
    assert pes["es"] == bytes.fromhex("fff150800d7ffc") + raw
    assert pes["dts_only_pts"] and pes["pts"] == 23 * 90 + DELAY
    assert pes["length"] == 3 + 5 + 107
    # Audio is not the PCR PID when there is video, so no adaptation field in front.
    assert ts[PID_AUDIO]["pcr"] == [] and ts[PID_AUDIO]["rai"] == [False]


def test_aac_stream_matches_ffmpeg_adts():
    # Same bytes as `ffmpeg -i media-testsrc-320x240-aac.flv -vn -c:a copy -f adts` (see
    # tests/media/test_codecs.py): our PES payloads, concatenated, are that ADTS stream.
    mux = TSMuxer()
    out = bytearray(mux.psi())
    for tag in read_file(DATA_FILE):
        if tag.type == 9:
            out += mux.video(tag.timestamp, tag.payload)
        elif tag.type == 8:
            out += mux.audio(tag.timestamp, tag.payload)
    ts = demux(bytes(out))
    assert len(b"".join(p["es"] for p in ts[PID_AUDIO]["pes"])) == 4218
    assert len(ts[PID_AUDIO]["pes"]) == 45 and len(ts[PID_VIDEO]["pes"]) == 30
    # Every PCR is at or before its PES's DTS, and none goes backwards.
    assert ts[PID_VIDEO]["pcr"] == sorted(ts[PID_VIDEO]["pcr"])
    for pcr, pes in zip(ts[PID_VIDEO]["pcr"], ts[PID_VIDEO]["pes"], strict=False):
        assert pcr == pes["dts"] - DELAY


def test_enhanced_aac():
    mux = TSMuxer(has_video=False)
    # ExAudio: SoundFormat 9, PacketType 0 (SequenceStart) / 1 (CodedFrames), FourCC mp4a.
    assert mux.audio(0, b"\x90mp4a\x12\x10") == b""
    pes = demux(mux.audio(0, b"\x91mp4a" + b"\x21\x22"))[PID_AUDIO]["pes"][0]
    assert pes["es"] == adts_header(AACConfig(2, 4, 44100, 2), 2) + b"\x21\x22"


@pytest.mark.parametrize(
    "frame, stream_type",
    [
        (b"\xff\xfb\x90\x64", 0x03),  # MPEG-1 Layer III, 44.1 kHz
        (b"\xff\xf3\x90\x64", 0x04),  # MPEG-2 Layer III (22.05 kHz)
        (b"\xff\xe3\x90\x64", 0x04),  # MPEG-2.5
        (b"\x00\x00", 0x03),  # no frame header to go by
    ],
)
def test_mp3_stream_type_and_payload(frame, stream_type):
    mux = TSMuxer(has_video=False)
    ts = demux(mux.audio(0, b"\x2f" + frame + b"\x55" * 50))
    assert ts[PID_PMT]["sections"][0]["streams"] == [(stream_type, PID_AUDIO)]
    assert ts[PID_AUDIO]["pes"][0]["es"] == frame + b"\x55" * 50


def test_enhanced_mp3():
    mux = TSMuxer(has_video=False)
    ts = demux(mux.audio(0, b"\x91.mp3\xff\xfb\x90\x64"))
    assert ts[PID_AUDIO]["pes"][0]["es"] == b"\xff\xfb\x90\x64"


@pytest.mark.parametrize("with_video", [False, True])
def test_stuffing_for_every_size(with_video):
    # MP3 bytes go through unchanged, so any ES size can be produced.  Every size over two
    # packets is tried: the last packet needs 0, 1 (adaptation_field_length 0 alone) or more
    # stuffing bytes, behind a PCR field (audio-only) or with no adaptation field before.
    mux = TSMuxer(has_video=with_video)
    if with_video:
        mux.video(0, avc_header())
        mux.video(0, avc_frame(True, [IDR]))
    seen_af_lengths = set()
    for size in range(1, 2 * 184 + 2):
        es = bytes((i * 7 + 3) & 0xFF for i in range(size))
        out = mux.audio(10, b"\x2f" + es)
        ts = demux(out, check_cc=False)
        assert ts[PID_AUDIO]["pes"][0]["es"] == es
        seen_af_lengths.update(p["af_len"] for p in packets(out) if p["pid"] == PID_AUDIO)
    assert {0, 1, 182} <= seen_af_lengths


def test_audio_frame_too_large_for_a_pes():
    mux = TSMuxer(has_video=False)
    with pytest.raises(FLVError, match="does not fit"):
        mux.audio(0, b"\x2f" + bytes(70000))


# --------------------------------------------------------------------------- continuity and errors


def test_continuity_counters_per_pid_wrap():
    mux = av_muxer()
    out = bytearray(mux.psi())
    for i in range(40):
        out += mux.video(i * 33, avc_frame(i % 10 == 0, [IDR if i % 10 == 0 else SLICE, bytes(300)]))
        out += mux.audio(i * 23, aac_frame(bytes(200)))
        if i % 7 == 0:
            out += mux.psi()
    ts = demux(bytes(out))  # raises on any gap
    assert len(ts[PID_VIDEO]["pes"]) == 40 and len(ts[PID_AUDIO]["pes"]) == 40
    assert len(packets(bytes(out))) > 3 * 16


@pytest.mark.parametrize(
    "call, payload, what",
    [
        ("audio", aac_frame(b"\x21"), "before the AudioSpecificConfig"),
        ("video", b"\x14\x00", "codec 4"),  # On2 VP6
        ("video", b"\x90av01" + b"\x00" * 8, "'av01'"),
        ("audio", b"\xb2\x00", "codec 11"),  # Speex
        ("audio", b"\x91Opus\x00", "'Opus'"),
        ("video", b"\x17\x01\x00\x00\x00\x00\x00\x00", "truncated NAL unit length"),
        ("video", b"\x17\x01\x00\x00\x00\x00\x00\x00\x09\x65", "overruns"),
        ("video", b"\x17\x00\x00\x00\x00\x01\x64", "AVCDecoderConfigurationRecord"),
        ("video", b"\x90hvc1\x01", "HEVCDecoderConfigurationRecord"),
        ("video", b"\x91hvc1\x00\x00\x00" + avcc([b"\x26"]), "shorter than its 2-byte header"),
        ("video", b"\x96\x00hvc1\x00" + avcc([HEVC_IDR]), "multitrack"),
        ("audio", b"\xaf\x00\x12", "AudioSpecificConfig"),
        ("audio", b"\xaf\x00\xf9\x48\x40", "cannot be carried in ADTS"),  # object type 42 (USAC)
        ("video", b"", "empty"),
        ("audio", b"", "empty"),
    ],
)
def test_bad_payloads_raise_flv_error(call, payload, what):
    mux = TSMuxer()
    with pytest.raises(FLVError, match=what):
        getattr(mux, call)(0, payload)


def test_refused_message_changes_nothing():
    mux = av_muxer()
    first = mux.video(0, avc_frame(True, [IDR]))
    with pytest.raises(FLVError):
        mux.video(33, b"\x27\x01\x00\x00\x00\x00\x00\x00\x20\x41")
    with pytest.raises(FLVError):
        mux.audio(40, b"\x2f" + bytes(70000))
    out = first + mux.video(66, avc_frame(False, [SLICE])) + mux.audio(70, aac_frame(b"\x21"))
    demux(out)  # continuity counters have no gap where the refused messages were


def test_bad_pcr_delay_is_our_error():
    with pytest.raises(LocalProtocolError):
        TSMuxer(pcr_delay_ms=-1)


@SETTINGS
@given(st.binary(max_size=200), st.booleans(), st.booleans())
def test_random_payloads_raise_only_flv_error(payload, is_video, configured):
    mux = av_muxer() if configured else TSMuxer()
    try:
        out = mux.video(0, payload) if is_video else mux.audio(0, payload)
    except FLVError:
        return
    assert len(out) % 188 == 0 and all(out[i] == 0x47 for i in range(0, len(out), 188))


VALID_HEADERS = [
    ("video", b"\x17\x01\x00\x00\x00"),  # AVC NALUs
    ("video", b"\x17\x00\x00\x00\x00"),  # AVC sequence header
    ("video", b"\x91hvc1\x00\x00\x00"),  # HEVC CodedFrames
    ("video", b"\x93hvc1"),  # HEVC CodedFramesX
    ("video", b"\x90hvc1"),  # HEVC SequenceStart
    ("audio", b"\xaf\x00"),  # AAC sequence header
    ("audio", b"\xaf\x01"),  # AAC raw
    ("audio", b"\x90mp4a"),  # Enhanced AAC SequenceStart
]


@SETTINGS
@given(st.binary(max_size=120), st.sampled_from(VALID_HEADERS), st.booleans())
def test_random_bodies_behind_valid_headers_raise_only_flv_error(body, kind_header, hevc):
    kind, header = kind_header
    mux = av_muxer()
    if hevc:
        mux.video(0, hevc_header())
    try:
        out = getattr(mux, kind)(0, header + body)
    except FLVError:
        return
    if out:
        demux(out, check_cc=False)


# --------------------------------------------------------------------------- FFmpeg reads what we write


def test_ffprobe_reads_muxed_test_file(tmp_path):
    mux = TSMuxer()
    out = bytearray(mux.psi())
    for tag in read_file(DATA_FILE):
        if tag.type == 9:
            out += mux.video(tag.timestamp, tag.payload)
        elif tag.type == 8:
            out += mux.audio(tag.timestamp, tag.payload)
    path = tmp_path / "out.ts"
    path.write_bytes(bytes(out))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    streams = [
        (s["codec_name"], s.get("width"), s.get("height"), s.get("sample_rate"), s["nb_read_frames"])
        for s in json.loads(probe.stdout)["streams"]
    ]
    assert streams == [("h264", 320, 240, None, "30"), ("aac", None, None, "44100", "45")]
    decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    assert decode.returncode == 0 and decode.stderr == ""
