"""The stream directory and what builds on it, without processes: two "workers" are two
RTMPServerFactory instances on one clock, sharing one LocalStreamDirectory (the supervisor's
store), each with its own hub, directory owner id and WorkerRelays."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from zope.interface.verify import verifyObject

from rtmpserver.interfaces import IHubObserver, IStreamDirectory
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.workers import aggregate
from rtmpserver.workers.directory import (
    BigText,
    LocalStreamDirectory,
    RemoteStreamDirectory,
)
from rtmpserver.workers.relays import WorkerRelays
from rtmpserver.workers.worker import give_up
from tests.test_protocol import Peer, key, make_config, statuses

# -- LocalStreamDirectory ---------------------------------------------------------------------------


def test_directories_provide_the_interface():
    verifyObject(IStreamDirectory, LocalStreamDirectory())
    verifyObject(IStreamDirectory, RemoteStreamDirectory(0))


def test_claim_release_locate_watch():
    seen = []
    d = LocalStreamDirectory()
    stop = d.watch(lambda *change: seen.append(change))
    assert d.claim("live", "s", 0, "auto", 5).result is True
    assert d.claim("live", "s", 0, "auto", 5).result is True  # again, same owner: no change
    assert d.claim("live", "s", 1, "takeover", 5).result is False  # nobody to ask: the holder keeps it
    assert d.locate("live", "s").result == 0
    d.release("live", "s", 1)  # not the holder: no-op
    assert d.locate("live", "s").result == 0
    d.release("live", "s", 0)
    assert d.locate("live", "s").result is None
    stop()
    d.claim("live", "t", 2, "auto", 5)
    assert seen == [("live", "s", 0), ("live", "s", None)]


def test_claim_of_a_held_name_asks_the_holder():
    asked = []
    answers = {"yes": True, "no": False}

    def ask(owner, app, name, policy, stale):
        asked.append((owner, name, policy, stale))
        return defer.succeed(answers[name[:3]])

    d = LocalStreamDirectory(ask)
    d.claim("live", "yes", 0, "auto", 5)
    d.claim("live", "no", 0, "auto", 5)
    assert d.claim("live", "yes", 1, "takeover", 2.5).result is True
    assert d.claim("live", "no", 1, "auto", 5).result is False
    assert asked == [(0, "yes", "takeover", 2.5), (0, "no", "auto", 5)]
    assert d.owners == {("live", "yes"): 1, ("live", "no"): 0}


def test_a_third_claimer_that_won_meanwhile_keeps_the_name():
    pending = defer.Deferred()
    d = LocalStreamDirectory(lambda *a: pending)
    d.claim("live", "s", 0, "auto", 5)
    waiting = d.claim("live", "s", 1, "takeover", 5)
    d.release("live", "s", 0)
    d.claim("live", "s", 2, "auto", 5)  # free at that moment: worker 2 gets it
    pending.callback(True)
    assert waiting.result is False
    assert d.owners[("live", "s")] == 2


def test_release_all_frees_a_dead_workers_names():
    d = LocalStreamDirectory()
    for name, owner in [("a", 0), ("b", 1), ("c", 0)]:
        d.claim("live", name, owner, "auto", 5)
    assert sorted(d.release_all(0)) == [("live", "a"), ("live", "c")]
    assert d.owners == {("live", "b"): 1}


def test_remote_directory_applies_changes_and_tells_watchers():
    r = RemoteStreamDirectory(1)
    seen = []
    r.watch(lambda *c: seen.append(c))
    r.apply(json.dumps([["live", "s", 0], ["live", "s", 0], ["live", "t", None], ["live", "s", None]]))
    assert seen == [("live", "s", 0), ("live", "s", None)]
    assert r.claim("live", "s", 1, "auto", 5).result is False  # no supervisor connection: refused


def test_big_text_crosses_amp_value_limit():
    text = "é" * 100_000  # 200 000 bytes of UTF-8, over AMP's 65 535-byte value limit
    strings: dict = {}
    BigText().toBox(b"data", strings, {"data": text}, None)
    assert all(len(v) <= amp.MAX_VALUE_LENGTH for v in strings.values())
    objects: dict = {}
    BigText().fromBox(b"data", strings, objects, None)
    assert objects["data"] == text


# -- two workers in one process ---------------------------------------------------------------------


class Workers:
    def __init__(self, clash: str = "auto"):
        self.clock = MemoryReactorClock()
        self.config = make_config(extra_app=f"publisher_clash = {clash}")
        self.directory = LocalStreamDirectory(self._ask)
        self.factories = []
        self.relays = []
        for index in (0, 1):
            f = RTMPServerFactory(self.config, self.clock)
            f.hub.directory = _Bound(self.directory)
            f.hub.worker = index
            relays = WorkerRelays(f.hub, self.directory, index, self.clock, self.config, lambda i: f"/run/w{i}.rtmp")
            f.hub.observers.append(relays)
            self.factories.append(f)
            self.relays.append(relays)

    def _ask(self, owner, app, name, policy, stale):
        f = self.factories[owner]
        return defer.succeed(give_up(f.hub, self.clock, self.relays[owner].is_relay, app, name, policy, stale))


class _Bound:
    """The directory as one worker holds it (RemoteStreamDirectory's role, minus AMP)."""

    def __init__(self, directory):
        self.d = directory

    def claim(self, *a):
        return self.d.claim(*a)

    def release(self, *a):
        return self.d.release(*a)


def test_relays_are_hub_observers():
    w = Workers()
    verifyObject(IHubObserver, w.relays[0])


def test_publish_claims_the_name_and_a_fresh_publisher_elsewhere_is_refused():
    w = Workers()
    pub = Peer(w.factories[0])
    sid, got = pub.publish("s")
    assert statuses(got) == ["NetStream.Publish.Start"]
    assert w.directory.owners == {("live", "s"): 0}
    pub.send_media(sid, "v", 0, key())
    _, got = Peer(w.factories[1]).publish("s")
    assert statuses(got) == ["NetStream.Publish.BadName"]
    assert w.directory.owners == {("live", "s"): 0} and not pub.closed


def test_stale_publisher_on_another_worker_is_taken_over_and_the_name_moves():
    w = Workers()
    pub = Peer(w.factories[0])
    sid, _ = pub.publish("s")
    pub.send_media(sid, "v", 0, key())
    w.clock.advance(w.config.apps["live"].publisher_stale_timeout + 1)
    _, got = Peer(w.factories[1]).publish("s")
    assert statuses(got) == ["NetStream.Publish.Start"]
    assert pub.closed
    w.clock.advance(0)  # the old owner's deferred release: not the holder any more, no-op
    assert w.directory.owners == {("live", "s"): 1}


@pytest.mark.parametrize("clash,started", [("takeover", True), ("reject", False)])
def test_takeover_and_reject_hold_across_workers(clash, started):
    w = Workers(clash)
    pub = Peer(w.factories[0])
    sid, _ = pub.publish("s")
    pub.send_media(sid, "v", 0, key())
    _, got = Peer(w.factories[1]).publish("s")
    assert statuses(got) == ["NetStream.Publish.Start" if started else "NetStream.Publish.BadName"]
    assert pub.closed is started


def test_unpublish_releases_the_name_after_the_current_turn():
    w = Workers()
    pub = Peer(w.factories[0])
    pub.publish("s")
    pub.lose()
    assert w.directory.owners == {("live", "s"): 0}
    w.clock.advance(0)
    assert w.directory.owners == {}
    sid, got = Peer(w.factories[1]).publish("s")  # the publisher may come back on any worker
    assert statuses(got) == ["NetStream.Publish.Start"]


def test_player_elsewhere_opens_one_relay_that_follows_the_owner_and_lingers():
    w = Workers()
    pub = Peer(w.factories[0])
    pub.publish("s")
    p1, p2 = Peer(w.factories[1]), Peer(w.factories[1])
    p1.play("s")
    p2.play("s")
    relays = w.relays[1]
    assert list(relays.relays) == [("live", "s")] and relays.opened == 1  # one relay for both players
    assert [c[0] for c in w.clock.unixClients] == ["/run/w0.rtmp"]
    assert w.relays[0].relays == {}  # the owner relays from nobody
    # The owner's publisher goes: the name is released and the relay closed.
    pub.lose()
    w.clock.advance(0)
    assert relays.relays == {}
    # It comes back on worker 0: a new relay for the players still waiting on worker 1.
    Peer(w.factories[0]).publish("s")
    assert list(relays.relays) == [("live", "s")] and relays.opened == 2
    # The players leave: the relay stays for the linger time, then closes.
    for p in (p1, p2):
        p.lose()
    assert list(relays.relays) == [("live", "s")]
    w.clock.advance(relays.linger + 0.1)
    assert relays.relays == {}


def test_local_publish_replaces_a_relay():
    w = Workers(clash="takeover")
    Peer(w.factories[0]).publish("s")
    Peer(w.factories[1]).play("s")
    assert ("live", "s") in w.relays[1].relays
    _, got = Peer(w.factories[1]).publish("s")
    assert statuses(got) == ["NetStream.Publish.Start"]
    assert w.relays[1].relays == {} and w.directory.owners == {("live", "s"): 1}


# -- aggregation ----------------------------------------------------------------------------------------


def _snap(worker: int, players: int, *, publisher: bool, relayed: bool = False) -> dict:
    clients = [{"id": worker * 100 + i, "role": "player", "bytes_in": 1, "bytes_out": 10, "worker": worker} for i in range(players)]
    stream = {
        "app": "live", "name": "s", "time": 5, "active": True, "bytes_in": 1000 if publisher else 999,
        "bw_in": 1.0, "bytes_out": 10 * players, "publisher": {"id": worker * 100 + 99} if publisher else None,
        "players": clients, "meta": {"video": {}, "audio": {}}, "relayed": relayed,
    }
    return {"now": 10.0 + worker, "uptime": 5.0, "accepted": players, "connections": players, "clients": clients,
            "apps": {"live": [stream]}, "totals": {"bytes_in": 1, "bytes_out": 2}, "stats": {"connections_total": players},
            "app_totals": {"live": {"bytes_in": 3}}}


def test_merged_snapshot_is_one_stream_with_every_workers_players():
    merged = aggregate.merge_snapshots([_snap(1, 3, publisher=False, relayed=True), _snap(0, 2, publisher=True)])
    (stream,) = merged["apps"]["live"]
    assert stream["publisher"] == {"id": 99} and stream["bytes_in"] == 1000  # the owner's facts
    assert sorted(p["id"] for p in stream["players"]) == [0, 1, 100, 101, 102]
    assert stream["bytes_out"] == 50 and "relayed" not in stream
    assert merged["connections"] == 5 and merged["stats"] == {"connections_total": 5}
    assert merged["totals"] == {"bytes_in": 2, "bytes_out": 4} and merged["app_totals"] == {"live": {"bytes_in": 6}}
    assert merged["now"] == 11.0


def test_merged_metrics_sum_samples_and_keep_the_largest_uptime():
    a = "# HELP rtmp_players P\n# TYPE rtmp_players gauge\nrtmp_players{app=\"live\"} 2.0\n" \
        "# HELP rtmp_uptime_seconds U\n# TYPE rtmp_uptime_seconds gauge\nrtmp_uptime_seconds 5.0\n"
    b = a.replace("2.0", "3.0").replace("5.0", "7.0")
    text = aggregate.merge_metrics([a, b]).decode()
    assert 'rtmp_players{app="live"} 5.0' in text
    assert "rtmp_uptime_seconds 7.0" in text


def test_fetch_starts_a_relay_for_a_viewer_and_fires_when_the_stream_is_live_here():
    from rtmpserver.workers.relays import FETCH_TIMEOUT

    w = Workers()
    relays = w.relays[1]
    assert relays.fetch("live", "s") is None  # nobody publishes it
    Peer(w.factories[0]).publish("s")
    fired = []
    relays.fetch("live", "s").addCallback(fired.append)
    (owner, source, relay) = relays.relays[("live", "s")]
    assert owner == 0 and fired == []
    source.relay_started()  # the relay reached Play.Start
    assert fired == [None] and w.factories[1].hub.get("live", "s").active
    # Nobody attached: the relay closes after the linger time.
    w.clock.advance(relays.linger + 0.1)
    assert relays.relays == {}
    # A relay that never starts: the viewer gets its answer (not found) after FETCH_TIMEOUT.
    late = []
    relays.fetch("live", "s").addCallback(late.append)
    w.clock.advance(FETCH_TIMEOUT + 0.1)
    assert late == [None] and not w.factories[1].hub.get("live", "s")
