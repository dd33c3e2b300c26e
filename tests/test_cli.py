"""The ``rtmpserver`` command: check, sign, and start-up errors (run itself: tests/e2e/test_cli.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtmpserver import cli
from rtmpserver.handlers import auth

ROOT = Path(__file__).resolve().parent.parent
SECRET = "0123456789abcdef0123456789abcdef"


def command(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``rtmpserver ARGS`` as the console script runs it (``python -m rtmpserver`` = cli.main)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rtmpserver", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_check_accepts_the_example_config_and_lists_handlers():
    r = command("check", "--config", "etc/server.ini")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "etc/server.ini: OK"
    listed = {line.split()[0] for line in lines if line.startswith("  ")}
    assert {"access", "auth", "hls", "live", "notify", "record"} <= listed
    assert "[app:live] handlers = live" in lines
    assert r.stderr == ""


def test_check_bad_config_is_one_line_and_exit_1(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[server]\nlisten = tcp:0\n[app:live]\nhandlers = nosuch\n")
    r = command("check", "--config", str(bad), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"{bad}: [app:live] handlers: no handler named 'nosuch' is installed")


def test_run_with_a_bad_config_is_one_line_and_exit_1_without_usage_text(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[server]\nlisten = tcp:0\n[limits]\nidle_timeout = abc\n")
    r = command("--config", str(bad), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"{bad}: [limits] idle_timeout: expected a number of seconds > 0, got 'abc'"]
    assert "Usage" not in r.stdout + r.stderr


def test_check_in_process_writes_the_chain(tmp_path):
    good = tmp_path / "s.ini"
    good.write_text("[server]\nlisten = tcp:0\n[app:in]\nhandlers = access, live\naccess.rules = deny publish all\n")
    out, err = io.StringIO(), io.StringIO()
    assert cli.check(["--config", str(good)], out, err) == 0
    assert "[app:in] handlers = access, live\n" in out.getvalue()
    assert err.getvalue() == ""


def test_sign_is_the_auth_handlers_signer(capsys):
    assert cli.main(["sign", "--secret", SECRET, "--app", "live", "--name", "cam", "--expires", "2000000000"]) == 0
    query = capsys.readouterr().out.strip()
    assert query == auth.sign_url(SECRET, "live", "cam", 2000000000)


def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("check", "sign", "passwd", "--config"):
        assert word in text


def test_service_maker_is_the_twistd_plugins():
    maker = cli.service_maker()
    from rtmpserver import tap

    assert maker.tapname == "rtmp"
    assert maker.options is tap.Options and maker.makeService is tap.makeService


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["--bogus"]])
def test_unknown_run_option_exits_2(argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
