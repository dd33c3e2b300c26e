"""Fixtures for the end-to-end tests: real ``twistd rtmp`` servers and real ffmpeg clients.

The ``e2e`` fixture hands a test a small toolbox (``e2e.server()``, ``e2e.publish()``,
``e2e.play()``) and cleans up after it: clients still running are killed, every server gets SIGTERM
and must shut down cleanly within 10 s, and a server log with a traceback fails the test (a peer's
garbage is logged and the connection closed; a traceback is our bug).  When a test fails, the server
logs and client stderr are attached to the report.

``RTMP_E2E_EXTERNAL=HOST:PORT`` runs the media tests against a server that is already running (e.g.
nginx-rtmp, to check that a test is right about the protocol before blaming our server); tests that
need our own process (TLS, twistd, logs) are skipped in that mode only.  Missing ffmpeg/ffprobe is
never a skip: ``make test`` installs them, so CI without them is broken.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import ClientProcess, Player, ServerProcess

_EXTERNAL = os.environ.get("RTMP_E2E_EXTERNAL", "")

# A traceback in the server log means an exception escaped somewhere: always a server bug.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Unhandled Error|Unhandled error")


class Server:
    """Where a test's server listens, plus its process when we started it."""

    def __init__(self, port: int, ssl_port: int | None, process: ServerProcess | None, http_port: int | None = None):
        self.port = port
        self.ssl_port = ssl_port
        self.process = process
        self.http_port = http_port

    def url(self, path: str, tls: bool = False) -> str:
        if tls:
            assert self.ssl_port is not None, "this server has no TLS listener"
            return f"rtmps://127.0.0.1:{self.ssl_port}/{path}"
        return f"rtmp://127.0.0.1:{self.port}/{path}"

    def http_url(self, path: str) -> str:
        """``http://127.0.0.1:PORT/path`` of the ``[http:main]`` section ``e2e.server(http=...)`` added."""
        assert self.http_port is not None, "this server has no HTTP listener (start it with e2e.server(http={...}))"
        return f"http://127.0.0.1:{self.http_port}/{path.lstrip('/')}"

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def alive(self) -> bool:
        return self.process.alive() if self.process else True


class E2E:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.servers: list[Server] = []
        self.clients: list[ClientProcess] = []
        self._names: dict[str, int] = {}

    # ---- servers

    def default_sections(self, port: int, ssl_port: int) -> dict:
        key, cert = helpers.make_self_signed_cert(self.workdir)
        return {
            "server": {
                "listen": [
                    f"tcp:{port}:interface=127.0.0.1",
                    f"ssl:{ssl_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                ],
                "name": "e2e",
            },
            "app:live": {"handlers": "live"},
        }

    def write_config(self, sections: dict, name: str = "server.ini") -> Path:
        path = self.workdir / name
        path.write_text(helpers.render_config(sections))
        return path

    def server(self, overrides: dict | None = None, *, need_process: bool = False, http: dict | None = None) -> Server:
        """Start a server with the default config, section keys replaced by ``overrides``.

        ``http`` (a dict of keys, possibly empty) adds an ``[http:main]`` section listening on a
        free loopback port (``srv.http_port``, ``srv.http_url(path)``); start-up waits for that
        port as well.  Its ``listen`` can be overridden like any other key.
        """
        if _EXTERNAL:
            if need_process or overrides or http is not None:
                pytest.skip("needs our own server process (RTMP_E2E_EXTERNAL is set)")
            host, _, port = _EXTERNAL.rpartition(":")
            srv = Server(int(port), None, None)
            self.servers.append(srv)
            return srv
        port, ssl_port = helpers.free_port(), helpers.free_port()
        sections = self.default_sections(port, ssl_port)
        http_port = None
        if http is not None:
            http_port = helpers.free_port()
            sections["http:main"] = {"listen": f"tcp:{http_port}:interface=127.0.0.1", **http}
        for section, keys in (overrides or {}).items():
            sections.setdefault(section, {}).update(keys)
        return self.start_process(self.write_config(sections), port, ssl_port, http_port=http_port)

    def start_process(self, config_path: Path, port: int, ssl_port: int | None, *, http_port: int | None = None) -> Server:
        """Start twistd on a config the test wrote itself; teardown stops and judges it."""
        if _EXTERNAL:
            pytest.skip("needs our own server process (RTMP_E2E_EXTERNAL is set)")
        ports = [port] + ([ssl_port] if ssl_port else []) + ([http_port] if http_port else [])
        process = ServerProcess(self.workdir, config_path, ports)
        srv = Server(port, ssl_port, process, http_port)
        self.servers.append(srv)
        process.start()
        return srv

    # ---- clients

    def _name(self, base: str) -> str:
        n = self._names.get(base, 0) + 1
        self._names[base] = n
        return f"{base}{n}"

    def publish(self, url: str, seconds: float, size: str = "320x240", name: str = "publisher") -> ClientProcess:
        client = ClientProcess(self._name(name), helpers.publish_command(url, seconds, size), self.workdir)
        self.clients.append(client)
        return client

    def play(self, url: str, seconds: float | None, name: str = "player") -> Player:
        player = Player(self._name(name), url, self.workdir, seconds)
        self.clients.append(player)
        return player

    def describe_clients(self) -> str:
        return "\n".join(c.describe() for c in self.clients)

    def context(self, *clients: ClientProcess) -> str:
        """Text for assertion messages: the given clients' commands and stderr."""
        return "\n".join(c.describe() for c in clients)


@pytest.fixture(scope="session")
def ffmpeg_tools():
    try:
        return helpers.require_tools()
    except AssertionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def e2e(request, tmp_path, ffmpeg_tools):
    env = E2E(tmp_path)
    request.node._e2e = env
    yield env
    for client in env.clients:
        if client.poll() is None:
            client.kill()
    problems = []
    for srv in env.servers:
        if srv.process is None or srv.process.proc is None:
            continue
        if not srv.process.terminated_by_test:  # else the test stopped it and judged the exit itself
            was_alive = srv.process.alive()
            rc, _ = srv.process.terminate()
            if not was_alive:
                problems.append(f"server exited on its own during the test (status {rc})")
            elif problem := srv.process.clean_stop_problem(rc):
                problems.append(problem)
        log = srv.log_text()
        if _TRACEBACK.search(log):
            problems.append("server log contains a traceback")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    env: E2E | None = getattr(item, "_e2e", None)
    if env is None or not report.failed:
        return
    for i, srv in enumerate(env.servers):
        if srv.process is not None:
            report.sections.append((f"server {i} log ({srv.process.log_path})", helpers.tail(srv.log_text(), 150)))
    for client in env.clients:
        report.sections.append((f"{client.name} stderr", helpers.tail(client.stderr_text(), 30) or "(empty)"))
