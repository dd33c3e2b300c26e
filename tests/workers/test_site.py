"""An HTTP site in a worker: monitoring answered from every worker's snapshot, /control sent to
the workers (rtmpserver.workers.aggregate sets the hooks; here they are stubs)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from twisted.internet import defer

from rtmpserver.workers import aggregate
from tests.http.test_admin import AUTH, request
from tests.http.test_site import body, live_stream, make


def _snapshot_of(f, worker):
    from rtmpserver.http import monitor

    snap = monitor.snapshot(f, [])
    for c in snap["clients"]:
        c["worker"] = worker
    for streams in snap["apps"].values():
        for st in streams:
            st["relayed"] = False
    return snap


def test_api_answers_once_every_worker_has():
    f, root = make()
    live_stream(f)
    other_f, _ = make()
    pending = defer.Deferred()
    root.gather = lambda what: pending
    req = request(root, "/api/v1/clients", headers=AUTH)
    assert req.written == [] and not req.finished  # waiting for the workers
    pending.callback(aggregate.merge_snapshots([_snapshot_of(f, 0), _snapshot_of(other_f, 1)]))
    assert req.finished and req.responseCode == 200
    clients = json.loads(body(req))["clients"]
    assert [(c["role"], c["worker"]) for c in clients] == [("publisher", 0)]


def _worker(f, index):
    """What aggregate.local_snapshot reads of a worker (rtmpserver.workers.worker.Worker)."""
    return SimpleNamespace(factory=f, hub=f.hub, index=index, sites=[],
                           relay_factory=SimpleNamespace(connections=[]), relays=SimpleNamespace(is_relay=lambda p: False))


def test_stat_pid_is_the_supervisors_whichever_worker_answers():
    f, root = make()
    live_stream(f)
    other_f, _ = make()
    snaps = [aggregate.local_snapshot(_worker(f, 0)), aggregate.local_snapshot(_worker(other_f, 1))]
    # A worker's parent is the supervisor, the process the operator started and signals.
    assert [s["pid"] for s in snaps] == [os.getppid(), os.getppid()]
    root.gather = lambda what: defer.succeed(aggregate.merge_snapshots(snaps))
    req = request(root, "/stat", headers=AUTH)
    assert req.responseCode == 200
    xml = body(req).decode()
    assert f"<pid>{os.getppid()}</pid>" in xml and f"<pid>{os.getpid()}</pid>" not in xml


def test_api_says_503_when_the_workers_do_not_answer():
    f, root = make()
    root.gather = lambda what: defer.fail(RuntimeError("no supervisor"))
    req = request(root, "/stat", headers=AUTH)
    assert req.finished and req.responseCode == 503


def test_metrics_come_merged():
    f, root = make()
    root.gather = lambda what: defer.succeed(b"rtmp_streams{app=\"live\"} 3.0\n")
    req = request(root, "/metrics", headers=AUTH)
    assert req.responseCode == 200 and body(req) == b'rtmp_streams{app="live"} 3.0\n'


def test_control_goes_to_the_workers():
    f, root = make()
    asked = []

    def control(path, args):
        asked.append((path, args))
        return defer.succeed((200, b"2"))

    root.control_elsewhere = control
    req = request(root, "/control/drop/subscriber?app=live&name=cam", headers=AUTH)
    assert req.responseCode == 200 and body(req) == b"2"
    assert asked == [(["drop", "subscriber"], {"app": "live", "name": "cam"})]
