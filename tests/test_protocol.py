"""Server protocol and session over StringTransport with an injected clock (docs/architecture.md, "Rules we keep", 6).

A client-side ``RTMPConnection`` (our own sans-IO codec) plays publisher and player; captured
FFmpeg traffic is replayed byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rtmpserver import config as configmod
from rtmpserver.codec import amf0
from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection
from rtmpserver.protocol import Refused, RTMPServerFactory
from rtmpserver.session.streams import EOF_DELAY

DATA = Path(__file__).parent / "data"

AVC_SEQ = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1"
AAC_SEQ = b"\xaf\x00\x12\x10"


def key(n=300):
    return b"\x17\x01\x00\x00\x00" + b"K" * n


def inter(n=100):
    return b"\x27\x01\x00\x00\x00" + b"i" * n


def aac(n=20):
    return b"\xaf\x01" + b"a" * n


def make_config(extra_app="", extra_limits="", server_extra=""):
    text = f"""
[server]
listen = tcp:0:interface=127.0.0.1
{server_extra}
[limits]
{extra_limits}
[app:live]
{extra_app}
"""
    return configmod.parse(text, "test.ini")


class Peer:
    """One client connection: our client codec wired to a server protocol on a StringTransport."""

    def __init__(self, factory, host="127.0.0.1", port=None):
        self.factory = factory
        self.proto = factory.buildProtocol(IPv4Address("TCP", host, port or random.randint(1024, 65000)))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5000))
        if self.proto is not None:
            self.proto.makeConnection(self.transport)
        self.client = RTMPConnection(server=False)
        self.client.initiate()
        self.received: list = []
        self.tid = 1.0

    def pump(self):
        for _ in range(10):
            out = self.client.data_to_send()
            if out:
                self.proto.dataReceived(out)
            back = self.transport.value()
            self.transport.clear()
            if back:
                self.received.extend(self.client.receive_data(back))
            if not out and not back:
                break
        return self.received

    def take(self):
        self.pump()
        got, self.received = self.received, []
        return got

    def call(self, name, obj=None, *args, stream_id=0):
        self.tid += 1
        self.client.send_command(name, self.tid, obj, *args, stream_id=stream_id)
        self.pump()
        return self.tid

    def connect(self, app="live", **extra):
        self.pump()  # handshake
        obj = {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}", "flashVer": "FMLE/3.0", **extra}
        self.client.send_command("connect", 1, obj)
        self.pump()
        return self.take()

    def create_stream(self):
        tid = self.call("createStream")
        res = [x for x in self.take() if isinstance(x, m.CommandMessage) and x.name == "_result" and x.transaction_id == tid]
        return int(res[0].arguments[0])

    def publish(self, name="s"):
        self.connect()
        sid = self.create_stream()
        self.call("publish", None, name, "live", stream_id=sid)
        return sid, self.take()

    def play(self, name="s"):
        self.connect()
        sid = self.create_stream()
        self.call("play", None, name, -2.0, stream_id=sid)
        return sid, self.take()

    def send_media(self, sid, kind, ts, payload):
        cls = m.VideoMessage if kind == "v" else m.AudioMessage
        self.client.send(cls(ts, sid, payload))
        self.pump()

    def send_metadata(self, sid, meta=None):
        payload = amf0.encode("@setDataFrame", "onMetaData", meta or {"width": 320.0, "height": 240.0})
        self.client.send(m.DataMessage(0, sid, [], payload))
        self.pump()

    @property
    def closed(self):
        return self.transport.disconnecting or getattr(self.transport, "disconnected", False)

    def lose(self):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionDone()))


def statuses(msgs):
    return [x.arguments[0]["code"] for x in msgs if isinstance(x, m.CommandMessage) and x.name == "onStatus"]


def stream_eofs(msgs):
    """Stream ids of the StreamEOF user control events in ``msgs``."""
    return [x.value for x in msgs if isinstance(x, m.UserControl) and x.event == m.UserControlEvent.STREAM_EOF]


def media(msgs):
    return [x for x in msgs if isinstance(x, (m.AudioMessage, m.VideoMessage))]


@pytest.fixture
def factory():
    f = RTMPServerFactory(make_config(), Clock())
    f.startFactory()
    yield f
    f.stopFactory()


def test_connect_answers_with_window_bandwidth_chunk_size_and_result(factory):
    p = Peer(factory)
    got = p.connect()
    kinds = [type(x).__name__ for x in got]
    assert kinds[:3] == ["WindowAcknowledgementSize", "SetPeerBandwidth", "SetChunkSize"]
    res = got[3]
    assert res.name == "_result" and res.transaction_id == 1
    assert res.command_object["fmsVer"].startswith("FMS/")
    assert res.arguments[0]["code"] == "NetConnection.Connect.Success"
    assert p.client.reader.chunk_size == factory.config.out_chunk_size


def test_connect_echoes_object_encoding_and_enhanced_rtmp_capabilities(factory):
    p = Peer(factory)
    got = p.connect(objectEncoding=3.0, fourCcList=["av01", "vp09", "hvc1"])
    res = [x for x in got if isinstance(x, m.CommandMessage)][0]
    assert res.arguments[0]["objectEncoding"] == 3.0
    assert res.command_object["fourCcList"] == ["av01", "vp09", "hvc1"]
    assert res.command_object["videoFourCcInfoMap"] == {"*": 4.0}


def test_amf3_connect_is_answered_in_kind(factory):
    p = Peer(factory)
    p.pump()
    p.client.send(m.CommandMessage(0, "connect", 1, {"app": "live", "objectEncoding": 3.0}, [], amf3=True))
    p.pump()
    res = [x for x in p.take() if isinstance(x, m.CommandMessage)][0]
    assert res.amf3 and res.name == "_result"


def test_unknown_app_is_rejected_and_closed(factory):
    p = Peer(factory)
    got = p.connect(app="nope")
    err = [x for x in got if isinstance(x, m.CommandMessage)][0]
    assert err.name == "_error" and err.arguments[0]["code"] == "NetConnection.Connect.Rejected"
    assert p.closed


def test_unknown_command_with_transaction_id_gets_error(factory):
    p = Peer(factory)
    p.connect()
    tid = p.call("noSuchMethod")
    err = [x for x in p.take() if isinstance(x, m.CommandMessage)][0]
    assert err.name == "_error" and err.transaction_id == tid
    assert err.arguments[0]["code"] == "NetConnection.Call.Failed"


def test_publish_then_play_delivers_metadata_headers_gop_in_order(factory):
    pub = Peer(factory)
    sid, got = pub.publish("cam")
    assert statuses(got) == ["NetStream.Publish.Start"]
    pub.send_metadata(sid)
    pub.send_media(sid, "v", 0, AVC_SEQ)
    pub.send_media(sid, "a", 0, AAC_SEQ)
    pub.send_media(sid, "v", 1000, key())
    pub.send_media(sid, "a", 1010, aac())
    pub.send_media(sid, "v", 1033, inter())

    player = Peer(factory)
    psid, got = player.play("cam")
    assert statuses(got) == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    data = [x for x in got if isinstance(x, m.DataMessage)]
    assert data[0].values == ["|RtmpSampleAccess", True, True]
    assert data[1].values[0] == "onMetaData" and data[1].values[1]["width"] == 320.0
    av = media(got)
    assert [x.payload for x in av] == [AVC_SEQ, AAC_SEQ, key(), aac(), inter()]
    # Timestamps start at zero for the joiner and keep the publisher's spacing.
    assert [x.timestamp for x in av] == [0, 0, 0, 10, 33]
    assert all(x.stream_id == psid for x in av)

    pub.send_media(sid, "v", 1066, inter(50))
    assert [(x.timestamp, x.payload) for x in media(player.pump())] == [(66, inter(50))]


def test_player_waiting_before_publisher_starts_at_first_keyframe(factory):
    player = Peer(factory)
    psid, got = player.play("later")
    assert statuses(got) == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    pub = Peer(factory)
    sid, _ = pub.publish("later")
    pub.send_media(sid, "v", 5000, AVC_SEQ)
    pub.send_media(sid, "v", 5000, inter())  # not a keyframe: the player must not get it
    pub.send_media(sid, "v", 5033, key())
    got = player.take()
    av = media(got)
    assert [x.payload for x in av] == [AVC_SEQ, key()]
    assert av[-1].timestamp < 100


def test_publisher_leaves_and_returns_players_stay_and_timestamps_stay_monotonic():
    factory = RTMPServerFactory(make_config(extra_app="publish_notify = yes"), Clock())
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    player.play("s")
    pub.send_media(sid, "v", 0, AVC_SEQ)
    pub.send_media(sid, "v", 0, key())
    pub.send_media(sid, "v", 2000, key())
    player.pump()
    first = media(player.take())
    assert [x.timestamp for x in first] == [0, 0, 2000]
    pub.call("deleteStream", None, float(sid))
    factory.clock.advance(EOF_DELAY)
    got = player.pump() and player.take()
    assert "NetStream.Play.UnpublishNotify" in statuses(got)
    # A new publisher whose clock starts again at 0.
    pub2 = Peer(factory)
    sid2, _ = pub2.publish("s")
    pub2.send_media(sid2, "v", 0, AVC_SEQ)
    pub2.send_media(sid2, "v", 0, key())
    pub2.send_media(sid2, "v", 40, inter())
    got = player.take()
    assert "NetStream.Play.PublishNotify" in statuses(got)
    ts = [x.timestamp for x in media(got)]
    assert ts == sorted(ts) and ts[0] >= 2000


def test_second_publisher_is_refused_while_first_keeps_flowing(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    pub.send_media(sid, "v", 0, key())
    other = Peer(factory)
    osid, got = other.publish("s")
    assert statuses(got) == ["NetStream.Publish.BadName"]
    player = Peer(factory)
    player.play("s")
    pub.send_media(sid, "v", 33, key())
    assert [x.payload for x in media(player.take())][-1] == key()
    assert not pub.closed


def test_stale_publisher_is_taken_over_in_auto_mode(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    pub.send_media(sid, "v", 0, key())
    factory.clock.advance(factory.config.apps["live"].publisher_stale_timeout + 1)
    new = Peer(factory)
    nsid, got = new.publish("s")
    assert statuses(got) == ["NetStream.Publish.Start"]
    assert pub.closed


def test_reject_policy_never_takes_over():
    f = RTMPServerFactory(make_config(extra_app="publisher_clash = reject"), Clock())
    pub = Peer(f)
    pub.publish("s")
    f.clock.advance(1000)
    _, got = Peer(f).publish("s")
    assert statuses(got) == ["NetStream.Publish.BadName"]


def test_killed_publisher_can_republish_at_once(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    pub.lose()
    _, got = Peer(factory).publish("s")
    assert statuses(got) == ["NetStream.Publish.Start"]


def test_slow_player_drops_inter_frames_and_resyncs_at_keyframe():
    f = RTMPServerFactory(make_config(extra_app="player_backlog_bytes = 2000\nplayer_backlog_time = 100"), Clock())
    pub = Peer(f)
    sid, _ = pub.publish("s")
    fast, slow = Peer(f), Peer(f)
    fast.play("s")
    slow.play("s")
    pub.send_media(sid, "v", 0, key())
    fast.take()
    slow.take()
    slow.proto.pauseProducing()  # its socket buffer is full
    for i in range(1, 40):
        pub.send_media(sid, "v", i * 33, inter(200))
    # The fast player got everything, the publisher was never held up.
    assert len(media(fast.take())) == 39
    player_stream = [s for s in slow.proto.session.streams.values() if s is not None][0]
    assert player_stream.dropped > 0 and player_stream.resyncs > 0
    assert player_stream.backlog_bytes <= 2000 + 300
    slow.proto.resumeProducing()
    slow.pump()
    slow.take()
    pub.send_media(sid, "v", 2000, inter())  # still waiting for a keyframe
    assert media(slow.take()) == []
    pub.send_media(sid, "v", 2033, key())
    got = media(slow.take())
    assert [x.payload for x in got] == [key()]


def test_garbage_closes_only_that_connection(factory):
    good = Peer(factory)
    sid, _ = good.publish("s")
    bad = Peer(factory)
    bad.proto.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert bad.closed
    assert not good.closed
    good.send_media(sid, "v", 0, key())
    assert factory.stats["protocol_errors"] == 1


def test_oversized_message_closes_connection():
    f = RTMPServerFactory(make_config(extra_limits="max_message_size = 1000"), Clock())
    p = Peer(f)
    sid, _ = p.publish("s")
    p.client.send(m.VideoMessage(0, sid, b"\x17" * 2000))
    p.pump()
    assert p.closed


def test_handshake_timeout():
    f = RTMPServerFactory(make_config(extra_limits="handshake_timeout = 5"), Clock())
    f.startFactory()
    p = Peer(f)
    p.proto.dataReceived(b"\x03" + b"\x00" * 100)  # C1 incomplete
    f.clock.advance(6)
    assert p.closed


def test_idle_peer_is_pinged_then_closed():
    f = RTMPServerFactory(make_config(extra_limits="idle_timeout = 20\nping_interval = 5"), Clock())
    f.startFactory()
    p = Peer(f)
    p.connect()
    p.take()
    for _ in range(6):
        f.clock.advance(1)
    p.pump()
    pings = [x for x in p.take() if isinstance(x, m.UserControl) and x.event == m.UserControlEvent.PING_REQUEST]
    assert pings
    for _ in range(25):
        f.clock.advance(1)
    assert p.closed


def test_connections_per_ip_limit():
    f = RTMPServerFactory(make_config(extra_limits="max_connections_per_ip = 2"), Clock())
    a, b = Peer(f, "10.0.0.1"), Peer(f, "10.0.0.1")
    assert not isinstance(a.proto, Refused) and not isinstance(b.proto, Refused)
    over = Peer(f, "10.0.0.1")
    assert isinstance(over.proto, Refused) and over.transport.disconnecting  # aborted at once
    assert f.stats["refused"] == 1
    assert not isinstance(Peer(f, "10.0.0.2").proto, Refused)
    a.lose()
    assert not isinstance(Peer(f, "10.0.0.1").proto, Refused)


def test_streams_per_connection_limit():
    f = RTMPServerFactory(make_config(extra_limits="max_streams_per_connection = 2"), Clock())
    p = Peer(f)
    p.connect()
    p.create_stream()
    p.create_stream()
    tid = p.call("createStream")
    err = [x for x in p.take() if isinstance(x, m.CommandMessage)][0]
    assert err.name == "_error" and err.transaction_id == tid


@pytest.mark.parametrize("name", ["", "a\x00b", "x" * 300])
def test_bad_stream_names_are_refused(factory, name):
    p = Peer(factory)
    p.connect()
    sid = p.create_stream()
    p.call("publish", None, name, "live", stream_id=sid)
    assert statuses(p.take()) == ["NetStream.Publish.BadName"]


def test_stream_key_query_is_not_part_of_the_name(factory):
    pub = Peer(factory)
    pub.publish("cam?token=abc")
    assert factory.hub.get("live", "cam") is not None


def test_shutdown_tells_players_and_closes_everyone(factory):
    pub = Peer(factory)
    pub.publish("s")
    player = Peer(factory)
    player.play("s")
    d = factory.shutdown()
    player.pump()
    got = player.take()
    assert any(isinstance(x, m.UserControl) and x.event == m.UserControlEvent.STREAM_EOF for x in got)
    assert "NetStream.Play.UnpublishNotify" in statuses(got)
    assert pub.closed and player.closed
    fired = []
    d.addCallback(fired.append)
    pub.lose()
    player.lose()
    assert fired == [None]


def test_pause_unpause_and_receive_video(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    psid, _ = player.play("s")
    pub.send_media(sid, "v", 0, key())
    player.take()
    player.call("pause", None, True, 0.0, stream_id=psid)
    assert statuses(player.take()) == ["NetStream.Pause.Notify"]
    pub.send_media(sid, "v", 33, inter())
    assert media(player.take()) == []
    player.call("pause", None, False, 0.0, stream_id=psid)
    got = player.take()
    assert statuses(got) == ["NetStream.Unpause.Notify"]
    assert [x.payload for x in media(got)] == [key(), inter()]  # resumed from the GOP
    ts = [x.timestamp for x in media(got)]
    assert ts == sorted(ts)
    player.call("receiveVideo", None, False, stream_id=psid)
    pub.send_media(sid, "v", 66, inter())
    pub.send_media(sid, "a", 70, aac())
    assert [type(x).__name__ for x in media(player.take())] == ["AudioMessage"]


@pytest.mark.parametrize("capture", ["ffmpeg-publish"])
def test_replayed_ffmpeg_publish_capture_publishes_a_stream(factory, capture):
    """Real FFmpeg bytes (tests/data/README.md), in random splits, publish live/cap."""
    data = (DATA / f"{capture}.c2s.bin").read_bytes()
    p = Peer(factory)
    player = Peer(factory)
    player.play("cap")
    rnd = random.Random(7)
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 3000)
        p.proto.dataReceived(data[pos : pos + n])
        pos += n
    assert not p.closed or p.proto.session.close_reason == ""
    got = player.take() + player.pump()
    av = media(got)
    assert len([x for x in av if isinstance(x, m.VideoMessage)]) > 30
    assert len([x for x in av if isinstance(x, m.AudioMessage)]) > 30
    assert av[0].payload[:2] == b"\x17\x00"  # AVC sequence header first
    metas = [x for x in got if isinstance(x, m.DataMessage) and x.values and x.values[0] == "onMetaData"]
    assert metas and metas[0].values[1]["width"] == 320.0


def test_merged_writes_flush_once_per_tick():
    f = RTMPServerFactory(make_config(extra_app="write_merge_ms = 20"), Clock())
    pub = Peer(f)
    sid, _ = pub.publish("s")
    player = Peer(f)
    player.play("s")
    writes = []
    orig = player.transport.writeSequence
    player.transport.writeSequence = lambda seq: (writes.append(len(seq)), orig(seq))
    pub.send_media(sid, "v", 0, key())
    pub.send_media(sid, "a", 5, aac())
    pub.send_media(sid, "v", 33, inter())
    assert media(player.take()) == []  # held until the tick
    f.clock.advance(0.02)
    got = media(player.take())
    assert [x.payload for x in got] == [key(), aac(), inter()]
    assert writes == [6]  # three messages, one writeSequence (header + body each)


def test_publisher_clock_wrapping_32_bits_stays_monotonic_for_player(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    player.play("s")
    pub.send_media(sid, "v", 0xFFFFFFF0, key())
    pub.send_media(sid, "v", 0x00000010, inter())  # wrapped: 32 ms later
    pub.send_media(sid, "v", 0x00000030, inter())
    assert [x.timestamp for x in media(player.take())] == [0, 32, 64]


def test_extended_timestamps_after_4_66_hours_reach_the_player():
    # Small chunks so the video message spans several chunks: each fmt 3 chunk must repeat the
    # extended timestamp field, and the shared body cannot be used for that player.
    f = RTMPServerFactory(make_config(server_extra="out_chunk_size = 128"), Clock())
    pub = Peer(f)
    sid, _ = pub.publish("s")
    player = Peer(f)
    player.play("s")
    pub.send_media(sid, "v", 1000, key(600))
    late = 1000 + 0x1000000 + 5  # more than 0xFFFFFF ms later
    pub.send_media(sid, "v", late, key(600))
    pub.send_media(sid, "v", late + 33, inter(400))
    got = media(player.take())
    assert [x.timestamp for x in got] == [0, 0x1000005, 0x1000005 + 33]
    assert [x.payload for x in got] == [key(600), key(600), inter(400)]


def test_publisher_starting_with_high_extended_timestamp(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    player.play("s")
    pub.send_media(sid, "v", 0x7FFFFF00, key(5000))
    pub.send_media(sid, "v", 0x7FFFFF00 + 40, inter(5000))
    assert [x.timestamp for x in media(player.take())] == [0, 40]


def test_replayed_librtmp_play_capture_gets_the_live_stream(factory):
    """rtmpdump (librtmp, the RTMP code OBS uses) playing: its real bytes, tests/data/README.md."""
    from rtmpserver.codec.chunk import ChunkReader

    pub = Peer(factory)
    sid, _ = pub.publish("cap")
    pub.send_media(sid, "v", 0, AVC_SEQ)
    pub.send_media(sid, "a", 0, AAC_SEQ)
    pub.send_media(sid, "v", 0, key())
    data = (DATA / "librtmp-play.c2s.bin").read_bytes()
    viewer = Peer(factory)
    rnd = random.Random(3)
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 700)
        viewer.proto.dataReceived(data[pos : pos + n])
        pos += n
    out = viewer.transport.value()
    assert out[0] == 3 and not viewer.proto._closing
    reader = ChunkReader()
    got = [m.decode(raw) for raw in reader.feed(out[1 + 1536 * 2 :])]
    results = [x for x in got if isinstance(x, m.CommandMessage) and x.name == "_result"]
    assert [r.transaction_id for r in results] == [1.0, 2.0]  # connect, createStream
    assert results[1].arguments == [1.0]
    assert statuses(got) == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    av = [x for x in got if isinstance(x, (m.AudioMessage, m.VideoMessage))]
    assert [x.payload for x in av] == [AVC_SEQ, AAC_SEQ, key()]
    assert all(x.stream_id == 1 for x in av)
    # Its closing deleteStream detached the player from the stream.
    assert factory.hub.get("live", "cap").sinks == []


# --- limits on every listener, stalled peers (safe-to-expose issue, sections 2 and 4) -------------


def tls_wrapped(factory, tmp_path):
    """``factory`` behind Twisted's TLS wrapper with our context, as an ``ssl:`` listener has it."""
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from rtmpserver import tls
    from tests.test_tls import make_cert

    key, cert = make_cert(tmp_path)
    ctx = tls._ContextFactory(tls.server_context({"privateKey": key, "certKey": cert}))
    return TLSMemoryBIOFactory(ctx, False, factory)


def test_over_limit_connection_on_a_tls_listener_is_aborted_at_once(tmp_path):
    f = RTMPServerFactory(make_config(extra_limits="max_connections = 2"), Clock())
    wrapped = tls_wrapped(f, tmp_path)
    kept = []
    for port in range(3):
        addr = IPv4Address("TCP", "10.0.0.1", 5000 + port)
        p = wrapped.buildProtocol(addr)
        t = StringTransport(peerAddress=addr)
        p.makeConnection(t)
        kept.append(t)
    assert [t.disconnecting for t in kept] == [False, False, True]
    assert f.stats["refused"] == 1 and len(f.connections) == 2


def test_returning_none_under_tls_is_what_refused_replaces(tmp_path):
    """The defect that ``Refused`` fixes: a None from buildProtocol breaks the TLS wrapper."""

    class NoneFactory(RTMPServerFactory):
        def buildProtocol(self, addr):
            return None

    wrapped = tls_wrapped(NoneFactory(make_config(), Clock()), tmp_path)
    addr = IPv4Address("TCP", "10.0.0.1", 5000)
    t = StringTransport(peerAddress=addr)
    with pytest.raises(AttributeError):
        wrapped.buildProtocol(addr).makeConnection(t)
    assert not t.disconnecting


def test_shutting_down_refuses_with_a_protocol_too():
    f = RTMPServerFactory(make_config(), Clock())
    f.shutdown()
    p = Peer(f)
    assert isinstance(p.proto, Refused) and p.transport.disconnecting


def test_pending_connections_per_ip_evict_the_oldest_and_a_real_client_gets_in():
    f = RTMPServerFactory(make_config(extra_limits="max_pending_per_ip = 3"), Clock())
    f.startFactory()
    flood = [Peer(f, "10.0.0.1") for _ in range(3)]  # connect and send nothing
    assert not any(p.closed for p in flood)
    more = Peer(f, "10.0.0.1")  # a fourth: the oldest pending one goes
    assert flood[0].closed and not flood[1].closed and not more.closed
    assert f.stats["pending_evicted"] == 1
    flood[0].lose()
    # A real client from the same address during the flood: handshake, connect, play.
    real = Peer(f, "10.0.0.1")
    assert flood[1].closed  # it made room
    real.connect()
    for _ in range(10):  # the flood goes on; the real client is handshaken, never evicted
        Peer(f, "10.0.0.1")
    assert not real.closed
    sid = real.create_stream()
    real.call("play", None, "cam", -2.0, stream_id=sid)
    assert "NetStream.Play.Start" in statuses(real.take())
    # Another address is not affected, and the pending table stays bounded.
    other = Peer(f, "10.0.0.2")
    assert not other.closed
    assert len(f.pending["10.0.0.1"]) <= 3
    f.stopFactory()


def test_pending_table_is_emptied_when_connections_end():
    f = RTMPServerFactory(make_config(), Clock())
    a = Peer(f, "10.0.0.9")
    assert list(f.pending) == ["10.0.0.9"]
    a.lose()
    assert f.pending == {}


def test_defaults_close_a_silent_peer_within_30_s_and_keep_one_that_answers_pings():
    f = RTMPServerFactory(make_config(), Clock())
    f.startFactory()
    silent, answering, handshake_only = Peer(f), Peer(f), Peer(f)
    silent.connect()
    answering.connect()
    handshake_only.pump()
    assert handshake_only.proto.session.handshake_complete
    pings = 0
    for second in range(1, 121):
        f.clock.advance(1)
        for msg in answering.take():
            if isinstance(msg, m.UserControl) and msg.event == m.UserControlEvent.PING_REQUEST:
                pings += 1
                answering.client.send(m.UserControl.ping_response(msg.value))
                answering.pump()
        if second == 14:
            assert not silent.closed and not handshake_only.closed
        if second == 30:
            assert silent.closed and handshake_only.closed
    assert not answering.closed and pings >= 6
    assert f.stats["idle_timeouts"] == 2
    assert "ping" in silent.proto.session.close_reason
    f.stopFactory()


def test_silent_connection_is_closed_after_the_default_handshake_timeout():
    f = RTMPServerFactory(make_config(), Clock())
    f.startFactory()
    p = Peer(f)
    f.clock.advance(4)
    assert not p.closed
    f.clock.advance(1)
    assert p.closed and f.stats["handshake_timeouts"] == 1
    f.stopFactory()


def test_player_that_takes_no_bytes_is_closed_after_send_timeout():
    f = RTMPServerFactory(make_config(extra_limits="send_timeout = 15"), Clock())
    f.startFactory()
    pub = Peer(f)
    sid, _ = pub.publish("s")
    stuck, slow = Peer(f), Peer(f)
    stuck.play("s")
    slow.play("s")
    stuck.proto.pauseProducing()  # the transport is full and stays full
    slow.proto.pauseProducing()
    for second in range(20):
        pub.send_media(sid, "v", second * 1000, key())
        pub.send_media(sid, "v", second * 1000 + 40, inter())
        if second == 10:
            slow.proto.resumeProducing()  # drained: the peer reads, just slowly
        if second == 11:
            slow.proto.pauseProducing()
        pub.pump()
        f.clock.advance(1)
        if second == 13:
            assert not stuck.closed
    assert stuck.closed and "nothing could be sent" in stuck.proto.session.close_reason
    assert not slow.closed and not pub.closed
    assert f.stats["send_timeouts"] == 1
    f.stopFactory()


def test_players_get_stream_eof_after_the_last_messages_and_no_notify_by_default(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    psid, _ = player.play("s")
    pub.send_media(sid, "v", 0, AVC_SEQ)
    pub.send_media(sid, "v", 0, key())
    player.take()
    player.proto.pauseProducing()  # the last messages wait in the player's backlog
    pub.send_media(sid, "v", 40, inter())
    pub.send_media(sid, "v", 80, inter())
    pub.call("deleteStream", None, float(sid))
    player.proto.resumeProducing()
    got = player.take()
    assert [x.timestamp for x in media(got)] == [40, 80] and stream_eofs(got) == []
    factory.clock.advance(EOF_DELAY)
    got = player.take()
    assert stream_eofs(got) == [psid] and statuses(got) == []
    # The next publisher: StreamBegin, no PublishNotify.
    pub2 = Peer(factory)
    pub2.publish("s")
    got = player.take()
    assert [x.value for x in got if isinstance(x, m.UserControl) and x.event == m.UserControlEvent.STREAM_BEGIN] == [psid]
    assert statuses(got) == []


def test_a_publisher_back_within_eof_delay_still_ends_the_previous_stream_first():
    f = RTMPServerFactory(make_config(extra_app="publish_notify = yes"), Clock())
    pub = Peer(f)
    sid, _ = pub.publish("s")
    player = Peer(f)
    psid, _ = player.play("s")
    pub.call("deleteStream", None, float(sid))
    pub2 = Peer(f)
    pub2.publish("s")
    got = player.take()
    events = [(x.event, x.value) for x in got if isinstance(x, m.UserControl)]
    assert events == [(m.UserControlEvent.STREAM_EOF, psid), (m.UserControlEvent.STREAM_BEGIN, psid)]
    assert statuses(got) == ["NetStream.Play.UnpublishNotify", "NetStream.Play.PublishNotify"]
    f.clock.advance(1)
    assert stream_eofs(player.take()) == []  # not sent twice


def test_one_publisher_read_is_one_write_per_player(factory):
    """Everything a player gets from one read of the publisher goes out in one write, at its end."""
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    players = [Peer(factory) for _ in range(3)]
    for p in players:
        p.play("s")
        p.take()
    writes = {id(p): [] for p in players}
    for p in players:
        w = writes[id(p)]
        orig = p.transport.writeSequence
        p.transport.writeSequence = lambda seq, orig=orig, w=w: (w.append(len(seq)), orig(seq))
    for kind, ts, payload in (("v", 0, key()), ("a", 5, aac()), ("v", 33, inter())):
        cls = m.VideoMessage if kind == "v" else m.AudioMessage
        pub.client.send(cls(ts, sid, payload))
    pub.proto.dataReceived(pub.client.data_to_send())  # one read, three messages
    for p in players:
        assert writes[id(p)] == [6]  # header + shared body of each message, one writeSequence
        assert [x.payload for x in media(p.take())] == [key(), aac(), inter()]
    assert factory.batch.depth == 0 and factory.batch.dirty == []
    # Outside a publisher's read (a command, a backlog flush) writes are not held.
    pub.send_media(sid, "v", 66, inter())
    assert all(len(w) == 2 for w in writes.values())


def test_player_command_output_keeps_its_order_with_held_media(factory):
    pub = Peer(factory)
    sid, _ = pub.publish("s")
    player = Peer(factory)
    psid, _ = player.play("s")
    pub.send_media(sid, "v", 0, key())
    player.take()
    # Media held for the player during the publisher's read, then a command reply to the player
    # inside the same read (as a handler might send): both arrive, media first.
    proto = player.proto
    factory.batch.depth += 1
    try:
        pub.client.send(m.VideoMessage(33, sid, inter()))
        pub.proto.session.data_received(pub.client.data_to_send())
        proto.session.status(psid, "status", "NetStream.Play.Custom", "x")
        assert player.transport.value() == b""  # held until the read ends
    finally:
        factory.batch.end()
    got = player.take()
    kinds = [type(x).__name__ for x in got if isinstance(x, (m.VideoMessage, m.CommandMessage))]
    assert kinds == ["VideoMessage", "CommandMessage"]


def test_player_whose_output_stays_full_is_closed_after_send_timeout():
    f = RTMPServerFactory(make_config(extra_limits="send_timeout = 5\nidle_timeout = 600\nping_interval = 0"), Clock())
    f.startFactory()
    pub = Peer(f)
    sid, _ = pub.publish("s")
    stuck, slow = Peer(f), Peer(f)
    stuck.play("s")
    slow.play("s")
    stuck.proto.pauseProducing()  # its peer takes nothing: Twisted's buffer stays over its limit
    for i in range(8):
        slow.proto.pauseProducing()
        f.clock.advance(1)
        slow.proto.resumeProducing()  # this one drains, slowly: never closed
        pub.send_media(sid, "v", i * 1000, key())
        pub.proto.last_received = f.clock.seconds()
    assert stuck.closed and stuck.proto.session.close_reason.endswith("(send_timeout)")
    assert not slow.closed and not pub.closed
    assert f.stats["send_timeouts"] == 1
    f.stopFactory()


def test_a_play_is_answered_in_one_write_then_its_first_media_in_one_more(factory):
    """StreamBegin, Play.Reset, Play.Start and |RtmpSampleAccess of one read go out together (not
    one write each), before the metadata and sequence headers; commands of one read are one write."""
    pub = Peer(factory)
    sid, _ = pub.publish("cam")
    pub.send_metadata(sid)
    pub.send_media(sid, "v", 0, AVC_SEQ)
    pub.send_media(sid, "a", 0, AAC_SEQ)
    player = Peer(factory)
    player.connect()
    writes = []
    t = player.transport
    orig_write, orig_seq = t.write, t.writeSequence
    t.write = lambda data: (writes.append(bytes(data)), orig_write(data))
    t.writeSequence = lambda seq: (writes.append(b"".join(seq)), orig_seq(seq))
    # createStream and play pipelined in one read, as some players send them.
    player.client.send_command("createStream", 2.0, None)
    player.client.send_command("play", 0.0, None, "cam", -2.0, stream_id=1)
    player.proto.dataReceived(player.client.data_to_send())
    assert len(writes) == 2
    first = player.client.receive_data(writes[0])
    assert first[0].name == "_result" and statuses(first) == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    assert isinstance(first[1], m.UserControl) and first[1].event == m.UserControlEvent.STREAM_BEGIN
    assert [x.values[0] for x in first if isinstance(x, m.DataMessage)] == ["|RtmpSampleAccess"]
    second = player.client.receive_data(writes[1])
    assert [type(x).__name__ for x in second] == ["DataMessage", "VideoMessage", "AudioMessage"]
    assert second[0].values[0] == "onMetaData" and [x.payload for x in second[1:]] == [AVC_SEQ, AAC_SEQ]


def test_access_log_event_text_and_fields():
    """The access line (formatted by us) reads as it did when Twisted formatted it from the fields."""
    from twisted.logger import capturedLogs, formatEvent

    f = RTMPServerFactory(make_config(server_extra="access_log = yes"), Clock())
    p = Peer(f)
    p.play("cam")
    f.clock.advance(2.25)
    with capturedLogs() as events:
        p.lose()
    (event,) = [e for e in events if e.get("log_namespace") == "rtmpserver.access"]
    assert {k: event[k] for k in ("peer", "app", "streams", "role", "duration", "dropped", "resyncs", "reason")} == {
        "peer": "127.0.0.1:5000", "app": "live", "streams": "cam", "role": "player", "duration": 2.25,
        "dropped": 0, "resyncs": 0, "reason": "Connection was closed cleanly.",
    }
    assert event["bytes_in"] > 3000 and event["bytes_out"] > 3000
    fields_format = (
        "{peer} app={app} streams={streams} role={role} bytes_in={bytes_in} bytes_out={bytes_out} "
        "duration={duration:.1f}s dropped={dropped} resyncs={resyncs} reason={reason!r}"
    )
    assert formatEvent(event) == fields_format.format(**event)
    assert formatEvent(event).startswith("127.0.0.1:5000 app=live streams=cam role=player bytes_in=")
