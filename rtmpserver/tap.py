"""``twistd rtmp --config FILE``: the command line in front of rtmpserver.service.

The config is loaded while options are parsed, so a bad config stops start-up before twistd
daemonizes or opens any port.  Run as a subcommand (``twistd rtmp``, the ``rtmpserver`` command)
the error is printed as its one line on stderr and the process exits 1: twistd's handling of a
UsageError would print its whole usage text first and bury the line that matters.  Parsed on
their own (``Options().parseOptions(...)``) the options raise UsageError as usual.
"""

from __future__ import annotations

import sys

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
    parent = None  # set by twistd (usage.Options) when these are a subcommand's options

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
            if self.parent is not None:
                sys.stderr.write(f"{e}\n")
                sys.stderr.flush()
                raise SystemExit(1) from None
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    server_config = options.server_config
    if server_config is None:  # Options built without parseOptions (e.g. by a tool or test)
        server_config = _config.load(options["config"])
    if options.components is not None:
        return service.makeService(server_config, components=options.components)
    return service.makeService(server_config)
