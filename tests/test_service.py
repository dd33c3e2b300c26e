"""Tests for rtmpserver.service: one listener per endpoint string, ordered and bounded shutdown."""

from __future__ import annotations

import sys
import types

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from rtmpserver import config, service
from tests.test_config import make_cert


class RecordingPort:
    def __init__(self, events: list[str], name: str) -> None:
        self.events = events
        self.name = name

    def stopListening(self) -> defer.Deferred[None]:
        self.events.append(f"stop {self.name}")
        return defer.succeed(None)

    def getHost(self):  # pragma: no cover - not used by the service
        raise NotImplementedError


class Reactor(MemoryReactorClock):
    """MemoryReactorClock whose ports record when they stop listening."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        self.events.append(f"listen tcp {interface or '*'}:{port}")
        return RecordingPort(self.events, f"tcp {interface or '*'}:{port}")

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        super().listenSSL(port, factory, contextFactory, backlog, interface)
        self.events.append(f"listen ssl {interface or '*'}:{port}")
        return RecordingPort(self.events, f"ssl {interface or '*'}:{port}")


class FakeFactory(ServerFactory):
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.shutdown_result: defer.Deferred[None] = defer.Deferred()

    def shutdown(self) -> defer.Deferred[None]:
        self.events.append("shutdown")
        return self.shutdown_result


def cfg(*listen: str) -> config.ServerConfig:
    return config.parse("[server]\nlisten = " + "\n  ".join(listen) + "\n[app:live]\n[app:other]\n", "t.ini")


@pytest.fixture
def events() -> list[str]:
    return []


def test_one_listener_per_endpoint(events):
    reactor = Reactor(events)
    factory = FakeFactory(events)
    root = service.makeService(cfg("tcp:1935", r"tcp6:1936:interface=\:\:1", "tcp:0:interface=127.0.0.1"),
                               reactor=reactor, factory=factory)
    children = list(root)
    assert len(children) == 3
    assert all(isinstance(c, StreamServerEndpointService) for c in children)
    assert [c.name for c in children] == ["tcp:1935", r"tcp6:1936:interface=\:\:1", "tcp:0:interface=127.0.0.1"]
    assert all(c.factory is factory for c in children)
    assert reactor.tcpServers == []  # building does not listen
    root.startService()
    assert [(p, f, i) for p, f, _, i in reactor.tcpServers] == [
        (1935, factory, ""), (1936, factory, "::1"), (0, factory, "127.0.0.1")]


def test_ssl_listener(events, tmp_path):
    make_cert(tmp_path / "certs")
    (tmp_path / "s.ini").write_text(
        "[server]\nlisten = ssl:1936:privateKey=certs/server.key:certKey=certs/server.crt:interface=127.0.0.1\n"
        "[app:live]\n")
    reactor = Reactor(events)
    root = service.makeService(config.load(str(tmp_path / "s.ini")), reactor=reactor, factory=FakeFactory(events))
    root.startService()
    assert [(p, i) for p, _, _, _, i in reactor.sslServers] == [(1936, "127.0.0.1")]


def test_stop_shuts_the_factory_down_before_the_listeners(events):
    reactor = Reactor(events)
    factory = FakeFactory(events)
    root = service.makeService(cfg("tcp:1935", "tcp:1936"), reactor=reactor, factory=factory)
    root.startService()
    events.clear()

    stopped = root.stopService()
    assert events == ["shutdown"]  # listeners stay up while sessions are being ended
    assert not stopped.called
    factory.shutdown_result.callback(None)
    assert stopped.called
    assert events[0] == "shutdown"
    assert sorted(events[1:]) == ["stop tcp *:1935", "stop tcp *:1936"]
    assert not any(c.running for c in root)
    assert not root.running


def test_stop_is_bounded_when_shutdown_never_finishes(events):
    reactor = Reactor(events)
    factory = FakeFactory(events)
    root = service.makeService(cfg("tcp:1935"), reactor=reactor, factory=factory)
    root.startService()
    events.clear()
    with capturedLogs() as logs:
        stopped = root.stopService()
        reactor.advance(service.SHUTDOWN_TIMEOUT - 0.1)
        assert events == ["shutdown"]
        reactor.advance(0.2)
    assert events == ["shutdown", "stop tcp *:1935"]
    assert stopped.called
    assert factory.shutdown_result.called  # cancelled by the timeout
    assert any("did not close within" in e["log_format"] and e["timeout"] == service.SHUTDOWN_TIMEOUT
               for e in logs)


def test_stop_continues_when_shutdown_fails(events):
    reactor = Reactor(events)
    factory = FakeFactory(events)
    factory.shutdown_result = defer.fail(RuntimeError("boom"))
    root = service.makeService(cfg("tcp:1935"), reactor=reactor, factory=factory)
    root.startService()
    with capturedLogs() as logs:
        stopped = root.stopService()
    assert stopped.called
    assert events[-1] == "stop tcp *:1935"
    failures = [e for e in logs if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)


def test_stop_continues_when_shutdown_raises(events):
    reactor = Reactor(events)

    class Raising(FakeFactory):
        def shutdown(self):
            self.events.append("shutdown")
            raise RuntimeError("boom")

    root = service.makeService(cfg("tcp:1935"), reactor=reactor, factory=Raising(events))
    root.startService()
    with capturedLogs():
        stopped = root.stopService()
    assert stopped.called
    assert events[-2:] == ["shutdown", "stop tcp *:1935"]


def test_shutdown_returning_none_is_fine(events):
    reactor = Reactor(events)

    class Plain(FakeFactory):
        def shutdown(self):
            self.events.append("shutdown")

    root = service.makeService(cfg("tcp:1935"), reactor=reactor, factory=Plain(events))
    root.startService()
    assert root.stopService().called
    assert events[-2:] == ["shutdown", "stop tcp *:1935"]


def test_startup_is_logged_with_named_fields(events):
    root = service.makeService(cfg("tcp:1935", "tcp:1936"), reactor=Reactor(events), factory=FakeFactory(events))
    with capturedLogs() as logs:
        root.startService()
    starting = [e for e in logs if e.get("listeners")]
    assert len(starting) == 1
    assert starting[0]["listeners"] == "tcp:1935, tcp:1936"
    assert starting[0]["path"] == "t.ini" and starting[0]["name"] == "rtmpserver"
    assert [e["app"] for e in logs if "app" in e] == ["live", "other"]
    assert all(e["log_namespace"].startswith("rtmpserver.service") for e in logs if "app" in e)


def test_default_factory_is_the_protocol_factory(events, monkeypatch):
    made = []

    class RTMPServerFactory(FakeFactory):
        def __init__(self, config, reactor, chains=None, hub=None, metrics=None):
            super().__init__(events)
            made.append((config, reactor))

    fake = types.ModuleType("rtmpserver.protocol")
    fake.RTMPServerFactory = RTMPServerFactory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rtmpserver.protocol", fake)
    reactor = Reactor(events)
    c = cfg("tcp:1935")
    root = service.makeService(c, reactor=reactor)
    assert made == [(c, reactor)]
    assert root.factory is list(root)[0].factory
    assert isinstance(root.factory, RTMPServerFactory)


def test_default_reactor_is_the_global_one(events):
    from twisted.internet import reactor

    root = service.makeService(cfg("tcp:1935"), factory=FakeFactory(events))
    assert root._reactor is reactor
    assert list(root)[0].endpoint._reactor is reactor


class Chain:
    def __init__(self, *handlers):
        self.handlers = [(f"h{i}", h) for i, h in enumerate(handlers)]


def test_handler_services_start_with_the_server_and_stop_after_the_sessions(events):
    from zope.interface import implementer

    from rtmpserver.interfaces import IHandlerService

    @implementer(IHandlerService)
    class Pool:
        def __init__(self):
            self.stopped = defer.Deferred()

        def start_service(self):
            events.append("handler start")

        def stop_service(self):
            events.append("handler stop")
            return self.stopped

    pool = Pool()
    reactor = Reactor(events)
    factory = FakeFactory(events)
    parts = service.Components(cfg("tcp:1935"), factory, hub=None, chains={"live": Chain(object(), pool)})
    root = service.makeService(parts.config, reactor=reactor, components=parts)
    assert root.handler_services == [pool]
    root.startService()
    assert events[0] == "handler start"
    events.clear()
    stopped = root.stopService()
    assert events == ["shutdown"]
    factory.shutdown_result.callback(None)
    assert events == ["shutdown", "handler stop"]  # listeners wait for the handler too
    pool.stopped.callback(None)
    assert events == ["shutdown", "handler stop", "stop tcp *:1935"]
    results = []
    stopped.addCallback(results.append)
    assert len(results) == 1  # stopService has fired


def test_a_handler_that_never_stops_does_not_hold_shutdown(events):
    from zope.interface import implementer

    from rtmpserver.interfaces import IHandlerService

    @implementer(IHandlerService)
    class Stuck:
        def start_service(self):
            return None

        def stop_service(self):
            return defer.Deferred()

    reactor = Reactor(events)
    factory = FakeFactory(events)
    factory.shutdown_result = defer.succeed(None)
    parts = service.Components(cfg("tcp:1935"), factory, chains={"live": Chain(Stuck())})
    root = service.makeService(parts.config, reactor=reactor, components=parts)
    root.startService()
    with capturedLogs():
        root.stopService()
        assert events[-1] == "shutdown"
        reactor.advance(service.SHUTDOWN_TIMEOUT + 0.1)
    assert events[-1] == "stop tcp *:1935"


def test_compose_builds_hub_chains_and_factory_once(events):
    c = config.parse("[server]\nlisten = tcp:1935\n[app:live]\nhandlers = record, notify, live\n"
                     "record.mode = manual\nrecord.path = /tmp/{app}-{name}.flv\nnotify.on_record_done = http://127.0.0.1:9/done\n", "t.ini")
    reactor = Reactor(events)
    parts = service.compose(c, reactor)
    assert parts.factory.hub is parts.hub and parts.factory.chains is parts.chains
    assert parts.factory.clock is reactor
    kinds = [type(h).__name__ for h in parts.handler_services()]
    assert kinds == ["RecordHandler", "NotifyHandler"]
    root = service.makeService(c, reactor=reactor, components=parts)
    assert root.factory is parts.factory
