"""The supervisor: the twistd process of a server with ``[server] workers`` > 1.

It binds every listener ([server] listen and each [http:NAME] listen) once, before any worker
exists, and starts the workers with Twisted's process support (``reactor.spawnProcess``), each
inheriting the listening sockets (``childFDs``) and adopting them
(``IReactorSocket.adoptStreamPort``): the kernel then hands each new connection to whichever
worker accepts first.  It keeps the stream directory (``LocalStreamDirectory``) and talks to each
worker over AMP on a Unix socket pair.  A worker that dies is restarted with backoff (its
published names are released at once, so its publishers can reconnect anywhere); SIGTERM sends
SIGTERM to every worker and waits (bounded) for them all, then kills what is left.

The supervisor never parses RTMP or HTTP itself: a worker that exhausts its memory or file
descriptors dies alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.internet import endpoints as _endpoints
from twisted.logger import Logger
from twisted.protocols import amp

from rtmpserver.config import ServerConfig
from rtmpserver.workers import directory as d

__all__ = ["Supervisor", "bind", "listener_descriptions"]

# Restart backoff: 0.5 s after the first death, doubling to 30 s; a worker that ran this long
# before dying starts the count again.
RESTART_INITIAL = 0.5
RESTART_MAX = 30.0
STABLE_AFTER = 30.0
# How long SIGTERMed workers get to drain (their own bound is service.SHUTDOWN_TIMEOUT) before KILL.
DRAIN_TIMEOUT = 10.0
# A worker's log line longer than this is cut (each worker's output is relayed line by line).
MAX_LOG_LINE = 16384


def listener_descriptions(config: ServerConfig) -> list[str]:
    """Every listener of the config: RTMP ones, then each HTTP section's."""
    out = list(config.listen)
    for http in config.http.values():
        out.extend(e for e in http.listen if e not in out)
    return out


def bind(description: str) -> socket.socket:
    """A listening socket for one tcp:/tcp6:/ssl: line (TLS is the worker's business)."""
    args, kwargs = _endpoints._parse(description)
    kind = str(args[0]).lower()
    names = {"tcp": ("port", "interface", "backlog"), "tcp6": ("port", "backlog", "interface")}.get(kind, ("port",))
    params = dict(zip(names, (str(a) for a in args[1:]), strict=False))
    params.update({str(k): str(v) for k, v in kwargs.items()})
    family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    interface = params.get("interface", "::" if family == socket.AF_INET6 else "")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((interface, int(params["port"])))
        sock.listen(int(params.get("backlog", 50)))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    os.set_inheritable(sock.fileno(), True)
    return sock


class _WorkerAMP(amp.AMP):
    """The supervisor's end of one worker's AMP connection."""

    def __init__(self, supervisor: Supervisor, index: int) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.index = index

    def connectionMade(self) -> None:
        super().connectionMade()
        self.supervisor._amp_up(self)

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.supervisor._amp_down(self)

    @d.Claim.responder
    def claim(self, app, name, policy, stale_timeout):
        dd = self.supervisor.directory.claim(app, name, self.index, policy, stale_timeout)
        return dd.addCallback(lambda granted: {"granted": granted})

    @d.Release.responder
    def release(self, app, name):
        self.supervisor.directory.release(app, name, self.index)
        return {}

    @d.Gather.responder
    def gather(self, what):
        return self.supervisor.gather(what).addCallback(lambda reports: {"reports": json.dumps(reports)})

    @d.Control.responder
    def control(self, worker, query):
        return self.supervisor.control(worker, query)


class _WorkerProcess(protocol.ProcessProtocol):
    """Relays a worker's output to the supervisor's log and reports its end."""

    _log = Logger(namespace="rtmpserver.workers")

    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: defer.Deferred = defer.Deferred()
        self.started_at = time.monotonic()
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self._partial.get(fd, b"") + data
        *lines, rest = buf.split(b"\n")
        if len(rest) > MAX_LOG_LINE:
            lines.append(rest[:MAX_LOG_LINE] + b"...")
            rest = b""
        self._partial[fd] = rest
        for line in lines:
            if line.strip():
                self._log.info("worker {index}: {line}", index=self.index, line=line.decode("utf-8", "replace").rstrip())

    def processEnded(self, reason) -> None:
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class Supervisor(service.Service):
    """Binds the listeners, runs ``count`` workers, keeps the stream directory."""

    _log = Logger(namespace="rtmpserver.workers")

    def __init__(self, config: ServerConfig, reactor: Any, count: int | None = None, python: str = sys.executable) -> None:
        self.config = config
        self.reactor = reactor
        self.count = count or config.workers
        self.python = python
        self.directory = d.LocalStreamDirectory(ask_to_yield=self._ask_to_yield)
        self.directory.watch(self._broadcast)
        self.sockets: dict[str, socket.socket] = {}
        self.runtime = ""
        self.processes: dict[int, _WorkerProcess] = {}
        self.amps: dict[int, _WorkerAMP] = {}
        self.failures: dict[int, int] = {}
        self.restarts = 0
        self._timers: dict[int, Any] = {}
        self.stopping = False

    # -- life cycle -------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.runtime = tempfile.mkdtemp(prefix="rtmpserver-workers-")
        os.chmod(self.runtime, 0o700)  # the Unix sockets in it take no token
        for description in listener_descriptions(self.config):
            # A listener that cannot be bound stops startup, as in one process.
            self.sockets[description] = bind(description)
        self._log.info(
            "{name}: {n} workers sharing {listeners}", name=self.config.name, n=self.count,
            listeners=", ".join(self.sockets),
        )
        for index in range(self.count):
            self._spawn(index)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self.stopping = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        waiting = []
        for proc in list(self.processes.values()):
            waiting.append(proc.ended)
            self._signal(proc, "TERM")
        done = defer.DeferredList(waiting)
        kill = self.reactor.callLater(DRAIN_TIMEOUT, self._kill_all)
        done.addBoth(lambda _: kill.cancel() if kill.active() else None)
        done.addBoth(lambda _: self._cleanup())
        return done

    def _kill_all(self) -> None:
        for proc in list(self.processes.values()):
            self._log.warn("worker {index} did not drain in {t} s; killing it", index=proc.index, t=DRAIN_TIMEOUT)
            self._signal(proc, "KILL")

    def _signal(self, proc: _WorkerProcess, sig: str) -> None:
        try:
            proc.transport.signalProcess(sig)
        except error.ProcessExitedAlready:
            pass

    def _cleanup(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        shutil.rmtree(self.runtime, ignore_errors=True)

    def _spawn(self, index: int) -> None:
        self._timers.pop(index, None)
        if self.stopping:
            return
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = {desc: sock.fileno() for desc, sock in self.sockets.items()}
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", child.fileno(): child.fileno()}
        for fd in fds.values():
            child_fds[fd] = fd
        args = [
            self.python, "-m", "rtmpserver.workers.worker",
            "--config", os.path.abspath(self.config.path), "--index", str(index), "--count", str(self.count),
            "--runtime", self.runtime, "--amp", str(child.fileno()), "--fds", json.dumps(fds),
        ]
        proc = _WorkerProcess(self, index)
        self.processes[index] = proc
        env = dict(os.environ)
        self.reactor.spawnProcess(proc, self.python, args, env=env, childFDs=child_fds)
        child.close()
        conn = _WorkerAMP(self, index)
        self.reactor.adoptStreamConnection(parent.fileno(), socket.AF_UNIX, _Once(conn))
        parent.close()
        self._log.info("worker {index} started (pid {pid})", index=index, pid=proc.transport.pid)

    def _ended(self, proc: _WorkerProcess, reason) -> None:
        index = proc.index
        if self.processes.get(index) is proc:
            del self.processes[index]
        released = self.directory.release_all(index)
        how = reason.value
        code = getattr(how, "exitCode", None)
        sig = getattr(how, "signal", None)
        ran = time.monotonic() - proc.started_at
        if self.stopping:
            self._log.info("worker {index} stopped", index=index)
            return
        failures = 1 if ran >= STABLE_AFTER else self.failures.get(index, 0) + 1
        self.failures[index] = failures
        delay = min(RESTART_MAX, RESTART_INITIAL * 2 ** (failures - 1))
        self._log.warn(
            "worker {index} died (exit code {code}, signal {sig}) after {ran:.1f} s; released "
            "{n} stream(s); restarting in {delay:.1f} s",
            index=index, code=code, sig=sig, ran=ran, n=len(released), delay=delay,
        )
        self.restarts += 1
        self._timers[index] = self.reactor.callLater(delay, self._spawn, index)

    # -- AMP ----------------------------------------------------------------------------------------

    def _amp_up(self, conn: _WorkerAMP) -> None:
        self.amps[conn.index] = conn
        changes = [[app, name, owner] for (app, name), owner in self.directory.owners.items()]
        conn.callRemote(d.Owners, changes=json.dumps(changes))

    def _amp_down(self, conn: _WorkerAMP) -> None:
        if self.amps.get(conn.index) is conn:
            del self.amps[conn.index]

    def _broadcast(self, app: str, name: str, owner: int | None) -> None:
        changes = json.dumps([[app, name, owner]])
        for conn in list(self.amps.values()):
            conn.callRemote(d.Owners, changes=changes)

    def _ask_to_yield(self, owner: int, app: str, name: str, policy: str, stale_timeout: float) -> defer.Deferred:
        conn = self.amps.get(owner)
        if conn is None:
            return defer.succeed(True)  # the holder is gone
        dd = conn.callRemote(d.YieldStream, app=app, name=name, policy=policy, stale_timeout=stale_timeout)
        return dd.addCallback(lambda r: r["yielded"])

    def gather(self, what: str) -> defer.Deferred:
        """Every worker's report ``what`` (a JSON text each), as a list of [index, text]."""
        calls = []
        for index, conn in sorted(self.amps.items()):
            dd = conn.callRemote(d.Report, what=what)
            dd.addCallback(lambda r, i=index: [i, r["data"]])
            dd.addErrback(lambda f, i=index: [i, None])
            calls.append(dd)
        return defer.gatherResults(calls)

    def control(self, worker: int, query: str) -> defer.Deferred:
        conn = self.amps.get(worker)
        if conn is None:
            return defer.succeed({"code": 404, "body": "no such client\n"})
        return conn.callRemote(d.RunControl, query=query)


class _Once(protocol.Factory):
    """A factory handing out one prepared protocol (for an adopted connection)."""

    def __init__(self, proto: protocol.Protocol) -> None:
        self.proto = proto

    def buildProtocol(self, addr):
        return self.proto
