"""What the auth tests share: a handler environment, fake sessions, requests run through a hook."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers.auth import factory
from rtmpserver.requests import (
    HandlerContext,
    PlayRequest,
    PublishRequest,
    SessionView,
)

SECRET = "s3cret-s3cret-s3cret"
NOW = 1_700_000_000
# Cheap scrypt for tests; the passwd command uses RFC 7914's interactive cost.
FAST = {"n": 1024, "r": 8, "p": 1}


class FakeSession:
    def __init__(self, host: str = "192.0.2.10", connect_args: dict | None = None) -> None:
        self.id = 3
        self.host = host
        self.peer = f"{host}:40000"
        self.app = "live"
        self.connect_params = {"app": "live", "args": dict(connect_args or {})}
        self.handler_data: dict = {}
        self.closed = False


class FakeProceed:
    def __init__(self, outcome=None) -> None:
        self.calls: list = []
        self.outcome = outcome

    def __call__(self, request):
        self.calls.append(request)
        return defer.succeed(self.outcome)


class Env:
    """A config directory, a clock, and the handler built from some settings."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.config = str(tmp_path / "server.ini")
        self.clock = Clock()
        self.clock.advance(NOW)

    def build(self, **settings: str):
        ctx = HandlerContext(app=SimpleNamespace(name="live"), server=SimpleNamespace(path=self.config),
                             hub=None, clock=self.clock)  # fmt: skip
        return factory.build(settings, ctx)

    def error(self, **settings: str) -> str:
        with pytest.raises(ConfigError) as info:
            self.build(**settings)
        return str(info.value)



def publish_request(name: str, args: dict | None = None, host: str = "192.0.2.10", connect_args=None, app="live"):
    return PublishRequest(app=app, name=name, mode="live", args=dict(args or {}),
                          session=SessionView(FakeSession(host, connect_args)))  # fmt: skip


def play_request(name: str, args: dict | None = None, host: str = "192.0.2.10", connect_args=None, app="live"):
    return PlayRequest(app=app, name=name, start=-2, duration=-1, reset=True, args=dict(args or {}),
                       session=SessionView(FakeSession(host, connect_args)))  # fmt: skip


def run(hook, request):
    """Call a hook with a fake proceed; returns (request passed on or None, Rejected or None)."""
    proceed = FakeProceed()
    try:
        r = hook(request, proceed)
    except Rejected as e:
        assert proceed.calls == []
        return None, e
    if isinstance(r, defer.Deferred):
        box: list = []
        r.addBoth(box.append)
        assert box, "hook did not finish synchronously"
        if isinstance(box[0], Failure):
            box[0].trap(Rejected)
            assert proceed.calls == []
            return None, box[0].value
    assert len(proceed.calls) == 1
    return proceed.calls[0], None


def accepted(hook, request):
    passed, rejected = run(hook, request)
    assert rejected is None, f"refused: {rejected}"
    return passed


def refused(hook, request, code="NetStream.Publish.Denied") -> Rejected:
    passed, rejected = run(hook, request)
    assert passed is None, f"accepted: {passed}"
    assert rejected.code == code
    return rejected


def log_text(events) -> str:
    out = []
    for e in events:
        fields = {k: v for k, v in e.items() if not k.startswith("log_")}
        out.append(e["log_format"].format(**fields) if "log_format" in e and e["log_format"] else "")
        f = e.get("log_failure")
        if f is not None:
            out.append(str(f.value))
    return "\n".join(out)
