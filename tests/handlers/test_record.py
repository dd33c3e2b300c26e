"""The record handler: settings, file layout (metadata, index, rebased timestamps), splitting,
mode filters, safe names, write failures that leave the live stream alone, truncated files.

Media comes from tests/data/media-testsrc-320x240-aac.flv (FFmpeg: H.264 320x240 30 fps with a
keyframe every 0.5 s, AAC 44.1 kHz stereo, one second), replayed through a real hub LiveStream
as many times as a test needs; recordings are read back with our FLVReader and AMF0 decoder.
"""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from rtmpserver import config as cfg
from rtmpserver.codec import amf0
from rtmpserver.codec.amftypes import ECMAArray
from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers import record
from rtmpserver.handlers.record import (
    METADATA_OFFSET,
    FLVRecording,
    Recorder,
    RecordHandler,
    RecordingDone,
    RecordSettings,
    metadata_reserve,
    render_path,
    sanitize,
)
from rtmpserver.hub import Hub
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory, IMediaSink
from rtmpserver.media.flv import FLVReader, is_video_keyframe, is_video_sequence_header, is_audio_sequence_header, read_file
from rtmpserver.requests import HandlerContext, PublishRequest

DATA = Path(__file__).resolve().parents[1] / "data" / "media-testsrc-320x240-aac.flv"
MEDIA = read_file(DATA)
META = MEDIA[0].payload  # FFmpeg's onMetaData: width 320, height 240, framerate 30, stereo...
VSEQ = MEDIA[1].payload
ASEQ = MEDIA[2].payload
# One second of media that loops seamlessly: 30 video frames 0..967 ms, the audio frames before
# 1000 ms; the file's closing AVC end-of-sequence message is left out.
FRAMES = [t for t in MEDIA[3:] if (t.type == 9 and t.payload[1] == 1) or (t.type == 8 and t.timestamp < 1000)]
LOOP_MS = 1000
VIDEO_PER_LOOP = sum(1 for t in FRAMES if t.type == 9)
AUDIO_PER_LOOP = sum(1 for t in FRAMES if t.type == 8)
KEYS_PER_LOOP = sum(1 for t in FRAMES if t.type == 9 and is_video_keyframe(t.payload))
KEY = FRAMES[0].payload
INTER = next(t.payload for t in FRAMES if t.type == 9 and not is_video_keyframe(t.payload))
AAC = next(t.payload for t in FRAMES if t.type == 8)
assert MEDIA[0].type == 18 and is_video_sequence_header(VSEQ) and is_audio_sequence_header(ASEQ)
assert FRAMES[0].type == 9 and is_video_keyframe(FRAMES[0].payload) and KEYS_PER_LOOP == 2


class Pub:
    last_media_time = 0.0
    closing = False

    def evict(self, reason):
        pass


class Collect:
    """An IMediaSink that counts what the live stream fanned out (a stand-in for a player)."""

    def __init__(self):
        self.frames = 0

    def stream_started(self, stream):
        pass

    def frame(self, frame):
        self.frames += 1

    def stream_stopped(self, stream):
        pass


def settings_for(tmp_path: Path, **kw) -> RecordSettings:
    kw.setdefault("path", str(tmp_path / "rec" / "{app}" / "{name}-{time}.flv"))
    return RecordSettings(**kw)


def live_stream(hub: Hub | None = None, name: str = "cam"):
    hub = hub or Hub()
    stream = hub.get_or_create("live", name)
    stream.start(Pub(), 0.0)
    return stream


def send_headers(stream, ts: int = 0, meta: bytes = META) -> None:
    stream.set_metadata(ts, meta)
    stream.video(ts, VSEQ)
    stream.audio(ts, ASEQ)


def send_loops(stream, loops: int, start: int = 0, audio: bool = True, video: bool = True, first: int = 0) -> None:
    for k in range(first, first + loops):
        for t in FRAMES:
            if (t.type == 8 and not audio) or (t.type == 9 and not video):
                continue
            ts = (start + k * LOOP_MS + t.timestamp) & 0xFFFFFFFF
            (stream.video if t.type == 9 else stream.audio)(ts, t.payload)


def record_stream(tmp_path, loops=3, clock=None, start=0, **kw):
    """Publish ``loops`` seconds with a recorder attached; returns (recorder, done list)."""
    done: list[RecordingDone] = []
    stream = live_stream()
    rec = Recorder(settings_for(tmp_path, **kw), "live", "cam", clock or Clock(), on_done=done.append)
    stream.add_sink(rec)
    send_headers(stream, start)
    send_loops(stream, loops, start)
    stream.stop()
    return rec, done


def tags_of(path) -> list:
    return read_file(path)


def metadata_of(tags) -> dict:
    name, meta = amf0.decode(tags[0].payload)
    assert name == "onMetaData" and isinstance(meta, ECMAArray)
    return meta


def media(tags, type_id=None):
    return [t for t in tags[1:] if (type_id is None or t.type == type_id) and not _is_header(t)]


def _is_header(t) -> bool:
    return (t.type == 9 and is_video_sequence_header(t.payload)) or (t.type == 8 and is_audio_sequence_header(t.payload))


def check_file_start(tags, video=True, audio=True) -> None:
    """Metadata, then the sequence headers, then a frame to start from, all at timestamp 0."""
    assert tags[0].type == 18 and tags[0].offset == METADATA_OFFSET and tags[0].timestamp == 0
    i = 1
    if video:
        assert tags[i].type == 9 and is_video_sequence_header(tags[i].payload) and tags[i].timestamp == 0
        i += 1
    if audio:
        assert tags[i].type == 8 and is_audio_sequence_header(tags[i].payload) and tags[i].timestamp == 0
        i += 1
    first = tags[i]
    assert first.timestamp == 0
    if video:
        assert first.type == 9 and is_video_keyframe(first.payload)
    else:
        assert first.type == 8


# --- settings --------------------------------------------------------------------------------


def context_for(text: str, hub=None, clock=None, path="<string>"):
    config = cfg.parse("[server]\nlisten = tcp:1935\n[app:live]\nhandlers = record\n" + text, path)
    app = config.apps["live"]
    return dict(app.handler_settings.get("record", {})), HandlerContext(app=app, server=config, hub=hub, clock=clock or Clock())


def test_factory_and_handler_provide_their_interfaces(tmp_path):
    verifyObject(IAppHandlerFactory, record.factory)
    assert record.factory.name == "record"
    settings, ctx = context_for(f"record.path = {tmp_path}/{{name}}.flv\n")
    handler = record.factory.build(settings, ctx)
    verifyObject(IAppHandler, handler)
    verifyObject(IMediaSink, Recorder(settings_for(tmp_path), "live", "cam", Clock()))


def test_settings_defaults_and_values(tmp_path):
    settings, ctx = context_for(
        f"record.path = {tmp_path}/{{app}}/{{name}}-{{time}}.flv\nrecord.mode = keyframes\n"
        "record.max_size = 1000000\nrecord.max_duration = 2.5\nrecord.max_frames = 90\nrecord.max_index = 50\n"
    )
    s = record.parse_settings(settings, ctx)
    assert s == RecordSettings(f"{tmp_path}/{{app}}/{{name}}-{{time}}.flv", "keyframes", 1000000, 2.5, 90, 50)
    s = record.parse_settings({"path": "/r/{name}.flv"}, ctx)
    assert (s.mode, s.max_size, s.max_duration, s.max_frames, s.max_index) == ("all", 0, 0.0, 0, 10000)
    # mode off needs no path
    assert record.parse_settings({"mode": "off"}, ctx).mode == "off"


def test_relative_path_is_resolved_against_the_config_file(tmp_path):
    settings, ctx = context_for("record.path = rec/{name}.flv\n", path=str(tmp_path / "server.ini"))
    assert record.parse_settings(settings, ctx).path == str(tmp_path / "rec" / "{name}.flv")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("mode", "sometimes", "expected one of all | audio | video | keyframes | off | manual, got 'sometimes'"),
        ("max_size", "10M", "expected an integer from 0 to"),
        ("max_size", "-1", "expected an integer from 0 to"),
        ("max_frames", "1.5", "expected an integer from 0 to"),
        ("max_duration", "abc", "expected a number of seconds >= 0, got 'abc'"),
        ("max_index", "40001", "expected an integer from 0 to 40000, got '40001'"),
        ("path", "/r/{stream}.flv", "placeholders {app}, {name} and {time}, got '/r/{stream}.flv'"),
        ("path", "/r/{name!r}.flv", "placeholders"),
        ("path", "/r/{name:>9}.flv", "placeholders"),
        ("path", "/r/{name.flv", "unbalanced braces"),
        ("path", "/r/{name}/", "it names a directory"),
        ("path", "/r/{name}/../../etc/x.flv", "stay inside /r"),
    ],
)
def test_bad_settings_name_file_section_and_key(key, value, expected):
    settings, ctx = context_for("")
    settings = {"path": "/r/{name}.flv", key: value}
    with pytest.raises(ConfigError) as e:
        record.parse_settings(settings, ctx)
    assert str(e.value).startswith(f"<string>: [app:live] record.{key}: ")
    assert expected in str(e.value)


def test_unknown_key_and_missing_path():
    settings, ctx = context_for("")
    with pytest.raises(ConfigError, match=r"^<string>: \[app:live\] record\.maxsize: unknown key"):
        record.parse_settings({"path": "/r/x.flv", "maxsize": "1"}, ctx)
    with pytest.raises(ConfigError, match=r"^<string>: \[app:live\] record\.path: expected a file path template"):
        record.parse_settings({"mode": "all"}, ctx)


def test_config_file_with_record_settings_builds(tmp_path):
    from rtmpserver.apps import build_chains

    config = cfg.parse(
        f"[server]\nlisten = tcp:1935\n[app:live]\nhandlers = record\nrecord.path = {tmp_path}/{{name}}.flv\nrecord.mode = bogus\n"
    )
    with pytest.raises(ConfigError, match=r"record\.mode: expected one of"):
        build_chains(config, Hub(), Clock(), factories={"record": record.factory, "live": __import__("rtmpserver.handlers.live", fromlist=["factory"]).factory})


# --- names -----------------------------------------------------------------------------------

_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cam1", "cam1"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/etc/passwd", "_etc_passwd"),
        ("..", "_"),
        ("...hidden", "hidden"),
        ("", "_"),
        ("a\x00b", "a_b"),
        ("a\\b", "a_b"),
        ("ca m?x=1", "ca_m_x_1"),
        ("kamera-ü", "kamera-_"),
    ],
)
def test_sanitize_examples(name, expected):
    assert sanitize(name) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_sanitized_names_are_one_safe_component(name):
    safe = sanitize(name)
    assert safe and set(safe) <= _SAFE and not safe.startswith(".") and len(safe) <= 128
    root = "/var/rec"
    path = render_path(root + "/{app}/{name}-{time}.flv", name, name, 0)
    assert os.path.commonpath([root, path]) == root
    assert os.path.dirname(os.path.dirname(path)) == root  # exactly rec/<app>/<file>


def test_hostile_names_stay_in_the_record_directory(tmp_path):
    clock = Clock()
    for i, name in enumerate(["../../escape", "/abs/path", "a/b/c", "..", "x\x00y", "..\\..\\w"]):
        stream = live_stream(name=name)
        rec = Recorder(settings_for(tmp_path, path=str(tmp_path / "rec" / "{name}.flv")), "live", name, clock)
        stream.add_sink(rec)
        send_headers(stream)
        send_loops(stream, 1)
        stream.stop()
        assert rec.paths, name
        for p in rec.paths:
            assert Path(p).parent == tmp_path / "rec", p
    created = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert created == sorted(["_.flv", "_.._escape.flv", "_.._w.flv", "_abs_path.flv", "a_b_c.flv", "x_y.flv"])
    assert [p for p in tmp_path.iterdir()] == [tmp_path / "rec"]


def test_time_placeholder_and_counter_keep_names_unique(tmp_path):
    clock = Clock()
    clock.advance(1795300530)  # 2026-11-21 22:35:30 UTC
    paths = []
    for _ in range(3):
        rec, _ = record_stream(tmp_path, loops=1, clock=clock)
        paths += rec.paths
    base = tmp_path / "rec" / "live" / "cam-20261121-223530"
    assert paths == [f"{base}.flv", f"{base}-1.flv", f"{base}-2.flv"]


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


def test_reserve_fits_a_full_index_and_every_key():
    r = FLVRecording(has_video=True, has_audio=True, max_index=3)
    r.start(9, FRAMES[0].payload, video_header=VSEQ, audio_header=ASEQ)
    for i in range(1, 10):  # more keyframes than the index holds: the first 3 are indexed
        r.add(9, i * 500, KEY, seek_point=True)
        r.add(8, i * 500 + 10, AAC)
    tag = r.metadata_tag()
    assert len(tag) == 11 + metadata_reserve(3) + 4
    meta = amf0.decode(tag[11:-4])[1]
    assert len(meta["keyframes"]["times"]) == 3
    assert set(meta) <= {k for k, _ in record._METADATA_TEMPLATE} | {"keyframes", "padding"}


@pytest.mark.parametrize("room", [0, 1, 2, 3, 4, 257, 258, 259, 260, 261, 1000, 18 * 10000])
def test_filler_has_the_exact_size(room):
    encoded = amf0.encode(record._filler(room), references=False)
    assert len(encoded) == 5 + room
    assert all(x is None or len(x) <= 255 for x in record._filler(room))


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


# --- modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["audio", "video", "keyframes"])
def test_mode_filters(tmp_path, mode):
    rec, _ = record_stream(tmp_path, loops=2, mode=mode)
    tags = tags_of(rec.paths[0])
    flags = Path(rec.paths[0]).read_bytes()[4]
    meta = metadata_of(tags)
    if mode == "audio":
        check_file_start(tags, video=False)
        assert flags == 4 and {t.type for t in tags[1:]} == {8}
        assert len(media(tags, 8)) == 2 * AUDIO_PER_LOOP and meta["hasVideo"] is False
    else:
        check_file_start(tags, audio=False)
        assert flags == 1 and {t.type for t in tags[1:]} == {9}
        assert meta["hasAudio"] is False and "audiocodecid" not in meta
        video = media(tags, 9)
        if mode == "video":
            assert len(video) == 2 * VIDEO_PER_LOOP
        else:
            assert len(video) == 2 * KEYS_PER_LOOP and all(is_video_keyframe(t.payload) for t in video)
            assert meta["keyframes"]["filepositions"] == [t.offset for t in video]


def fake_session():
    return types.SimpleNamespace(id=1, peer="127.0.0.1:5000", host="127.0.0.1")


def publish_request(name="cam", mode="live"):
    return PublishRequest(app="live", name=name, mode=mode, args={"k": "v"}, session=fake_session())


def make_handler(tmp_path, mode="all", **kw):
    hub = Hub()
    ctx = HandlerContext(app=types.SimpleNamespace(name="live"), server=types.SimpleNamespace(path="<string>"), hub=hub, clock=Clock())
    return RecordHandler(settings_for(tmp_path, mode=mode, **kw), ctx), hub


def publish_through(handler, hub, request):
    """What the chain does: the hook proceeds, the server goes live, proceed's Deferred fires."""
    calls = []
    stream = hub.get_or_create("live", request.name)

    def proceed(req):
        calls.append(req)
        stream.start(Pub(), 0.0)
        return defer.succeed(stream)

    result = handler.publish(request, proceed)
    assert len(calls) == 1 and calls[0] is request
    return stream, result


@pytest.mark.parametrize("mode", ["all", "audio", "video", "keyframes"])
def test_publish_starts_a_recorder(tmp_path, mode):
    handler, hub = make_handler(tmp_path, mode)
    done = []
    handler.on_record_done.append(done.append)
    request = publish_request()
    stream, result = publish_through(handler, hub, request)
    assert result.result is stream
    rec = handler.recorders["cam"]
    assert rec in stream.sinks and rec.mode == mode
    send_headers(stream)
    send_loops(stream, 1)
    stream.stop()
    assert rec not in stream.sinks and "cam" not in handler.recorders
    assert [d.path for d in done] == rec.paths and done[0].session is request.session and done[0].args == {"k": "v"}
    assert hub.get("live", "cam") is None  # nothing keeps the stream alive


@pytest.mark.parametrize("client_mode", ["record", "append"])
def test_off_and_manual_do_not_record_even_if_the_client_asks(tmp_path, client_mode):
    for mode in ("off", "manual"):
        handler, hub = make_handler(tmp_path, mode)
        stream, _ = publish_through(handler, hub, publish_request(mode=client_mode))
        send_headers(stream)
        send_loops(stream, 1)
        stream.stop()
        assert handler.recorders == {}
    assert not (tmp_path / "rec").exists()


def test_manual_start_and_stop(tmp_path):
    handler, hub = make_handler(tmp_path, "manual")
    with pytest.raises(LookupError):
        handler.start("cam")
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    rec = handler.start("cam")
    assert handler.start(stream) is rec  # already recording: the same recorder
    assert rec.mode == "all"
    send_loops(stream, 1, first=1)
    path = handler.stop("cam")
    assert path == rec.paths[0] and rec not in stream.sinks
    assert handler.stop("cam") is None
    tags = tags_of(path)
    check_file_start(tags)  # started from the cached GOP
    send_loops(stream, 1, first=2)  # the stream goes on, unrecorded
    assert len(rec.paths) == 1
    stream.stop()


def test_manual_start_refused_when_off(tmp_path):
    handler, hub = make_handler(tmp_path, "off")
    stream, _ = publish_through(handler, hub, publish_request())
    with pytest.raises(ValueError):
        handler.start(stream)


def test_rejected_later_in_the_chain_records_nothing(tmp_path):
    handler, hub = make_handler(tmp_path)

    def proceed(req):
        return defer.fail(Rejected("NetStream.Publish.Denied", "no"))

    d = handler.publish(publish_request(), proceed)
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(Rejected)
    assert handler.recorders == {}


def test_a_new_publisher_gets_a_new_file(tmp_path):
    handler, hub = make_handler(tmp_path)
    for k in range(2):
        stream, _ = publish_through(handler, hub, publish_request())
        send_headers(stream)
        send_loops(stream, 1)
        stream.stop()
    assert len(list((tmp_path / "rec" / "live").iterdir())) == 2


def test_stop_all_finishes_files(tmp_path):
    handler, hub = make_handler(tmp_path)
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    rec = handler.recorders["cam"]
    handler.stop_all()
    assert metadata_of(tags_of(rec.paths[0]))["duration"] > 0.9
    stream.stop()


def test_failing_done_callback_is_logged_and_harmless(tmp_path):
    handler, hub = make_handler(tmp_path)
    seen = []

    def broken(done):
        raise RuntimeError("notify is down")

    handler.on_record_done += [broken, seen.append]
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    with capturedLogs() as logs:
        stream.stop()
    assert len(seen) == 1
    assert any("record done callback failed" in e.get("log_format", "") for e in logs)


def test_record_done_is_logged_with_fields(tmp_path):
    with capturedLogs() as logs:
        rec, done = record_stream(tmp_path, loops=1)
    events = [e for e in logs if e.get("log_format", "").startswith("record done")]
    assert len(events) == 1
    e = events[0]
    assert (e["app"], e["name"], e["path"], e["size"], e["reason"]) == ("live", "cam", rec.paths[0], done[0].size, "stopped")


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
