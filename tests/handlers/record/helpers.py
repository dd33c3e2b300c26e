"""What the record tests share: the test media, replayed through a hub LiveStream, and readers."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock

from rtmpserver.codec import amf0
from rtmpserver.codec.amftypes import ECMAArray
from rtmpserver.handlers.record import (
    METADATA_OFFSET,
    Recorder,
    RecordingDone,
    RecordSettings,
)
from rtmpserver.hub import Hub
from rtmpserver.media.flv import (
    is_audio_sequence_header,
    is_video_keyframe,
    is_video_sequence_header,
    read_file,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "media-testsrc-320x240-aac.flv"
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


