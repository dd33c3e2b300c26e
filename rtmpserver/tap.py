"""``twistd rtmp --config FILE``: the command line in front of rtmpserver.service.

The config is loaded while options are parsed, so a ConfigError becomes a UsageError: twistd prints
its one line and exits 1 before daemonizing or opening any port.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from rtmpserver import config as _config
from rtmpserver import service
from rtmpserver.errors import ConfigError

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = "Run the RTMP/RTMPS live streaming server described by an INI file."
    optParameters = [
        ["config", "c", "etc/server.ini", "Configuration file (see docs/configuration.md)."],
    ]

    server_config: _config.ServerConfig | None = None

    components: service.Components | None = None

    def postOptions(self) -> None:
        try:
            self.server_config = _config.load(self["config"])
            # The server's parts (hub, handler chains, factory) are composed here, once: a missing
            # or misconfigured handler plugin is a configuration error and must stop startup the
            # same way, before any port opens.  makeService then uses these very parts.
            from twisted.internet import reactor

            self.components = service.compose(self.server_config, reactor)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    server_config = options.server_config
    if server_config is None:  # Options built without parseOptions (e.g. by a tool or test)
        server_config = _config.load(options["config"])
    if options.components is not None:
        return service.makeService(server_config, components=options.components)
    return service.makeService(server_config)
