"""Tests of the denylist handler, written with rtmpserver.testing only."""

import os
import shutil
import subprocess
import sys

import pytest

from rtmpserver import testing
from rtmpserver.errors import ConfigError


def test_listed_name_is_refused_and_counted():
    metrics = testing.server_metrics()
    handler = testing.load_handler("denylist", {"names": "spam*, test"}, metrics=metrics)

    refused = testing.run_hook(handler, testing.publish_request("spam-1"))
    assert refused.rejected
    assert refused.code == "NetStream.Publish.Denied"
    assert refused.description == "stream name 'spam-1' is on the deny list"

    assert testing.run_hook(handler, testing.publish_request("cam")).proceeded
    assert testing.sample(metrics, "acme_denylist_refusals_total", {"app": "live", "hook": "publish"}) == 1
    assert testing.stream_fields(metrics, "live", "spam-1") == {"denylist_refusals": 1}
    assert testing.stream_fields(metrics, "live", "cam") == {}


def test_listed_network_is_refused_for_play():
    handler = testing.load_handler("denylist", {"networks": "192.0.2.0/24"})
    inside = testing.play_request("cam", session=testing.session_view(host="192.0.2.7"))
    outside = testing.play_request("cam", session=testing.session_view(host="198.51.100.1"))
    out = testing.run_hook(handler, inside)
    assert out.rejected and out.code == "NetStream.Play.Failed"
    assert testing.run_hook(handler, outside).proceeded


def test_two_apps_share_one_counter():
    metrics = testing.server_metrics()
    a = testing.load_handler("denylist", {"names": "x"}, app="a", metrics=metrics)
    b = testing.load_handler("denylist", {"names": "x"}, app="b", metrics=metrics)
    testing.run_hook(a, testing.publish_request("x", app="a"))
    testing.run_hook(b, testing.publish_request("x", app="b"))
    assert testing.sample(metrics, "acme_denylist_refusals_total", {"app": "a", "hook": "publish"}) == 1
    assert testing.sample(metrics, "acme_denylist_refusals_total", {"app": "b", "hook": "publish"}) == 1


@pytest.mark.parametrize("settings, message", [
    ({"names": "x", "colour": "red"}, r"denylist.colour: unknown key"),
    ({"networks": "not-a-net"}, r"denylist.networks: expected a comma-separated list of IP networks"),
    ({}, r"denylist.names: expected at least one"),
])
def test_bad_settings_stop_startup_naming_the_key(settings, message):
    with pytest.raises(ConfigError, match=r"test.ini: \[app:live\] " + message):
        testing.load_handler("denylist", settings)


def test_installed_rtmpserver_command_finds_the_plugin(tmp_path):
    """The console script installed with rtmpserver sees this distribution's handler."""
    script = shutil.which("rtmpserver", path=os.path.dirname(sys.executable))
    assert script, "no rtmpserver command next to this Python: is rtmpserver installed here?"
    cfg = tmp_path / "server.ini"
    cfg.write_text("[server]\nlisten = tcp:1935\n[app:live]\nhandlers = denylist, live\ndenylist.names = spam\n")
    r = subprocess.run([script, "check", "--config", str(cfg)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[app:live] handlers = denylist, live" in r.stdout
    assert any(line.split()[:1] == ["denylist"] for line in r.stdout.splitlines())
