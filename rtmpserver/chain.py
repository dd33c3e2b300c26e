"""Runs an application's handler chain for one request (docs/architecture.md, "The plugin contract").

Each handler either calls ``proceed(request)`` once or raises ``Rejected``; hooks may be sync,
return a Deferred, or be coroutines.  When the last handler proceeds, ``final(request)`` (the
server's own action: go live, start playing, accept the connection) runs and its outcome is
given back to every handler through the Deferreds their ``proceed`` calls returned.  Anything
else fails closed: a hook that raises something other than Rejected, a Deferred or coroutine that
finishes without proceeding, or a chain that has not decided within ``timeout`` seconds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtmpserver.errors import LocalProtocolError, Rejected

__all__ = ["Chain", "DEFAULT_CODES"]

DEFAULT_CODES = {
    "connect": "NetConnection.Connect.Rejected",
    "publish": "NetStream.Publish.Denied",
    "play": "NetStream.Play.Failed",
}


def _quiet(d: defer.Deferred) -> None:
    """Do not log a Rejected nobody listened for: a handler may ignore its proceed() outcome.

    A handler that adds an errback later still receives the failure.
    """
    info = getattr(d, "_debugInfo", None)
    if info is not None:
        info.failResult = None


class _Run:
    """One request going down the chain."""

    def __init__(self, chain: Chain, hook: str, final: Callable[[Any], Any]) -> None:
        self.chain = chain
        self.hook = hook
        self.final = final
        self.result: defer.Deferred = defer.Deferred()
        self.waiters: list[defer.Deferred] = []
        self.done = False
        self.current = ""  # handler holding the request, for the timeout message
        self.timer = None

    def start(self, request: Any) -> defer.Deferred:
        self._step(0, request)
        if not self.done and self.chain.timeout:
            # Only a run still undecided needs the deadline: most chains decide synchronously, and a
            # timer scheduled and cancelled per connect/play is a measurable part of a setup's cost
            # (docs/performance.md, "Connection setup"). No clock time passes in between.
            self.timer = self.chain.clock.callLater(self.chain.timeout, self._timed_out)
        return self.result

    def _step(self, i: int, request: Any) -> None:
        if self.done:
            return
        handlers = self.chain.handlers
        if i == len(handlers):
            try:
                outcome = self.final(request)
            except Rejected as e:
                self._finish(Failure(e))
                return
            except Exception:
                self.chain._log.failure("{hook} in app {app}: the server's own action failed", hook=self.hook, app=self.chain.app)
                self._finish(Failure(Rejected(DEFAULT_CODES[self.hook], "internal error")))
                return
            if isinstance(outcome, defer.Deferred):
                # The server's action may wait (a publish claims its name in the stream
                # directory of ``[server] workers``); the chain's timeout still bounds it.
                outcome.addCallbacks(self._finish, self._final_failed)
                return
            self._finish(outcome)
            return
        name, handler = handlers[i]
        self.current = name
        proceeded = []

        def proceed(new_request: Any = request) -> defer.Deferred:
            if proceeded:
                raise LocalProtocolError(f"handler {name!r} called proceed() twice in {self.hook}")
            proceeded.append(True)
            d: defer.Deferred = defer.Deferred()
            if self.done:
                d.errback(Rejected(DEFAULT_CODES[self.hook], "already decided"))
                _quiet(d)
                return d
            self.waiters.append(d)
            self._step(i + 1, new_request)
            return d

        try:
            r = getattr(handler, self.hook)(request, proceed)
        except Rejected as e:
            self._reject(name, e)
            return
        except Exception:
            self.chain._log.failure("handler {handler} failed in {hook} (app {app}); refusing", handler=name, hook=self.hook, app=self.chain.app)
            self._reject(name, Rejected(DEFAULT_CODES[self.hook], f"handler {name} failed"))
            return
        if inspect.iscoroutine(r):
            r = defer.ensureDeferred(r)
        if isinstance(r, defer.Deferred):
            def returned(_: Any) -> None:
                if not proceeded and not self.done:
                    self.chain._log.warn("handler {handler} finished {hook} without proceeding or rejecting; refusing", handler=name, hook=self.hook)
                    self._reject(name, Rejected(DEFAULT_CODES[self.hook], f"handler {name} did not decide"))

            def failed(f: Failure) -> None:
                if f.check(Rejected):
                    if not self.done:
                        self._reject(name, f.value)
                    return None
                self.chain._log.failure("handler {handler} failed in {hook} (app {app}); refusing", f, handler=name, hook=self.hook, app=self.chain.app)
                if not self.done:
                    self._reject(name, Rejected(DEFAULT_CODES[self.hook], f"handler {name} failed"))
                return None

            r.addCallbacks(returned, failed)
        # A plain None without proceeding: the handler may proceed later from a callback; the
        # timeout decides if it never does.

    def _final_failed(self, f: Failure) -> None:
        if not f.check(Rejected):
            self.chain._log.failure("{hook} in app {app}: the server's own action failed", f, hook=self.hook, app=self.chain.app)
            f = Failure(Rejected(DEFAULT_CODES[self.hook], "internal error"))
        self._finish(f)

    def _reject(self, name: str, e: Rejected) -> None:
        if not e.code:
            e = Rejected(DEFAULT_CODES[self.hook], e.description)
        self.chain._log.info(
            "{hook} refused by handler {handler} in app {app}: {code} {description}",
            hook=self.hook, handler=name, app=self.chain.app, code=e.code, description=e.description,
        )
        self._finish(Failure(e))

    def _timed_out(self) -> None:
        self.timer = None
        if not self.done:
            self._reject(
                self.current,
                Rejected(DEFAULT_CODES[self.hook], f"handler {self.current} did not decide within {self.chain.timeout:g} s"),
            )

    def _finish(self, outcome: Any) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        for d in self.waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
                _quiet(d)
            else:
                d.callback(outcome)
        self.waiters = []
        if isinstance(outcome, Failure):
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)


class Chain:
    """The configured handlers of one application, in config order."""

    _log = Logger()

    def __init__(self, app: str, handlers: Sequence[tuple[str, Any]], clock, timeout: float) -> None:
        self.app = app
        self.handlers = list(handlers)
        self.clock = clock
        self.timeout = timeout

    def run(self, hook: str, request: Any, final: Callable[[Any], Any]) -> defer.Deferred:
        """Deferred firing with ``final``'s outcome, or failing with Rejected."""
        return _Run(self, hook, final).start(request)

    def close_stream(self, event: Any) -> None:
        """Tell every handler; their errors are logged, never acted on."""
        for name, handler in self.handlers:
            try:
                r = handler.close_stream(event)
                if inspect.iscoroutine(r):
                    r = defer.ensureDeferred(r)
                if isinstance(r, defer.Deferred):
                    r.addErrback(lambda f, name=name: self._log.failure("handler {handler} failed in close_stream", f, handler=name))
            except Exception:
                self._log.failure("handler {handler} failed in close_stream", handler=name)
