"""Push and pull relays against our own server (RTMPServerFactory), in memory: no sockets.

A local stream is pushed through a publish relay into the server, and played back from it through
a pull relay into a second hub; every frame and timestamp must arrive, in order.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from rtmpserver import config as configmod
from rtmpserver.hub import Hub
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.relay import manager as rm
from rtmpserver.relay.client import PLAY, PUBLISH
from rtmpserver.relay.pull import PullSource
from rtmpserver.relay.push import PushSink
from rtmpserver.relay.url import parse_url
from rtmpserver.session.streams import EOF_DELAY
from tests.relay.helpers import AAC_SEQ, AVC_SEQ, METADATA, Recorder, media
from tests.relay.loop import LoopEndpoint


def server(clock):
    cfg = configmod.parse("[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\n", "test.ini")
    f = RTMPServerFactory(cfg, clock)
    return f


class LocalPublisher:
    """Stands in for an RTMP publisher on the local hub (what the hub needs of one)."""

    last_media_time = 0.0
    closing = False

    def evict(self, reason):
        pass


def setup():
    clock = Clock()
    f = server(clock)
    ep = LoopEndpoint(f, clock)
    return clock, f, ep


def test_push_then_pull_delivers_every_frame_and_timestamp():
    clock, f, ep = setup()
    local = Hub()
    src = local.get_or_create("live", "src")
    src.start(LocalPublisher(), 0.0)

    push = rm.Relay(parse_url("rtmp://origin/live/cam?key=s3cret"), PUBLISH, clock=clock, endpoint_for=lambda u: ep)
    sink = PushSink(src, push)
    src.add_sink(sink)
    push.start()
    ep.flush()
    assert push.state == rm.PUBLISHING, push.describe()
    origin = f.hub.get("live", "cam")
    assert origin is not None and origin.active  # the query string went along with the name

    rec = Recorder()
    pull = rm.Relay(parse_url("rtmp://origin/live/cam"), PLAY, clock=clock, endpoint_for=lambda u: ep, consumer=rec)
    pull.start()
    ep.flush()
    assert pull.state == rm.PLAYING, pull.describe()

    src.set_metadata(0, METADATA)
    src.video(0, AVC_SEQ)
    src.audio(0, AAC_SEQ)
    sent = media(seconds=3)
    for kind, ts, payload in sent:
        getattr(src, kind)(ts, payload)
        ep.flush()
    got = rec.events
    assert got[0] == ("started",)
    headers = [e for e in got if e[0] in ("metadata",) or (e[0] != "started" and e[2] in (AVC_SEQ, AAC_SEQ))]
    assert [e[0] for e in headers] == ["metadata", "video", "audio"]
    assert headers[0][2] == METADATA
    assert [e for e in rec.media() if e[2] not in (AVC_SEQ, AAC_SEQ)] == list(sent)
    d = push.describe()
    assert d["url"] == "rtmp://origin/live/cam" and "s3cret" not in repr(d)
    assert d["bytes_out"] > sum(len(p) for _, _, p in sent) and d["state"] == "publishing"
    assert pull.describe()["bytes_in"] > sum(len(p) for _, _, p in sent)
    assert sink.dropped == 0

    # The local publisher goes away and the relays are stopped: the origin stream ends, the player is told.
    push.stop()
    ep.flush()
    clock.advance(EOF_DELAY)  # StreamEOF follows the publisher's end (rtmpserver.session.streams)
    ep.flush()
    assert push.state == rm.STOPPED
    origin = f.hub.get("live", "cam")
    assert origin is None or not origin.active
    assert rec.kinds()[-1] == "stopped"
    pull.stop()
    ep.flush()
    assert pull.state == rm.STOPPED and pull.reconnects == 0


def test_pull_source_feeds_a_local_hub():
    clock, f, ep = setup()
    # A publisher on the origin, through a push relay from a hub of its own.
    up = Hub().get_or_create("live", "src")
    up.start(LocalPublisher(), 0.0)
    push = rm.Relay(parse_url("rtmp://origin/live/cam"), PUBLISH, clock=clock, endpoint_for=lambda u: ep)
    up.add_sink(PushSink(up, push))
    push.start()
    ep.flush()

    edge = Hub()
    source = PullSource(edge, "live", "cam", clock)
    pull = rm.Relay(parse_url("rtmp://origin/live/cam"), PLAY, clock=clock, endpoint_for=lambda u: ep, consumer=source)
    source.attach(pull)
    pull.start()
    ep.flush()
    live = edge.get("live", "cam")
    assert live is not None and live.publisher is source and not source.closing
    up.set_metadata(0, METADATA)
    up.video(0, AVC_SEQ)
    up.audio(0, AAC_SEQ)
    for kind, ts, payload in media(seconds=1):
        getattr(up, kind)(ts, payload)
    ep.flush()
    assert live.metadata.payload == METADATA
    assert live.video_header.payload == AVC_SEQ and live.audio_header.payload == AAC_SEQ
    assert live.frames_in == 2 + len(media(seconds=1))
    assert live.gop and live.gop[0].keyframe

    # A local publisher takes over: the pull relay stops.
    live.stop()
    source.evict("taken over by a new publisher")
    ep.flush()
    assert pull.state == rm.STOPPED
    push.stop()


def test_push_waits_for_keyframe_and_drops_while_the_upstream_is_full():
    clock, f, ep = setup()
    src = Hub().get_or_create("live", "src")
    src.start(LocalPublisher(), 0.0)
    push = rm.Relay(parse_url("rtmp://origin/live/cam"), PUBLISH, clock=clock, endpoint_for=lambda u: ep)
    sink = PushSink(src, push, backlog_bytes=6000)
    src.add_sink(sink)
    push.start()
    ep.flush()
    rec = Recorder()
    pull = rm.Relay(parse_url("rtmp://origin/live/cam"), PLAY, clock=clock, endpoint_for=lambda u: ep, consumer=rec)
    pull.start()
    ep.flush()
    src.video(0, AVC_SEQ)
    frames = media(seconds=2)
    video = [e for e in frames if e[0] == "video"]
    # Inter frames before the first keyframe are never sent.
    src.video(0, video[1][2])
    ep.flush()
    assert [e for e in rec.media() if e[2] != AVC_SEQ] == []
    # The upstream reports full: frames queue to the bound, then the queue goes and we wait for a key.
    push.protocol.pauseProducing()
    for _kind, ts, payload in video[:20]:
        src.video(ts, payload)
    assert sink.resyncs == 1 and sink.dropped > 0
    push.protocol.resumeProducing()
    for _kind, ts, payload in video[20:]:
        src.video(ts, payload)
    ep.flush()
    got = [(e[1], e[2]) for e in rec.media() if e[2] != AVC_SEQ]
    # After the drop, delivery resumed exactly at the next keyframe (frame 30) and kept every frame after it.
    # (The origin rebases its player to start at 0, so compare times relative to that keyframe.)
    assert got[0] == (0, video[30][2])
    assert got == [(ts - video[30][1], p) for _, ts, p in video[30:]]
    push.stop()
    pull.stop()


def test_origin_unpublish_and_republish_stop_and_restart_the_local_stream():
    clock, f, ep = setup()
    up = Hub().get_or_create("live", "src")
    up.start(LocalPublisher(), 0.0)
    push = rm.Relay(parse_url("rtmp://origin/live/cam"), PUBLISH, clock=clock, endpoint_for=lambda u: ep)
    up.add_sink(PushSink(up, push))
    push.start()
    ep.flush()
    edge = Hub()
    source = PullSource(edge, "live", "cam", clock)
    pull = rm.Relay(parse_url("rtmp://origin/live/cam"), PLAY, clock=clock, endpoint_for=lambda u: ep, consumer=source)
    source.attach(pull)
    pull.start()
    ep.flush()
    assert edge.get("live", "cam").publisher is source
    push.stop()  # the origin's publisher leaves
    ep.flush()
    clock.advance(EOF_DELAY)
    ep.flush()
    assert pull.state == rm.PLAYING  # the play connection stays
    assert edge.get("live", "cam") is None or not edge.get("live", "cam").active
    push.start()  # and comes back: StreamBegin
    ep.flush()
    live = edge.get("live", "cam")
    assert live is not None and live.publisher is source and source.starts == 2
    up.video(0, AVC_SEQ)
    up.video(0, media(seconds=1)[0][2])
    ep.flush()
    assert live.video_header is not None and live.gop
    pull.stop()
    push.stop()
    ep.flush()
    assert not live.active
