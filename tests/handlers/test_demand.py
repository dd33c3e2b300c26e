"""OnDemand: sources started by the first player, kept for the linger after the last one left."""

from __future__ import annotations

from twisted.internet.task import Clock

from rtmpserver.handlers.demand import OnDemand


class Source:
    def __init__(self, name):
        self.name = name
        self.closed = 0

    def close(self):
        self.closed += 1


def make(limit=4, linger=5.0, fail=()):
    clock = Clock()
    made = []

    def start(name, args):
        if name in fail:
            raise ValueError("refused")
        s = Source(name)
        s.args = args
        made.append(s)
        return s

    return OnDemand(clock, linger, start, limit, "test"), clock, made


def test_one_source_per_stream_closed_linger_after_the_last_player():
    od, clock, made = make()
    od.joined("cam", 1, {"k": "v"})
    od.joined("cam", 2, {})
    od.joined("cam", 2, {})  # the same client playing it on a second NetStream
    assert [s.name for s in made] == ["cam"] and made[0].args == {"k": "v"}
    od.left("cam", 1)
    od.left("cam", 2)
    clock.advance(10)
    assert made[0].closed == 0  # client 2 still plays it once
    od.left("cam", 2)
    clock.advance(4.9)
    assert made[0].closed == 0 and od.wanted("cam")
    clock.advance(0.2)
    assert made[0].closed == 1 and not od.wanted("cam")


def test_a_player_within_the_linger_keeps_the_source():
    od, clock, made = make()
    od.joined("cam", 1, {})
    od.left("cam", 1)
    clock.advance(3)
    od.joined("cam", 2, {})
    clock.advance(10)
    assert len(made) == 1 and made[0].closed == 0
    od.left("cam", 2)
    od.left("cam", 2)  # an extra close for a client that is not counted changes nothing
    od.left("other", 9)
    clock.advance(5.1)
    assert made[0].closed == 1


def test_limit_and_refusals_start_nothing():
    od, clock, made = make(limit=1, fail=("bad",))
    assert od.joined("bad", 1, {}) is None and not od.wanted("bad")
    assert od.joined("a", 1, {}) is not None
    assert od.joined("b", 1, {}) is None  # at the limit
    assert [s.name for s in made] == ["a"]
    assert od.close_all() == [None] and made[0].closed == 1 and not od.wanted("a")
    clock.advance(100)
    assert made[0].closed == 1
