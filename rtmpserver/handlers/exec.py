"""The ``exec`` handler: supervised external programs per stream (transcoders, sources, post-processing).

- ``exec.publish`` (one command per line): for every stream published to the application, once the
  chain let it through (after NetStream.Publish.Start), each command runs as its own process; it is
  stopped when the publisher leaves and restarted with exponential backoff if it exits while the
  stream is still live.
- ``exec.pull``: when a player asks for a stream nobody publishes, its commands run as an on-demand
  source (typically an ffmpeg publishing to this server), stopped ``exec.linger`` seconds after
  the last player left (``rtmpserver.handlers.demand``).
- ``exec.record_done``: each command runs once per finished recording file of the application
  (``IRecordingObserver``, fed by the ``record`` handler).

Commands are split like a POSIX shell would (``shlex``) when the config is read, and ``{name}``,
``{app}`` (and for record_done ``{path}``, ``{dirname}``, ``{basename}``) are substituted inside
each argument afterwards: no shell ever runs, so a stream name is one argument whatever it
contains and cannot add arguments or commands.  Processes are started with the reactor's
``spawnProcess`` and a ``ProcessProtocol``; stopping one is SIGTERM, then SIGKILL after
``exec.grace`` seconds.  stdout and stderr go to the log line by line with the stream's name
(bounded in line length and rate).  ``exec.max_processes`` bounds the processes of the app; they
are listed in ``/api/v1/processes`` and ``/stat`` (``IMonitoredHandler``); server shutdown waits
for every process to exit (``IHandlerService.stop_service``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable

from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import ConfigError
from rtmpserver.handlers.demand import OnDemand
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHandlerService,
    IMonitoredHandler,
    IRecordingObserver,
)
from rtmpserver.settings import Section, integer, seconds

__all__ = ["Command", "Supervised", "ExecHandler", "ExecHandlerFactory", "factory"]

_FIELD = re.compile(r"\{([A-Za-z_]*)\}")
MAX_LINE = 2000  # characters of one logged output line (the rest is cut)
LINES_PER_SECOND = 20.0  # logged output lines per process, sustained
LINE_BURST = 100.0
# rtmpserver.service waits SHUTDOWN_TIMEOUT (5 s) for stop_service: SIGKILL must come before that.
SHUTDOWN_GRACE = 3.0


class Command:
    """One configured command line: argv tokens with ``{field}`` placeholders, resolved program."""

    def __init__(self, text: str, fields: tuple[str, ...], which: Callable[[str], str | None] = shutil.which) -> None:
        try:
            tokens = shlex.split(text)
        except ValueError as e:
            raise ValueError(f"cannot split the command like a shell would: {e}") from None
        if not tokens:
            raise ValueError("an empty command")
        for token in tokens:
            rest = _FIELD.sub("", token)
            if "{" in rest or "}" in rest:
                raise ValueError(f"{token!r}: only {', '.join('{' + f + '}' for f in fields)} can be filled in")
            for f in _FIELD.findall(token):
                if f not in fields:
                    raise ValueError(f"{token!r}: unknown field {{{f}}} (known: {', '.join('{' + f + '}' for f in fields)})")
        if _FIELD.search(tokens[0]):
            raise ValueError("the program itself cannot be a template")
        program = which(tokens[0])
        if program is None:
            raise ValueError(f"program {tokens[0]!r} not found (PATH={os.environ.get('PATH', '')})")
        self.text = text
        self.tokens = tokens
        self.program = program
        self.fields = fields

    @property
    def label(self) -> str:
        """What logs and /api show of the command: the program's name only (arguments may hold keys)."""
        return os.path.basename(self.tokens[0])

    def argv(self, values: dict[str, str]) -> list[str]:
        """The argument vector with fields filled in, each token staying one argument."""
        out = [self.program]
        for token in self.tokens[1:]:
            out.append(_FIELD.sub(lambda mo: values[mo.group(1)], token))
        return out


class _OutputLogger(protocol.ProcessProtocol):
    """Splits a process's stdout/stderr into lines for the log, bounded in length and rate."""

    _log = Logger()

    def __init__(self, owner: Supervised) -> None:
        self.owner = owner
        self.partial = {1: b"", 2: b""}
        self.tokens = LINE_BURST
        self.last = owner.clock.seconds()
        self.suppressed = 0

    def connectionMade(self) -> None:
        self.transport.closeStdin()  # no input: a program waiting on stdin gets EOF at once

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self.partial.get(fd, b"") + data
        # ffmpeg's progress line ends with \r: treat it as a line end as well.
        lines = re.split(rb"\r\n|\r|\n", buf)
        rest = lines.pop()
        if len(rest) > MAX_LINE:
            lines.append(rest)
            rest = b""
        self.partial[fd] = rest
        for line in lines:
            if line.strip():
                self._line(fd, line)

    def _line(self, fd: int, line: bytes) -> None:
        now = self.owner.clock.seconds()
        self.tokens = min(LINE_BURST, self.tokens + (now - self.last) * LINES_PER_SECOND)
        self.last = now
        if self.tokens < 1:
            self.suppressed += 1
            return
        self.tokens -= 1
        o = self.owner
        if self.suppressed:
            self._log.info("exec {role} {app}/{name} [{program}]: {n} output lines not logged (too many)",
                           role=o.role, app=o.app, name=o.name, program=o.command.label, n=self.suppressed)
            self.suppressed = 0
        text = line[:MAX_LINE].decode("utf-8", "replace")
        self._log.info("exec {role} {app}/{name} [{program} {pid}] {stream}: {line}", role=o.role, app=o.app, name=o.name,
                       program=o.command.label, pid=o.pid, stream="stderr" if fd == 2 else "stdout", line=text)

    def processEnded(self, reason) -> None:
        for fd, rest in self.partial.items():
            if rest.strip():
                self._line(fd, rest)
        self.partial = {1: b"", 2: b""}
        self.owner._ended(self, reason.value)


class Supervised:
    """One program kept running for a stream while ``wanted``: restarted with backoff, stopped politely.

    States: ``running``, ``backoff`` (waiting to restart), ``stopping`` (SIGTERM sent), ``exited``
    (not wanted any more, or a one-shot command that finished).
    """

    _log = Logger()

    def __init__(self, handler: ExecHandler, command: Command, values: dict[str, str], role: str, name: str,
                 restart: bool = True) -> None:
        self.handler = handler
        self.clock = handler.clock
        self.command = command
        self.argv = command.argv(values)
        self.role = role
        self.app = handler.app
        self.name = name
        self.restart = restart
        self.wanted = False
        self.state = "exited"
        self.process = None
        self.proto: _OutputLogger | None = None
        self.pid: int | None = None
        self.started_at = 0.0
        self.starts = 0
        self.failures = 0  # consecutive short runs (reset by a run of at least backoff_max)
        self.last_exit = ""
        self._timer = None
        self._kill_timer = None
        self._waiting: list[defer.Deferred] = []

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    def start(self) -> None:
        if self.wanted:
            return
        self.wanted = True
        self._spawn()

    def _spawn(self) -> None:
        self._timer = None
        if not self.wanted:
            return
        self.proto = _OutputLogger(self)
        try:
            self.process = self.handler.spawn(self.proto, self.argv[0], self.argv, dict(os.environ))
        except Exception as e:  # an argument with a NUL byte, no fork possible...
            self.proto = None
            self.last_exit = f"cannot start: {e}"
            self._log.warn("exec {role} {app}/{name} [{program}]: cannot start: {error}",
                           role=self.role, app=self.app, name=self.name, program=self.command.label, error=e)
            self._after_exit(0.0)
            return
        self.pid = getattr(self.process, "pid", None)
        self.starts += 1
        self.started_at = self.clock.seconds()
        self.state = "running"
        self._log.info("exec {role} {app}/{name}: started {program} (pid {pid}{again})", role=self.role, app=self.app,
                       name=self.name, program=self.command.label, pid=self.pid,
                       again=f", restart {self.restarts}" if self.restarts else "")

    def _ended(self, proto: _OutputLogger, reason) -> None:
        if proto is not self.proto:
            return
        ran = self.clock.seconds() - self.started_at
        self.process = None
        self.proto = None
        self.pid = None
        if isinstance(reason, error.ProcessTerminated):
            self.last_exit = f"signal {reason.signal}" if reason.signal is not None else f"exit {reason.exitCode}"
        else:
            self.last_exit = "exit 0"
        self._cancel_kill()
        self._after_exit(ran)

    def _after_exit(self, ran: float) -> None:
        h = self.handler
        if not self.wanted or not self.restart:
            if self.wanted:  # a one-shot command (record_done) that finished
                self._log.info("exec {role} {app}/{name}: {program} ended ({how})", role=self.role, app=self.app,
                               name=self.name, program=self.command.label, how=self.last_exit)
            self.wanted = False
            self.state = "exited"
            h._forget(self)
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)
            return
        self.failures = 0 if ran >= h.backoff_max else self.failures + 1
        delay = min(h.backoff_max, h.backoff_initial * 2 ** max(0, min(self.failures - 1, 32)))
        self._log.warn("exec {role} {app}/{name}: {program} ended ({how}) after {ran:.1f} s; next start in {delay:.1f} s",
                       role=self.role, app=self.app, name=self.name, program=self.command.label, how=self.last_exit,
                       ran=ran, delay=delay)
        self.state = "backoff"
        self._timer = self.clock.callLater(delay, self._spawn)

    def stop(self, grace: float | None = None) -> defer.Deferred:
        """Stop (SIGTERM, SIGKILL after ``grace``, default ``exec.grace``); the Deferred fires once
        the process is gone.  A shorter grace for a process already stopping brings its SIGKILL forward."""
        grace = self.handler.grace if grace is None else grace
        self.wanted = False
        self._cancel_restart()
        if self.process is None:
            if self.state != "exited":
                self.state = "exited"
                self.handler._forget(self)
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        if self.state != "stopping":
            self.state = "stopping"
            self._signal("TERM")
            self._kill_timer = self.clock.callLater(grace, self._kill)
        elif self._kill_timer is not None and self._kill_timer.getTime() > self.clock.seconds() + grace:
            self._kill_timer.reset(grace)
        return d

    def _kill(self) -> None:
        self._kill_timer = None
        if self.process is not None:
            self._log.warn("exec {role} {app}/{name}: {program} (pid {pid}) still running after SIGTERM and the grace; SIGKILL",
                           role=self.role, app=self.app, name=self.name, program=self.command.label, pid=self.pid)
            self._signal("KILL")

    def _signal(self, sig: str) -> None:
        try:
            self.process.signalProcess(sig)
        except error.ProcessExitedAlready:
            pass

    def _cancel_restart(self) -> None:
        t, self._timer = self._timer, None
        if t is not None and t.active():
            t.cancel()

    def _cancel_kill(self) -> None:
        t, self._kill_timer = self._kill_timer, None
        if t is not None and t.active():
            t.cancel()

    def describe(self, now: float) -> dict:
        return {
            "kind": "process", "name": self.name, "role": self.role, "program": self.command.label,
            "pid": self.pid, "state": self.state,
            "uptime": round(now - self.started_at, 3) if self.process is not None else 0,
            "restarts": self.restarts, "last_exit": self.last_exit,
        }


class _Group:
    """The processes of one on-demand ``exec.pull`` source (what ``OnDemand`` holds)."""

    def __init__(self, procs: list[Supervised]) -> None:
        self.procs = procs

    def close(self) -> defer.Deferred:
        return defer.gatherResults([p.stop() for p in self.procs])


@implementer(IAppHandler, IHandlerService, IMonitoredHandler, IRecordingObserver)
class ExecHandler:
    _log = Logger()

    def __init__(self, context, *, publish: list[Command], pull: list[Command], record_done: list[Command],
                 grace: float, linger: float, max_processes: int, backoff_initial: float, backoff_max: float,
                 http_wait: float = 5.0, spawn=None) -> None:
        self.app = context.app.name
        self.hub = context.hub
        self.clock = context.clock
        reactor = context.reactor
        self.spawn = spawn or (lambda proto, program, argv, env: reactor.spawnProcess(proto, program, argv, env=env))
        self.publish_cmds = publish
        self.pull_cmds = pull
        self.record_cmds = record_done
        self.grace = grace
        self.max_processes = max_processes
        self.http_wait = http_wait
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.procs: list[Supervised] = []  # every process wanted or still exiting
        self.publishing: dict[str, list[Supervised]] = {}
        self.on_demand = OnDemand(self.clock, linger, self._start_pull, max_processes, f"exec.pull [app:{self.app}]")

    # -- process bookkeeping ------------------------------------------------------------------------

    def _run(self, command: Command, values: dict, role: str, name: str, restart: bool = True) -> Supervised | None:
        if len(self.procs) >= self.max_processes:
            self._log.warn("exec {role} {app}/{name}: {n} processes already run (exec.max_processes); {program} not started",
                           role=role, app=self.app, name=name, n=len(self.procs), program=command.label)
            return None
        p = Supervised(self, command, values, role, name, restart)
        self.procs.append(p)
        p.start()
        return p

    def _forget(self, p: Supervised) -> None:
        if p in self.procs and p.state == "exited":
            self.procs.remove(p)

    @staticmethod
    def _safe(name: str) -> bool:
        # A value starting with "-" would be read as an option by most programs when it is a
        # whole argument; stream names like that are not run at all.
        return not name.startswith("-")

    # -- IAppHandler --------------------------------------------------------------------------

    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        d = proceed(request)
        if self.publish_cmds:
            d.addCallback(self._published)
        return d

    def _published(self, live):
        if live is None or live.name in self.publishing:
            return live
        if not self._safe(live.name):
            self._log.warn("exec.publish [app:{app}]: stream name {name!r} starts with '-'; not run", app=self.app, name=live.name)
            return live
        values = {"app": self.app, "name": live.name}
        procs = [p for c in self.publish_cmds if (p := self._run(c, values, "publish", live.name)) is not None]
        self.publishing[live.name] = procs
        return live

    def play(self, request, proceed):
        if not self.pull_cmds:
            return proceed(request)
        if request.session.protocol == "http-flv" and not self._live(request.name):
            # HTTP-FLV answers 404 unless the stream is live when decided: start the source and wait.
            return self.on_demand.proceed_when_live(request, proceed, lambda: self._live(request.name),
                                                    self.http_wait, self._played)
        d = proceed(request)
        d.addCallback(self._played, request)
        return d

    def _live(self, name: str) -> bool:
        live = self.hub.get(self.app, name)
        return live is not None and live.active

    def _played(self, result, request):
        name = request.name
        if self.on_demand.wanted(name) or not self._live(name):
            self.on_demand.joined(name, request.session.id, {})
        return result

    def _start_pull(self, name: str, args: dict) -> _Group:
        if not self._safe(name):
            raise ValueError(f"stream name {name!r} starts with '-'")
        values = {"app": self.app, "name": name}
        procs = [p for c in self.pull_cmds if (p := self._run(c, values, "pull", name)) is not None]
        if not procs:
            raise ValueError("no process could be started")
        return _Group(procs)

    def close_stream(self, event):
        if event.role == "player":
            self.on_demand.left(event.name, event.session.id)
        elif event.role == "publisher":
            live = self.hub.get(self.app, event.name)
            if live is None or not live.active:
                for p in self.publishing.pop(event.name, ()):
                    p.stop()

    # -- IRecordingObserver -----------------------------------------------------------------------

    def recording_done(self, done):
        if not self.record_cmds:
            return
        values = {"app": done.app, "name": done.name, "path": done.path,
                  "dirname": os.path.dirname(done.path), "basename": os.path.basename(done.path)}
        for c in self.record_cmds:
            self._run(c, values, "record_done", done.name, restart=False)

    # -- IHandlerService ------------------------------------------------------------------------

    def start_service(self):
        return None

    def stop_service(self):
        """Stop every process and wait for all of them: no orphans.  The server waits for this
        at most SHUTDOWN_TIMEOUT seconds, so SIGKILL comes within SHUTDOWN_GRACE whatever
        ``exec.grace`` says."""
        self.on_demand.close_all()
        self.publishing = {}
        grace = min(self.grace, SHUTDOWN_GRACE)
        return defer.gatherResults([p.stop(grace) for p in list(self.procs)])

    # -- IMonitoredHandler ------------------------------------------------------------------------

    def monitor_rows(self, now):
        return [p.describe(now) for p in self.procs]


def _commands(section: Section, key: str, fields: tuple[str, ...]) -> list[Command]:
    out = []
    for line in section.raw(key).splitlines():
        if not line.strip():
            continue
        try:
            out.append(Command(line.strip(), fields))
        except ValueError as e:
            raise section.error(key, f"expected a command line ({e})", line.strip()) from None
    return out


@implementer(IPlugin, IAppHandlerFactory)
class ExecHandlerFactory:
    name = "exec"
    description = "run programs per published stream, as on-demand sources, or per finished recording (supervised)"

    def build(self, settings, context):
        section = Section.for_handler(self.name, settings, context)
        v = section.convert({
            "grace": (seconds(0.1, 300.0), "5"),
            "linger": (seconds(0.0, 3600.0, allow_zero=True), "5"),
            "http_wait": (seconds(0.0, 60.0, allow_zero=True), "5"),
            "max_processes": (integer(1, 1000, "a number of processes"), "16"),
            "backoff_initial": (seconds(0.05, 300.0), "1"),
            "backoff_max": (seconds(0.05, 3600.0), "30"),
        }, extra=("publish", "pull", "record_done"))
        if v["backoff_max"] < v["backoff_initial"]:
            raise section.problem("backoff_max", "must not be less than exec.backoff_initial")
        publish = _commands(section, "publish", ("app", "name"))
        pull = _commands(section, "pull", ("app", "name"))
        record_done = _commands(section, "record_done", ("app", "name", "path", "dirname", "basename"))
        if v["http_wait"] >= context.app.handler_timeout:
            raise section.problem("http_wait", f"must be less than the app's handler_timeout ({context.app.handler_timeout:g} s)")
        if not (publish or pull or record_done):
            raise ConfigError(f"{section.where} exec: set exec.publish, exec.pull or exec.record_done (nothing to run)")
        return ExecHandler(context, publish=publish, pull=pull, record_done=record_done, grace=v["grace"],
                           linger=v["linger"], max_processes=v["max_processes"], backoff_initial=v["backoff_initial"],
                           backoff_max=v["backoff_max"], http_wait=v["http_wait"])


factory = ExecHandlerFactory()
