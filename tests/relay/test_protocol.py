"""RelayProtocol on a StringTransport, PullSource/PushSink edge cases, extended timestamps."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection
from rtmpserver.hub import Hub
from rtmpserver.relay import manager as rm
from rtmpserver.relay.client import PLAY, PUBLISH, RelayProtocol, RelaySession
from rtmpserver.relay.pull import PullSource
from rtmpserver.relay.url import parse_url
from tests.relay.helpers import AVC_SEQ, Recorder, key
from tests.relay.loop import LoopEndpoint
from tests.relay.test_inprocess import LocalPublisher, server


class Owner:
    def __init__(self):
        self.events = []

    def phase_changed(self, p, phase):
        self.events.append(("phase", phase))

    def connection_lost(self, p, reason):
        self.events.append(("lost", reason))

    def writable(self, p):
        self.events.append(("writable",))


def connected(mode=PLAY):
    owner = Owner()
    s = RelaySession(parse_url("rtmp://origin/live/cam"), mode, consumer=Recorder() if mode == PLAY else None)
    p = RelayProtocol(s, owner)
    t = StringTransport()
    p.makeConnection(t)
    return p, t, owner


def test_protocol_sends_c0c1_and_registers_as_streaming_producer():
    p, t, _ = connected()
    assert t.value()[:1] == b"\x03" and len(t.value()) == 1537
    assert t.producer is p and t.streaming


def test_protocol_aborts_on_garbage_and_reports_why():
    p, t, owner = connected()
    srv = RTMPConnection(server=True)
    srv.receive_data(t.value())
    t.clear()
    p.dataReceived(srv.data_to_send())
    srv.receive_data(t.value())
    p.dataReceived(srv.writer.write(3, 0, 20, 0, b"\xff\xff\xff"))
    assert t.disconnecting  # StringTransport marks abortConnection as disconnecting
    p.connectionLost(None)
    assert owner.events[-1][0] == "lost" and owner.events[-1][1].startswith("protocol error")


def test_pause_and_resume_report_writable():
    p, t, owner = connected(PUBLISH)
    p.pauseProducing()
    assert p.paused
    p.resumeProducing()
    assert not p.paused and owner.events[-1] == ("writable",)


def test_extended_timestamps_on_frames_survive():
    """Past 0xFFFFFF ms (4.66 h) every chunk carries the extended timestamp; the server must read it back."""
    s = RelaySession(parse_url("rtmp://origin/live/cam"), PUBLISH)
    srv = RTMPConnection(server=True)
    s.start()
    srv.receive_data(s.data_to_send())
    s.receive_data(srv.data_to_send())
    srv.receive_data(s.data_to_send())
    srv.send_command("_result", 1.0, None, {"code": "NetConnection.Connect.Success"})
    s.receive_data(srv.data_to_send())
    srv.receive_data(s.data_to_send())
    srv.send_command("_result", 4.0, None, 1.0)
    srv.send(m.CommandMessage(1, "onStatus", 0.0, None, [{"level": "status", "code": "NetStream.Publish.Start"}]))
    s.receive_data(srv.data_to_send())
    srv.receive_data(s.data_to_send())
    live = Hub().get_or_create("live", "x")
    live.start(LocalPublisher(), 0.0)
    live.video(0, AVC_SEQ)
    big = key(1, 10000)
    live.video(0x1000000 + 5, big)
    frame = live.gop[0]
    s.send_frame(frame, 0x1000000 + 5)
    s.send_frame(frame, 0x1000000 + 38)
    s.send_frame(frame, 40)  # goes backwards: a new fmt 0 header
    got = srv.receive_data(s.data_to_send())
    assert [(x.timestamp, x.payload) for x in got] == [(0x1000005, big), (0x1000026, big), (40, big)]


def test_pull_source_leaves_a_local_publisher_alone():
    clock = Clock()
    hub = Hub()
    live = hub.get_or_create("live", "cam")
    local = LocalPublisher()
    live.start(local, 0.0)
    source = PullSource(hub, "live", "cam", clock)
    source.relay_started()
    source.video(0, key(1))
    assert live.publisher is local and live.frames_in == 0 and source.closing
    source.relay_stopped("x")
    assert live.publisher is local


def test_restart_after_stop_is_not_confused_by_the_old_connection():
    clock = Clock()
    f = server(clock)
    ep = LoopEndpoint(f, clock)
    relay = rm.Relay(parse_url("rtmp://origin/live/cam"), PLAY, clock=clock, endpoint_for=lambda u: ep, consumer=Recorder())
    relay.start()
    ep.flush()
    assert relay.state == rm.PLAYING
    relay.stop()
    relay.start()  # before the old connection's end has been seen
    ep.flush()
    assert relay.state == rm.PLAYING and relay.failures == 0 and relay.connections == 2
    assert relay.describe()["bytes_in"] > 0
    relay.stop()
    ep.flush()
    assert relay.state == rm.STOPPED and relay._timer is None
