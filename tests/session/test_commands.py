"""NetStream commands without other tests of their own: play2, seek, FCSubscribe, closeStream;
and what the session package exposes (its State, its stats, IMonitoredClient)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from rtmpserver.codec import messages as m
from rtmpserver.interfaces import IMonitoredClient, IPlayerStream, IPublisher
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.session import PlayerStream, PublisherStream, Session, State
from rtmpserver.session.streams import EOF_DELAY
from tests.test_protocol import (
    AVC_SEQ,
    Peer,
    inter,
    key,
    make_config,
    media,
    statuses,
    stream_eofs,
)


@pytest.fixture
def factory():
    return RTMPServerFactory(make_config(), Clock())


def commands(msgs, name):
    return [x for x in msgs if isinstance(x, m.CommandMessage) and x.name == name]


def stream_of(peer, sid):
    return peer.proto.session.streams[sid]


def test_fcsubscribe_is_answered_with_onfcsubscribe(factory):
    p = Peer(factory)
    p.connect()
    p.call("FCSubscribe", None, "cam")
    got = commands(p.take(), "onFCSubscribe")
    assert len(got) == 1
    assert got[0].arguments[0] == {"code": "NetStream.Play.Start", "description": "cam"}


def test_fcsubscribe_without_a_name_still_answers(factory):
    p = Peer(factory)
    p.connect()
    p.call("FCSubscribe", None)
    assert commands(p.take(), "onFCSubscribe")[0].arguments[0]["description"] == ""


def test_close_stream_stops_the_player_and_keeps_the_netstream(factory):
    pub = Peer(factory)
    psid, _ = pub.publish("s")
    player = Peer(factory)
    sid, _ = player.play("s")
    live = factory.hub.get("live", "s")
    assert len(live.sinks) == 1
    player.call("closeStream", None, stream_id=sid)
    assert "NetStream.Play.Stop" in statuses(player.take())
    assert live.sinks == []
    assert player.proto.session.streams == {sid: None}  # the NetStream id stays usable
    pub.send_media(psid, "v", 0, key())
    assert media(player.take()) == []
    # ... and can play again
    player.call("play", None, "s", -2.0, stream_id=sid)
    assert "NetStream.Play.Start" in statuses(player.take())


def test_close_stream_unpublishes_a_publisher(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    psid, _ = player.play("s")
    pub.call("closeStream", None, stream_id=sid)
    assert "NetStream.Unpublish.Success" in statuses(pub.take())
    factory.clock.advance(EOF_DELAY)
    got = player.take()
    assert stream_eofs(got) == [psid]
    assert "NetStream.Play.UnpublishNotify" not in statuses(got)  # publish_notify = no (default)
    assert not factory.hub.get("live", "s").active


def test_close_stream_on_an_unknown_stream_is_ignored(factory):
    p = Peer(factory)
    p.connect()
    p.call("closeStream", None, stream_id=7)
    assert statuses(p.take()) == []
    assert not p.closed


def test_seek_on_live_acknowledges_and_resumes_at_the_cached_keyframe(factory):
    pub = Peer(factory)
    psid, _ = pub.publish("s")
    pub.send_media(psid, "v", 0, AVC_SEQ)
    pub.send_media(psid, "v", 0, key())
    pub.send_media(psid, "v", 40, inter())
    player = Peer(factory)
    sid, joined = player.play("s")
    first = media(joined)
    assert [x.payload for x in first] == [AVC_SEQ, key(), inter()]
    player.call("seek", None, 5000.0, stream_id=sid)
    got = player.take()
    assert statuses(got) == ["NetStream.Seek.Notify", "NetStream.Play.Start"]
    again = media(got)
    assert [x.payload for x in again] == [key(), inter()]  # the GOP again, from its keyframe
    assert again[0].timestamp >= max(x.timestamp for x in first)  # never backwards


def test_seek_on_a_netstream_that_is_not_playing_does_nothing(factory):
    p = Peer(factory)
    p.connect()
    sid = p.create_stream()
    p.call("seek", None, 0.0, stream_id=sid)
    assert statuses(p.take()) == []


def test_seek_on_a_stream_never_created_closes_the_connection(factory):
    p = Peer(factory)
    p.connect()
    p.call("seek", None, 0.0, stream_id=9)
    assert p.closed


def test_play2_switches_to_another_stream(factory):
    a, b = Peer(factory), Peer(factory)
    asid, _ = a.publish("low")
    bsid, _ = b.publish("high")
    player = Peer(factory)
    sid, _ = player.play("low")
    player.call("play2", None, {"streamName": "high", "transition": "switch"}, stream_id=sid)
    got = player.take()
    codes = statuses(got)
    assert codes[0] == "NetStream.Play.Transition"
    assert "NetStream.Play.Start" in codes and "NetStream.Play.Reset" not in codes  # reset=False
    assert factory.hub.get("live", "low") is None or factory.hub.get("live", "low").sinks == []
    assert len(factory.hub.get("live", "high").sinks) == 1
    assert stream_of(player, sid).name == "high"
    b.send_media(bsid, "v", 0, key())
    a.send_media(asid, "v", 0, key(50))
    assert [x.payload for x in media(player.take())] == [key()]


def test_play2_without_a_stream_name_fails(factory):
    player = Peer(factory)
    sid, _ = player.play("s")
    player.call("play2", None, {"transition": "switch"}, stream_id=sid)
    assert statuses(player.take()) == ["NetStream.Play.Failed"]
    assert isinstance(stream_of(player, sid), PlayerStream)  # still playing "s"


def test_play2_through_a_chain_that_refuses_keeps_nothing_playing():
    from rtmpserver.errors import Rejected

    class Chain:
        def run(self, hook, request, final):
            from twisted.internet import defer

            if getattr(request, "name", "") == "forbidden":
                return defer.fail(Rejected("NetStream.Play.Failed", "no"))
            return defer.maybeDeferred(final, request)

        def close_stream(self, event):
            pass

    f = RTMPServerFactory(make_config(), Clock(), chains={"live": Chain()})
    player = Peer(f)
    sid, _ = player.play("s")
    player.call("play2", None, {"streamName": "forbidden"}, stream_id=sid)
    codes = statuses(player.take())
    assert codes[0] == "NetStream.Play.Transition" and codes[-1] == "NetStream.Play.Failed"
    assert stream_of(player, sid) is None
    assert player.proto.session.stats.rejections == {"play": 1}


# -- the session package's own surface ------------------------------------------------------------


def test_session_state_goes_handshake_connected_closed(factory):
    p = Peer(factory)
    s = p.proto.session
    assert s.state is State.HANDSHAKE and not s.closed
    p.connect()
    assert s.state is State.CONNECTED
    p.lose()
    assert s.state is State.CLOSED and s.closed


def test_session_is_connecting_while_the_chain_decides_and_queues_commands():
    from twisted.internet import defer

    waiting = []

    class Chain:
        def run(self, hook, request, final):
            d = defer.Deferred()
            waiting.append((d, final, request))
            return d

        def close_stream(self, event):
            pass

    f = RTMPServerFactory(make_config(), Clock(), chains={"live": Chain()})
    p = Peer(f)
    p.connect()
    s = p.proto.session
    assert s.state is State.CONNECTING
    p.call("createStream")
    assert commands(p.received, "_result") == []  # queued behind connect
    d, final, request = waiting.pop()
    final(request)
    d.callback(None)
    got = p.take()
    assert s.state is State.CONNECTED
    assert len(commands(got, "_result")) == 2  # connect, then the queued createStream


def test_stats_and_describe(factory):
    pub = Peer(factory)
    psid, _ = pub.publish("s")
    player = Peer(factory)
    sid, _ = player.play("s")
    pub.send_media(psid, "v", 0, key())
    player.take()
    ps, ss = pub.proto.session, player.proto.session
    assert ps.stats.roles == {"publisher"} and ps.stats.stream_names == {"s"} and ps.stats.role == "publisher"
    assert ss.stats.media_bytes_out > len(key())
    assert ss.bytes_out == ss.conn.bytes_sent + ss.stats.media_bytes_out
    assert ss.stats.bytes_in == player.proto.bytes_in > 0
    now = factory.clock.seconds()
    for obj in (ps, ss, stream_of(pub, psid), stream_of(player, sid)):
        verifyObject(IMonitoredClient, obj)
    d = ss.describe(now)
    assert d["protocol"] == "rtmp" and d["app"] == "live" and d["role"] == "player" and d["address"] == "127.0.0.1"
    assert d["flashver"] == "FMLE/3.0" and d["streams"] == ["s"]
    assert stream_of(player, sid).describe(now)["timestamp"] == 0
    assert stream_of(pub, psid).describe(now)["timestamp"] == 0


def test_streams_provide_their_interfaces(factory):
    pub = Peer(factory)
    psid, _ = pub.publish("s")
    player = Peer(factory)
    sid, _ = player.play("s")
    assert IPublisher.providedBy(stream_of(pub, psid)) and not IPlayerStream.providedBy(stream_of(pub, psid))
    verifyObject(IPlayerStream, stream_of(player, sid))
    assert isinstance(stream_of(pub, psid), PublisherStream)
    assert IMonitoredClient.implementedBy(Session)
