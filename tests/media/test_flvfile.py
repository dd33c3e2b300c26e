"""Tests for rtmpserver.media.flvfile: FFmpeg-made FLV files (checked with ffprobe) and hand-built ones."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.codec import amf0
from rtmpserver.errors import FLVError, RemoteProtocolError
from rtmpserver.media.flv import (
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    FLVTagTooLarge,
    FLVWriter,
    read_file,
    video_info,
)
from rtmpserver.media.flvfile import FLVFile
from tests.media.conftest import ffprobe_packets, reader

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def decode(payload: bytes) -> list:
    return amf0.Decoder(payload).read_all()


def open_flv(path, **kw) -> FLVFile:
    read_at, size = reader(path)
    return FLVFile(read_at, size, **kw)


def media_tags(flv: FLVFile, offset=None):
    """Audio and video tags without the sequence headers and FFmpeg's closing AVC end of sequence."""
    return [
        t
        for t in flv.tags(offset)
        if t.type in (TAG_AUDIO, TAG_VIDEO)
        and t not in (flv.video_header, flv.audio_header)
        and not (t.type == TAG_VIDEO and video_info(t.payload).is_sequence_end)
    ]


@pytest.mark.parametrize("name", ("flv", "flv_indexed"))
def test_tags_match_ffprobe(media_files, name):
    flv = open_flv(media_files[name], decode_script=decode)
    assert [tuple(t) for t in flv.tags()] == [tuple(t) for t in read_file(media_files[name])]
    probe = ffprobe_packets(media_files[name])
    tags = media_tags(flv)
    for index, tag_type in ((0, TAG_VIDEO), (1, TAG_AUDIO)):
        assert probe[index]["time_base"] == (1, 1000)
        mine = [t for t in tags if t.type == tag_type]
        theirs = probe[index]["packets"]
        assert len(mine) == len(theirs) > 100
        assert [t.timestamp for t in mine] == [p["dts"] for p in theirs]
        header = 5 if tag_type == TAG_VIDEO else 2
        assert [len(t.payload) - header for t in mine] == [p["size"] for p in theirs]
        assert [t.offset for t in mine] == [p["pos"] for p in theirs]  # ffprobe: the tag header
    assert flv.metadata["width"] == 320 and flv.metadata_payload is not None
    assert flv.video_header.payload[:2] == b"\x17\x00" and flv.audio_header.payload[:2] == b"\xaf\x00"
    assert 3900 <= flv.duration_ms <= 4100


@pytest.mark.parametrize("name", ("flv", "flv_indexed"))
@pytest.mark.parametrize("with_decoder", (True, False))
def test_seek_lands_on_keyframe_at_or_before(media_files, name, with_decoder):
    flv = open_flv(media_files[name], decode_script=decode if with_decoder else None)
    assert flv.indexed == (with_decoder and name == "flv_indexed")
    probe = ffprobe_packets(media_files[name])
    keys = [p["dts"] for p in probe[0]["packets"] if p["key"]]
    assert len(keys) >= 4
    for target in list(range(0, 4500, 125)) + [250, 0]:  # backwards too: the scan is remembered
        expected = max([k for k in keys if k <= target], default=keys[0])
        offset, landed = flv.seek(target)
        assert landed == expected, target
        tag = flv.tag_at(offset)
        assert tag.type == TAG_VIDEO and tag.timestamp == expected and tag.payload[0] >> 4 == 1


def test_scan_reads_headers_only(media_files):
    read_at, size = reader(media_files["flv"])
    flv = FLVFile(read_at, size)
    before = read_at.stats["bytes"]
    flv.seek(3500)
    used = read_at.stats["bytes"] - before
    # The scan stops at the first tag after the target; it read 13 bytes of each tag up to there.
    scanned = [t for t in flv.tags() if t.timestamp <= 3500]
    assert 0 < used <= 13 * (len(scanned) + 2)
    assert flv.index_bytes() == 16 * 4  # four keyframes


def test_duration_from_last_tag_without_metadata(media_files):
    flv = open_flv(media_files["flv"])
    assert flv.metadata == {} and flv.metadata_payload is not None
    last = max(t.timestamp for t in flv.tags())
    assert flv.duration_ms == last


def written(tags, meta=None, start=0):
    w = FLVWriter()
    out = [w.start()]
    offsets = []
    if meta is not None:
        out.append(w.write(TAG_SCRIPT, 0, amf0.encode("onMetaData", meta)))
    for tag_type, ts, payload in tags:
        offsets.append(w.offset)
        out.append(w.write(tag_type, ts + start, payload))
    return b"".join(out), offsets


def synthetic(seconds=6, start=0, meta=None):
    tags = [(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff"), (TAG_AUDIO, 0, b"\xaf\x00\x12\x10")]
    for ms in range(0, seconds * 1000, 40):
        key = ms % 2000 == 0
        tags.append((TAG_VIDEO, ms, bytes((0x17 if key else 0x27, 1, 0, 0, 0)) + bytes(20)))
        tags.append((TAG_AUDIO, ms + 5, b"\xaf\x01" + bytes(10)))
    return written(tags, meta, start)


def test_recorder_style_index_and_stale_index():
    data, offsets = synthetic()
    # Keyframe tags are the video ones at 0, 2000, 4000 ms: offsets of tags 2, 2 + 100, 2 + 200.
    key_offsets = [offsets[2 + 2 * 50 * i] for i in range(3)]
    meta = {"duration": 6.0, "keyframes": {"times": [0.0, 2.0, 4.0], "filepositions": [float(p) for p in key_offsets]}}
    # The metadata tag shifts every offset; build once to learn its size, then with the right offsets.
    first, _ = synthetic(meta=meta)
    shift = len(first) - len(data)
    meta["keyframes"]["filepositions"] = [float(p + shift) for p in key_offsets]
    good, _ = synthetic(meta=meta)
    flv = FLVFile(lambda o, n: good[o : o + n], len(good), decode_script=decode)
    assert flv.indexed and flv.duration_ms == 6000
    assert flv.seek(3999) == (key_offsets[1] + shift, 2000)
    # Times that do not fit (or go backwards) disable the index.
    for times in ([0.0, 2.0, 1e300], [0.0, 4.0, 2.0], [-1.0, 2.0, 4.0]):
        # Same encoded size (AMF0 numbers are 8 bytes), so the positions stay right.
        bad, _ = synthetic(meta={"duration": 6.0, "keyframes": {"times": times, "filepositions": meta["keyframes"]["filepositions"]}})
        assert len(bad) == len(good)
        flv = FLVFile(lambda o, n, bad=bad: bad[o : o + n], len(bad), decode_script=decode)
        assert not flv.indexed and flv.seek(3999) == (key_offsets[1] + shift, 2000)
    # An index that points elsewhere (file edited afterwards) is ignored: seeking scans instead.
    meta["keyframes"]["filepositions"] = [float(p + shift + 7) for p in key_offsets]
    stale, _ = synthetic(meta=meta)
    flv = FLVFile(lambda o, n: stale[o : o + n], len(stale), decode_script=decode)
    assert not flv.indexed
    assert flv.seek(3999) == (key_offsets[1] + shift, 2000)


def test_start_offset_and_relative_times():
    data, offsets = synthetic(start=10_000)
    flv = FLVFile(lambda o, n: data[o : o + n], len(data))
    assert flv.start_ms == 10_000
    assert flv.seek(4100) == (offsets[2 + 200], 4000)
    assert flv.duration_ms == 5960 + 5


def test_audio_only_seek_points():
    tags = [(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")] + [(TAG_AUDIO, ms, b"\xaf\x01" + bytes(4)) for ms in range(0, 5000, 23)]
    data, offsets = written(tags)
    w = FLVWriter(has_audio=True, has_video=False)
    data = w.start() + data[13:]
    flv = FLVFile(lambda o, n: data[o : o + n], len(data))
    offset, landed = flv.seek(3000)
    assert 2000 <= landed <= 3000 and flv.tag_at(offset).timestamp == landed


def test_truncated_file_ends_quietly_and_bad_header_raises():
    data, offsets = synthetic(seconds=1)
    cut = data[: offsets[-1] + 5]
    flv = FLVFile(lambda o, n: cut[o : o + n], len(cut))
    assert len(list(flv.tags())) == len(offsets) - 1
    with pytest.raises(FLVError):
        FLVFile(lambda o, n: b"FLX"[o : o + n], 3)
    bad = bytearray(data)
    bad[offsets[5]] |= 0x40  # reserved bits of the tag type
    with pytest.raises(FLVError):
        list(FLVFile(lambda o, n: bytes(bad[o : o + n]), len(bad), head_tags=2).tags())
    with pytest.raises(FLVTagTooLarge):
        FLVFile(lambda o, n: data[o : o + n], len(data), max_tag_size=4)


@SETTINGS
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_raise_only_remote_errors(data, with_decoder):
    data = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + data
    try:
        flv = FLVFile(lambda o, n: data[o : o + n], len(data), decode_script=decode if with_decoder else None)
        list(flv.tags())
        flv.seek(1000)
    except RemoteProtocolError:
        pass


@pytest.fixture(scope="module")
def indexed_bytes(media_files):
    return media_files["flv_indexed"].read_bytes()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_head_raises_only_remote_errors(indexed_bytes, edits):
    data = bytearray(indexed_bytes)
    for pos, value in edits:
        data[pos] = value
    try:
        flv = FLVFile(lambda o, n: bytes(data[o : o + n]), len(data), decode_script=decode)
        for ms in (0, 2500):
            offset, _ = flv.seek(ms)
            for _ in flv.tags(offset):
                pass
    except RemoteProtocolError:
        pass
