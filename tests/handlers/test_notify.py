"""The notify handler: settings, nginx-rtmp's form fields, how answers decide, done calls, and the
HTTP client itself (a real twisted.web server and the real Agent over an in-memory loopback)."""

from __future__ import annotations

import subprocess
import sys
import types
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter
from twisted.web.client import ResponseDone, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface.verify import verifyObject

from rtmpserver import config as cfg
from rtmpserver.apps import build_chains
from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers import notify
from rtmpserver.handlers.live import factory as live_factory
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.requests import (
    ConnectRequest,
    HandlerContext,
    PlayRequest,
    PublishRequest,
    SessionView,
    StreamClosed,
)

HOOK = "http://backend.example:8080/hook"


# --- fixtures --------------------------------------------------------------------------------


def server_config(handler_timeout: str = "10"):
    return cfg.parse(
        "[server]\nlisten = tcp:1935\n"
        f"[app:live]\nhandlers = notify\nhandler_timeout = {handler_timeout}\n"
    )


def context(clock=None, reactor=None, handler_timeout="10"):
    config = server_config(handler_timeout)
    return HandlerContext(app=config.apps["live"], server=config, hub=None, clock=clock or Clock(), reactor=reactor)


def session(sid=7, host="10.1.2.3", app="live"):
    raw = types.SimpleNamespace(
        id=sid, peer=f"{host}:50000", host=host, app=app, closed=False, handler_data={},
        connect_params={
            "app": app, "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)", "swfUrl": "http://swf.example/p.swf",
            "tcUrl": f"rtmp://127.0.0.1:1935/{app}", "pageUrl": "http://page.example/", "args": {},
        },
    )
    return SessionView(raw)


def publish_request(name="cam", args=None, sess=None, mode="live"):
    return PublishRequest(app="live", name=name, mode=mode, args=args or {}, session=sess or session())


def play_request(name="cam", args=None, sess=None, start=-2.0, duration=-1.0, reset=True):
    return PlayRequest(app="live", name=name, start=start, duration=duration, reset=reset, args=args or {}, session=sess or session())


def connect_request(args=None, sess=None):
    sess = sess or session()
    p = sess.connect_params
    return ConnectRequest(
        app="live", tc_url=p["tcUrl"], page_url=p["pageUrl"], swf_url=p["swfUrl"], flash_ver=p["flashVer"],
        args=args or {}, params=p, session=sess,
    )


class Proceed:
    """A fake proceed: records requests, answers with ``outcome`` (or fails with ``error``)."""

    def __init__(self, outcome=None, error=None):
        self.requests = []
        self.outcome = outcome
        self.error = error

    def __call__(self, request):
        self.requests.append(request)
        if self.error is not None:
            return defer.fail(self.error)
        return defer.succeed(self.outcome(request) if callable(self.outcome) else self.outcome)


class FakeTransport:
    def __init__(self):
        self.stopped = False

    def stopProducing(self):
        self.stopped = True


class FakeResponse:
    def __init__(self, code, location=None, body=b""):
        self.code = code
        self.headers = Headers()
        if location is not None:
            self.headers.setRawHeaders(b"location", [location])
        self.body = body
        self.transport = FakeTransport()

    def deliverBody(self, protocol):
        protocol.makeConnection(self.transport)
        for i in range(0, len(self.body), 8192):
            if self.transport.stopped:
                break
            protocol.dataReceived(self.body[i:i + 8192])
        protocol.connectionLost(Failure(ResponseDone()))


class FakeAgent:
    """Records requests; each gets a Deferred the test fires (or answers at once with ``auto``)."""

    def __init__(self, auto=None):
        self.calls = []  # (method, uri, headers, body bytes, deferred)
        self.auto = auto  # a list of FakeResponse/exception to answer with, in order
        self.cancelled = 0

    def request(self, method, uri, headers=None, bodyProducer=None):
        body = None
        if bodyProducer is not None:
            sink = []
            bodyProducer.startProducing(types.SimpleNamespace(write=sink.append))
            body = b"".join(sink)
            assert len(body) == bodyProducer.length

        def cancel(_):
            self.cancelled += 1

        d = defer.Deferred(cancel)
        self.calls.append((method, uri, headers, body, d))
        if self.auto:
            answer = self.auto.pop(0)
            if isinstance(answer, BaseException):
                d.errback(answer)
            else:
                d.callback(answer)
        return d

    def form(self, i=-1):
        method, uri, headers, body, _ = self.calls[i]
        if method == b"GET":
            return dict(parse_qsl(urlsplit(uri.decode()).query, keep_blank_values=True))
        return dict(parse_qsl(body.decode(), keep_blank_values=True))

    def fields(self, i=-1):
        method, uri, headers, body, _ = self.calls[i]
        return [k for k, _ in parse_qsl(body.decode(), keep_blank_values=True)]


def make(urls=None, auto=None, method="POST", timeout=5.0, clock=None, handler_timeout="10"):
    clock = clock or Clock()
    ctx = context(clock, handler_timeout=handler_timeout)
    s = notify.NotifySettings(urls=urls if urls is not None else {"on_publish": HOOK}, timeout=timeout, method=method)
    agent = FakeAgent(auto)
    caller = notify.HTTPCaller(clock, timeout, method, reactor=lambda: pytest.fail("reactor used"), agent=agent)
    return notify.NotifyHandler(s, ctx, caller), agent, clock


def run(coro):
    results = []
    defer.ensureDeferred(coro).addBoth(results.append)
    return results


def rejected(results, code):
    assert len(results) == 1, results
    f = results[0]
    assert isinstance(f, Failure) and f.check(Rejected), f
    assert f.value.code == code, f.value
    return f.value


# --- settings --------------------------------------------------------------------------------


def build(settings_, handler_timeout="10"):
    return notify.parse_settings(settings_, context(handler_timeout=handler_timeout))


def test_settings_accept_every_callback_method_and_timeout():
    s = build({k: f"http://127.0.0.1:9/{k}" for k in notify.CALLBACKS} | {"method": "Get", "timeout": "2.5"})
    assert set(s.urls) == set(notify.CALLBACKS)
    assert s.method == "GET" and s.timeout == 2.5
    d = build({})
    assert d.urls == {} and d.method == "POST" and d.timeout == 5.0


@pytest.mark.parametrize(
    "value, expected",
    [
        ("ftp://h/x", "expected an http:// or https:// URL"),
        ("rtmp://h/app", "expected an http:// or https:// URL"),
        ("localhost:8080/on_publish", "expected an http:// or https:// URL"),
        ("http:///path", "with a host"),
        ("http://h:99999/", "valid host and port"),
        ("http://h:abc/", "valid host and port"),
        ("http://h:0/", "port from 1 to 65535"),
        ("http://user:pw@h/", "without user:password@"),
        ("http://h/a b", "without spaces"),
        ("http://h/é", "in ASCII"),
        ("http://h/x#frag", "without a #fragment"),
        ("", "expected an http:// or https:// URL"),
    ],
)
def test_bad_urls_name_the_key(value, expected):
    with pytest.raises(ConfigError) as e:
        build({"on_publish": value})
    msg = str(e.value)
    assert msg.startswith("<string>: [app:live] notify.on_publish: expected ")
    assert expected in msg and msg.endswith(f", got '{value}'")


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "301", "", "1e1"])
def test_bad_timeout(value):
    with pytest.raises(ConfigError, match=r"^<string>: \[app:live\] notify\.timeout: expected a number of seconds > 0"):
        build({"timeout": value})


def test_timeout_must_be_shorter_than_handler_timeout():
    with pytest.raises(ConfigError, match=r"notify\.timeout: expected fewer seconds than this app's handler_timeout \(3\), got '4'"):
        build({"timeout": "4"}, handler_timeout="3")
    assert build({"timeout": "2"}, handler_timeout="3").timeout == 2
    # The default follows a short handler_timeout down instead of failing on a key nobody wrote.
    assert build({}, handler_timeout="3").timeout == pytest.approx(2.4)


def test_bad_method_and_unknown_key():
    with pytest.raises(ConfigError, match=r"notify\.method: expected 'post' or 'get', got 'put'"):
        build({"method": "put"})
    # Like every other section: an unknown key's value is not echoed (it may be a misspelt secret).
    with pytest.raises(ConfigError, match=r"notify\.on_pubish: unknown key \(did you mean 'on_publish'\?\)$"):
        build({"on_pubish": "http://h/"})
    with pytest.raises(ConfigError, match=r"notify\.zzz: unknown key \(known keys: on_connect, "):
        build({"zzz": "1"})


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_accepted_url_is_http_with_a_host(text):
    try:
        s = build({"on_play": text})
    except ConfigError as e:
        assert str(e).startswith("<string>: [app:live] notify.on_play: ")
        return
    parts = urlsplit(s.urls["on_play"])
    assert parts.scheme.lower() in ("http", "https") and parts.hostname
    s.urls["on_play"].encode("ascii")


def test_factory_is_a_plugin_and_builds_an_app_handler():
    assert verifyObject(IAppHandlerFactory, notify.factory)
    assert IPlugin.providedBy(notify.factory)
    assert notify.factory.name == "notify"
    h = notify.factory.build({"on_publish": "http://127.0.0.1:1/x"}, context())
    assert verifyObject(IAppHandler, h)


def test_registered_in_builtin_plugins():
    from rtmpserver.plugins import builtin

    assert builtin.notify is notify.factory


def test_building_never_imports_the_reactor():
    code = (
        "import sys\n"
        "from tests.handlers.test_notify import context\n"
        "from rtmpserver.handlers.notify import factory\n"
        "h = factory.build({'on_publish': 'http://127.0.0.1:1/x'}, context())\n"
        "assert 'twisted.internet.reactor' not in sys.modules, 'reactor imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__('pathlib').Path(__file__).parents[2]))


# --- publish ---------------------------------------------------------------------------------


def test_publish_sends_nginx_rtmp_form_fields():
    h, agent, _ = make(auto=[FakeResponse(200)])
    proceed = Proceed("LIVE")
    results = run(h.publish(publish_request("cam", args={"key": "s3cr3t", "x": "a b&c"}), proceed))
    assert results == ["LIVE"]
    method, uri, headers, body, _ = agent.calls[0]
    assert method == b"POST" and uri == HOOK.encode()
    assert headers.getRawHeaders(b"content-type") == [b"application/x-www-form-urlencoded"]
    # Same names, same order as ngx_rtmp_netcall_http_format_session + ngx_rtmp_notify_publish_create.
    assert agent.fields() == ["app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call", "name", "type", "key", "x"]
    assert agent.form() == {
        "app": "live", "flashver": "FMLE/3.0 (compatible; FMSc/1.0)", "swfurl": "http://swf.example/p.swf",
        "tcurl": "rtmp://127.0.0.1:1935/live", "pageurl": "http://page.example/", "addr": "10.1.2.3",
        "clientid": "7", "call": "publish", "name": "cam", "type": "live", "key": "s3cr3t", "x": "a b&c",
    }
    assert [r.name for r in proceed.requests] == ["cam"]


def test_get_puts_the_form_in_the_query_string():
    h, agent, _ = make(urls={"on_publish": HOOK + "?token=1"}, auto=[FakeResponse(204)], method="GET")
    results = run(h.publish(publish_request(mode="record"), Proceed("LIVE")))
    assert results == ["LIVE"]
    method, uri, headers, body, _ = agent.calls[0]
    assert method == b"GET" and body is None and headers.getRawHeaders(b"content-type") is None
    q = agent.form()
    assert q["token"] == "1" and q["call"] == "publish" and q["type"] == "record"


def test_client_arguments_cannot_shadow_fields():
    h, agent, _ = make(auto=[FakeResponse(200)])
    with capturedLogs() as logs:
        run(h.publish(publish_request("cam", args={"name": "other", "addr": "1.1.1.1", "call": "x", "token": "t"}), Proceed()))
    fields = agent.fields()
    assert fields.count("name") == 1 and fields.count("addr") == 1 and fields.count("call") == 1
    assert agent.form()["name"] == "cam" and agent.form()["token"] == "t"
    assert any("not forwarded" in e["log_format"] for e in logs)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=100, max_value=599))
def test_status_code_decides_like_nginx(code):
    h, agent, _ = make(auto=[FakeResponse(code)])
    proceed = Proceed("LIVE")
    results = run(h.publish(publish_request(), proceed))
    if code // 100 in (2, 3):  # a 3xx without Location goes on unchanged (ngx_rtmp_notify_publish_handle)
        assert results == ["LIVE"] and proceed.requests[0].name == "cam"
    else:
        e = rejected(results, "NetStream.Publish.Denied")
        assert str(code) in e.description
        assert proceed.requests == []


def test_redirect_renames_the_published_stream():
    h, agent, _ = make(auto=[FakeResponse(302, b"alice?quality=hd")])
    proceed = Proceed("LIVE")
    results = run(h.publish(publish_request("s3cr3t-key", args={"key": "k"}), proceed))
    assert results == ["LIVE"]
    (r,) = proceed.requests
    assert r.name == "alice" and r.args == {"key": "k", "quality": "hd"}


@pytest.mark.parametrize("location", [b"rtmp://other.example/live/x", b"RTMP://h/a/b", b"rtmps://h/a/b"])
def test_relay_redirect_refuses_with_a_log_line(location):
    h, agent, _ = make(auto=[FakeResponse(301, location)])
    proceed = Proceed()
    with capturedLogs() as logs:
        results = run(h.publish(publish_request(), proceed))
    rejected(results, "NetStream.Publish.Denied")
    assert proceed.requests == []
    assert any("relaying to another server is not supported" in e["log_format"] for e in logs)


@pytest.mark.parametrize("location", [b"", b"  ", b"http://h/x", b"a\x01b", b"\xff\xfe", b"x" * 300, b"?a=b"])
def test_unusable_redirects_refuse(location):
    h, agent, _ = make(auto=[FakeResponse(302, location)])
    proceed = Proceed()
    results = run(h.publish(publish_request(), proceed))
    rejected(results, "NetStream.Publish.Denied")
    assert proceed.requests == []


def test_later_refusal_passes_through_unchanged():
    h, agent, _ = make(auto=[FakeResponse(200)])
    later = Rejected("NetStream.Publish.BadName", "in use")
    results = run(h.publish(publish_request(), Proceed(error=later)))
    assert results[0].value is later


def test_timeout_refuses_and_cancels_the_request():
    h, agent, clock = make(timeout=5.0)
    proceed = Proceed()
    with capturedLogs() as logs:
        results = run(h.publish(publish_request(), proceed))
        assert results == [] and len(agent.calls) == 1
        clock.advance(4.9)
        assert results == []
        clock.advance(0.2)
    rejected(results, "NetStream.Publish.Denied")
    assert agent.cancelled == 1 and proceed.requests == []
    assert any(e.get("reason") == "timed out" for e in logs)
    assert clock.getDelayedCalls() == []


def test_answer_before_timeout_cancels_the_timer():
    h, agent, clock = make(timeout=5.0)
    results = run(h.publish(publish_request(), Proceed("LIVE")))
    agent.calls[0][4].callback(FakeResponse(200))
    assert results == ["LIVE"] and clock.getDelayedCalls() == []


def test_connection_refused_refuses():
    h, agent, clock = make(auto=[ConnectionRefusedError()])
    results = run(h.publish(publish_request(), Proceed()))
    rejected(results, "NetStream.Publish.Denied")
    assert len(agent.calls) == 1 and clock.getDelayedCalls() == []


def test_no_answer_on_a_stale_connection_is_retried_once():
    stale = ResponseNeverReceived([Failure(ConnectionRefusedError())])
    h, agent, _ = make(auto=[stale, FakeResponse(200)])
    assert run(h.publish(publish_request(), Proceed("LIVE"))) == ["LIVE"]
    assert len(agent.calls) == 2 and agent.calls[0][3] == agent.calls[1][3]

    h, agent, _ = make(auto=[stale, stale])
    rejected(run(h.publish(publish_request(), Proceed())), "NetStream.Publish.Denied")
    assert len(agent.calls) == 2


def test_oversized_body_drops_the_connection_but_the_status_counts():
    big = FakeResponse(200, body=b"x" * (notify.BODY_LIMIT + 10000))
    h, agent, _ = make(auto=[big])
    assert run(h.publish(publish_request(), Proceed("LIVE"))) == ["LIVE"]
    assert big.transport.stopped
    small = FakeResponse(200, body=b"ok" * 100)
    h, agent, _ = make(auto=[small])
    assert run(h.publish(publish_request(), Proceed("LIVE"))) == ["LIVE"]
    assert not small.transport.stopped


def test_unconfigured_callbacks_make_no_calls():
    h, agent, _ = make(urls={})
    assert run(h.publish(publish_request(), Proceed("P"))) == ["P"]
    assert run(h.play(play_request(), Proceed("Q"))) == ["Q"]
    assert run(h.connect(connect_request(), Proceed("C"))) == ["C"]
    h.close_stream(StreamClosed("live", "cam", "publisher", "done", session()))
    assert agent.calls == []


def test_unencodable_name_refuses():
    h, agent, _ = make(auto=[FakeResponse(200)])
    rejected(run(h.publish(publish_request("bad\udc80"), Proceed())), "NetStream.Publish.Denied")
    assert agent.calls == []


# --- play ------------------------------------------------------------------------------------


def test_play_fields_and_nginx_uint32_start_duration():
    h, agent, _ = make(urls={"on_play": HOOK}, auto=[FakeResponse(200)])
    results = run(h.play(play_request("cam", args={"t": "1"}, start=-2000.0, duration=-1.0, reset=False), Proceed()))
    assert results == [None]
    assert agent.fields() == ["app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid",
                              "call", "name", "start", "duration", "reset", "t"]
    f = agent.form()
    assert (f["call"], f["name"], f["start"], f["duration"], f["reset"], f["t"]) == ("play", "cam", "4294965296", "4294967295", "0", "1")


def test_play_redirect_switches_the_stream_and_refusals_use_play_codes():
    h, agent, _ = make(urls={"on_play": HOOK}, auto=[FakeResponse(303, b"other")])
    proceed = Proceed()
    assert run(h.play(play_request("cam"), proceed)) == [None]
    assert proceed.requests[0].name == "other"

    h, agent, _ = make(urls={"on_play": HOOK}, auto=[FakeResponse(302, b"rtmp://origin/live/cam")])
    with capturedLogs() as logs:
        rejected(run(h.play(play_request(), Proceed())), "NetStream.Play.Failed")
    assert any("pull" in e.get("action", "") for e in logs)

    h, agent, _ = make(urls={"on_play": HOOK}, auto=[FakeResponse(404)])
    rejected(run(h.play(play_request(), Proceed())), "NetStream.Play.Failed")


# --- connect ---------------------------------------------------------------------------------


def test_connect_fields_and_decisions():
    clock = Clock()
    clock.advance(1700000000.5)
    h, agent, _ = make(urls={"on_connect": HOOK}, auto=[FakeResponse(200)], clock=clock)
    assert run(h.connect(connect_request(args={"user": "u"}), Proceed())) == [None]
    assert agent.fields() == ["app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "epoch", "call", "user"]
    f = agent.form()
    assert f["call"] == "connect" and f["app"] == "live" and f["user"] == "u" and f["addr"] == "10.1.2.3"
    assert f["epoch"] == str(1700000000500 & 0xFFFFFFFF)

    h, agent, _ = make(urls={"on_connect": HOOK}, auto=[FakeResponse(401)])
    rejected(run(h.connect(connect_request(), Proceed())), "NetConnection.Connect.Rejected")

    # A redirect to the same application is a plain yes; to another one we cannot follow.
    h, agent, _ = make(urls={"on_connect": HOOK}, auto=[FakeResponse(302, b"live")])
    assert run(h.connect(connect_request(), Proceed())) == [None]
    h, agent, _ = make(urls={"on_connect": HOOK}, auto=[FakeResponse(302, b"private")])
    rejected(run(h.connect(connect_request(), Proceed())), "NetConnection.Connect.Rejected")


# --- done calls ------------------------------------------------------------------------------


DONE_URLS = {
    "on_publish": HOOK, "on_done": "http://b/done", "on_publish_done": "http://b/publish_done",
    "on_play_done": "http://b/play_done",
}


def test_publish_done_and_done_after_the_stream_closes():
    h, agent, _ = make(urls=DONE_URLS, auto=[FakeResponse(302, b"alice")])
    sess = session()
    run(h.publish(publish_request("key1", args={"k": "v"}, sess=sess), Proceed(lambda r: types.SimpleNamespace(name=r.name))))
    assert len(agent.calls) == 1
    h.close_stream(StreamClosed("live", "alice", "publisher", "unpublish", sess))
    assert [c[1] for c in agent.calls[1:]] == [b"http://b/publish_done", b"http://b/done"]
    for i, call in ((1, "publish_done"), (2, "done")):
        assert agent.fields(i) == ["app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call", "name", "k"]
        f = agent.form(i)
        # nginx-rtmp reports the name the client asked for (its ctx is saved before the redirect).
        assert (f["call"], f["name"], f["k"], f["clientid"]) == (call, "key1", "v", "7")
    # Fire-and-forget: nobody waits, and a second close of the same stream sends nothing.
    h.close_stream(StreamClosed("live", "alice", "publisher", "again", sess))
    assert len(agent.calls) == 3


def test_play_done_and_done():
    h, agent, _ = make(urls=DONE_URLS)
    sess = session()
    run(h.play(play_request("cam", sess=sess), Proceed()))
    assert agent.calls == []  # no on_play configured
    h.close_stream(StreamClosed("live", "cam", "player", "closeStream", sess))
    assert [agent.form(i)["call"] for i in range(2)] == ["play_done", "done"]


def test_no_done_calls_for_streams_that_were_refused():
    h, agent, _ = make(urls=DONE_URLS, auto=[FakeResponse(403)])
    sess = session()
    run(h.publish(publish_request(sess=sess), Proceed()))
    h, agent2, _ = make(urls={"on_done": "http://b/done"})
    run(h.publish(publish_request(sess=sess), Proceed(error=Rejected("NetStream.Publish.BadName", "in use"))))
    h.close_stream(StreamClosed("live", "cam", "publisher", "x", sess))
    assert agent2.calls == [] and sess.data.get("notify", {}) == {}


def test_done_follows_a_rename_by_a_later_handler():
    h, agent, _ = make(urls={"on_done": "http://b/done"})
    sess = session()
    run(h.publish(publish_request("cam", sess=sess), Proceed(types.SimpleNamespace(name="cam-renamed"))))
    h.close_stream(StreamClosed("live", "cam-renamed", "publisher", "x", sess))
    assert agent.form()["name"] == "cam"


def test_done_for_a_play_renamed_by_a_later_handler():
    h, agent, _ = make(urls={"on_play_done": "http://b/pd"})
    sess = session()
    run(h.play(play_request("cam", sess=sess), Proceed()))  # play's outcome is None: no final name
    h.close_stream(StreamClosed("live", "cam-as-renamed-later", "player", "x", sess))
    assert agent.form()["name"] == "cam"
    h.close_stream(StreamClosed("live", "other", "player", "x", sess))
    assert len(agent.calls) == 1


def test_done_call_failures_are_logged_not_raised():
    h, agent, clock = make(urls={"on_publish_done": "http://b/pd"})
    sess = session()
    run(h.publish(publish_request(sess=sess), Proceed()))
    with capturedLogs() as logs:
        assert h.close_stream(StreamClosed("live", "cam", "publisher", "x", sess)) is None
        agent.calls[0][4].errback(ConnectionRefusedError())
    assert any(e["log_level"].name == "warn" and e.get("setting") == "on_publish_done" for e in logs)
    assert h._pending == set()

    run(h.publish(publish_request(sess=sess), Proceed()))
    with capturedLogs() as logs:
        h.close_stream(StreamClosed("live", "cam", "publisher", "x", sess))
        clock.advance(6)
    assert any(e.get("reason") == "timed out" for e in logs)
    assert agent.cancelled == 1 and h._pending == set()


def test_record_done_fields():
    from rtmpserver.handlers.record import RecordingDone

    h, agent, _ = make(urls={"on_record_done": "http://b/rec"})
    h.recording_done(RecordingDone("live", "cam", "/rec/cam-1.flv", 1000, 2.0, "stopped", session(), {"k": "v"}, "all"))
    assert agent.fields() == ["app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid",
                              "call", "recorder", "name", "path", "k"]
    f = agent.form()
    assert (f["call"], f["recorder"], f["name"], f["path"], f["addr"], f["k"]) == ("record_done", "all", "cam", "/rec/cam-1.flv", "10.1.2.3", "v")

    # A recording started by the control API has no publisher session.
    h.recording_done(RecordingDone("live", "cam", "/rec/cam-2.flv", 1000, 2.0, "manual"))
    f = agent.form()
    assert (f["app"], f["addr"], f["clientid"], f["path"], f["recorder"]) == ("live", "", "", "/rec/cam-2.flv", "")

    h, agent, _ = make(urls={})
    h.recording_done(RecordingDone("live", "cam", "/x.flv", 1, 1.0, "stopped"))
    assert agent.calls == []


def test_record_done_hangs_off_the_record_handlers_callbacks():
    from rtmpserver.handlers.record import RecordingDone
    from rtmpserver.handlers.record import factory as record_factory

    h, agent, _ = make(urls={"on_record_done": "http://b/rec"})
    rec = record_factory.build({"path": "/tmp/rec/{app}-{name}-{time}.flv"}, context())
    rec.on_record_done.append(h.recording_done)
    rec._done(RecordingDone("live", "cam", "/tmp/rec/live-cam.flv", 10, 1.0, "stopped", session()))
    assert agent.form()["path"] == "/tmp/rec/live-cam.flv"


# --- the real HTTP client against a real twisted.web server, in memory ----------------------


class Backend(Resource):
    """Records every request's form; answers with ``status``/``location``, or never (``hang``)."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []
        self.status = 200
        self.location = None
        self.body = b"ok"
        self.hang = False

    def render(self, request):
        self.requests.append((request.method, request.path, {k.decode(): [x.decode() for x in v] for k, v in request.args.items()},
                              request.getHeader(b"content-type")))
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        if self.location is not None:
            request.setHeader(b"location", self.location)
        return self.body


class Loopback:
    """A MemoryReactorClock with ``backend`` listening on port 8080; ``pump()`` connects pending
    clients and moves bytes until nothing moves."""

    def __init__(self):
        self.reactor = MemoryReactorClock()
        self.backend = Backend()
        self.site = Site(self.backend)
        self.reactor.listenTCP(8080, self.site)
        self.pumps = []
        self.connections = 0

    def pump(self):
        for _ in range(20):
            while self.reactor.tcpClients:
                self.connections += 1
                self.pumps.append(ConnectionCompleter(self.reactor).succeedOnce())
            moved = False
            for p in self.pumps:
                moved |= bool(p.pump(advanceClock=False))
            if not moved and not self.reactor.tcpClients:
                return


def real_handler(urls, timeout="5"):
    loop = Loopback()
    ctx = context(clock=loop.reactor, reactor=loop.reactor)
    h = notify.factory.build(dict(urls, timeout=timeout), ctx)
    return h, loop


def test_real_http_post_form_reaches_twisted_web():
    h, loop = real_handler({"on_publish": "http://127.0.0.1:8080/on_publish"})
    results = run(h.publish(publish_request("cam", args={"key": "k1"}), Proceed("LIVE")))
    assert loop.reactor.tcpClients[0][3] == 5.0  # the connect timeout
    loop.pump()
    assert results == ["LIVE"]
    method, path, form, ctype = loop.backend.requests[0]
    assert (method, path, ctype) == (b"POST", b"/on_publish", b"application/x-www-form-urlencoded")
    assert form == {
        "app": ["live"], "flashver": ["FMLE/3.0 (compatible; FMSc/1.0)"], "swfurl": ["http://swf.example/p.swf"],
        "tcurl": ["rtmp://127.0.0.1:1935/live"], "pageurl": ["http://page.example/"], "addr": ["10.1.2.3"],
        "clientid": ["7"], "call": ["publish"], "name": ["cam"], "type": ["live"], "key": ["k1"],
    }


def test_real_http_connection_is_pooled():
    h, loop = real_handler({"on_publish": "http://127.0.0.1:8080/p"})
    for i in range(3):
        results = run(h.publish(publish_request(f"cam{i}"), Proceed("LIVE")))
        loop.pump()
        assert results == ["LIVE"]
    assert len(loop.backend.requests) == 3 and loop.connections == 1


def test_real_http_refusal_redirect_and_big_body():
    h, loop = real_handler({"on_publish": "http://127.0.0.1:8080/p", "on_play": "http://127.0.0.1:8080/q"})
    loop.backend.status = 403
    results = run(h.publish(publish_request(), Proceed()))
    loop.pump()
    rejected(results, "NetStream.Publish.Denied")

    loop.backend.status, loop.backend.location = 302, b"renamed"
    proceed = Proceed()
    results = run(h.play(play_request(), proceed))
    loop.pump()
    assert results == [None] and proceed.requests[0].name == "renamed"

    loop.backend.status, loop.backend.location, loop.backend.body = 200, None, b"y" * (notify.BODY_LIMIT * 3)
    results = run(h.publish(publish_request(), Proceed("LIVE")))
    loop.pump()
    assert results == ["LIVE"]


def test_real_http_hanging_backend_times_out():
    h, loop = real_handler({"on_publish": "http://127.0.0.1:8080/p"}, timeout="2")
    loop.backend.hang = True
    proceed = Proceed()
    results = run(h.publish(publish_request(), proceed))
    loop.pump()
    assert len(loop.backend.requests) == 1 and results == []
    loop.reactor.advance(2.0)
    loop.pump()
    rejected(results, "NetStream.Publish.Denied")
    assert proceed.requests == []
    assert all(p.clientIO.disconnecting or p.clientIO.disconnected for p in loop.pumps)


def test_real_http_refused_connection_refuses():
    h, loop = real_handler({"on_connect": "http://127.0.0.1:8080/c"})
    results = run(h.connect(connect_request(), Proceed()))
    ConnectionCompleter(loop.reactor).failOnce()
    loop.reactor.advance(0.5)  # HostnameEndpoint reports once its attempt schedule has run out
    rejected(results, "NetConnection.Connect.Rejected")


def test_real_http_through_the_chain():
    loop = Loopback()
    config = cfg.parse(
        "[server]\nlisten = tcp:1935\n[app:live]\nhandlers = notify, live\n"
        "notify.on_publish = http://127.0.0.1:8080/p\nnotify.on_publish_done = http://127.0.0.1:8080/pd\n"
    )
    chains = build_chains(config, hub=None, clock=loop.reactor, reactor=loop.reactor,
                          factories={"notify": notify.factory, "live": live_factory})
    chain = chains["live"]
    sess = session()
    loop.backend.status, loop.backend.location = 302, b"alice"
    finals = []
    d = chain.run("publish", publish_request("key", sess=sess), lambda r: finals.append(r) or types.SimpleNamespace(name=r.name))
    results = []
    d.addBoth(results.append)
    loop.pump()
    assert [r.name for r in finals] == ["alice"] and results[0].name == "alice"
    loop.backend.status, loop.backend.location = 200, None
    chain.close_stream(StreamClosed("live", "alice", "publisher", "done", sess))
    loop.pump()
    assert [r[1] for r in loop.backend.requests] == [b"/p", b"/pd"]
    assert loop.backend.requests[1][2]["call"] == ["publish_done"] and loop.backend.requests[1][2]["name"] == ["key"]


def test_calls_are_counted_through_the_metrics_hook():
    """notify_calls_total{app, call, result} in the server's registry (IServerMetrics)."""
    h, agent, _ = make(auto=[FakeResponse(200), FakeResponse(403), ConnectionRefusedError()])
    for _ in range(3):
        run(h.publish(publish_request(), Proceed("LIVE")))
    registry = h.context.metrics.registry
    for result in ("ok", "refused", "failed"):
        assert registry.get_sample_value("notify_calls_total", {"app": "live", "call": "on_publish", "result": result}) == 1


def test_server_stop_closes_the_pooled_connections():
    from rtmpserver.interfaces import IHandlerService, IRecordingObserver

    h, _, clock = make()
    verifyObject(IHandlerService, h)
    verifyObject(IRecordingObserver, h)
    assert h.start_service() is None
    closed = []

    class Pool:
        def closeCachedConnections(self):
            closed.append(True)
            return defer.succeed(None)

    h.caller.pool = Pool()
    results = []
    h.stop_service().addCallback(results.append)
    assert closed == [True] and results == [None]
