"""Tests for rtmpserver.media.mp4 against files FFmpeg writes (checked with ffprobe) and hand-built boxes."""

from __future__ import annotations

import gc
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.errors import RemoteProtocolError
from rtmpserver.media.codecs import (
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_sps_dimensions,
)
from rtmpserver.media.mp4 import MP4Error, MP4File, MP4LimitExceeded, iter_boxes
from tests.media.conftest import ffprobe_packets, reader

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MP4_FILES = ("h264", "faststart", "fragmented", "hevc")


def open_mp4(path, **kw) -> MP4File:
    read_at, size = reader(path)
    return MP4File(read_at, size, **kw)


def floor_ms(t: int, time_base: tuple[int, int]) -> int:
    return t * 1000 * time_base[0] // time_base[1]


@pytest.mark.parametrize("name", MP4_FILES)
def test_samples_match_ffprobe(media_files, name):
    mp4 = open_mp4(media_files[name])
    probe = ffprobe_packets(media_files[name])
    samples = list(mp4.samples())
    assert [s.dts_ms for s in samples] == sorted(s.dts_ms for s in samples)
    assert mp4.fragmented == (name == "fragmented")
    assert [t.kind for t in mp4.selected] == ["video", "audio"]
    for index, track in enumerate(mp4.selected):
        stream = probe[index]
        mine = [s for s in samples if s.track_id == track.track_id]
        theirs = stream["packets"]
        assert len(mine) == len(theirs) > 100
        assert [s.size for s in mine] == [p["size"] for p in theirs]
        assert [s.offset for s in mine] == [p["pos"] for p in theirs]
        assert [s.keyframe for s in mine] == [p["key"] for p in theirs]
        assert stream["time_base"] == (1, track.timescale)
        # ffprobe's times are ours before the file-wide shift that makes the first one 0.
        tb = stream["time_base"]
        assert [s.dts_ms for s in mine] == [floor_ms(p["dts"], tb) + mp4.shift_ms for p in theirs]
        assert [s.dts_ms + s.cts_offset_ms for s in mine] == [floor_ms(p["pts"], tb) + mp4.shift_ms for p in theirs]
    assert min(s.dts_ms for s in samples) == 0
    assert 3900 <= mp4.duration_ms <= 4100


@pytest.mark.parametrize("name", ("h264", "faststart", "hevc"))
def test_b_frame_edit_list(media_files, name):
    # FFmpeg delays the first picture by two frames with B-frames: elst media_time 1024 of 15360.
    mp4 = open_mp4(media_files[name])
    assert mp4.video.media_time == 1024 and mp4.video.timescale == 15360
    assert mp4.shift_ms == 67
    first = next(mp4.samples())
    assert first.dts_ms == 0 and first.cts_offset_ms == 67 and first.keyframe


@pytest.mark.parametrize("name", MP4_FILES)
def test_reads_index_not_media(media_files, name):
    read_at, size = reader(media_files[name])
    mp4 = MP4File(read_at, size)
    list(mp4.samples())
    mp4.seek(2500)
    list(mp4.samples(mp4.seek(2500)))
    media = sum(s.size for s in mp4.samples())
    assert read_at.stats["bytes"] < (size - media) * 3 + 1024
    assert read_at.stats["bytes"] < size / 2


@pytest.mark.parametrize("name", MP4_FILES)
def test_seek_lands_on_keyframe_at_or_before(media_files, name):
    mp4 = open_mp4(media_files[name])
    probe = ffprobe_packets(media_files[name])
    tb = probe[0]["time_base"]
    keys = [floor_ms(p["dts"], tb) + mp4.shift_ms for p in probe[0]["packets"] if p["key"]]
    assert len(keys) >= 4
    audio_times = [s.dts_ms for s in mp4.samples() if s.track_id == mp4.audio.track_id]
    for target in range(0, 4500, 125):
        expected = max([k for k in keys if k <= target], default=keys[0])
        position = mp4.seek(target)
        assert position.ms == expected, target
        after = list(mp4.samples(position))
        video = [s for s in after if s.track_id == mp4.video.track_id]
        audio = [s.dts_ms for s in after if s.track_id == mp4.audio.track_id]
        assert video[0].keyframe and video[0].dts_ms == expected
        assert video == [s for s in mp4.samples() if s.track_id == mp4.video.track_id and s.dts_ms >= expected]
        assert audio == [t for t in audio_times if t >= expected]


@pytest.mark.parametrize("name", ("video_only", "audio_only"))
def test_single_track_files(media_files, name):
    mp4 = open_mp4(media_files[name])
    (track,) = mp4.selected
    assert track.kind == name.split("_")[0]
    stream = ffprobe_packets(media_files[name])[0]
    samples = list(mp4.samples())
    assert [(s.size, s.keyframe) for s in samples] == [(p["size"], p["key"]) for p in stream["packets"]]
    tb = stream["time_base"]
    times = [floor_ms(p["dts"], tb) + mp4.shift_ms for p in stream["packets"]]
    assert [s.dts_ms for s in samples] == times and times[0] == 0
    keys = [t for t, p in zip(times, stream["packets"], strict=True) if p["key"]]
    for target in (0, 1234, 2000, 3999, 9999):
        position = mp4.seek(target)
        assert position.ms == max(k for k in keys if k <= target)
        assert next(mp4.samples(position)).dts_ms == position.ms


def test_codec_records(media_files):
    mp4 = open_mp4(media_files["h264"])
    avc = parse_avc_decoder_config(mp4.video.config)
    assert parse_sps_dimensions(avc.sps[0]) == (320, 240)
    assert (mp4.video.width, mp4.video.height) == (320, 240)
    asc = parse_audio_specific_config(mp4.audio.config)
    assert asc.sample_rate == 44100 and asc.channel_config == 1
    # The sample entry's channelcount is a template field (FFmpeg writes 2 for mono); ASC decides.
    assert (mp4.audio.codec, mp4.audio.sample_rate) == ("mp4a", 44100)
    hevc = open_mp4(media_files["hevc"])
    assert hevc.video.codec == "hvc1" and hevc.video.config[0] == 1  # configurationVersion


def test_moov_bound(media_files):
    with pytest.raises(MP4LimitExceeded):
        open_mp4(media_files["h264"], max_moov_bytes=1000)
    with pytest.raises(MP4LimitExceeded):
        open_mp4(media_files["fragmented"], max_fragments=2)
    with pytest.raises(MP4LimitExceeded):
        open_mp4(media_files["fragmented"], max_moof_bytes=100)


def test_sample_size_bound(media_files):
    mp4 = open_mp4(media_files["h264"])
    first = next(mp4.samples())
    assert len(mp4.read_sample(first)) == first.size
    with pytest.raises(MP4LimitExceeded):
        mp4.read_sample(first, max_size=first.size - 1)


# --------------------------------------------------------------------------- hand-built boxes


def box(btype: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), btype) + body


def full(btype: bytes, version: int, *parts: bytes, flags: int = 0) -> bytes:
    return box(btype, struct.pack(">I", version << 24 | flags), *parts)


def u32s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


AVCC = bytes.fromhex("01640016ffe1001a6764001eacd940a03db01100000303e80000e8ce08ad9b07c4c1a501000468ebe3cb22c0")
ASC = bytes.fromhex("1210")


def visual_entry(fourcc: bytes, config_type: bytes, config: bytes, w=1280, h=720) -> bytes:
    return box(fourcc, bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", w, h), bytes(50), box(config_type, config))


def esds(asc: bytes) -> bytes:
    dsi = b"\x05" + bytes((len(asc),)) + asc
    dcd_body = bytes((0x40, 0x15)) + bytes(11) + dsi
    dcd = b"\x04" + bytes((len(dcd_body),)) + dcd_body
    es_body = b"\x00\x01\x00" + dcd + b"\x06\x01\x02"
    return full(b"esds", 0, b"\x03" + bytes((len(es_body),)) + es_body)


def audio_entry(asc: bytes) -> bytes:
    return box(b"mp4a", bytes(6), struct.pack(">H", 1), bytes(8), struct.pack(">HHHHI", 2, 16, 0, 0, 44100 << 16), esds(asc))


def trak(track_id, handler, timescale, entry, stbl_boxes, elst=None) -> bytes:
    tkhd = full(b"tkhd", 0, u32s(0, 0, track_id, 0, 0), bytes(52), u32s(1280 << 16, 720 << 16), flags=3)
    mdhd = full(b"mdhd", 0, u32s(0, 0, timescale, 0), bytes(4))
    hdlr = full(b"hdlr", 0, u32s(0), handler, bytes(12), b"\x00")
    stsd = full(b"stsd", 0, u32s(1), entry)
    edts = box(b"edts", full(b"elst", 0, u32s(len(elst)), *(struct.pack(">Iii", d, m, 1 << 16) for d, m in elst))) if elst else b""
    return box(b"trak", tkhd, edts, box(b"mdia", mdhd, hdlr, box(b"minf", box(b"stbl", stsd, *stbl_boxes))))


def sample_tables(count, delta, spc, first_chunk_offset, sizes, ctts=None, sync=None, chunk_gap=0) -> list[bytes]:
    chunks = (count + spc - 1) // spc
    offsets, pos = [], first_chunk_offset
    for c in range(chunks):
        offsets.append(pos)
        pos += sum(sizes[c * spc : (c + 1) * spc]) + chunk_gap
    tables = [
        full(b"stts", 0, u32s(1, count, delta)),
        full(b"stsc", 0, u32s(1, 1, spc, 1)),
        full(b"stsz", 0, u32s(0, count), struct.pack(f">{count}I", *sizes)),
        full(b"stco", 0, u32s(chunks, *offsets)),
    ]
    if ctts is not None:
        tables.append(full(b"ctts", 0, u32s(len(ctts)), b"".join(struct.pack(">Ii", 1, o) for o in ctts)))
    if sync is not None:
        tables.append(full(b"stss", 0, u32s(len(sync), *sync)))
    return tables


def movie(traks: list[bytes], duration_s: int, mdat_size: int) -> tuple[bytes, int]:
    """ftyp, moov, then an mdat header with a 64-bit size; the media bytes themselves do not exist."""
    ftyp = box(b"ftyp", b"isom", u32s(512), b"isomiso2avc1mp41")
    mvhd = full(b"mvhd", 0, u32s(0, 0, 1000, duration_s * 1000), bytes(80))
    moov = box(b"moov", mvhd, *traks)
    head = ftyp + moov + struct.pack(">I4sQ", 1, b"mdat", 16 + mdat_size)
    return head, len(head) + mdat_size


def test_two_hour_index_is_compact():
    """A 2-hour 30 fps H.264 (B-frames: one ctts entry per frame) + 44.1 kHz AAC movie, 1 s chunks,
    keyframe every 2 s: the index costs about 8 bytes per video and 4 per audio sample."""
    fps, seconds = 30, 2 * 3600
    nv = fps * seconds
    na = seconds * 44100 // 1024
    data_start = 4096
    vsizes = [8000] * nv
    asizes = [300] * na
    # Chunks of one second each, video and audio interleaved in the (virtual) mdat.
    video = trak(
        1, b"vide", 15360, visual_entry(b"avc1", b"avcC", AVCC),
        sample_tables(nv, 512, fps, data_start, vsizes, ctts=[1024, 2560, 0] * (nv // 3),
                      sync=list(range(1, nv + 1, 2 * fps)), chunk_gap=43 * 300),
        elst=[(seconds * 1000, 1024)],
    )
    audio = trak(2, b"soun", 44100, audio_entry(ASC), sample_tables(na, 1024, 43, data_start + fps * 8000, asizes, chunk_gap=fps * 8000))
    head, size = movie([video, audio], seconds, 2_000_000_000)

    def read_at(offset: int, n: int) -> bytes:
        return head[offset : offset + n]

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        mp4 = MP4File(read_at, size)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert mp4.video.sample_count == nv == 216_000 and mp4.audio.sample_count == na == 310_078
    assert mp4.duration_ms == seconds * 1000
    index = mp4.index_bytes()
    # sizes 4 B/sample for both tracks, ctts 4 B/video sample, 4 B/chunk (stco), 4 B/sync sample.
    # Plus one stts and one stsc run per track (64 bytes): 3 040 424 bytes in all.
    assert index == 4 * (nv + na) + 4 * nv + 4 * (nv // fps + (na + 42) // 43) + 4 * (nv // 60) + 64
    assert index < 3_100_000
    assert retained < index + 200_000
    # The index answers seeks and iterates without the media data.
    position = mp4.seek(3_600_500)
    assert position.ms == 3_600_000
    first = next(mp4.samples(position))
    assert first.keyframe and first.dts_ms == 3_600_000 and first.size == 8000
    chunk = 3600 * fps // fps
    assert first.offset == data_start + chunk * (fps * 8000 + 43 * 300)


def test_empty_edit_and_co64_and_stz2():
    entry = visual_entry(b"avc1", b"avcC", AVCC)
    tables = [
        full(b"stts", 0, u32s(1, 4, 100)),
        full(b"stsc", 0, u32s(2, 1, 3, 1, 2, 1, 1)),
        box(b"stz2", u32s(0), b"\x00\x00\x00\x10", u32s(4), struct.pack(">4H", 10, 20, 30, 40)),
        full(b"co64", 0, u32s(2), struct.pack(">QQ", 1 << 33, (1 << 33) + 1000)),
        full(b"ctts", 1, u32s(2), struct.pack(">Ii", 1, 0), struct.pack(">Ii", 3, -100)),
        full(b"stss", 0, u32s(1, 1)),
    ]
    # 500 ms of nothing first (movie timescale 1000), then media from time 0.
    video = trak(1, b"vide", 1000, entry, tables, elst=[(500, -1), (400, 0)])
    head, size = movie([video], 1, (1 << 33) + 2000)
    mp4 = MP4File(lambda o, n: head[o : o + n], size)
    samples = list(mp4.samples())
    assert [(s.dts_ms, s.cts_offset_ms, s.offset, s.size, s.keyframe) for s in samples] == [
        (500, 0, 1 << 33, 10, True),
        (600, -100, (1 << 33) + 10, 20, False),
        (700, -100, (1 << 33) + 30, 30, False),
        (800, -100, (1 << 33) + 1000, 40, False),
    ]
    assert mp4.seek(750).ms == 500


def test_moov_after_mdat_and_unknown_boxes():
    video = trak(1, b"vide", 1000, visual_entry(b"avc1", b"avcC", AVCC), sample_tables(3, 40, 3, 16, [5, 6, 7]))
    mdat = box(b"mdat", bytes(18))
    free = box(b"free", bytes(3))
    data = box(b"ftyp", b"isom", u32s(0)) + mdat + free + box(b"moov", full(b"mvhd", 0, u32s(0, 0, 1000, 120), bytes(80)), video)
    mp4 = MP4File(lambda o, n: data[o : o + n], len(data))
    assert [(s.dts_ms, s.offset, s.size) for s in mp4.samples()] == [(0, 16, 5), (40, 21, 6), (80, 27, 7)]
    assert mp4.duration_ms == 120


def test_fragmented_defaults_from_trex_and_tfhd():
    entry = visual_entry(b"avc1", b"avcC", AVCC)
    video = trak(1, b"vide", 1000, entry, [full(b"stts", 0, u32s(0)), full(b"stsc", 0, u32s(0)), full(b"stsz", 0, u32s(0, 0)), full(b"stco", 0, u32s(0))])
    mvex = box(b"mvex", full(b"trex", 0, u32s(1, 1, 40, 100, 0x10000)))
    moov = box(b"moov", full(b"mvhd", 0, u32s(0, 0, 1000, 0), bytes(80)), video, mvex)
    out = box(b"ftyp", b"isom", u32s(0)) + moov

    def fragment(base_dts: int, first_key: bool, sizes=None) -> bytes:
        nonlocal out
        tfhd = full(b"tfhd", 0, u32s(1), flags=0x20000)
        tfdt = full(b"tfdt", 1, struct.pack(">Q", base_dts))
        trun_flags = 0x1 | (0x4 if first_key else 0) | (0x200 if sizes else 0)
        fields = b"".join(u32s(s) for s in sizes) if sizes else b""
        count = len(sizes) if sizes else 3

        def build(data_offset: int) -> bytes:
            trun = full(b"trun", 0, u32s(count), struct.pack(">i", data_offset), u32s(0x2000000) if first_key else b"", fields, flags=trun_flags)
            return box(b"moof", full(b"mfhd", 0, u32s(1)), box(b"traf", tfhd, tfdt, trun))

        moof = build(0)
        moof = build(len(moof) + 8)
        total = sum(sizes) if sizes else 300
        data = moof + box(b"mdat", bytes(total))
        out += data
        return data

    start1 = len(out)
    fragment(0, True)
    start2 = len(out)
    fragment(120, True, sizes=[7, 8])
    mp4 = MP4File(lambda o, n: out[o : o + n], len(out))
    # A decode time beyond the signed 64-bit index is a format error, not an OverflowError.
    huge = out.replace(struct.pack(">Q", 120), struct.pack(">Q", (1 << 64) - 1))
    with pytest.raises(MP4Error, match="out of range"):
        MP4File(lambda o, n: huge[o : o + n], len(huge))
    samples = list(mp4.samples())
    moof1_len = start2 - start1 - 308
    assert [(s.dts_ms, s.size, s.keyframe) for s in samples] == [
        (0, 100, True), (40, 100, False), (80, 100, False), (120, 7, True), (160, 8, False),
    ]
    assert samples[0].offset == start1 + moof1_len + 8
    assert samples[3].offset == start2 + (len(out) - start2 - 15 - 8) + 8
    assert mp4.duration_ms == 200
    assert mp4.seek(100).ms == 0 and mp4.seek(130).ms == 120


def test_no_moov_and_no_supported_track():
    data = box(b"ftyp", b"isom", u32s(0)) + box(b"mdat", bytes(10))
    with pytest.raises(MP4Error, match="no moov"):
        MP4File(lambda o, n: data[o : o + n], len(data))
    entry = box(b"mp4v", bytes(78))
    video = trak(1, b"vide", 1000, entry, sample_tables(1, 40, 1, 0, [5]))
    head, size = movie([video], 1, 5)
    with pytest.raises(MP4Error, match="no supported"):
        MP4File(lambda o, n: head[o : o + n], size)


def test_box_size_errors():
    with pytest.raises(MP4Error):
        list(iter_boxes(struct.pack(">I4s", 4, b"moov")))
    with pytest.raises(MP4Error):
        list(iter_boxes(struct.pack(">I4s", 100, b"moov")))
    data = struct.pack(">I4s", 100, b"moov")
    with pytest.raises(MP4Error):
        MP4File(lambda o, n: data[o : o + n], len(data))


# --------------------------------------------------------------------------- malformed input


def _exercise(data: bytes) -> None:
    mp4 = MP4File(lambda o, n: data[o : o + n], len(data))
    for i, s in enumerate(mp4.samples()):
        mp4.read_sample(s)
        if i > 2000:
            break
    for ms in (0, 1000, 10**9):
        next(mp4.samples(mp4.seek(ms)), None)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_remote_errors(data):
    try:
        _exercise(data)
    except RemoteProtocolError:
        pass


@pytest.fixture(scope="module")
def small_movies(media_files):
    return {name: media_files[name].read_bytes() for name in ("faststart", "fragmented")}


@SETTINGS
@given(st.sampled_from(("faststart", "fragmented")), st.lists(st.tuples(st.integers(0, 12000), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_index_raises_only_remote_errors(small_movies, name, edits):
    data = bytearray(small_movies[name])
    for pos, value in edits:
        # The index sits in the first 12 kB of both files (moov first; moof of the first fragment).
        data[pos % len(data)] = value
    try:
        _exercise(bytes(data))
    except RemoteProtocolError:
        pass
