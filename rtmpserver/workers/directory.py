"""The stream directory: which worker publishes app/name (``IStreamDirectory``).

``LocalStreamDirectory`` is the directory itself, in one process: the supervisor keeps the one
its workers share; a single process could use it as is.  ``RemoteStreamDirectory`` is what a
worker holds: claims and releases go to the supervisor over AMP (twisted.protocols.amp) on the
worker's Unix socket, and the supervisor sends every change of ownership to every worker, so
``locate`` and ``watch`` are answered from a local copy.

A claim of a name another worker holds is settled by the app's ``publisher_clash`` policy
(docs/configuration.md), decided by the holder: it knows whether its publisher is stale.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from rtmpserver.interfaces import IStreamDirectory

__all__ = [
    "LocalStreamDirectory", "RemoteStreamDirectory", "BigText",
    "Claim", "Release", "Gather", "Owners", "YieldStream", "Report",
]

_log = Logger(namespace="rtmpserver.workers.directory")

# An AMP value holds at most 65535 bytes (twisted.protocols.amp.MAX_VALUE_LENGTH).
_CHUNK = 60000
# A report (a worker's snapshot) larger than this is refused rather than held in memory.
MAX_REPORT_BYTES = 64 << 20


class BigText(amp.Argument):
    """Text of any length (bounded by MAX_REPORT_BYTES): split over keys ``NAME.0``, ``NAME.1``..."""

    def fromBox(self, name, strings, objects, proto):
        n = int(strings.get(name, b"0"))
        if n * _CHUNK > MAX_REPORT_BYTES + _CHUNK:
            raise amp.RemoteAmpError(b"TOO_BIG", "report too large")
        data = b"".join(strings.get(b"%s.%d" % (name, i), b"") for i in range(n))
        objects[amp._wireNameToPythonIdentifier(name)] = data.decode("utf-8")

    def toBox(self, name, strings, objects, proto):
        data = objects[amp._wireNameToPythonIdentifier(name)].encode("utf-8")
        chunks = [data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
        strings[name] = str(len(chunks)).encode()
        for i, chunk in enumerate(chunks):
            strings[b"%s.%d" % (name, i)] = chunk


# -- worker -> supervisor -------------------------------------------------------------------------


class Claim(amp.Command):
    arguments = [(b"app", amp.Unicode()), (b"name", amp.Unicode()), (b"policy", amp.Unicode()),
                 (b"stale_timeout", amp.Float())]
    response = [(b"granted", amp.Boolean())]


class Release(amp.Command):
    arguments = [(b"app", amp.Unicode()), (b"name", amp.Unicode())]
    response: list = []


class Gather(amp.Command):
    """Ask every worker for a report (``what``: "snapshot" or "metrics"); a JSON list back."""

    arguments = [(b"what", amp.Unicode())]
    response = [(b"reports", BigText())]


class Control(amp.Command):
    """Run /control's ``query`` (its path and arguments, JSON) on worker ``worker``."""

    arguments = [(b"worker", amp.Integer()), (b"query", BigText())]
    response = [(b"code", amp.Integer()), (b"body", BigText())]


# -- supervisor -> worker -------------------------------------------------------------------------


class Owners(amp.Command):
    """Changes of ownership: a JSON list of [app, name, owner or null]."""

    arguments = [(b"changes", BigText())]
    response: list = []
    requiresAnswer = False


class YieldStream(amp.Command):
    """Another worker claims a name this worker holds: give it up under ``policy``?"""

    arguments = [(b"app", amp.Unicode()), (b"name", amp.Unicode()), (b"policy", amp.Unicode()),
                 (b"stale_timeout", amp.Float())]
    response = [(b"yielded", amp.Boolean())]


class Report(amp.Command):
    arguments = [(b"what", amp.Unicode())]
    response = [(b"data", BigText())]


class RunControl(amp.Command):
    arguments = [(b"query", BigText())]
    response = [(b"code", amp.Integer()), (b"body", BigText())]


# -- the directory ----------------------------------------------------------------------------------

Watcher = Callable[[str, str, "int | None"], None]


@implementer(IStreamDirectory)
class LocalStreamDirectory:
    """app/name -> owner in a dict.  ``ask_to_yield(owner, app, name, policy, stale_timeout)``
    returns a Deferred of bool: does the current holder give the name up?  Without it a held
    name is never given to another owner."""

    def __init__(self, ask_to_yield: Callable[..., defer.Deferred] | None = None) -> None:
        self.owners: dict[tuple[str, str], int] = {}
        self._ask = ask_to_yield
        self._watchers: list[Watcher] = []

    def claim(self, app: str, name: str, owner: int, policy: str, stale_timeout: float) -> defer.Deferred:
        key = (app, name)
        current = self.owners.get(key)
        if current is None or current == owner:
            self._set(key, owner)
            return defer.succeed(True)
        if self._ask is None:
            return defer.succeed(False)
        d = defer.maybeDeferred(self._ask, current, app, name, policy, stale_timeout)

        def answered(yielded: bool) -> bool:
            now = self.owners.get(key)
            if not yielded or (now is not None and now not in (current, owner)):
                return False  # refused, or a third claimer won meanwhile
            self._set(key, owner)
            return True

        def failed(f) -> bool:
            # The holder could not answer (it died): its names are released with it.
            _log.warn("worker {owner} did not answer a claim of {app}/{name}: {err}", owner=current, app=app, name=name, err=f.getErrorMessage())
            return answered(self.owners.get(key) != current)

        return d.addCallbacks(answered, failed)

    def release(self, app: str, name: str, owner: int) -> defer.Deferred:
        key = (app, name)
        if self.owners.get(key) == owner:
            del self.owners[key]
            self._tell(app, name, None)
        return defer.succeed(None)

    def release_all(self, owner: int) -> list[tuple[str, str]]:
        """Everything ``owner`` held (a worker died); returns the names."""
        names = [k for k, v in self.owners.items() if v == owner]
        for app, name in names:
            self.release(app, name, owner)
        return names

    def locate(self, app: str, name: str) -> defer.Deferred:
        return defer.succeed(self.owners.get((app, name)))

    def watch(self, callback: Watcher) -> Callable[[], None]:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def _set(self, key: tuple[str, str], owner: int) -> None:
        if self.owners.get(key) != owner:
            self.owners[key] = owner
            self._tell(key[0], key[1], owner)

    def _tell(self, app: str, name: str, owner: int | None) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(app, name, owner)
            except Exception:
                _log.failure("directory watcher {w!r} failed", w=watcher)


@implementer(IStreamDirectory)
class RemoteStreamDirectory:
    """A worker's view of the supervisor's directory: claims over AMP, a local copy for locate."""

    def __init__(self, me: int) -> None:
        self.me = me
        self.protocol: amp.AMP | None = None
        self.owners: dict[tuple[str, str], int] = {}
        self._watchers: list[Watcher] = []

    def claim(self, app, name, owner, policy, stale_timeout) -> defer.Deferred:
        if self.protocol is None:
            return defer.succeed(False)
        d = self.protocol.callRemote(Claim, app=app, name=name, policy=policy, stale_timeout=float(stale_timeout))
        return d.addCallback(lambda r: r["granted"])

    def release(self, app, name, owner) -> defer.Deferred:
        if self.protocol is None or self.owners.get((app, name)) not in (None, owner):
            return defer.succeed(None)
        d = self.protocol.callRemote(Release, app=app, name=name)
        d.addErrback(lambda f: _log.warn("release of {app}/{name} failed: {e}", app=app, name=name, e=f.getErrorMessage()))
        return d.addCallback(lambda _: None)

    def locate(self, app, name) -> defer.Deferred:
        return defer.succeed(self.owners.get((app, name)))

    def watch(self, callback: Watcher) -> Callable[[], None]:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def apply(self, changes_json: str) -> None:
        """The supervisor's ``Owners`` message."""
        for app, name, owner in json.loads(changes_json):
            key = (app, name)
            if owner is None:
                if self.owners.pop(key, None) is None:
                    continue
            elif self.owners.get(key) == owner:
                continue
            else:
                self.owners[key] = owner
            for watcher in list(self._watchers):
                try:
                    watcher(app, name, owner)
                except Exception:
                    _log.failure("directory watcher {w!r} failed", w=watcher)
