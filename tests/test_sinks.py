"""LiveSink on its own: start from the cache, keyframe gating, timestamp rebasing, the bounded
backlog, pause/rewind and detach, against a real hub LiveStream."""

from __future__ import annotations

from zope.interface.verify import verifyObject

from rtmpserver.hub import AUDIO, DATA, VIDEO, Hub
from rtmpserver.interfaces import IDetachableSink, IMediaSink
from rtmpserver.sinks import LiveSink

AVC_SEQ = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
AAC_SEQ = b"\xaf\x00\x12\x10"


def key(n=50):
    return b"\x17\x01\x00\x00\x00" + b"K" * n


def inter(n=20):
    return b"\x27\x01\x00\x00\x00" + b"i" * n


def aac(n=10):
    return b"\xaf\x01" + b"a" * n


class Pub:
    last_media_time = 0.0
    closing = False

    def evict(self, reason):
        pass


class Sink(LiveSink):
    """Writes into a list; ``full`` plays the transport's buffer."""

    def __init__(self, live, backlog_bytes=10_000, backlog_time=3.0):
        super().__init__(live, live.name, backlog_bytes, backlog_time, "test:1")
        self.full = False
        self.out: list = []
        self.events: list = []

    def transport_full(self):
        return self.full

    def write_frame(self, frame, ts):
        self.out.append((frame.type_id, ts, frame.payload))

    def on_started(self, republished):
        self.events.append(("started", republished))

    def on_stopped(self):
        self.events.append(("stopped",))


def stream(gop_cache=True):
    return Hub().get_or_create("live", "s", gop_cache=gop_cache)


def payloads(sink):
    return [p for _, _, p in sink.out]


def test_sink_provides_the_detachable_sink_interface():
    s = Sink(stream())
    verifyObject(IMediaSink, s)
    verifyObject(IDetachableSink, s)


def test_joining_a_live_stream_starts_from_metadata_headers_and_the_gop():
    live = stream()
    live.start(Pub(), 0.0)
    live.set_metadata(0, b"META")
    live.video(1000, AVC_SEQ)
    live.audio(1000, AAC_SEQ)
    live.video(1000, key())
    live.audio(1010, aac())
    live.video(1040, inter())
    s = Sink(live)
    live.add_sink(s)
    assert s.events == [("started", False)]
    assert payloads(s) == [b"META", AVC_SEQ, AAC_SEQ, key(), aac(), inter()]
    # Rebased: headers at 0, the GOP from its keyframe at 0.
    assert [ts for _, ts, _ in s.out] == [0, 0, 0, 0, 10, 40]


def test_a_sink_waiting_for_a_publisher_starts_at_the_first_keyframe():
    live = stream()
    s = Sink(live)
    live.add_sink(s)
    live.start(Pub(), 0.0)
    live.video(500, AVC_SEQ)
    live.video(500, inter())  # no keyframe yet: skipped
    live.audio(510, aac())  # audio waits for video to start
    live.video(540, key())
    live.audio(550, aac(11))
    assert payloads(s) == [AVC_SEQ, key(), aac(11)]
    assert [ts for _, ts, _ in s.out] == [0, 0, 10]


def test_audio_only_stream_starts_at_once():
    live = stream()
    s = Sink(live)
    live.add_sink(s)
    live.start(Pub(), 0.0)
    live.audio(0, AAC_SEQ)
    live.audio(20, aac())
    assert payloads(s) == [AAC_SEQ, aac()]


def test_receive_audio_and_video_flags_filter_by_type():
    live = stream()
    live.start(Pub(), 0.0)
    s = Sink(live)
    s.receive_audio = False
    live.add_sink(s)
    live.video(0, key())
    live.audio(5, aac())
    live.data(6, b"DATA")
    assert [t for t, _, _ in s.out] == [VIDEO, DATA]


def test_timestamps_never_go_backwards_across_a_republish():
    live = stream()
    s = Sink(live)
    live.add_sink(s)
    live.start(Pub(), 0.0)
    live.video(10_000, key())
    live.video(10_100, inter())
    live.stop()
    assert s.events == [("started", False), ("stopped",)]
    live.start(Pub(), 1.0)  # the new publisher's clock starts at 0
    live.video(0, key())
    live.video(40, inter())
    assert s.events[-1] == ("started", True)
    # One millisecond after the last one: the new publisher's first frame does not repeat a DTS.
    assert [ts for _, ts, _ in s.out] == [0, 100, 101, 141]


def test_a_full_transport_queues_and_flush_drains_in_order():
    live = stream()
    live.start(Pub(), 0.0)
    s = Sink(live)
    live.add_sink(s)
    live.video(0, key())
    s.full = True
    live.video(40, inter())
    live.audio(45, aac())
    assert payloads(s) == [key()] and len(s.backlog) == 2
    assert s.backlog_bytes == len(inter()) + len(aac())
    s.full = False
    s.flush()
    assert payloads(s) == [key(), inter(), aac()]
    assert s.backlog_bytes == 0 and s.frames_sent == 3


def test_a_backlog_over_its_byte_bound_is_dropped_whole_and_resumes_at_a_keyframe():
    live = stream()
    live.start(Pub(), 0.0)
    s = Sink(live, backlog_bytes=len(inter()) * 3)
    live.add_sink(s)
    live.video(0, key())
    s.full = True
    for i in range(4):  # the fourth crosses the bound
        live.video(40 * (i + 1), inter())
    assert s.dropped == 4 and s.resyncs == 1 and not s.backlog and s.need_key
    s.full = False
    live.video(200, inter())  # not a keyframe: still waiting
    live.video(240, key(60))
    assert payloads(s) == [key(), key(60)]


def test_a_backlog_over_its_time_bound_is_dropped():
    live = stream()
    live.start(Pub(), 0.0)
    s = Sink(live, backlog_time=0.1)
    live.add_sink(s)
    live.video(0, key())
    s.full = True
    live.video(40, inter())
    live.video(200, inter())  # 160 ms queued > 100 ms
    assert s.dropped == 2 and s.resyncs == 1


def test_pause_drops_and_rewind_resumes_from_the_gop_with_monotonic_timestamps():
    live = stream()
    live.start(Pub(), 0.0)
    s = Sink(live)
    live.add_sink(s)
    live.video(0, key())
    live.video(40, inter())
    s.paused = True
    live.video(80, inter(21))
    assert payloads(s) == [key(), inter()]
    s.paused = False
    s.rewind_to_live()
    assert payloads(s)[2:] == [key(), inter(), inter(21)]
    ts = [t for _, t, _ in s.out]
    assert ts == sorted(ts) and ts[2] == 40  # resumes at the last timestamp sent


def test_detach_leaves_the_stream_and_clears_the_backlog():
    hub = Hub()
    live = hub.get_or_create("live", "s")
    live.start(Pub(), 0.0)
    s = Sink(live)
    live.add_sink(s)
    s.full = True
    live.video(0, key())
    assert s.backlog
    s.detach()
    assert live.sinks == [] and not s.backlog and s.backlog_bytes == 0
    s.detach()  # idempotent
    live.video(40, key())
    assert s.out == []


def test_types_are_the_flv_tag_types():
    assert (AUDIO, VIDEO, DATA) == (8, 9, 18)


def test_a_player_there_from_the_publishers_start_gets_audio_before_the_first_keyframe():
    """FFmpeg often sends an AAC frame at 0 before the first video frame; nothing is skipped, so
    it is delivered, with the publisher's own timestamps (every message arrives)."""
    live = stream()
    s = Sink(live)
    live.add_sink(s)
    live.start(Pub(), 0.0)
    live.video(0, AVC_SEQ)
    live.audio(0, AAC_SEQ)
    live.audio(0, aac(1))
    live.video(23, key())
    live.audio(23, aac(2))
    assert [(t, ts) for t, ts, _ in s.out] == [(VIDEO, 0), (AUDIO, 0), (AUDIO, 0), (VIDEO, 23), (AUDIO, 23)]


def test_audio_waits_for_the_keyframe_once_video_has_been_skipped():
    live = stream(gop_cache=False)
    live.start(Pub(), 0.0)
    live.video(0, AVC_SEQ)
    live.video(0, key())
    s = Sink(live)
    live.add_sink(s)  # a late joiner without a GOP cache: video resumes at the next keyframe
    live.video(40, inter())
    live.audio(50, aac(1))
    live.video(1000, key())
    live.audio(1010, aac(2))
    assert payloads(s) == [AVC_SEQ, key(), aac(2)]
