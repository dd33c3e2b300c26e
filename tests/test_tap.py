"""Tests for rtmpserver.tap and the twistd plugin: config errors end twistd with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from rtmpserver import config, tap

ROOT = Path(__file__).resolve().parent.parent
GOOD = "[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\n"


def test_default_config_path():
    assert tap.Options()["config"] == "etc/server.ini"


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_good_config_is_loaded_while_parsing(tmp_path, flag):
    path = tmp_path / "s.ini"
    path.write_text(GOOD)
    options = tap.Options()
    options.parseOptions([flag, str(path)])
    assert options["config"] == str(path)
    assert options.server_config == config.load(str(path))


def test_bad_config_is_a_usage_error_with_the_one_line_message(tmp_path):
    path = tmp_path / "s.ini"
    path.write_text(GOOD + "[limits]\nidle_timeout = abc\n")
    with pytest.raises(usage.UsageError) as info:
        tap.Options().parseOptions(["--config", str(path)])
    assert str(info.value) == f"{path}: [limits] idle_timeout: expected a number of seconds > 0, got 'abc'"


def test_missing_config_is_a_usage_error(tmp_path):
    missing = tmp_path / "nope.ini"
    with pytest.raises(usage.UsageError, match=f"^{missing}: cannot read config file: No such file"):
        tap.Options().parseOptions(["-c", str(missing)])


def test_make_service_uses_the_loaded_config(tmp_path, monkeypatch):
    path = tmp_path / "s.ini"
    path.write_text(GOOD)
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    calls = []
    monkeypatch.setattr(tap.service, "makeService", lambda c, **parts: calls.append(c) or "the service")
    assert tap.makeService(options) == "the service"
    assert calls == [options.server_config]


def test_make_service_loads_when_options_were_not_parsed(tmp_path, monkeypatch):
    path = tmp_path / "s.ini"
    path.write_text(GOOD)
    options = tap.Options()
    options["config"] = str(path)
    calls = []
    monkeypatch.setattr(tap.service, "makeService", lambda c, **parts: calls.append(c) or "the service")
    tap.makeService(options)
    assert calls == [config.load(str(path))]


def test_plugin_is_found_as_rtmp():
    makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "rtmp"]
    assert len(makers) == 1, "twisted/plugins/rtmpserver_tap.py is not on twisted.plugins' path"
    (maker,) = makers
    assert maker.options is tap.Options
    assert maker.makeService is tap.makeService
    assert maker.description


def _twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH makes the checkout importable the way the editable install does for `make run`.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_twistd_exits_1_with_the_message_on_a_bad_config(tmp_path):
    path = tmp_path / "s.ini"
    path.write_text(GOOD + "handler = live\n")
    result = _twistd("-n", "rtmp", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    # One line on stderr, and not twistd's usage text before it.
    assert result.stderr.splitlines() == [f"{path}: [app:live] handler: unknown key (did you mean 'handlers'?)"]
    assert "Usage:" not in result.stdout + result.stderr
    assert not (tmp_path / "twistd.pid").exists()


def test_as_a_subcommand_a_bad_config_prints_one_line_and_exits_1(tmp_path, capsys):
    path = tmp_path / "s.ini"
    path.write_text(GOOD + "[limits]\nidle_timeout = abc\n")
    options = tap.Options()
    options.parent = usage.Options()
    with pytest.raises(SystemExit) as info:
        options.parseOptions(["--config", str(path)])
    assert info.value.code == 1
    assert capsys.readouterr().err == f"{path}: [limits] idle_timeout: expected a number of seconds > 0, got 'abc'\n"


def test_twistd_lists_the_rtmp_command(tmp_path):
    result = _twistd("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert any(line.split()[:1] == ["rtmp"] for line in result.stdout.splitlines())


def test_missing_handler_plugin_is_a_usage_error(tmp_path):
    path = tmp_path / "s.ini"
    path.write_text(GOOD.replace("[app:live]", "[app:live]\nhandlers = nosuch"))
    with pytest.raises(usage.UsageError, match=r"\[app:live\] handlers: no handler named 'nosuch'"):
        tap.Options().parseOptions(["--config", str(path)])


def test_parts_are_composed_once_while_parsing_and_reused(tmp_path, monkeypatch):
    path = tmp_path / "s.ini"
    path.write_text(GOOD)
    composed = []
    real_compose = tap.service.compose
    monkeypatch.setattr(tap.service, "compose", lambda *a: composed.append(a) or real_compose(*a))
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    root = tap.makeService(options)
    assert len(composed) == 1
    assert root.factory is options.components.factory
    assert root.factory.chains is options.components.chains
