"""Test helpers for handler authors: fake sessions, contexts, requests, and a chain runner.

This module is public API (documented in docs/plugins.md, "Testing a handler"), kept as stable as
``rtmpserver.interfaces``.  Everything here runs without sockets and without the reactor: time is
a ``MemoryReactorClock`` you advance yourself.

    from rtmpserver import testing

    handler = testing.load_handler("denylist", {"names": "spam"})
    outcome = testing.run_hook(handler, testing.publish_request("spam"))
    assert outcome.rejected and outcome.code == "NetStream.Publish.Denied"
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from rtmpserver import config as _config
from rtmpserver.chain import Chain
from rtmpserver.errors import Rejected
from rtmpserver.requests import (
    ConnectRequest,
    HandlerContext,
    PlayRequest,
    PublishRequest,
    SessionView,
    StreamClosed,
)

__all__ = [
    "FakeSession",
    "session_view",
    "server_config",
    "make_context",
    "connect_request",
    "publish_request",
    "play_request",
    "stream_closed",
    "Outcome",
    "start_hook",
    "run_hook",
    "Pending",
    "close_stream",
    "load_handler",
    "server_metrics",
    "sample",
    "stream_fields",
    "client_fields",
]


class FakeSession:
    """What a ``SessionView`` reads, for tests.  ``view`` is the ``SessionView`` handlers get."""

    def __init__(self, id: int = 1, host: str = "127.0.0.1", port: int = 50000, app: str | None = "live",
                 connect_params: Mapping[str, Any] | None = None) -> None:
        self.id = id
        self.host = host
        self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.app = app
        self.connect_params = dict(connect_params or {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"})
        self.handler_data: dict = {}
        self.closed = False
        self.protocol = "rtmp"  # ISessionView.protocol
        self.view = SessionView(self)

    def close(self) -> None:
        """The connection went away (``SessionView.closed`` becomes True)."""
        self.closed = True


def session_view(id: int = 1, host: str = "127.0.0.1", port: int = 50000, app: str | None = "live",
                 connect_params: Mapping[str, Any] | None = None) -> SessionView:
    """A ``SessionView`` of a fake connection from ``host:port``."""
    return FakeSession(id, host, port, app, connect_params).view


def _ini_value(value: str) -> str:
    # Multi-line values (access rules) continue on indented lines.
    return "\n    ".join(str(value).splitlines()) if "\n" in str(value) else str(value)


def server_config(handlers: Iterable[str] = ("live",), settings: Mapping[str, Mapping[str, str]] | None = None,
                  app: str = "live", extra: str = "", path: str = "test.ini") -> _config.ServerConfig:
    """A ``ServerConfig`` parsed by the real config parser: one ``[app:APP]`` with ``handlers``,
    ``settings`` as ``{handler: {key: value}}`` (written as ``handler.key = value``) and ``extra``
    lines appended to the file (other sections)."""
    lines = ["[server]", "listen = tcp:0:interface=127.0.0.1", f"[app:{app}]", "handlers = " + ", ".join(handlers)]
    for handler, values in (settings or {}).items():
        for key, value in values.items():
            lines.append(f"{handler}.{key} = {_ini_value(value)}")
    return _config.parse("\n".join(lines) + "\n" + extra, path)


def make_context(app: str = "live", *, config: _config.ServerConfig | None = None, clock: Any = None,
                 hub: Any = None, reactor: Any = None, metrics: Any = None) -> HandlerContext:
    """A ``HandlerContext`` for application ``app`` like the one ``build()`` gets from the server:
    a parsed config, a fresh ``Hub``, a ``MemoryReactorClock`` and a fresh ``ServerMetrics`` unless
    given."""
    from rtmpserver.hub import Hub
    from rtmpserver.metrics import ServerMetrics

    config = config if config is not None else server_config(app=app)
    if app not in config.apps:
        raise ValueError(f"no [app:{app}] in the config")
    return HandlerContext(app=config.apps[app], server=config, hub=hub if hub is not None else Hub(),
                          clock=clock if clock is not None else MemoryReactorClock(), reactor=reactor,
                          metrics=metrics if metrics is not None else ServerMetrics())


# -- requests -----------------------------------------------------------------------------------


def _session(session: SessionView | None, app: str) -> SessionView:
    return session if session is not None else session_view(app=app)


def connect_request(app: str = "live", *, args: Mapping[str, str] | None = None, session: SessionView | None = None,
                    tc_url: str | None = None, page_url: str = "", swf_url: str = "", flash_ver: str = "FMLE/3.0",
                    params: Mapping[str, Any] | None = None) -> ConnectRequest:
    tc_url = tc_url if tc_url is not None else f"rtmp://127.0.0.1/{app}"
    params = dict(params) if params is not None else {"app": app, "tcUrl": tc_url, "flashVer": flash_ver}
    return ConnectRequest(app=app, tc_url=tc_url, page_url=page_url, swf_url=swf_url, flash_ver=flash_ver,
                          args=dict(args or {}), params=params, session=_session(session, app))


def publish_request(name: str = "stream", app: str = "live", *, args: Mapping[str, str] | None = None,
                    mode: str = "live", session: SessionView | None = None) -> PublishRequest:
    return PublishRequest(app=app, name=name, mode=mode, args=dict(args or {}), session=_session(session, app))


def play_request(name: str = "stream", app: str = "live", *, args: Mapping[str, str] | None = None,
                 start: float = -2.0, duration: float = -1.0, reset: bool = True,
                 session: SessionView | None = None) -> PlayRequest:
    return PlayRequest(app=app, name=name, start=start, duration=duration, reset=reset, args=dict(args or {}),
                       session=_session(session, app))


def stream_closed(name: str = "stream", app: str = "live", *, role: str = "publisher", reason: str = "closeStream",
                  session: SessionView | None = None) -> StreamClosed:
    if role not in ("publisher", "player"):
        raise ValueError(f"role is 'publisher' or 'player', not {role!r}")
    return StreamClosed(app=app, name=name, role=role, reason=reason, session=_session(session, app))


_HOOKS = {ConnectRequest: "connect", PublishRequest: "publish", PlayRequest: "play"}


# -- running hooks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a chain decided one request.

    ``decided`` is False while a hook is still waiting (advance the clock or fire your Deferred,
    then look at ``Pending.outcome`` again).  When it proceeded, ``request`` is what reached the
    end of the chain and ``value`` what the server's action returned; when it was rejected,
    ``code`` and ``description`` are what the client would receive.
    """

    hook: str
    original: Any
    decided: bool = True
    request: Any = None
    value: Any = None
    code: str | None = None
    description: str | None = None
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def proceeded(self) -> bool:
        return self.decided and self.code is None

    @property
    def rejected(self) -> bool:
        return self.decided and self.code is not None

    @property
    def renamed(self) -> bool:
        """Proceeded with another stream name than requested (publish and play)."""
        return self.proceeded and "name" in self.changes

    @property
    def name(self) -> str | None:
        """The stream name that reached the server (or None)."""
        return getattr(self.request, "name", None)


class Pending:
    """A request going down the chain; ``outcome`` says where it stands now."""

    def __init__(self, hook: str, request: Any, clock: Any) -> None:
        self.hook = hook
        self.original = request
        self.clock = clock
        self.deferred: defer.Deferred = defer.Deferred()  # fires with the Outcome
        self._final: Any = None
        self._outcome: Outcome | None = None

    @property
    def outcome(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        return Outcome(self.hook, self.original, decided=False)

    def _done(self, result: Any) -> None:
        if isinstance(result, Failure):
            e = result.value
            self._outcome = Outcome(self.hook, self.original, code=e.code, description=e.description)
        else:
            final = self._final
            changes = {}
            for key in getattr(type(final), "__dataclass_fields__", {}):
                if key != "session" and getattr(final, key) != getattr(self.original, key):
                    changes[key] = (getattr(self.original, key), getattr(final, key))
            self._outcome = Outcome(self.hook, self.original, request=final, value=result, changes=changes)
        self.deferred.callback(self._outcome)


def start_hook(handlers: Any, request: Any, *, clock: Any = None, timeout: float = 10.0,
               final: Callable[[Any], Any] | None = None, app: str | None = None) -> Pending:
    """Send ``request`` down a chain of ``handlers`` (one handler, or a list of handlers or
    ``(name, handler)`` pairs), as the server does, with the hook chosen by the request's type.

    ``final(request)`` stands for the server's own action (default: returns None); raising
    ``Rejected`` in it refuses like the server would (e.g. a stream name already in use).
    Sync hooks, Deferreds and ``async def`` hooks are all run; ``timeout`` is the app's
    ``handler_timeout``, measured on ``clock`` (a ``MemoryReactorClock`` by default).
    """
    hook = _HOOKS.get(type(request))
    if hook is None:
        raise TypeError(f"{request!r} is not a ConnectRequest, PublishRequest or PlayRequest")
    clock = clock if clock is not None else MemoryReactorClock()
    if not isinstance(handlers, (list, tuple)):
        handlers = [handlers]
    pairs = [h if isinstance(h, tuple) else (f"handler{i}", h) for i, h in enumerate(handlers)]
    chain = Chain(app or request.app, pairs, clock, timeout)
    pending = Pending(hook, request, clock)

    def at_end(r: Any) -> Any:
        pending._final = r
        return final(r) if final is not None else None

    d = chain.run(hook, request, at_end)
    d.addBoth(lambda result: pending._done(result) if not isinstance(result, Failure) or result.check(Rejected) else result)
    return pending


def run_hook(handlers: Any, request: Any, *, clock: Any = None, timeout: float = 10.0,
             final: Callable[[Any], Any] | None = None, advance: float = 0.0, app: str | None = None) -> Outcome:
    """``start_hook`` and, when ``advance`` is given, move the clock on that many seconds (in
    steps, so timers scheduled on the way fire) before returning the ``Outcome``."""
    clock = clock if clock is not None else MemoryReactorClock()
    pending = start_hook(handlers, request, clock=clock, timeout=timeout, final=final, app=app)
    left = advance
    while left > 0 and not pending.outcome.decided:
        step = min(left, 0.1)
        clock.advance(step)
        left -= step
    return pending.outcome


def close_stream(handler: Any, event: StreamClosed) -> Any:
    """Call ``handler.close_stream(event)``; a coroutine is run (the Deferred is returned)."""
    r = handler.close_stream(event)
    return defer.ensureDeferred(r) if inspect.iscoroutine(r) else r


# -- discovery ----------------------------------------------------------------------------------


def load_handler(name: str, settings: Mapping[str, str] | None = None, *, app: str = "live", clock: Any = None,
                 hub: Any = None, reactor: Any = None, metrics: Any = None, extra: str = "") -> Any:
    """Find handler ``name`` through real plugin discovery and build it for ``app`` with
    ``settings`` (``{key: value}``, as ``name.key = value`` lines give), exactly as the server
    does at start-up: a missing plugin, a module that fails to import, or a bad setting raises
    ``ConfigError`` with the message the server would print.

    Pass ``clock``, ``hub``, ``reactor`` or ``metrics`` (a ``rtmpserver.metrics.ServerMetrics``) to
    keep hold of what the handler was built with; ``extra`` is appended to the config file.
    """
    from rtmpserver.apps import build_chains
    from rtmpserver.hub import Hub
    from rtmpserver.metrics import ServerMetrics

    config = server_config(handlers=[name], settings={name: dict(settings or {})}, app=app, extra=extra)
    chains = build_chains(config, hub if hub is not None else Hub(), clock if clock is not None else MemoryReactorClock(),
                          reactor=reactor, metrics=metrics if metrics is not None else ServerMetrics())
    return dict(chains[app].handlers)[name]


# -- the metrics hook ---------------------------------------------------------------------------


def server_metrics() -> Any:
    """A fresh ``IServerMetrics`` (what ``HandlerContext.metrics`` is), to pass to ``load_handler``."""
    from rtmpserver.metrics import ServerMetrics

    return ServerMetrics()


def sample(metrics: Any, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of one sample in the server's registry (``name`` as exposed, e.g. with
    ``_total``), or None when there is no such sample."""
    return metrics.registry.get_sample_value(name, dict(labels or {}))


def stream_fields(metrics: Any, app: str, name: str) -> dict:
    """The fields handlers add to stream ``app/name`` in /api (its ``extra`` object)."""
    return metrics.stream_extra(app, name)


def client_fields(metrics: Any, app: str | None, client_id: int) -> dict:
    """The fields handlers add to a client in /api (its ``extra`` object)."""
    return metrics.client_extra(app, client_id)
