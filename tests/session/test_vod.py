"""VodPlayer and the session's recorded-play decisions (rtmpserver/session/vod.py), on a
StringTransport with a Clock and an in-memory IVodStream: pacing by buffer length, start
semantics, seek, pause, playlists, play2, the end of a file, transport flow control."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rtmpserver.chain import Chain
from rtmpserver.codec import messages as m
from rtmpserver.interfaces import IAppHandler, IVodProvider, IVodStream
from rtmpserver.media.vod import VodMessage
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.session import PlayerStream
from rtmpserver.session.vod import VodPlayer
from tests.test_protocol import Peer, make_config, statuses

SEQ = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"


@implementer(IVodStream)
class FakeStream:
    """A 5 s file: video every 40 ms (keyframe each second), audio every 20 ms."""

    def __init__(self, name: str, seconds: int = 5) -> None:
        self.name = name
        self.duration_ms = seconds * 1000
        msgs = []
        for t in range(0, self.duration_ms, 20):
            if t % 40 == 0:
                kind = 0x17 if t % 1000 == 0 else 0x27
                msgs.append(VodMessage(9, t, bytes((kind, 1, 0, 0, 0)) + t.to_bytes(4, "big")))
            msgs.append(VodMessage(8, t, b"\xaf\x01" + t.to_bytes(4, "big")))
        self.msgs = msgs
        self.i = 0
        self.closed = False

    def metadata(self):
        return {"duration": self.duration_ms / 1000.0, "width": 320.0, "height": 240.0}

    def sequence_headers(self):
        return [VodMessage(9, 0, SEQ)]

    def seek(self, ms):
        key = max(0, ms // 1000 * 1000)
        self.i = next(i for i, x in enumerate(self.msgs) if x.timestamp >= key)
        return key

    def next_due_ms(self):
        return self.msgs[self.i].timestamp if self.i < len(self.msgs) else None

    def read(self):
        if self.i >= len(self.msgs):
            return None
        self.i += 1
        return self.msgs[self.i - 1]

    def close(self):
        self.closed = True


@implementer(IAppHandler, IVodProvider)
class FakeProvider:
    def __init__(self, names=("a", "b"), limit_ms=2000) -> None:
        self.names = names
        self.limit_ms = limit_ms
        self.opened: list[FakeStream] = []

    def connect(self, request, proceed):
        return proceed(request)

    publish = play = connect

    def close_stream(self, event):
        return None

    def buffer_limit_ms(self):
        return self.limit_ms

    def open_stream(self, name):
        if name not in self.names:
            return None
        s = FakeStream(name)
        self.opened.append(s)
        return s


@pytest.fixture
def setup():
    clock = Clock()
    provider = FakeProvider()
    chain = Chain("live", [("vod", provider)], clock, 5.0)
    factory = RTMPServerFactory(make_config(), clock, chains={"live": chain})
    return factory, clock, provider


def start(factory, name="a", start_ms=0.0, buffer_ms=1000, duration=-1.0):
    p = Peer(factory)
    p.connect()
    sid = p.create_stream()
    p.client.send(m.UserControl.set_buffer_length(sid, buffer_ms))
    p.call("play", None, name, start_ms, duration, stream_id=sid)
    return p, sid


def stamps(msgs, type_=None):
    return [x.timestamp for x in msgs if isinstance(x, (m.AudioMessage, m.VideoMessage)) and (type_ is None or isinstance(x, type_))]


def play_status(msgs):
    return [x.values[1]["code"] for x in msgs if isinstance(x, m.DataMessage) and x.values and x.values[0] == "onPlayStatus"]


def user_events(msgs):
    return [x.event for x in msgs if isinstance(x, m.UserControl)]


def test_interfaces_hold():
    verifyObject(IVodStream, FakeStream("a"))
    verifyObject(IVodProvider, FakeProvider())


def test_recorded_play_sends_start_metadata_headers_then_paces_by_the_buffer(setup):
    factory, clock, _ = setup
    p, sid = start(factory, buffer_ms=1000)
    got = p.take()
    assert statuses(got) == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    assert user_events(got)[:2] == [m.UserControlEvent.STREAM_IS_RECORDED, m.UserControlEvent.STREAM_BEGIN]
    data = [x.values[0] for x in got if isinstance(x, m.DataMessage)]
    assert data[:2] == ["|RtmpSampleAccess", "onMetaData"]
    clock.advance(0)
    got = p.take()
    ts = stamps(got)
    assert ts[0] == 0 and max(ts) == 1000  # the sequence header, then up to the buffer length
    assert type(p.proto.session.streams[sid]) is VodPlayer
    clock.advance(1.0)
    ts = stamps(p.take())
    assert min(ts) > 1000 and max(ts) == 2000  # one more second of real time, one more second sent


def test_the_client_buffer_length_is_capped(setup):
    factory, clock, provider = setup
    p, _ = start(factory, buffer_ms=36_000_000)  # rtmpdump's default: 10 hours
    for _ in range(50):
        clock.advance(0)
    assert max(stamps(p.take())) == provider.limit_ms


def test_end_of_file_sends_complete_stream_eof_and_stop(setup):
    factory, clock, provider = setup
    p, _ = start(factory, buffer_ms=2000)
    for _ in range(10):
        clock.advance(1.0)
    got = p.take()
    assert max(stamps(got)) == 4980
    assert play_status(got) == ["NetStream.Play.Complete"]
    assert m.UserControlEvent.STREAM_EOF in user_events(got)
    assert statuses(got)[-1] == "NetStream.Play.Stop"
    p.call("closeStream", None, stream_id=1)
    assert provider.opened[0].closed


def test_start_position_and_duration(setup):
    factory, clock, _ = setup
    p, _ = start(factory, start_ms=2500.0, duration=1000.0, buffer_ms=2000)
    for _ in range(5):
        clock.advance(1.0)
    got = p.take()
    ts = stamps(got)
    assert ts[0] == 2000  # the keyframe at or before 2.5 s, stamped with its position
    assert max(ts) < 3500 and max(ts) >= 3460  # start + duration
    assert play_status(got) == ["NetStream.Play.Complete"]


def test_start_semantics_live_only_live_first_and_missing(setup):
    factory, clock, provider = setup
    # -1000 (live only, as FFmpeg sends it): a live player even though the file exists.
    p, sid = start(factory, "a", -1000.0)
    assert type(p.proto.session.streams[sid]) is PlayerStream
    # -2000 with no live stream: the recorded one.
    p, sid = start(factory, "a", -2000.0)
    assert type(p.proto.session.streams[sid]) is VodPlayer
    # -2 with a live publisher: the live one.
    pub = Peer(factory)
    pub.publish("b")
    p, sid = start(factory, "b", -2.0)
    assert type(p.proto.session.streams[sid]) is PlayerStream
    # -2 and nothing at all: waits for a live one.
    p, sid = start(factory, "nothing", -2.0)
    assert type(p.proto.session.streams[sid]) is PlayerStream
    # >= 0 and no file: StreamNotFound, nothing playing.
    p, sid = start(factory, "nothing", 0.0)
    assert statuses(p.take()) == ["NetStream.Play.StreamNotFound"]
    assert p.proto.session.streams[sid] is None


def test_seek_lands_on_the_keyframe_before_and_restarts_from_there(setup):
    factory, clock, _ = setup
    p, sid = start(factory, buffer_ms=500)
    clock.advance(0)
    p.take()
    p.call("seek", None, 3700.0, stream_id=sid)
    got = p.take()
    assert statuses(got) == ["NetStream.Seek.Notify", "NetStream.Play.Start"]
    clock.advance(0)
    ts = stamps(p.take() + got)
    assert min(ts) == 3000 and max(ts) == 3500  # landed at 3 s, sent its buffer ahead


def test_pause_stops_and_unpause_continues_where_it_stopped(setup):
    factory, clock, _ = setup
    p, sid = start(factory, buffer_ms=500)
    clock.advance(0)
    clock.advance(0.5)
    last = max(stamps(p.take()))
    p.call("pause", None, True, 700.0, stream_id=sid)
    got = p.take()
    assert statuses(got) == ["NetStream.Pause.Notify"] and m.UserControlEvent.STREAM_EOF in user_events(got)
    clock.advance(5.0)
    assert stamps(p.take()) == []
    p.call("pause", None, False, 700.0, stream_id=sid)
    assert statuses(p.take()) == ["NetStream.Unpause.Notify"]
    clock.advance(0.5)
    ts = stamps(p.take())
    # On from the next unsent message, paced from where the client paused (700 ms + 500 buffer).
    assert ts[0] == last + 20 and max(ts) == 700 + 500 + 500


def test_playlist_plays_items_in_turn_with_a_continuing_timeline(setup):
    factory, clock, _ = setup
    p, sid = start(factory, "a", 0.0, buffer_ms=2000)
    p.call("play", None, "b", 0.0, -1.0, False, stream_id=sid)
    p.call("play", None, "missing", 0.0, -1.0, False, stream_id=sid)
    assert "NetStream.Play.StreamNotFound" in statuses(p.take())
    for _ in range(15):
        clock.advance(1.0)
    got = p.take()
    ts = stamps(got)
    assert ts == sorted(ts) and max(ts) == 4980 + 1 + 4980
    assert play_status(got) == ["NetStream.Play.Switch", "NetStream.Play.Complete"]
    assert statuses(got).count("NetStream.Play.Start") == 1  # the second item's


def test_play2_switches_file_at_the_position(setup):
    factory, clock, provider = setup
    p, sid = start(factory, "a", 0.0, buffer_ms=500)
    clock.advance(0)
    clock.advance(1.0)
    last = max(stamps(p.take()))
    p.call("play2", None, {"streamName": "b", "transition": "switch"}, stream_id=sid)
    clock.advance(0)
    got = p.take()
    assert "NetStream.Play.Transition" in statuses(got) and "NetStream.Play.TransitionComplete" in play_status(got)
    assert min(stamps(got)) == last + 1
    assert provider.opened[0].closed and not provider.opened[1].closed


def test_a_full_transport_stops_sending_until_it_drains(setup):
    factory, clock, _ = setup
    p, sid = start(factory, buffer_ms=2000)
    p.take()
    p.proto.pauseProducing()
    clock.advance(0)
    assert stamps(p.take()) == []
    p.proto.resumeProducing()
    clock.advance(0)
    assert max(stamps(p.take())) > 0


def test_set_buffer_length_is_kept_only_for_created_streams(setup):
    factory, _, _ = setup
    p = Peer(factory)
    p.connect()
    for sid in range(100, 200):
        p.client.send(m.UserControl.set_buffer_length(sid, 1000))
    p.pump()
    assert p.proto.session.buffer_lengths == {}


def test_get_stream_length_answers_the_duration(setup):
    factory, _, _ = setup
    p = Peer(factory)
    p.connect()
    tid = p.call("getStreamLength", None, "a?token=x")
    res = [x for x in p.take() if isinstance(x, m.CommandMessage) and x.transaction_id == tid]
    assert res[0].arguments == [5.0]
    tid = p.call("getStreamLength", None, "nothing")
    res = [x for x in p.take() if isinstance(x, m.CommandMessage) and x.transaction_id == tid]
    assert res[0].arguments == [0.0]


def test_connection_lost_closes_the_file_and_cancels_the_timer(setup):
    factory, clock, provider = setup
    p, sid = start(factory)

    def pumps():
        return [c for c in clock.getDelayedCalls() if c.active() and getattr(c.func, "__name__", "") == "_pump"]

    assert len(pumps()) == 1
    p.proto.connectionLost(None)
    assert provider.opened[0].closed
    assert pumps() == []


@implementer(IAppHandler, IVodProvider)
class LaterProvider(FakeProvider):
    """Opens files "on a thread": open_stream returns a Deferred the test fires."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list = []

    def open_stream(self, name):
        from twisted.internet import defer

        d = defer.Deferred()
        self.pending.append((name, d))
        return d

    def finish(self, found=True):
        name, d = self.pending.pop(0)
        d.callback(FakeProvider.open_stream(self, name) if found else None)


@pytest.fixture
def later():
    clock = Clock()
    provider = LaterProvider()
    factory = RTMPServerFactory(make_config(), clock, chains={"live": Chain("live", [("vod", provider)], clock, 5.0)})
    return factory, clock, provider


def test_a_file_opened_later_starts_when_it_is_open(later):
    from rtmpserver.session.admission import PENDING

    factory, clock, provider = later
    p, sid = start(factory, "a")
    assert statuses(p.take()) == [] and p.proto.session.streams[sid] is PENDING
    provider.finish()
    assert statuses(p.take()) == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    assert type(p.proto.session.streams[sid]) is VodPlayer


def test_a_file_opened_later_that_is_missing_is_not_found_or_live(later):
    factory, clock, provider = later
    p, sid = start(factory, "nothing", 0.0)
    provider.finish(found=False)
    assert statuses(p.take()) == ["NetStream.Play.StreamNotFound"] and p.proto.session.streams[sid] is None
    p, sid = start(factory, "nothing", -2000.0)
    provider.finish(found=False)
    assert type(p.proto.session.streams[sid]) is PlayerStream  # waits for a live stream


def test_a_file_opened_after_the_client_left_is_closed(later):
    factory, clock, provider = later
    p, sid = start(factory, "a")
    p.proto.connectionLost(None)
    provider.finish()
    assert provider.opened[0].closed


def test_stream_length_and_playlists_with_a_provider_that_answers_later(later):
    factory, clock, provider = later
    p = Peer(factory)
    p.connect()
    tid = p.call("getStreamLength", None, "a")
    provider.finish()
    res = [x for x in p.take() if isinstance(x, m.CommandMessage) and x.transaction_id == tid]
    assert res[0].arguments == [5.0] and provider.opened[0].closed
    sid = p.create_stream()
    p.call("play", None, "a", 0.0, -1.0, True, stream_id=sid)
    provider.finish()
    p.call("play", None, "b", 0.0, -1.0, False, stream_id=sid)
    provider.finish()
    assert [item.name for item in p.proto.session.streams[sid].playlist] == ["b"]


def test_playlist_plays_sent_while_the_first_is_opening_wait_for_it_in_order(later):
    factory, clock, provider = later
    p, sid = start(factory, "a")
    p.call("play", None, "b", 0.0, -1.0, False, stream_id=sid)
    p.call("play", None, "a", 0.0, -1.0, False, stream_id=sid)
    assert "NetStream.Play.Failed" not in statuses(p.take())
    clock.advance(0.1)
    assert [name for name, _ in provider.pending] == ["a"]  # still deciding the first
    provider.finish()
    clock.advance(0.05)
    provider.finish()
    provider.finish()
    player = p.proto.session.streams[sid]
    assert player.name == "a" and [item.name for item in player.playlist] == ["b", "a"]
    assert p.proto.session.vod_waiting == {}


@pytest.mark.parametrize("found", [True, False])
def test_the_playlist_does_not_end_while_its_next_file_is_being_opened(later, found):
    factory, clock, provider = later
    p, sid = start(factory, "a", buffer_ms=2000)
    provider.finish()
    p.call("play", None, "b" if found else "nothing", 0.0, -1.0, False, stream_id=sid)
    for _ in range(8):
        clock.advance(1.0)
    got = p.take()
    assert play_status(got) == [] and max(stamps(got)) == 4980  # a has ended; waiting for b
    provider.finish(found=found)
    for _ in range(8):
        clock.advance(1.0)
    got = p.take()
    if found:
        assert play_status(got) == ["NetStream.Play.Switch", "NetStream.Play.Complete"] and max(stamps(got)) == 4980 + 1 + 4980
    else:
        assert play_status(got) == ["NetStream.Play.Complete"] and "NetStream.Play.StreamNotFound" in statuses(got)
