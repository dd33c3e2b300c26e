"""The Recorder: file layout (metadata, index, rebased timestamps), splitting, mode filters,
write failures that leave the live stream alone, truncated files.

Media comes from tests/data/media-testsrc-320x240-aac.flv (FFmpeg: H.264 320x240 30 fps with a
keyframe every 0.5 s, AAC 44.1 kHz stereo, one second), replayed through a real hub LiveStream
as many times as a test needs; recordings are read back with our FLVReader and AMF0 decoder.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from rtmpserver.codec import amf0
from rtmpserver.codec.amftypes import ECMAArray
from rtmpserver.handlers import record
from rtmpserver.handlers.record import (
    FLVRecording,
    Recorder,
    RecordingDone,
    metadata_reserve,
)
from rtmpserver.media.flv import (
    FLVReader,
    is_video_keyframe,
    is_video_sequence_header,
)
from tests.handlers.record.helpers import (
    AAC,
    ASEQ,
    AUDIO_PER_LOOP,
    FRAMES,
    INTER,
    KEY,
    KEYS_PER_LOOP,
    LOOP_MS,
    VIDEO_PER_LOOP,
    VSEQ,
    Collect,
    check_file_start,
    live_stream,
    media,
    metadata_of,
    record_stream,
    send_headers,
    send_loops,
    settings_for,
    tags_of,
)

# --- the file --------------------------------------------------------------------------------


def test_recording_layout_metadata_and_index(tmp_path):
    rec, done = record_stream(tmp_path, loops=4, start=123456)
    assert len(rec.paths) == 1
    path = rec.paths[0]
    tags = tags_of(path)
    check_file_start(tags)
    meta = metadata_of(tags)
    size = os.path.getsize(path)
    assert meta["filesize"] == size
    assert (meta["width"], meta["height"]) == (320, 240)
    assert meta["videocodecid"] == 7 and meta["audiocodecid"] == 10
    assert meta["audiosamplerate"] == 44100 and meta["stereo"] is True and meta["audiosamplesize"] == 16
    assert 29 <= meta["framerate"] <= 31
    last = max(t.timestamp for t in tags)
    assert meta["lasttimestamp"] == last / 1000
    assert last / 1000 < meta["duration"] <= last / 1000 + 0.05
    assert meta["hasVideo"] is True and meta["hasAudio"] is True and meta["hasKeyframes"] is True
    assert meta["videodatarate"] > 0 and meta["audiodatarate"] > 0
    assert "padding" in meta
    # Every frame made it, once, rebased to the first keyframe (the publisher started at 123456).
    assert len(media(tags, 9)) == 4 * VIDEO_PER_LOOP
    assert len(media(tags, 8)) == 4 * AUDIO_PER_LOOP
    expected = sorted(k * LOOP_MS + t.timestamp for k in range(4) for t in FRAMES)
    assert sorted(t.timestamp for t in media(tags)) == expected
    # The index: every video keyframe, with the offset of its tag and its time.
    keyframes = [t for t in tags if t.type == 9 and is_video_keyframe(t.payload)]
    index = meta["keyframes"]
    assert index["filepositions"] == [t.offset for t in keyframes]
    assert index["times"] == [t.timestamp / 1000 for t in keyframes]
    assert len(keyframes) == 4 * KEYS_PER_LOOP
    assert meta["lastkeyframelocation"] == keyframes[-1].offset
    assert meta["lastkeyframetimestamp"] == keyframes[-1].timestamp / 1000
    # FLV header flags: audio and video.
    assert Path(path).read_bytes()[4] == 5
    assert done == [RecordingDone("live", "cam", path, size, meta["duration"], "stopped")]
    assert rec.closed


def test_metadata_tag_has_the_same_size_before_and_after_finishing(tmp_path):
    stream = live_stream()
    rec = Recorder(settings_for(tmp_path, max_index=100), "live", "cam", Clock())
    stream.add_sink(rec)
    send_headers(stream)
    send_loops(stream, 2)
    stream.video(2000, KEY)  # a keyframe: everything before it is on disk
    path = rec.path
    before = FLVReader()
    early = before.feed(Path(path).read_bytes())
    placeholder = metadata_of(early)
    assert placeholder["duration"] == 0 and placeholder["filesize"] == 0 and "keyframes" not in placeholder
    assert (placeholder["width"], placeholder["height"]) == (320, 240)
    stream.stop()
    after = tags_of(path)
    assert [(t.type, t.offset, t.timestamp) for t in after[: len(early)]] == [(t.type, t.offset, t.timestamp) for t in early]
    assert len(after[0].payload) == len(early[0].payload) == metadata_reserve(100)



def test_publisher_metadata_is_only_a_fallback(tmp_path):
    # Sequence headers win over what the publisher claims; without them the claims are used.
    lying = amf0.encode("onMetaData", ECMAArray(width=999.0, height=111.0, framerate=12.0, audiosamplerate=8000.0))
    stream = live_stream()
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    send_headers(stream, meta=lying)
    send_loops(stream, 1)
    stream.stop()
    meta = metadata_of(tags_of(rec.paths[0]))
    assert (meta["width"], meta["height"], meta["audiosamplerate"]) == (320, 240, 44100)
    assert meta["framerate"] != 12.0

    # Enhanced RTMP HEVC: no SPS parser for it here, so width/height come from the publisher.
    stream = live_stream(name="hevc")
    rec = Recorder(settings_for(tmp_path), "live", "hevc", Clock())
    stream.add_sink(rec)
    stream.set_metadata(0, amf0.encode("onMetaData", ECMAArray(width=1920.0, height=1080.0, framerate=50.0)))
    stream.video(0, b"\x90hvc1" + b"\x01" * 10)
    stream.video(0, b"\x93hvc1" + b"\x02" * 10)
    stream.video(40, b"\xa3hvc1" + b"\x03" * 10)
    stream.video(80, b"\xa3hvc1" + b"\x03" * 10)
    stream.stop()
    meta = metadata_of(tags_of(rec.paths[0]))
    assert (meta["width"], meta["height"]) == (1920, 1080)
    assert meta["videocodecid"] == int.from_bytes(b"hvc1", "big")
    assert meta["framerate"] == 25  # measured from the frames once there are two


def test_late_start_begins_with_the_cached_gop(tmp_path):
    stream = live_stream()
    send_headers(stream)
    send_loops(stream, 1)
    # Mid-GOP: the recorder starts with metadata, headers, then the cached GOP from its keyframe.
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    send_loops(stream, 1, first=1)
    stream.stop()
    tags = tags_of(rec.paths[0])
    check_file_start(tags)
    second_key = [t.timestamp for t in FRAMES if t.type == 9 and is_video_keyframe(t.payload)][1]
    assert max(t.timestamp for t in tags) == LOOP_MS + FRAMES[-1].timestamp - second_key


def test_timestamps_unwrap_across_2_to_the_32(tmp_path):
    rec, _ = record_stream(tmp_path, loops=3, start=0xFFFFFFFF - 1500)
    tags = tags_of(rec.paths[0])
    stamps = sorted(t.timestamp for t in media(tags))
    assert stamps[0] == 0 and stamps[-1] == 2 * LOOP_MS + FRAMES[-1].timestamp


def test_audio_from_before_the_keyframe_is_not_negative(tmp_path):
    stream = live_stream()
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    send_headers(stream)
    stream.video(1000, KEY)
    stream.audio(990, AAC)
    stream.stop()
    assert [t.timestamp for t in media(tags_of(rec.paths[0]))] == [0, 0]


def test_new_sequence_header_mid_file_is_recorded(tmp_path):
    stream = live_stream()
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    send_headers(stream)
    send_loops(stream, 1)
    stream.video(1000, VSEQ)
    send_loops(stream, 1, first=1)
    stream.stop()
    tags = tags_of(rec.paths[0])
    headers = [t for t in tags if t.type == 9 and is_video_sequence_header(t.payload)]
    assert len(headers) == 2 and headers[1].timestamp == FRAMES[-1].timestamp


# --- splitting -------------------------------------------------------------------------------


def check_split(paths, loops):
    total_video = total_audio = 0
    for p in paths:
        tags = tags_of(p)
        check_file_start(tags)
        meta = metadata_of(tags)
        assert meta["filesize"] == os.path.getsize(p)
        keyframes = [t for t in tags if t.type == 9 and is_video_keyframe(t.payload)]
        assert meta["keyframes"]["filepositions"] == [t.offset for t in keyframes]
        total_video += len(media(tags, 9))
        total_audio += len(media(tags, 8))
    assert total_video == loops * VIDEO_PER_LOOP and total_audio == loops * AUDIO_PER_LOOP


def test_split_by_duration_at_keyframes(tmp_path):
    rec, done = record_stream(tmp_path, loops=6, max_duration=1.2)
    # Keyframes every 500 ms: the first at or past 1.2 s is at 1.5 s.
    assert len(rec.paths) == 4
    check_split(rec.paths, 6)
    for p in rec.paths[:-1]:
        video = media(tags_of(p), 9)
        assert 1400 <= max(t.timestamp for t in video) < 1500
    assert [d.reason for d in done] == ["split", "split", "split", "stopped"]


def test_split_by_frames(tmp_path):
    rec, _ = record_stream(tmp_path, loops=4, max_frames=15)
    # 15 or 16 video frames per half-second GOP: the bound passes within each GOP.
    gop = sum(1 for t in FRAMES if t.type == 9) // 2
    assert len(rec.paths) >= 4 * VIDEO_PER_LOOP // (gop + 1)
    check_split(rec.paths, 4)
    for p in rec.paths[:-1]:
        assert 15 <= len(media(tags_of(p), 9)) <= 2 * gop


def test_split_by_size(tmp_path):
    reserve = metadata_reserve(10000)
    rec, _ = record_stream(tmp_path, loops=4, max_size=reserve + 8000)
    assert len(rec.paths) >= 2
    check_split(rec.paths, 4)
    for p in rec.paths[:-1]:
        assert os.path.getsize(p) >= reserve + 8000


def test_audio_only_stream_splits_on_any_frame(tmp_path):
    stream = live_stream()
    done = []
    rec = Recorder(settings_for(tmp_path, max_frames=10), "live", "cam", Clock(), on_done=done.append)
    stream.add_sink(rec)
    stream.audio(0, ASEQ)
    send_loops(stream, 1, video=False)
    stream.stop()
    assert len(rec.paths) == -(-AUDIO_PER_LOOP // 10)
    counts = []
    for p in rec.paths:
        tags = tags_of(p)
        check_file_start(tags, video=False)
        assert Path(p).read_bytes()[4] == 4  # audio only
        meta = metadata_of(tags)
        assert meta["hasVideo"] is False and "width" not in meta
        counts.append(len(media(tags, 8)))
    assert counts[:-1] == [10] * (len(counts) - 1) and sum(counts) == AUDIO_PER_LOOP


def test_audio_first_then_video_starts_a_file_with_video(tmp_path):
    stream = live_stream()
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    stream.audio(0, ASEQ)
    audio = [t for t in FRAMES if t.type == 8]
    for t in audio[:5]:
        stream.audio(t.timestamp, t.payload)
    stream.video(120, VSEQ)
    stream.video(120, INTER)
    stream.video(150, KEY)
    stream.audio(160, audio[5].payload)
    stream.stop()
    assert len(rec.paths) == 2
    first, second = (tags_of(p) for p in rec.paths)
    assert {t.type for t in first[1:]} == {8}
    check_file_start(second)



# --- failures --------------------------------------------------------------------------------


def test_unwritable_path_stops_recording_but_not_the_stream(tmp_path):
    (tmp_path / "rec").write_text("a file where the directory should be")
    stream = live_stream()
    player = Collect()
    stream.add_sink(player)
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    with capturedLogs() as logs:
        send_headers(stream)
        send_loops(stream, 2)
    errors = [e for e in logs if e.get("log_level").name == "error"]
    assert len(errors) == 1 and "recording stopped" in errors[0]["log_format"]
    assert str(tmp_path / "rec") in str(errors[0]["path"])
    assert rec.failed and rec.paths == []
    assert player.frames == 3 + 2 * (VIDEO_PER_LOOP + AUDIO_PER_LOOP)
    stream.stop()
    assert rec not in stream.sinks


def test_disk_full_mid_recording(tmp_path, monkeypatch):
    stream = live_stream()
    player = Collect()
    stream.add_sink(player)
    done = []
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock(), on_done=done.append)
    stream.add_sink(rec)
    send_headers(stream)
    send_loops(stream, 1)
    real_write = record._File.write
    calls = []

    def full(self, data):
        calls.append(len(data))
        real_write(self, data[: len(data) // 2])  # part of it lands, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record._File, "write", full)
    with capturedLogs() as logs:
        send_loops(stream, 3, first=1)
    errors = [e for e in logs if e.get("log_level").name == "error"]
    assert len(errors) == 1 and len(calls) == 1
    assert errors[0]["error"] == os.strerror(errno.ENOSPC)
    assert rec.failed and [d.reason for d in done] == ["error"]
    assert player.frames == 3 + 4 * (VIDEO_PER_LOOP + AUDIO_PER_LOOP)
    stream.stop()
    # What reached the disk parses up to the last complete tag.
    reader = FLVReader()
    tags = reader.feed(Path(rec.paths[0]).read_bytes())
    check_file_start(tags)
    assert len(media(tags, 9)) >= VIDEO_PER_LOOP // 2  # the first GOP was flushed at the second keyframe


def test_a_bug_in_the_recorder_never_reaches_the_publisher(tmp_path, monkeypatch):
    stream = live_stream()
    player = Collect()
    stream.add_sink(player)
    rec = Recorder(settings_for(tmp_path), "live", "cam", Clock())
    stream.add_sink(rec)
    monkeypatch.setattr(FLVRecording, "add", lambda *a, **k: 1 / 0)
    with capturedLogs() as logs:
        send_headers(stream)
        send_loops(stream, 1)
    assert rec.failed and player.frames == 3 + VIDEO_PER_LOOP + AUDIO_PER_LOOP
    assert sum(1 for e in logs if "log_failure" in e) == 1
    stream.stop()


# --- crashes and truncation ------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_and_unfinished(tmp_path_factory):
    """A finished recording, and one whose server 'died' (never finished) after a keyframe."""
    tmp = tmp_path_factory.mktemp("rec")
    rec, _ = record_stream(tmp / "a", loops=2)
    stream = live_stream()
    crashed = Recorder(settings_for(tmp / "b"), "live", "cam", Clock())
    stream.add_sink(crashed)
    send_headers(stream)
    send_loops(stream, 2)
    stream.video(2000, KEY)  # a keyframe flushes everything before it
    return Path(rec.paths[0]).read_bytes(), Path(crashed.path).read_bytes()


def test_unfinished_file_plays_with_placeholder_metadata(finished_and_unfinished):
    _, unfinished = finished_and_unfinished
    reader = FLVReader()
    tags = reader.feed(unfinished)
    reader.close()  # ends exactly after a complete tag
    check_file_start(tags)
    meta = metadata_of(tags)
    assert meta["duration"] == 0 and (meta["width"], meta["height"]) == (320, 240)
    assert len(media(tags, 9)) == 2 * VIDEO_PER_LOOP + 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([0, 1]), cut=st.floats(0, 1))
def test_truncated_file_parses_up_to_the_last_complete_tag(finished_and_unfinished, which, cut):
    data = finished_and_unfinished[which]
    full = FLVReader().feed(data)
    n = int(cut * len(data))
    reader = FLVReader()
    tags = reader.feed(data[:n])
    complete = [t for t in full if t.offset + 11 + len(t.payload) + 4 <= n]
    assert tags == complete
