"""The handler chain: order, rename, reject, fail closed, async hooks, outcomes, timeouts."""

from __future__ import annotations

import dataclasses

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface import implementer

from rtmpserver.chain import Chain
from rtmpserver.errors import LocalProtocolError, Rejected
from rtmpserver.interfaces import IAppHandler
from rtmpserver.requests import PublishRequest


def req(name="cam"):
    return PublishRequest(app="live", name=name, mode="live", args={}, session=None)


@implementer(IAppHandler)
class H:
    """A scripted handler: ``behaviour(request, proceed)`` decides."""

    def __init__(self, log, tag, behaviour=None):
        self.log = log
        self.tag = tag
        self.behaviour = behaviour or (lambda r, p: p(r))
        self.outcomes = []

    def publish(self, request, proceed):
        self.log.append((self.tag, request.name))
        return self.behaviour(request, proceed)

    connect = play = publish

    def close_stream(self, event):
        self.log.append((self.tag, "closed", event))


def run(handlers, request=None, final=None, timeout=10.0, clock=None):
    clock = clock or Clock()
    chain = Chain("live", [(h.tag, h) for h in handlers], clock, timeout)
    finals = []

    def default_final(r):
        finals.append(r)
        return "LIVE:" + r.name

    d = chain.run("publish", request or req(), final or default_final)
    results = []
    d.addBoth(results.append)
    return results, finals, clock


def test_handlers_run_in_config_order_and_final_runs_last():
    log = []
    results, finals, _ = run([H(log, "a"), H(log, "b"), H(log, "c")])
    assert log == [("a", "cam"), ("b", "cam"), ("c", "cam")]
    assert results == ["LIVE:cam"]
    assert [r.name for r in finals] == ["cam"]


def test_rename_is_seen_by_later_handlers_and_final():
    log = []
    rename = H(log, "auth", lambda r, p: p(dataclasses.replace(r, name="alice")))
    results, finals, _ = run([rename, H(log, "record")], req("key123"))
    assert log == [("auth", "key123"), ("record", "alice")]
    assert results == ["LIVE:alice"]


def test_reject_stops_the_chain_before_final():
    log = []

    def deny(r, p):
        raise Rejected("NetStream.Publish.Denied", "no")

    results, finals, _ = run([H(log, "a", deny), H(log, "b")])
    assert log == [("a", "cam")]
    assert finals == []
    assert results[0].check(Rejected) and results[0].value.code == "NetStream.Publish.Denied"


def test_reject_without_code_gets_the_hook_default():
    def deny(r, p):
        raise Rejected("", "nope")

    results, _, _ = run([H([], "a", deny)])
    assert results[0].value.code == "NetStream.Publish.Denied"


def test_earlier_handlers_learn_the_outcome_and_a_later_refusal():
    log = []
    seen = []

    def watch(r, p):
        p(r).addBoth(seen.append)

    def deny(r, p):
        raise Rejected("NetStream.Publish.Denied", "later says no")

    run([H(log, "a", watch), H(log, "b")])
    assert seen == ["LIVE:cam"]
    seen.clear()
    run([H(log, "a", watch), H(log, "b", deny)])
    assert seen[0].check(Rejected)


def test_unexpected_exception_fails_closed():
    def boom(r, p):
        raise ZeroDivisionError()

    results, finals, _ = run([H([], "a", boom), H([], "b")])
    assert finals == [] and results[0].check(Rejected)
    assert "handler a failed" in results[0].value.description


def test_deferred_that_finishes_without_deciding_fails_closed():
    results, finals, _ = run([H([], "a", lambda r, p: defer.succeed(None))])
    assert finals == [] and results[0].check(Rejected)


def test_async_def_hooks_can_proceed_later():
    gate = defer.Deferred()

    async def slow(r, p):
        await gate
        return await p(r)

    results, finals, _ = run([H([], "a", slow)])
    assert results == []  # nothing decided (and so nothing sent to the client) yet
    gate.callback(None)
    assert results == ["LIVE:cam"]


def test_async_rejection():
    async def deny(r, p):
        raise Rejected("NetStream.Publish.BadName", "taken")

    results, _, _ = run([H([], "a", deny)])
    assert results[0].value.code == "NetStream.Publish.BadName"


def test_silent_hook_fails_closed_at_the_timeout():
    results, finals, clock = run([H([], "a", lambda r, p: None)], timeout=3)
    clock.advance(2.9)
    assert results == []
    clock.advance(0.2)
    assert finals == [] and results[0].check(Rejected)
    assert "did not decide within 3 s" in results[0].value.description


def test_proceed_after_timeout_does_nothing():
    proceeds = []
    results, finals, clock = run([H([], "a", lambda r, p: proceeds.append(p))], timeout=1)
    clock.advance(2)
    late = proceeds[0](req())
    failures = []
    late.addErrback(failures.append)
    assert finals == [] and failures and failures[0].check(Rejected)


def test_proceed_twice_is_our_bug_and_is_logged():
    def twice(r, p):
        p(r)
        p(r)

    with capturedLogs() as events:
        results, finals, _ = run([H([], "a", twice)])
    # The first proceed already decided, so the outcome stands; the second raised
    # LocalProtocolError inside the hook, which is logged as a handler failure.
    assert results == ["LIVE:cam"] and len(finals) == 1
    failures = [e for e in events if "log_failure" in e]
    assert failures and failures[0]["log_failure"].check(LocalProtocolError)


def test_final_can_refuse():
    def final(r):
        raise Rejected("NetStream.Publish.BadName", "in use")

    results, _, _ = run([H([], "a")], final=final)
    assert results[0].value.code == "NetStream.Publish.BadName"


def test_close_stream_reaches_every_handler_even_if_one_fails():
    log = []

    class Bad(H):
        def close_stream(self, event):
            raise RuntimeError("broken")

    chain = Chain("live", [("a", H(log, "a")), ("bad", Bad(log, "bad")), ("c", H(log, "c"))], Clock(), 1)
    chain.close_stream("EVENT")
    assert log == [("a", "closed", "EVENT"), ("c", "closed", "EVENT")]


def test_a_chain_that_decides_at_once_schedules_no_deadline_and_a_waiting_one_does():
    results, _, clock = run([H([], "a"), H([], "b")], timeout=3)
    assert results == ["LIVE:cam"] and clock.getDelayedCalls() == []
    held = []
    results, _, clock = run([H([], "a", lambda r, p: held.append(p))], timeout=3)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == 3  # the full timeout from the request, as before
    held[0]()
    assert results == ["LIVE:cam"] and clock.getDelayedCalls() == []
