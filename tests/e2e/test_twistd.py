"""The ``twistd rtmp`` plugin as an operator meets it: discovery, start-up errors, SIGTERM."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import STOP_TIMEOUT, TWISTD, server_env, wait_until

pytestmark = pytest.mark.e2e


def _twistd(args: list[str], cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([TWISTD, *args], cwd=cwd, env=server_env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"twistd {' '.join(args)} still running after {timeout} s") from e


def test_twistd_help_lists_rtmp(tmp_path):
    r = _twistd(["--help"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^\s+rtmp\s", r.stdout, re.MULTILINE), f"'rtmp' not among twistd's commands:\n{r.stdout}"


def test_twistd_rtmp_help_documents_config(tmp_path):
    r = _twistd(["rtmp", "--help"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--config" in r.stdout


def test_sigterm_with_publisher_and_player_connected(e2e):
    srv = e2e.server(need_process=True)
    url = srv.url("live/shutdown")
    pub = e2e.publish(url, seconds=30)
    player = e2e.play(url, seconds=None)
    assert wait_until(lambda: len(player.reader.video_frames()) >= 10 or player.poll() is not None, 10), (
        f"player got no media\n{e2e.context(pub, player)}"
    )

    rc, took = srv.process.terminate(timeout=STOP_TIMEOUT)
    problem = srv.process.clean_stop_problem(rc)
    assert problem is None, problem
    print(f"server stopped {took:.2f} s after SIGTERM, status {rc}")
    # With the server gone both clients must notice and exit rather than hang.
    player.wait(timeout=15)
    pub.wait(timeout=15)
    log = srv.log_text()
    assert "Traceback" not in log, helpers.tail(log)


def _bad_config_sections(port: int) -> dict[str, dict]:
    return {
        "server": {"listen": f"tcp:{port}:interface=127.0.0.1"},
        "app:live": {"handlers": "live"},
    }


@pytest.mark.parametrize(
    "section, key, value, expect",
    [
        ("limits", "bogus_key", "1", ["[limits]", "bogus_key"]),
        ("nonsense", "anything", "1", ["[nonsense]"]),
        ("limits", "idle_timeout", "abc", ["[limits]", "idle_timeout", "abc"]),
        ("app:live", "publisher_clash", "sometimes", ["[app:live]", "publisher_clash", "sometimes"]),
        ("server", "listen", "ssl:{port}:interface=127.0.0.1:privateKey=missing.key:certKey=missing.crt",
         ["[server]", "listen"]),
    ],
    ids=["unknown-key", "unknown-section", "bad-number", "bad-choice", "missing-cert"],
)
def test_bad_config_stops_startup_naming_section_and_key(tmp_path, section, key, value, expect):
    port = helpers.free_port()
    sections = _bad_config_sections(port)
    sections.setdefault(section, {})[key] = value.format(port=port)
    cfg = tmp_path / "server.ini"
    cfg.write_text(helpers.render_config(sections))
    r = _twistd(["-n", "--pidfile=", "--logfile=-", "rtmp", "--config", str(cfg)], tmp_path, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"twistd started with a bad config:\n{out}"
    for text in ["server.ini", *expect]:
        assert text in out, f"{text!r} not in twistd's message:\n{out}"
    with socket.socket() as s:  # nothing may be left listening
        assert s.connect_ex(("127.0.0.1", port)) != 0, "a listener is up although start-up failed"


def test_relative_cert_paths_resolve_against_config_directory(e2e):
    etc = e2e.workdir / "etc"
    (etc / "certs").mkdir(parents=True)
    helpers.make_self_signed_cert(etc / "certs")
    port, ssl_port = helpers.free_port(), helpers.free_port()
    cfg = etc / "server.ini"
    cfg.write_text(helpers.render_config({
        "server": {"listen": [f"tcp:{port}:interface=127.0.0.1",
                              f"ssl:{ssl_port}:interface=127.0.0.1:privateKey=certs/server.key:certKey=certs/server.crt"]},
        "app:live": {"handlers": "live"},
    }))  # fmt: skip
    # twistd runs in workdir, so certs/server.key only exists relative to the config file.
    srv = e2e.start_process(cfg, port, ssl_port)
    ctx = ssl.create_default_context(cafile=str(etc / "certs" / "server.crt"))
    with socket.create_connection(("127.0.0.1", srv.ssl_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost"):
            pass


def test_bad_config_is_one_line_on_stderr_without_usage_text(tmp_path):
    port = helpers.free_port()
    sections = _bad_config_sections(port)
    sections["limits"] = {"idle_timeout": "abc"}
    cfg = tmp_path / "bad.ini"
    cfg.write_text(helpers.render_config(sections))
    r = _twistd(["-n", "rtmp", "--config", str(cfg)], tmp_path, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.splitlines() == [f"{cfg}: [limits] idle_timeout: expected a number of seconds > 0, got 'abc'"], r.stderr
    assert "Usage:" not in r.stdout + r.stderr and "--config" not in r.stdout
