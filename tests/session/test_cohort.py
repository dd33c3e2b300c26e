"""PlayerCohort: steady players are sent each message's bytes worked out once.

The contract is that a cohort changes nothing a player receives: every test here plays the same
script twice, once as the server runs and once with cohorts switched off (``LiveStream._gather``
never puts anyone in one), and compares the exact bytes each player was sent after its play
started, its byte counter and its reported position.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from rtmpserver.codec import amf0
from rtmpserver.codec import messages as m
from rtmpserver.hub import LiveStream
from rtmpserver.interfaces import ICohortSink, IOutputCohort
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.session.cohort import PlayerCohort
from rtmpserver.session.streams import PlayerStream
from tests.test_protocol import Peer, make_config


def _video(keyframe: bool, size: int) -> bytes:
    return (b"\x17" if keyframe else b"\x27") + b"\x01\x00\x00\x00" + bytes((i * 7) & 0xFF for i in range(size))


def _audio(size: int) -> bytes:
    return b"\xaf\x01" + bytes((i * 3) & 0xFF for i in range(size))


class Run:
    """One server, one publisher, players joining and doing things as a script says."""

    def __init__(self, chunk_size: int = 4096) -> None:
        extra = f"out_chunk_size = {chunk_size}\n"
        self.f = RTMPServerFactory(make_config(server_extra=extra), Clock())
        self.f.startFactory()
        self.pub = Peer(self.f, port=1000)
        self.sid, _ = self.pub.publish("s")
        self.ts = 0
        self.players: list = []  # [peer, stream id, bytes received since play]
        self.most_members = 0
        self.next_port = 2000

    def live(self) -> LiveStream:
        return self.f.hub.get("live", "s")

    def _capture(self, p) -> None:
        p[2] += p[0].transport.value()
        p[0].transport.clear()

    def _player_sends(self, p, name: str, *args) -> None:
        self._capture(p)
        peer = p[0]
        peer.tid += 1
        peer.client.send_command(name, peer.tid, None, *args, stream_id=p[1])
        peer.proto.dataReceived(peer.client.data_to_send())

    def _note(self) -> None:
        live = self.live()
        if live is not None:
            for c in live._cohorts.values():
                self.most_members = max(self.most_members, len(c.members))

    def do(self, op: tuple) -> None:
        kind = op[0]
        players = [p for p in self.players if p[0].proto.session is not None]
        pick = players[op[1] % len(players)] if players and len(op) > 1 and isinstance(op[1], int) else None
        if kind == "play":
            self.next_port += 1
            peer = Peer(self.f, port=self.next_port)
            sid, _ = peer.play("s")
            peer.transport.clear()
            self.players.append([peer, sid, bytearray()])
        elif kind == "v":
            self.ts += op[3]
            self.pub.send_media(self.sid, "v", self.ts, _video(op[1], op[2]))
        elif kind == "a":
            self.ts += op[2]
            self.pub.send_media(self.sid, "a", self.ts, _audio(op[1]))
        elif kind == "two":
            # Two messages in one read of the publisher.
            self.ts += 10
            self.pub.client.send(m.AudioMessage(self.ts, self.sid, _audio(op[1])))
            self.pub.client.send(m.VideoMessage(self.ts + 5, self.sid, _video(False, op[2])))
            self.pub.pump()
        elif kind == "back":
            # A timestamp behind the previous one (players clamp it).
            self.pub.send_media(self.sid, "a", max(0, self.ts - op[1]), _audio(30))
        elif kind == "data":
            payload = amf0.encode("onCuePoint", {"n": float(self.ts)})
            self.pub.client.send(m.DataMessage(self.ts, self.sid, [], payload))
            self.pub.pump()
        elif kind == "meta":
            self.pub.send_metadata(self.sid, {"width": float(op[1]), "height": 240.0})
        elif kind == "seqheader":
            self.pub.send_media(self.sid, "v", self.ts, b"\x17\x00\x00\x00\x00" + bytes(op[1]))
        elif kind == "republish":
            if self.pub.proto.session is not None:
                self.pub.lose()
            self.pub = Peer(self.f, port=1000 + len(self.players) + self.ts % 997)
            self.sid, _ = self.pub.publish("s")
        elif pick is None:
            return
        elif kind == "pause":
            self._player_sends(pick, "pause", op[2], float(self.ts))
        elif kind == "seek":
            self._player_sends(pick, "seek", float(self.ts))
        elif kind == "receiveVideo":
            self._player_sends(pick, "receiveVideo", op[2])
        elif kind == "receiveAudio":
            self._player_sends(pick, "receiveAudio", op[2])
        elif kind == "full":
            self._capture(pick)
            pick[0].proto.pauseProducing()
        elif kind == "drain":
            self._capture(pick)
            pick[0].proto.resumeProducing()
        elif kind == "status":
            # A command to a player while the publisher's read is being handled.
            self.f.batch.depth += 1
            try:
                self.ts += 33
                self.pub.client.send(m.VideoMessage(self.ts, self.sid, _video(False, 50)))
                self.pub.proto.session.data_received(self.pub.client.data_to_send())
                pick[0].proto.session.status(pick[1], "status", "NetStream.Play.Custom", "x")
            finally:
                self.f.batch.end()
        elif kind == "leave":
            self._capture(pick)
            pick.append(pick[0].proto.session.bytes_out)
            pick[0].lose()
        self._note()

    def results(self) -> list:
        now = self.f.clock.seconds()
        out = []
        for p in self.players:
            self._capture(p)
            session = p[0].proto.session
            if session is None:  # it left: its byte count when it did
                out.append((bytes(p[2]), p[3], None))
                continue
            stream = session.streams.get(p[1])
            position = stream.describe(now)["timestamp"] if type(stream) is PlayerStream else None
            out.append((bytes(p[2]), session.bytes_out, position))
        return out


def play(script, monkeypatch, cohorts: bool, chunk_size: int = 4096):
    with monkeypatch.context() as patch:
        if not cohorts:
            patch.setattr(LiveStream, "_gather", lambda self: None)
        run = Run(chunk_size)
        for op in script:
            run.do(op)
        return run.results(), run.most_members


def same_bytes(script, monkeypatch, chunk_size: int = 4096) -> int:
    with_cohorts, most = play(script, monkeypatch, True, chunk_size)
    without, none = play(script, monkeypatch, False, chunk_size)
    assert none == 0
    assert len(with_cohorts) == len(without)
    for i, (a, b) in enumerate(zip(with_cohorts, without, strict=True)):
        assert a[0] == b[0], f"player {i}: bytes differ"
        assert a[1:] == b[1:], f"player {i}: bytes_out / position differ"
    return most


def steady(n: int, start: int = 0) -> list:
    """A second of 30 fps video with ~43 audio messages, a keyframe first."""
    ops = []
    for i in range(start, start + n):
        ops.append(("v", i % 30 == 0, 400 + (i * 37) % 900, 33))
        if i % 3 != 2:
            ops.append(("a", 20 + i % 5, 0 if i % 3 else 12))
    return ops


def test_interfaces():
    verifyClass(IOutputCohort, PlayerCohort)
    verifyClass(ICohortSink, PlayerStream)


def test_steady_players_share_and_get_the_same_bytes(monkeypatch):
    script = [("v", True, 500, 0), ("play",), ("play",), *steady(40), ("play",), *steady(70, 40), ("play",),
              *steady(40, 110)]
    most = same_bytes(script, monkeypatch)
    assert most == 4  # all four players ended in one cohort


def test_one_write_per_player_per_read(monkeypatch):
    run = Run()
    run.do(("v", True, 500, 0))
    for _ in range(3):
        run.do(("play",))
    for op in steady(35):
        run.do(op)
    live = run.live()
    (cohort,) = live._cohorts.values()
    assert len(cohort.members) == 3 and not live._solo
    writes = []
    for p in run.players:
        t = p[0].transport
        orig = t.writeSequence
        t.writeSequence = lambda parts, orig=orig: (writes.append(len(parts)), orig(parts))
    run.do(("two", 30, 200))
    assert writes == [4, 4, 4]  # header + body of both messages, in one write each
    cohort.live.release(next(iter(cohort.members)))
    verifyObject(IOutputCohort, cohort)


def test_paused_seeking_filtering_players_leave_and_come_back(monkeypatch):
    script = [("v", True, 500, 0), ("play",), ("play",), ("play",), *steady(35),
              ("pause", 0, True), *steady(10, 35), ("pause", 0, False), *steady(40, 45),
              ("seek", 1), *steady(20, 85), ("receiveVideo", 2, False), *steady(10, 105),
              ("receiveVideo", 2, True), *steady(40, 115), ("receiveAudio", 1, False), *steady(5, 155),
              ("receiveAudio", 1, True), *steady(40, 160)]
    assert same_bytes(script, monkeypatch) >= 2


def test_full_output_leaves_and_backlog_rules_apply(monkeypatch):
    # Full for 5 s of stream time: over player_backlog_time (3 s), so the backlog drops to keyframes.
    script = [("v", True, 500, 0), ("play",), ("play",), *steady(35), ("full", 0), *steady(150, 35),
              ("drain", 0), *steady(65, 185)]
    assert same_bytes(script, monkeypatch) == 2


def test_data_messages_sequence_headers_backwards_timestamps_and_commands(monkeypatch):
    script = [("v", True, 500, 0), ("play",), ("play",), *steady(35), ("data",), *steady(35, 35),
              ("seqheader", 30), *steady(35, 70), ("back", 50), *steady(35, 105), ("meta", 640),
              *steady(35, 140), ("status", 1), *steady(35, 175), ("two", 10, 300)]
    assert same_bytes(script, monkeypatch) == 2


def test_republish_and_leaving(monkeypatch):
    script = [("v", True, 500, 0), ("play",), ("play",), ("play",), *steady(35), ("leave", 1),
              *steady(5, 35), ("republish",), ("v", True, 600, 10), *steady(70, 1), ("leave", 0),
              *steady(10, 71)]
    assert same_bytes(script, monkeypatch) >= 2


def test_small_chunk_size(monkeypatch):
    script = [("v", True, 500, 0), ("play",), ("play",), *steady(70)]
    assert same_bytes(script, monkeypatch, chunk_size=128) == 2


def test_extended_timestamps(monkeypatch):
    run_ops = [("v", True, 500, 0xFFFFF0), ("play",), ("play",), *steady(35), ("a", 20, 0x1000000),
               *steady(35, 35)]
    same_bytes(run_ops, monkeypatch)


def test_a_second_netstream_on_the_connection_leaves(monkeypatch):
    run = Run()
    run.do(("v", True, 500, 0))
    run.do(("play",))
    run.do(("play",))
    for op in steady(35):
        run.do(op)
    (cohort,) = run.live()._cohorts.values()
    assert len(cohort.members) == 2
    run.players[0][0].create_stream()
    assert len(cohort.members) == 1
    stream = run.players[0][0].proto.session.streams[run.players[0][1]]
    assert stream.cohort is None and stream.cohort_key() is None  # two NetStreams: never shares


_op = st.one_of(
    st.tuples(st.just("v"), st.booleans(), st.integers(1, 3000), st.integers(0, 70)),
    st.tuples(st.just("a"), st.integers(1, 400), st.integers(0, 40)),
    st.tuples(st.just("play")),
    st.tuples(st.just("two"), st.integers(1, 300), st.integers(1, 3000)),
    st.tuples(st.just("back"), st.integers(1, 100)),
    st.tuples(st.just("data")),
    st.tuples(st.just("meta"), st.integers(1, 4000)),
    st.tuples(st.just("pause"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("seek"), st.integers(0, 7)),
    st.tuples(st.just("receiveVideo"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("receiveAudio"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("full"), st.integers(0, 7)),
    st.tuples(st.just("drain"), st.integers(0, 7)),
    st.tuples(st.just("status"), st.integers(0, 7)),
    st.tuples(st.just("leave"), st.integers(0, 7)),
    st.tuples(st.just("republish")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_op, max_size=80), st.sampled_from([128, 4096]))
def test_any_script_gives_every_player_the_same_bytes(monkeypatch, script, chunk_size):
    # Steady stretches in between, so cohorts form and break up in all sorts of states.
    ops = [("v", True, 500, 0), ("play",)]
    for i, op in enumerate(script):
        ops.append(op)
        if i % 10 == 9:
            ops += steady(31, i)
    same_bytes(ops, monkeypatch, chunk_size)


@pytest.mark.parametrize("players", [1, 5])
def test_cohorts_are_dropped_with_the_stream(monkeypatch, players):
    run = Run()
    run.do(("v", True, 500, 0))
    for _ in range(players):
        run.do(("play",))
    for op in steady(35):
        run.do(op)
    assert run.live()._cohorts
    for p in run.players:
        p[0].lose()
    run.pub.lose()
    assert run.f.hub.get("live", "s") is None
