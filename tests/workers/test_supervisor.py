"""The supervisor's bookkeeping without processes: restart backoff, names released on death."""

from __future__ import annotations

from twisted.internet.error import ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from rtmpserver.workers import supervisor as sv
from tests.test_protocol import make_config


def _died(sup, index):
    proc = sv._WorkerProcess(sup, index)
    sup.processes[index] = proc
    proc.processEnded(Failure(ProcessTerminated(signal=9)))
    return proc


def test_a_dead_worker_is_restarted_with_backoff_and_its_names_released():
    reactor = MemoryReactorClock()
    sup = sv.Supervisor(make_config(), reactor, count=2)
    spawned = []
    sup._spawn = lambda index: spawned.append((index, reactor.seconds()))
    sup.directory.claim("live", "a", 0, "auto", 5)
    sup.directory.claim("live", "b", 1, "auto", 5)
    _died(sup, 0)
    assert sup.directory.owners == {("live", "b"): 1}
    reactor.advance(sv.RESTART_INITIAL)
    assert spawned == [(0, sv.RESTART_INITIAL)]
    _died(sup, 0)  # again, at once: twice the delay
    reactor.advance(sv.RESTART_INITIAL * 2 - 0.01)
    assert len(spawned) == 1
    reactor.advance(0.02)
    assert len(spawned) == 2 and sup.restarts == 2


def test_no_restart_while_stopping():
    reactor = MemoryReactorClock()
    sup = sv.Supervisor(make_config(), reactor, count=1)
    sup._spawn = lambda index: (_ for _ in ()).throw(AssertionError("restarted while stopping"))
    sup.stopping = True
    _died(sup, 0)
    reactor.advance(sv.RESTART_MAX)
    assert sup.restarts == 0


def test_listener_descriptions_cover_rtmp_and_http():
    from rtmpserver import config

    cfg = config.parse("[server]\nlisten = tcp:1935\n[app:live]\n[http:main]\nlisten = tcp:8080:interface=127.0.0.1\n")
    assert sv.listener_descriptions(cfg) == ["tcp:1935", "tcp:8080:interface=127.0.0.1"]
