"""rtmpserver.testing: the public helpers handler authors test with (docs/plugins.md)."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from rtmpserver import testing
from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.interfaces import IAppHandler, IServerMetrics
from rtmpserver.metrics import ServerMetrics
from rtmpserver.requests import (
    ConnectRequest,
    PlayRequest,
    PublishRequest,
    SessionView,
    StreamClosed,
)


@implementer(IAppHandler)
class Scripted:
    """A handler whose publish does what the test says."""

    def __init__(self, publish):
        self._publish = publish
        self.closed = []

    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        return self._publish(request, proceed)

    def play(self, request, proceed):
        return proceed(request)

    def close_stream(self, event):
        self.closed.append((event.name, event.role, event.reason))


def test_session_view_reads_the_fake_session():
    fake = testing.FakeSession(id=7, host="10.0.0.5", port=4444, app="studio")
    view = fake.view
    assert isinstance(view, SessionView)
    assert (view.id, view.host, view.peer, view.app) == (7, "10.0.0.5", "10.0.0.5:4444", "studio")
    assert view.connect_params["tcUrl"] == "rtmp://127.0.0.1/studio"
    view.data["mine"] = 1
    assert fake.handler_data == {"mine": 1}
    assert not view.closed
    fake.close()
    assert view.closed


def test_ipv6_peer_is_bracketed():
    assert testing.session_view(host="::1", port=5).peer == "[::1]:5"


def test_request_builders_make_the_real_request_types_with_a_session():
    c = testing.connect_request("studio", args={"user": "x"})
    p = testing.publish_request("cam", args={"k": "v"})
    q = testing.play_request("cam", start=-1.0)
    e = testing.stream_closed("cam", role="player", reason="connection lost")
    assert isinstance(c, ConnectRequest) and c.app == "studio" and c.args == {"user": "x"}
    assert c.tc_url == "rtmp://127.0.0.1/studio" and c.params["tcUrl"] == c.tc_url
    assert isinstance(p, PublishRequest) and (p.app, p.name, p.mode) == ("live", "cam", "live")
    assert isinstance(q, PlayRequest) and q.start == -1.0
    assert isinstance(e, StreamClosed) and (e.role, e.reason) == ("player", "connection lost")
    for r in (c, p, q, e):
        assert isinstance(r.session, SessionView)
    with pytest.raises(ValueError):
        testing.stream_closed(role="viewer")


def test_context_has_a_parsed_app_a_clock_and_the_metrics_hook():
    ctx = testing.make_context("studio", config=testing.server_config(app="studio"))
    assert ctx.app.name == "studio" and ctx.server.path == "test.ini"
    assert IServerMetrics.providedBy(ctx.metrics)
    ctx.clock.advance(5)
    assert ctx.clock.seconds() == 5


def test_proceeded_unchanged():
    out = testing.run_hook(Scripted(lambda r, proceed: proceed(r)), testing.publish_request("cam"))
    assert out.decided and out.proceeded and not out.rejected and not out.renamed
    assert out.name == "cam" and out.changes == {}


def test_renamed_is_seen():
    h = Scripted(lambda r, proceed: proceed(dataclasses.replace(r, name="office-" + r.name)))
    out = testing.run_hook(h, testing.publish_request("cam"))
    assert out.proceeded and out.renamed and out.name == "office-cam"
    assert out.changes == {"name": ("cam", "office-cam")}


def test_rejected_gives_code_and_description():
    def refuse(r, proceed):
        raise Rejected("NetStream.Publish.BadName", "not that one")

    out = testing.run_hook(Scripted(refuse), testing.publish_request("cam"))
    assert out.rejected and not out.proceeded
    assert (out.code, out.description) == ("NetStream.Publish.BadName", "not that one")


def test_rejected_with_empty_code_gets_the_hooks_default():
    def refuse(r, proceed):
        raise Rejected("", "no")

    assert testing.run_hook(Scripted(refuse), testing.publish_request()).code == "NetStream.Publish.Denied"


def test_a_hook_that_crashes_fails_closed():
    out = testing.run_hook(Scripted(lambda r, proceed: 1 / 0), testing.publish_request())
    assert out.rejected and out.code == "NetStream.Publish.Denied"


def test_deferred_hook_stays_pending_until_it_fires():
    waiting = defer.Deferred()

    def later(r, proceed):
        return waiting.addCallback(lambda _: proceed(r))

    pending = testing.start_hook(Scripted(later), testing.publish_request("cam"))
    assert not pending.outcome.decided and not pending.outcome.proceeded and not pending.outcome.rejected
    waiting.callback(None)
    assert pending.outcome.proceeded


def test_async_hook_rejecting_after_a_clock_delay():
    clock = MemoryReactorClock()

    async def slow(r, proceed):
        await deferLater(clock, 2.0, lambda: None)
        raise Rejected("NetStream.Publish.Denied", "too slow")

    pending = testing.start_hook(Scripted(slow), testing.publish_request(), clock=clock)
    assert not pending.outcome.decided
    clock.advance(2.0)
    assert pending.outcome.rejected and pending.outcome.description == "too slow"


def test_run_hook_advance_lets_the_handler_timeout_fire():
    out = testing.run_hook(Scripted(lambda r, proceed: None), testing.publish_request(), timeout=3.0, advance=3.5)
    assert out.rejected and "did not decide within 3 s" in out.description


def test_chain_of_several_handlers_and_a_final_action():
    rename = Scripted(lambda r, proceed: proceed(dataclasses.replace(r, name="b")))
    seen = []

    def record(r, proceed):
        seen.append(r.name)
        return proceed(r)

    out = testing.run_hook([("rename", rename), ("spy", Scripted(record))], testing.publish_request("a"),
                           final=lambda r: f"live:{r.name}")
    assert seen == ["b"] and out.value == "live:b" and out.renamed


def test_final_refusal_reaches_the_outcome_and_proceeds_deferred():
    results = []

    def watch(r, proceed):
        proceed(r).addErrback(lambda f: results.append(f.value.code))

    def busy(r):
        raise Rejected("NetStream.Publish.BadName", "already publishing")

    out = testing.run_hook(Scripted(watch), testing.publish_request(), final=busy)
    assert out.rejected and out.code == "NetStream.Publish.BadName"
    assert results == ["NetStream.Publish.BadName"]


def test_hook_is_chosen_by_request_type():
    with pytest.raises(TypeError):
        testing.start_hook(Scripted(None), testing.stream_closed())
    out = testing.run_hook(Scripted(None), testing.play_request("cam"))
    assert out.hook == "play" and out.proceeded


def test_close_stream_helper_calls_the_hook():
    h = Scripted(None)
    testing.close_stream(h, testing.stream_closed("cam", reason="deleteStream"))
    assert h.closed == [("cam", "publisher", "deleteStream")]


def test_load_handler_uses_real_discovery_and_settings():
    h = testing.load_handler("access", {"rules": "allow publish 10.0.0.0/8, deny publish all"})
    inside = testing.publish_request(session=testing.session_view(host="10.1.2.3"))
    outside = testing.publish_request(session=testing.session_view(host="192.0.2.1"))
    assert testing.run_hook(h, inside).proceeded
    out = testing.run_hook(h, outside)
    assert out.rejected and out.code == "NetStream.Publish.Denied"


def test_load_handler_reports_bad_settings_like_the_server():
    with pytest.raises(ConfigError, match=r"test.ini: \[app:live\] access.colour: unknown key"):
        testing.load_handler("access", {"rules": "deny publish all", "colour": "red"})


def test_load_handler_reports_a_missing_plugin():
    with pytest.raises(ConfigError, match="no handler named 'nosuch' is installed"):
        testing.load_handler("nosuch")


def test_load_handler_gives_the_handler_the_metrics_passed_in():
    metrics = ServerMetrics()
    h = testing.load_handler("access", {"rules": "deny publish all"}, metrics=metrics)
    testing.run_hook(h, testing.publish_request())
    assert metrics.registry.get_sample_value("access_refusals_total", {"app": "live", "action": "publish"}) == 1
