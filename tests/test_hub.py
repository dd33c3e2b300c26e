"""The live hub: caches for late joiners, their bounds, sink lifecycle, shared chunk bodies."""

from zope.interface import implementer
from zope.interface.verify import verifyObject

from rtmpserver.codec.chunk import CSID_VIDEO, continuation
from rtmpserver.hub import AUDIO, VIDEO, Frame, Hub
from rtmpserver.interfaces import IDetachableSink, IMediaSink

AVC_SEQ = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
AVC_KEY = b"\x17\x01\x00\x00\x00" + b"K" * 50
AVC_INTER = b"\x27\x01\x00\x00\x00" + b"i" * 20
AAC_SEQ = b"\xaf\x00\x12\x10"
AAC_RAW = b"\xaf\x01" + b"a" * 10
HEVC_SEQ = b"\x90hvc1" + b"\x01" * 10  # Enhanced RTMP: key frame, SequenceStart
HEVC_KEY = b"\x93hvc1" + b"\x02" * 10  # key frame, CodedFramesX
HEVC_INTER = b"\xa3hvc1" + b"\x03" * 10  # inter frame, CodedFramesX


@implementer(IMediaSink)
class RecordingSink:
    def __init__(self):
        self.events = []

    def stream_started(self, stream):
        self.events.append(("start", stream.publish_count))

    def frame(self, frame):
        self.events.append(("frame", frame.type_id, frame.timestamp, frame.payload))

    def stream_stopped(self, stream):
        self.events.append(("stop",))


class Pub:
    last_media_time = 0.0
    closing = False

    def evict(self, reason):
        pass


def publish(stream):
    stream.start(Pub(), 0.0)
    stream.set_metadata(0, b"META")
    stream.video(0, AVC_SEQ)
    stream.audio(0, AAC_SEQ)


def test_sink_interface():
    verifyObject(IMediaSink, RecordingSink())


def test_late_joiner_gets_metadata_headers_then_gop_from_latest_keyframe():
    hub = Hub()
    s = hub.get_or_create("live", "a")
    publish(s)
    s.video(0, AVC_KEY)
    s.video(33, AVC_INTER)
    s.video(66, AVC_KEY)  # new GOP starts here
    s.audio(70, AAC_RAW)
    s.video(100, AVC_INTER)
    frames = s.startup_frames()
    assert [f.payload for f in frames] == [b"META", AVC_SEQ, AAC_SEQ, AVC_KEY, AAC_RAW, AVC_INTER]
    assert frames[3].timestamp == 66 and frames[3].keyframe


def test_enhanced_rtmp_hevc_sequence_start_and_keyframes_are_recognised():
    hub = Hub()
    s = hub.get_or_create("live", "h")
    s.start(Pub(), 0.0)
    s.video(0, HEVC_SEQ)
    s.video(0, HEVC_KEY)
    s.video(33, HEVC_INTER)
    assert s.video_header.payload == HEVC_SEQ
    assert [f.payload for f in s.gop] == [HEVC_KEY, HEVC_INTER]


def test_gop_over_frame_bound_is_dropped_until_next_keyframe():
    hub = Hub()
    s = hub.get_or_create("live", "a", gop_max_frames=3)
    publish(s)
    s.video(0, AVC_KEY)
    for i in range(5):
        s.video(33 * (i + 1), AVC_INTER)
    assert s.gop == []  # a partial GOP is useless to a late joiner
    s.video(500, AVC_KEY)
    assert [f.timestamp for f in s.gop] == [500]


def test_gop_over_byte_bound_is_dropped():
    hub = Hub()
    s = hub.get_or_create("live", "a", gop_max_bytes=100)
    publish(s)
    s.video(0, AVC_KEY)
    s.video(33, AVC_INTER)
    s.video(66, AVC_INTER)
    assert s.gop == []


def test_gop_cache_off():
    hub = Hub()
    s = hub.get_or_create("live", "a", gop_cache=False)
    publish(s)
    s.video(0, AVC_KEY)
    assert [f.payload for f in s.startup_frames()] == [b"META", AVC_SEQ, AAC_SEQ]


def test_audio_only_stream_frames_are_all_start_points():
    hub = Hub()
    s = hub.get_or_create("live", "radio")
    s.start(Pub(), 0.0)
    sink = RecordingSink()
    s.add_sink(sink)
    s.audio(0, AAC_SEQ)
    s.audio(23, AAC_RAW)
    assert s.audio_header.payload == AAC_SEQ
    assert s.gop == []  # nothing to cache: any audio frame starts playback


def test_sinks_see_start_frames_stop_and_restart():
    hub = Hub()
    s = hub.get_or_create("live", "a")
    sink = RecordingSink()
    s.add_sink(sink)  # before any publisher: waits
    assert sink.events == []
    publish(s)
    s.video(0, AVC_KEY)
    s.stop()
    publish(s)
    kinds = [e[0] for e in sink.events]
    assert kinds == ["start", "frame", "frame", "frame", "frame", "stop", "start", "frame", "frame", "frame"]
    assert sink.events[6] == ("start", 2)


def test_stream_is_discarded_when_last_user_leaves():
    hub = Hub()
    s = hub.get_or_create("live", "a")
    sink = RecordingSink()
    s.add_sink(sink)
    publish(s)
    s.stop()
    assert hub.get("live", "a") is s  # a player still waits on it
    s.remove_sink(sink)
    assert hub.get("live", "a") is None


def test_stop_drops_caches_for_next_publisher():
    hub = Hub()
    s = hub.get_or_create("live", "a")
    sink = RecordingSink()
    s.add_sink(sink)
    publish(s)
    s.video(0, AVC_KEY)
    s.stop()
    s.start(Pub(), 1.0)
    assert s.startup_frames() == []


def test_frame_body_is_built_once_and_shared():
    payload = bytes(range(256)) * 40
    f = Frame(VIDEO, 0, payload, True)
    a = f.body(4096)
    b = f.body(4096)
    assert a is b
    assert a == continuation(payload, 4096, CSID_VIDEO)
    # A second chunk size is computed correctly (not cached over the first).
    assert f.body(128) == continuation(payload, 128, CSID_VIDEO)
    assert f.body(4096) is a


def test_frame_types_map_to_distinct_chunk_streams():
    assert Frame(AUDIO, 0, b"x", True).csid != Frame(VIDEO, 0, b"x", True).csid


@implementer(IDetachableSink)
class BrokenSink(RecordingSink):
    def __init__(self, fail_on):
        super().__init__()
        self.fail_on = fail_on
        self.detached = False

    def frame(self, frame):
        if self.fail_on == "frame" and frame.payload == AVC_INTER:
            raise RuntimeError("sink bug")
        super().frame(frame)

    def stream_started(self, stream):
        if self.fail_on == "start":
            raise RuntimeError("sink bug")
        super().stream_started(stream)

    def detach(self):
        self.detached = True


def test_a_failing_sink_is_detached_and_others_get_every_frame_once():
    hub = Hub()
    s = hub.get_or_create("live", "a")
    before, broken, after = RecordingSink(), BrokenSink("frame"), RecordingSink()
    for sink in (before, broken, after):
        s.add_sink(sink)
    publish(s)
    s.video(0, AVC_KEY)
    s.video(33, AVC_INTER)  # raises in the middle sink: must not reach the publisher
    s.video(66, AVC_INTER)
    assert broken.detached and broken not in s.sinks
    for ok in (before, after):
        payloads = [e[3] for e in ok.events if e[0] == "frame"]
        assert payloads == [b"META", AVC_SEQ, AAC_SEQ, AVC_KEY, AVC_INTER, AVC_INTER]


def test_a_sink_failing_at_start_is_detached():
    hub = Hub()
    s = hub.get_or_create("live", "a")
    publish(s)
    broken = BrokenSink("start")
    s.add_sink(broken)
    assert broken.detached and s.sinks == []
