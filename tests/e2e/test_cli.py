"""The ``rtmpserver`` command runs the server without twistd's plugin scan (PEP 660 installs)."""

from __future__ import annotations

import socket
import sys

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import ServerProcess

pytestmark = pytest.mark.e2e

# twistd's scan of twisted/plugins/ finds nothing here, as under a PEP 660 editable install where
# the checkout's twisted/plugins/ is not on sys.path: the command must not need it.
HIDE_SCAN = """
import sys
from twisted import plugin
from twisted.application.service import IServiceMaker
_scan = plugin.getPlugins
plugin.getPlugins = lambda interface, package=None: iter(()) if interface is IServiceMaker else _scan(interface, package)
from rtmpserver.cli import main
sys.argv[0] = "rtmpserver"
sys.exit(main())
"""


class CommandProcess(ServerProcess):
    def command(self) -> list[str]:
        return [sys.executable, "-c", HIDE_SCAN, "--config", str(self.config_path)]


def test_rtmpserver_command_serves_and_stops_on_sigterm(tmp_path):
    port = helpers.free_port()
    cfg = tmp_path / "server.ini"
    cfg.write_text(helpers.render_config({"server": {"listen": f"tcp:{port}:interface=127.0.0.1"},
                                          "app:live": {"handlers": "live"}}))
    srv = CommandProcess(tmp_path, cfg, [port])
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            helpers.simple_handshake(sock)
    finally:
        rc, _ = srv.terminate()
    assert srv.clean_stop_problem(rc) is None, helpers.tail(srv.log_text())
    assert not (tmp_path / "twistd.pid").exists()  # no pid file unless asked for
    assert "Traceback" not in srv.log_text()
