"""Tests for rtmpserver.media.fmp4: boxes read back with a tiny ISO BMFF reader of the test's own,
hypothesis round trips of fragments, dimensions from HEVC/AV1 headers, and FFmpeg reading the
init segment + fragments the segmenter makes from a real FFmpeg capture."""

from __future__ import annotations

import pathlib
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.errors import FLVError
from rtmpserver.media.flv import read_file
from rtmpserver.media.fmp4 import (
    AUDIO_TRACK,
    VIDEO_TRACK,
    FMP4Muxer,
    Sample,
    _hevc_codec_string,
    av1_dimensions,
    hevc_dimensions,
)
from rtmpserver.media.hls import HLSSegmenter
from tests.media.test_ts import (
    AAC_HEADER,
    HEVC_IDR,
    HEVC_SPS,
    IDR,
    SLICE,
    aac_frame,
    avc_frame,
    avc_header,
    avc_record,
    hevc_frame,
    hevc_header,
    hvcc_record,
)

DATA_FILE = pathlib.Path(__file__).parent.parent / "data" / "media-testsrc-320x240-aac.flv"
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}


def boxes(data: bytes, pos: int = 0, end: int | None = None) -> list[tuple[bytes, bytes, int]]:
    """(type, body, offset) of each box in data[pos:end]; every byte must belong to a box."""
    end = len(data) if end is None else end
    out = []
    while pos < end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= end, (kind, size, pos, end)
        out.append((kind, data[pos + 8 : pos + size], pos))
        pos += size
    return out


def tree(data: bytes) -> dict:
    """Nested {type: [children or body]} for containers, {type: body} for leaves (first of each)."""
    result: dict = {}
    for kind, body, _ in boxes(data):
        result.setdefault(kind, tree(body) if kind in CONTAINERS else body)
    return result


def find(data: bytes, *path: bytes) -> bytes:
    node: object = data
    for kind in path:
        items = boxes(node)  # type: ignore[arg-type]
        node = next(b for k, b, _ in items if k == kind)
    return node  # type: ignore[return-value]


def parse_fragment(frag: bytes) -> dict[int, list[tuple[int, int, int, bool, bytes]]]:
    """Per track: (dts, duration, cts offset, sync, data) of every sample, located through trun."""
    (moof_kind, moof, moof_at), (mdat_kind, mdat, mdat_at) = boxes(frag)
    assert (moof_kind, mdat_kind) == (b"moof", b"mdat")
    out: dict = {}
    for kind, traf, _ in boxes(moof):
        if kind != b"traf":
            assert kind == b"mfhd"
            continue
        tfhd = find(traf, b"tfhd")
        flags = struct.unpack_from(">I", tfhd)[0] & 0xFFFFFF
        assert flags & 0x020000  # default-base-is-moof: offsets count from the moof
        track = struct.unpack_from(">I", tfhd, 4)[0]
        tfdt = find(traf, b"tfdt")
        assert tfdt[0] == 1
        dts = struct.unpack_from(">Q", tfdt, 4)[0]
        trun = find(traf, b"trun")
        count, offset = struct.unpack_from(">Ii", trun, 4)
        pos = moof_at + offset
        samples = []
        for i in range(count):
            duration, size, sflags, cts = struct.unpack_from(">IIIi", trun, 12 + 16 * i)
            samples.append((dts, duration, cts, not sflags & 0x10000, frag[pos : pos + size]))
            dts += duration
            pos += size
        out[track] = samples
    return out


def configured(video=True, audio=True) -> FMP4Muxer:
    mux = FMP4Muxer()
    if video:
        assert mux.video(0, avc_header()) is None
    if audio:
        assert mux.audio(0, AAC_HEADER) is None
    return mux


def test_init_segment_has_the_decoder_configurations_and_track_layout():
    mux = configured()
    init = mux.init_segment()
    top = [k for k, _, _ in boxes(init)]
    assert top == [b"ftyp", b"moov"]
    assert find(init, b"ftyp")[:4] == b"iso6"
    moov = find(init, b"moov")
    assert [k for k, _, _ in boxes(moov)] == [b"mvhd", b"trak", b"trak", b"mvex"]
    traks = [b for k, b, _ in boxes(moov) if k == b"trak"]
    video, audio = traks
    assert struct.unpack_from(">I", find(video, b"tkhd"), 12)[0] == VIDEO_TRACK
    # tkhd width/height are 16.16 fixed point, at the end of the box.
    assert struct.unpack_from(">II", find(video, b"tkhd"), 76) == (320 << 16, 192 << 16)
    stsd = find(video, b"mdia", b"minf", b"stbl", b"stsd")
    (entry_kind, entry, _), = boxes(stsd, 8)
    assert entry_kind == b"avc1"
    width, height = struct.unpack_from(">HH", entry, 24)
    assert (width, height) == (320, 192)  # from tests.media.test_ts.SPS
    assert find(entry[78:], b"avcC") == avc_record()
    assert find(video, b"mdia", b"hdlr")[8:12] == b"vide"
    assert struct.unpack_from(">I", find(video, b"mdia", b"mdhd"), 12)[0] == 90000
    stsd = find(audio, b"mdia", b"minf", b"stbl", b"stsd")
    (entry_kind, entry, _), = boxes(stsd, 8)
    assert entry_kind == b"mp4a"
    channels, bits = struct.unpack_from(">HH", entry, 16)
    rate = struct.unpack_from(">I", entry, 24)[0] >> 16
    assert (channels, bits, rate) == (2, 16, 44100)
    esds = find(entry[28:], b"esds")
    assert AAC_HEADER[2:] in esds  # the AudioSpecificConfig, as DecoderSpecificInfo
    assert esds[4] == 0x03 and b"\x40\x15" in esds  # ES_Descriptor; OTI 0x40, audio stream
    trex = [b for k, b, _ in boxes(find(init, b"moov", b"mvex"))]
    assert [struct.unpack_from(">I", t, 4)[0] for t in trex] == [VIDEO_TRACK, AUDIO_TRACK]
    assert mux.codecs == ["avc1.64000d", "mp4a.40.2"]


def test_video_dimensions_come_from_the_sps():
    mux = configured(audio=False)
    assert mux.size == (320, 192)
    hevc = FMP4Muxer()
    hevc.video(0, hevc_header())
    assert hevc.size == hevc_dimensions(HEVC_SPS) == (320, 240)
    # The RFC 6381 example of ISO/IEC 14496-15 annex E: Main profile, level 3.1, progressive.
    fixed = bytes([1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93]) + bytes(10)
    assert _hevc_codec_string(fixed) == "hvc1.1.6.L93.B0"
    entry = boxes(find(hevc.init_segment(), b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"), 8)[0]
    assert entry[0] == b"hvc1" and find(entry[1][78:], b"hvcC") == hvcc_record()


def av1_sequence_header_obu(width: int, height: int) -> bytes:
    """A reduced-still-picture-less AV1 sequence header (AV1 5.5.1) with 16-bit frame sizes."""
    bits = "000" "0" "0"  # seq_profile, still_picture, reduced_still_picture_header
    bits += "0" "0"  # timing_info_present, initial_display_delay_present
    bits += "00000" + "000000000000" + "01000"  # one operating point, idc 0, level 8 (> 7: tier)
    bits += "0"  # seq_tier
    bits += "1111" "1111"  # frame_width_bits_minus_1 = frame_height_bits_minus_1 = 15
    bits += f"{width - 1:016b}{height - 1:016b}"
    bits += "0" * (-len(bits) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return bytes([0x0A, len(payload)]) + payload  # obu_type 1, has_size_field


def test_av1_dimensions_from_the_av1c_config_obus_and_sample_entry():
    obu = av1_sequence_header_obu(1280, 720)
    assert av1_dimensions(obu[2:]) == (1280, 720)
    record = bytes([0x81, 0x08, 0x0C, 0x00]) + obu  # seq_profile 0, level 8, 8-bit 4:2:0
    mux = FMP4Muxer()
    header = bytes([0x90]) + b"av01" + record  # Enhanced RTMP: key frame, SequenceStart
    assert mux.video(0, header) is None
    assert mux.size == (1280, 720) and mux.video_name == "av01.0.08M.08"
    init = mux.init_segment()
    entry = boxes(find(init, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"), 8)[0]
    assert entry[0] == b"av01" and find(entry[1][78:], b"av1C") == record
    frame = bytes([0x91]) + b"av01" + b"\x12\x00" + obu  # temporal delimiter, sequence header
    sample = mux.video(40, frame)
    assert sample.sync and sample.data == b"\x12\x00" + obu and sample.dts == 40 * 90


def test_fragment_samples_read_back_with_durations_and_offsets():
    mux = configured()
    mux.init_segment()
    samples = [
        mux.video(0, avc_frame(True, [IDR + b"x" * 50], cts=66)),
        mux.audio(0, aac_frame(b"a" * 20)),
        mux.audio(23, aac_frame(b"b" * 21)),
        mux.video(33, avc_frame(False, [SLICE + b"y" * 9])),
        mux.video(66, avc_frame(False, [SLICE + b"z" * 7])),
    ]
    frag = mux.pack(samples, 100)
    got = parse_fragment(frag)
    video, audio = got[VIDEO_TRACK], got[AUDIO_TRACK]
    assert [(d, dur, c, s) for d, dur, c, s, _ in video] == [(0, 2970, 5940, True), (2970, 2970, 0, False), (5940, 3060, 0, False)]
    assert [v[4] for v in video] == [s.data for s in samples if s.track == VIDEO_TRACK]
    assert video[0][4][4:5] == IDR[:1]  # length-prefixed NAL units, as in the FLV
    assert [(d, dur) for d, dur, *_ in audio] == [(0, 1014), (1014, 1024)]  # 23 ms at 44.1 kHz; last = one AAC frame
    assert [a[4] for a in audio] == [b"a" * 20, b"b" * 21]
    mfhd = find(frag, b"moof", b"mfhd")
    assert struct.unpack_from(">I", mfhd, 4)[0] == 1
    assert struct.unpack_from(">I", find(mux.pack(samples[:1], None), b"moof", b"mfhd"), 4)[0] == 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([VIDEO_TRACK, AUDIO_TRACK]), st.integers(0, 200),
                          st.binary(min_size=1, max_size=300), st.booleans(), st.integers(-3000, 3000)),
                min_size=1, max_size=40), st.integers(0, 10_000_000))  # fmt: skip
def test_fragments_round_trip(items, base):
    mux = configured()
    mux.init_segment()
    samples, clock = [], {VIDEO_TRACK: base, AUDIO_TRACK: base}
    for track, step, data, sync, cts in items:
        clock[track] += step
        samples.append(Sample(track, clock[track], cts if track == VIDEO_TRACK else 0, sync, data))
    got = parse_fragment(mux.pack(samples, None))
    for track in (VIDEO_TRACK, AUDIO_TRACK):
        mine = [s for s in samples if s.track == track]
        if not mine:
            assert track not in got
            continue
        back = got[track]
        assert [b[4] for b in back] == [s.data for s in mine]
        assert [b[0] for b in back] == [s.dts for s in mine]  # durations add up to the next dts
        assert [b[2] for b in back] == [s.cts_offset for s in mine]
        assert [b[3] for b in back] == [s.sync for s in mine]


def test_refusals_are_flv_errors_and_change_nothing():
    mux = FMP4Muxer()
    with pytest.raises(FLVError, match="before its sequence header"):
        mux.video(0, avc_frame(True, [IDR]))
    with pytest.raises(FLVError, match="before the AudioSpecificConfig"):
        mux.audio(0, aac_frame(b"x"))
    with pytest.raises(FLVError, match="AAC only"):
        mux.audio(0, b"\x2f" + b"\xff\xfb" + bytes(10))  # MP3
    with pytest.raises(FLVError, match="H.264, HEVC, AV1"):
        mux.video(0, b"\x12" + bytes(8))  # Sorenson H.263
    with pytest.raises(FLVError, match="no decoder configuration"):
        mux.init_segment()
    mux.video(0, avc_header())
    mux.init_segment()
    with pytest.raises(FLVError, match="changed within a stream"):
        mux.video(0, hevc_header())
    assert mux.video(0, avc_frame(True, [IDR])).track == VIDEO_TRACK
    # Audio configured after the init segment froze the tracks has no track: dropped, not muxed.
    mux.audio(0, AAC_HEADER)
    assert mux.audio(10, aac_frame(b"late")) is None


def test_hevc_frames_are_muxed_unchanged():
    mux = FMP4Muxer()
    mux.video(0, hevc_header())
    frame = hevc_frame(True, [HEVC_IDR])
    sample = mux.video(0, frame)
    assert sample.sync and frame.endswith(sample.data)


# --------------------------------------------------------------------------- FFmpeg reads it


def test_ffmpeg_decodes_init_plus_fragments_of_a_real_capture(tmp_path):
    seg = HLSSegmenter("s", 0.5, 50, fmt="fmp4", part=0.2)
    for tag in read_file(DATA_FILE):
        seg.feed(tag.type, tag.timestamp, tag.payload)
    seg.end()
    whole = seg.init_segment(0) + b"".join(s.data for s in seg.segments)
    path = tmp_path / "all.mp4"
    path.write_bytes(whole)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert sorted(out.stdout.split()) == sorted(["h264,320,240,30", "aac,45"])
    dec = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dec.returncode == 0 and dec.stderr == "", dec.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["key", "inter", "audio", "gap"]), st.integers(1, 120)), min_size=1, max_size=120),
       st.sampled_from([None, 0.2, 0.5]))  # fmt: skip
def test_segmenter_fmp4_parts_make_whole_parseable_segments(events, part):
    seg = HLSSegmenter("s", 1.0, 50, fmt="fmp4", part=part)
    seg.feed(9, 0, avc_header())
    seg.feed(8, 0, AAC_HEADER)
    t = 0
    video_times = [0]
    for kind, step in events:
        t += step
        if kind in ("key", "inter"):
            video_times.append(t)
        if kind == "key":
            seg.feed(9, t, avc_frame(True, [IDR + bytes(step)]))
        elif kind == "inter":
            seg.feed(9, t, avc_frame(False, [SLICE + bytes(step % 7)]))
        elif kind == "audio":
            seg.feed(8, t, aac_frame(bytes(step)))
        else:
            t += 1000
    seg.end()
    longest = max(b - a for a, b in zip(video_times, video_times[1:] + [t], strict=False))
    for s in seg.segments:
        # A segment is whole fragments, back to back, each moof + mdat with samples inside it.
        kinds = [k for k, _, _ in boxes(s.data)]
        assert kinds == [b"moof", b"mdat"] * (len(kinds) // 2) and kinds
        if part is not None:
            assert len(s.parts) == len(kinds) // 2
            assert sum(p.size for p in s.parts) == len(s.data)
            assert sum(p.duration_ms for p in s.parts) == s.duration_ms
            for i, p in enumerate(s.parts):
                assert bytes(seg.part(s.sequence, i)) == s.data[p.offset : p.offset + p.size]
                parse_fragment(bytes(seg.part(s.sequence, i)))
                # Parts are cut between frames, before the previous frame interval would take them
                # past the target: only a longer interval makes one longer, by at most that.
                # (The very last part's duration is a guess made at end(): not bounded.)
                last = s is seg.segments[-1] and i == len(s.parts) - 1
                assert p.duration_ms <= round(part * 1000) + longest or last
        assert seg.init_segment(s.map_id)[4:8] == b"ftyp"


def test_he_aac_runs_at_the_output_rate_with_2048_sample_frames():
    mux = FMP4Muxer(has_video=False)
    mux.audio(0, b"\xaf\x00" + bytes.fromhex("2b1188"))  # explicit SBR: 24 kHz core, 48 kHz out
    assert (mux.audio_rate, mux.audio_frame) == (48000, 2048)
    init = mux.init_segment()
    entry = boxes(find(init, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"), 8)[0][1]
    assert struct.unpack_from(">I", entry, 24)[0] >> 16 == 48000
    samples = [mux.audio(t, aac_frame(b"x" * 9)) for t in (0, 43, 85)]
    got = parse_fragment(mux.pack(samples, None))[AUDIO_TRACK]
    assert [(d, dur) for d, dur, *_ in got] == [(0, 2064), (2064, 2016), (4080, 2048)]
