"""Stream churn leaves nothing behind (issue 16; docs/performance.md, "Memory under churn").

Publish/play/unpublish cycles with players, in process, with the cyclic GC switched off: an ended
session must be freed by reference counting alone, so after N cycles the hub, the factory's tables,
the number of session-level objects and the memory traced in rtmpserver's own code are back at
their starting size.  A reference cycle through a session (protocol <-> session, session <-> its
view) would keep every ended session alive until the next full collection, which under churn can be
a long time; with the GC off such a cycle is never collected, so it shows here as growth.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
import weakref
from collections import Counter
from contextlib import contextmanager
from unittest import mock

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure

import rtmpserver
from rtmpserver.protocol import RTMPServerFactory
from tests.test_protocol import (
    AAC_SEQ,
    AVC_SEQ,
    Peer,
    aac,
    inter,
    key,
    make_config,
    statuses,
)

# Objects that belong to one connection or one stream.
WATCHED = ("RTMPServerProtocol", "Session", "SessionView", "SessionStats", "RTMPConnection", "ChunkReader",
           "ChunkWriter", "PlayerStream", "PublisherStream", "LiveStream", "Frame", "ConnectRequest",
           "PublishRequest", "PlayRequest", "StreamClosed")
PACKAGE = os.path.dirname(rtmpserver.__file__)


@contextmanager
def gc_off():
    """The cyclic GC off, and log events dropped: until logging begins (twistd begins it, a test
    run does not) Twisted buffers events, and what they refer to, in memory; that buffer is the
    test process's, not the server's, and would hide what the server itself keeps."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with mock.patch.object(Logger, "emit", lambda self, level, format=None, **kwargs: None):
            yield
    finally:
        if was:
            gc.enable()


def counts() -> Counter:
    watched = set(WATCHED)
    return Counter(n for n in (type(o).__name__ for o in gc.get_objects()) if n in watched)


def lose(peer: Peer) -> None:
    """The connection goes away as a TCP transport reports it: connectionLost, then the transport
    forgets its producer (twisted.internet.abstract.FileDescriptor.connectionLost)."""
    peer.proto.connectionLost(Failure(ConnectionDone()))
    peer.transport.unregisterProducer()


def tables(f: RTMPServerFactory) -> dict:
    return {
        "hub": sorted(f.hub.streams),
        "connections": len(f.connections),
        "per_ip": dict(f.per_ip),
        "app_totals": sorted(f.app_totals),
        "merger": (dict(f.merger._pending), dict(f.merger._calls)),
    }


def cycle(f: RTMPServerFactory, steady: list[Peer], steady_pub: Peer, steady_sid: int, i: int, players: int = 3) -> None:
    """One churn cycle: a new stream published, players join, media flows, everyone leaves."""
    name = f"churn-{i}"  # a fresh name each time: name-keyed records of ended streams would show
    pub = Peer(f)
    sid, got = pub.publish(name)
    assert statuses(got) == ["NetStream.Publish.Start"]
    pub.send_metadata(sid)
    pub.send_media(sid, "v", 0, AVC_SEQ)
    pub.send_media(sid, "a", 0, AAC_SEQ)
    viewers = [Peer(f) for _ in range(players)]
    for v in viewers:
        v.play(name)
    for t in range(12):
        pub.send_media(sid, "v", t * 40, key() if t % 6 == 0 else inter())
        pub.send_media(sid, "a", t * 40, aac())
        steady_pub.send_media(steady_sid, "v", (i * 12 + t) * 40, key() if t % 6 == 0 else inter())
        f.clock.advance(0.04)
    for v in viewers + steady:
        v.take()
    # Players leave both ways: closing their stream, or just going away.
    viewers[0].call("closeStream", None, stream_id=1)
    for v in viewers:
        lose(v)
    pub.call("deleteStream", None, float(sid))
    lose(pub)
    f.clock.advance(1.0)  # the factory's tick runs over what is left


@pytest.fixture(params=[0, 20], ids=["direct", "merged-writes"])
def setup(request):
    # The steady players stay silent through ~45 s of churn: no pings to answer (ping_interval = 0),
    # so that only what this test is about can close them.
    f = RTMPServerFactory(make_config(extra_app=f"write_merge_ms = {request.param}", server_extra="access_log = yes",
                                      extra_limits="ping_interval = 0\nidle_timeout = 600"), Clock())
    f.startFactory()
    steady_pub = Peer(f)
    sid, _ = steady_pub.publish("steady")
    steady_pub.send_media(sid, "v", 0, AVC_SEQ)
    steady_pub.send_media(sid, "v", 0, key())
    steady = [Peer(f) for _ in range(2)]
    for p in steady:
        p.play("steady")
    yield f, steady, steady_pub, sid
    f.stopFactory()


def test_publish_play_churn_leaves_hub_tables_and_objects_at_their_starting_size(setup):
    f, steady, steady_pub, sid = setup
    cycles = 30
    with gc_off():
        cycle(f, steady, steady_pub, sid, -1)  # warm-up: caches, interned names, first-use allocations
        tracemalloc.start()
        try:
            before_tables, before = tables(f), counts()
            snap0 = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, PACKAGE + os.sep + "*")])
            for i in range(cycles):
                cycle(f, steady, steady_pub, sid, i)
            after = counts()
            snap1 = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, PACKAGE + os.sep + "*")])
        finally:
            tracemalloc.stop()
    assert tables(f) == before_tables
    grown = {k: after[k] - before[k] for k in WATCHED if after[k] != before[k]}
    assert grown == {}, f"objects left behind by {cycles} churn cycles: {grown}"
    growth = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    # Each cycle's five connections hold ~15 KiB in rtmpserver's own allocations while they live
    # (~450 KiB for 30 cycles if they stayed). What may show is CPython's free lists (dicts and
    # dict key tables freed but kept for reuse, at most 80 of each), bounded whatever the cycles.
    assert growth < 32 * 1024, f"{growth} bytes traced in rtmpserver/ still held after {cycles} cycles:\n" + "\n".join(
        str(s) for s in snap1.compare_to(snap0, "lineno")[:8])
    # The steady stream went on through all of it.
    assert not any(p.closed for p in steady + [steady_pub])


def test_an_ended_session_is_freed_by_reference_counting():
    f = RTMPServerFactory(make_config(), Clock())
    with gc_off():
        pub, player = Peer(f), Peer(f)
        sid, _ = pub.publish("s")
        pub.send_media(sid, "v", 0, AVC_SEQ)
        pub.send_media(sid, "v", 0, key())
        player.play("s")
        player.take()
        sessions = [weakref.ref(pub.proto.session), weakref.ref(player.proto.session)]
        views = [weakref.ref(p.proto.session.view._session) for p in (pub, player)]
        lose(player)
        lose(pub)
        assert [r() for r in sessions] == [None, None]
        assert [r() for r in views] == [None, None]
        assert f.hub.streams == {} and not f.connections
