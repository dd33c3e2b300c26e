"""Relay lifecycle with a fake clock: connect timeout, backoff with full jitter and its cap, counters, logs."""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from rtmpserver import config as configmod
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.relay import manager as rm
from rtmpserver.relay.client import PLAY
from rtmpserver.relay.url import parse_url
from tests.relay.helpers import Recorder
from tests.relay.loop import LoopEndpoint


class Randoms:
    """Deterministic "random" draws, recorded."""

    def __init__(self, values):
        self.values = list(values)
        self.drawn = 0

    def __call__(self):
        self.drawn += 1
        return self.values.pop(0) if self.values else 1.0


def make(ep, clock, rand, **settings):
    s = rm.RelaySettings(**settings)
    return rm.Relay(parse_url("rtmp://origin/live/cam?token=s3cret"), PLAY, clock=clock, endpoint_for=lambda u: ep,
                    consumer=Recorder(), settings=s, random=rand)  # fmt: skip


def server(clock):
    cfg = configmod.parse("[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\n", "test.ini")
    return RTMPServerFactory(cfg, clock)


def test_backoff_is_full_jitter_exponential_and_capped():
    clock = Clock()
    ep = LoopEndpoint(None, clock)
    ep.fail_with = ConnectionRefusedError("refused")
    rand = Randoms([1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.25, 1.0])
    relay = make(ep, clock, rand, backoff_initial=1.0, backoff_max=8.0, backoff_multiplier=2.0)
    relay.start()
    delays = []
    for _ in range(8):
        assert relay.state == rm.BACKOFF
        delays.append(relay.next_delay)
        clock.advance(relay.next_delay)
    # caps 1, 2, 4, 8, 8, 8, 8, 8 times the draws
    assert delays == [1.0, 1.0, 4.0, 8.0, 8.0, 8.0, 2.0, 8.0]
    assert ep.attempts == 9 and relay.reconnects == 8 and relay.failures == 9
    d = relay.describe()
    assert d["state"] == "backoff" and d["reconnects"] == 8 and "refused" in d["last_error"]
    assert "s3cret" not in repr(d)
    relay.stop()
    assert relay.state == rm.STOPPED and not clock.getDelayedCalls()


def test_jitter_stays_within_bounds_with_real_randomness():
    import random

    clock = Clock()
    ep = LoopEndpoint(None, clock)
    ep.fail_with = ConnectionRefusedError("refused")
    relay = make(ep, clock, random.Random(7).random, backoff_initial=0.5, backoff_max=10.0)
    relay.start()
    for n in range(1, 30):
        cap = min(10.0, 0.5 * 2 ** (n - 1))
        assert 0.0 <= relay.next_delay <= cap
        clock.advance(relay.next_delay)
    relay.stop()


def test_connect_timeout():
    clock = Clock()
    ep = LoopEndpoint(None, clock)
    ep.hang = True
    relay = make(ep, clock, Randoms([0.5]), connect_timeout=3.0)
    relay.start()
    assert relay.state == rm.CONNECTING
    clock.advance(2.9)
    assert relay.state == rm.CONNECTING
    clock.advance(0.2)
    assert relay.state == rm.BACKOFF and relay.last_error == "connect timed out after 3 s"


def test_recovery_resets_the_backoff_and_counts():
    clock = Clock()
    f = server(clock)
    ep = LoopEndpoint(f, clock)
    ep.fail_with = ConnectionRefusedError("refused")
    relay = make(ep, clock, Randoms([1.0] * 10))
    relay.start()
    clock.advance(relay.next_delay)
    clock.advance(relay.next_delay)
    assert relay.failures == 3
    ep.fail_with = None
    clock.advance(relay.next_delay)
    ep.flush()
    assert relay.state == rm.PLAYING and relay.failures == 0 and relay.connections == 1 and relay.reconnects == 3
    # The server drops us: back off from the start again (cap = backoff_initial).
    for p in list(f.connections):
        p.transport.loseConnection()
    ep.flush()
    assert relay.state == rm.BACKOFF and relay.failures == 1 and relay.next_delay == 1.0
    clock.advance(1.0)
    ep.flush()
    assert relay.state == rm.PLAYING and relay.connections == 2
    relay.stop()
    ep.flush()
    assert relay.state == rm.STOPPED


def test_start_timeout_and_idle_timeout():
    clock = Clock()
    f = server(clock)
    ep = LoopEndpoint(f, clock)
    relay = make(ep, clock, Randoms([0.0] * 10), start_timeout=5.0, idle_timeout=4.0)
    relay.start()
    # Connected but no bytes move: the handshake never completes.
    assert relay.state == rm.HANDSHAKING
    clock.advance(5.0)
    ep.flush()
    assert relay.state == rm.BACKOFF and "not playing within 5 s" in relay.last_error
    clock.advance(0)
    ep.flush()
    assert relay.state == rm.PLAYING
    # Playing a stream nobody publishes: the origin sends nothing, so the idle timeout fires.
    clock.advance(4.0)
    ep.flush()
    assert relay.state == rm.BACKOFF and "nothing received for 4 s" in relay.last_error
    relay.stop()


def test_one_log_line_per_distinct_error():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock = Clock()
        ep = LoopEndpoint(None, clock)
        ep.fail_with = ConnectionRefusedError("refused")
        relay = make(ep, clock, Randoms([]))
        relay.start()
        for _ in range(10):
            clock.advance(relay.next_delay)
        ep.fail_with = ConnectionRefusedError("other")
        clock.advance(relay.next_delay)
        assert ep.attempts == 12
        relay.stop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if "relay" in e.get("log_format", "") and e.get("log_level").name in ("warn", "info")]
    warns = [e for e in mine if e["log_level"].name == "warn"]
    assert len(warns) == 2, [e["log_format"] for e in mine]
    assert all("s3cret" not in repr(e.get("error")) for e in warns)
