"""The ``rtmpserver`` command (also ``python -m rtmpserver``).

    rtmpserver [run] [--config FILE] [--logfile FILE] [--pidfile FILE]   run the server (foreground)
    rtmpserver check [--config FILE]                                     validate a config, list handlers
    rtmpserver sign ... / rtmpserver passwd USER                         the auth handler's helpers

``run`` is twistd's runner with the ``rtmp`` service maker handed over directly rather than found by
twistd's scan of ``twisted/plugins/``, so the command also works where that scan cannot see this
package's plugin (a PEP 660 editable install).  ``twistd rtmp`` keeps working as before.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

__all__ = ["main", "run", "check", "service_maker"]

USAGE = """usage: rtmpserver [run] [--config FILE] [--logfile FILE] [--pidfile FILE]
       rtmpserver check [--config FILE]
       rtmpserver sign --secret-file FILE --app APP --name NAME --ttl SECONDS [...]
       rtmpserver passwd USER < password

  run      run the server in the foreground (the default command); logs go to stdout
  check    validate the config, build every handler chain, list the handlers installed; exit 0 or 1
  sign     print the query string of a signed URL for the auth handler (see docs/handlers.md)
  passwd   read a password from stdin and print a line for auth's users file
"""

DEFAULT_CONFIG = "etc/server.ini"


def service_maker() -> Any:
    """The ``rtmp`` IServiceMaker, the same one twisted/plugins/rtmpserver_tap.py registers."""
    from twisted.application.service import ServiceMaker

    return ServiceMaker("rtmpserver", "rtmpserver.tap", "RTMP/RTMPS live streaming server", "rtmp")


def run(argv: list[str], err: TextIO | None = None) -> int:
    """Run the server until it is stopped (SIGINT/SIGTERM); a bad config is one line and exit 1."""
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="rtmpserver", description="Run the RTMP/RTMPS server in the foreground.")
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("--logfile", "-l", default="-", help="log file (default: stdout)")
    parser.add_argument("--pidfile", default="", help="write the process id here (default: none)")
    args = parser.parse_args(argv)

    from twisted.application.service import IServiceMaker
    from twisted.python import usage
    from twisted.scripts.twistd import ServerOptions, runApp

    maker = service_maker()

    class Options(ServerOptions):
        # Only our service maker: no dependency on where twisted.plugins is on sys.path.
        _getPlugins = staticmethod(lambda interface, package=None: [maker] if interface is IServiceMaker else [])

    options = Options()
    try:
        options.parseOptions(["--nodaemon", f"--logfile={args.logfile}", f"--pidfile={args.pidfile}",
                              "rtmp", "--config", args.config])
    except usage.UsageError as e:
        err.write(f"rtmpserver: {e}\n")
        return 1
    runApp(options)
    return 0


def check(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Load the config and build every application's chain as start-up would, without listening."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="rtmpserver check", description="Validate a configuration file.")
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)

    from twisted.internet.task import Clock

    from rtmpserver import apps, config
    from rtmpserver.errors import ConfigError
    from rtmpserver.hub import Hub

    try:
        server = config.load(args.config)
        found = apps.discover()
        chains = apps.build_chains(server, Hub(), Clock(), factories=found)
    except ConfigError as e:
        err.write(f"{e}\n")
        return 1
    out.write(f"{server.path}: OK\n")
    out.write("handlers installed:\n")
    for name in sorted(found):
        f = found[name]
        if isinstance(f, Exception):
            out.write(f"  {name}  BROKEN: {f}\n")
        else:
            out.write(f"  {name}  {f.description}\n")
    for module, why in sorted(found.import_errors.items()):
        out.write(f"  plugin module {module} failed to import: {why}\n")
    for app, chain in chains.items():
        out.write(f"[app:{app}] handlers = {', '.join(n for n, _ in chain.handlers)}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else ""
    if command in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if command == "check":
        return check(argv[1:])
    if command in ("sign", "passwd"):
        from rtmpserver.handlers import auth

        return auth.main(argv)
    if command == "run":
        argv = argv[1:]
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
