"""Command-line relay client, for trying a relay target by hand and for the end-to-end tests.

    python -m rtmpserver.relay.tool pull URL OUT.flv [--seconds S] [--timeout T] [--no-verify] [--ca-file PEM]

Plays ``URL`` through the same ``Relay`` the server uses (reconnecting with backoff while it
runs) and writes what arrives as FLV to ``OUT.flv`` (``-`` for stdout).  It stops after ``S``
seconds of media, or after ``T`` seconds of wall time; exit status 0 if any media arrived.
"""

from __future__ import annotations

import argparse
import sys

from zope.interface import implementer

from rtmpserver.interfaces import IRelayConsumer
from rtmpserver.media.flv import FLVWriter

__all__ = ["FLVFileConsumer", "main"]


@implementer(IRelayConsumer)
class FLVFileConsumer:
    """Writes a played relay stream as FLV; timestamps rebased so the file starts at 0."""

    def __init__(self, out, stop_after_ms: int | None = None, on_done=lambda: None) -> None:
        self.out = out
        self.writer = FLVWriter(has_audio=True, has_video=True)
        out.write(self.writer.start())
        self.base: int | None = None
        self.last = 0
        self.media = 0
        self.stop_after_ms = stop_after_ms
        self.on_done = on_done
        self.done = False

    def _ts(self, ts: int) -> int:
        if self.base is None:
            self.base = ts
        t = max(self.last, (ts - self.base) & 0xFFFFFFFF if ts >= self.base else 0)
        self.last = t
        return t

    def _write(self, tag: int, ts: int, payload: bytes, media: bool) -> None:
        if self.done:
            return
        t = self._ts(ts) if media else (self.last if self.base is not None else 0)
        self.out.write(self.writer.write(tag, t, payload))
        if media:
            self.media += 1
            if self.stop_after_ms is not None and t >= self.stop_after_ms:
                self.done = True
                self.on_done()

    def relay_started(self) -> None:
        pass

    def metadata(self, timestamp: int, payload: bytes) -> None:
        self._write(18, timestamp, payload, False)

    def data(self, timestamp: int, payload: bytes) -> None:
        self._write(18, timestamp, payload, False)

    def video(self, timestamp: int, payload: bytes) -> None:
        self._write(9, timestamp, payload, True)

    def audio(self, timestamp: int, payload: bytes) -> None:
        self._write(8, timestamp, payload, True)

    def relay_stopped(self, reason: str) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtmpserver.relay.tool")
    sub = parser.add_subparsers(dest="command", required=True)
    pull = sub.add_parser("pull", help="play URL and write FLV")
    pull.add_argument("url")
    pull.add_argument("out", help="FLV file to write, - for stdout")
    pull.add_argument("--seconds", type=float, default=None, help="stop after this much media")
    pull.add_argument("--timeout", type=float, default=30.0, help="stop after this much wall time")
    pull.add_argument("--no-verify", action="store_true", help="rtmps: do not verify the server certificate")
    pull.add_argument("--ca-file", default=None, help="rtmps: trust only this PEM certificate")
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from rtmpserver.relay.client import PLAY
    from rtmpserver.relay.manager import Relay
    from rtmpserver.relay.url import client_endpoint, parse_url

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    try:
        url = parse_url(args.url)
    except ValueError as e:
        parser.error(str(e))
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
    relay: Relay | None = None

    def finish() -> None:
        if relay is not None:
            relay.stop()
        if reactor.running:
            reactor.callLater(0.2, reactor.stop)

    consumer = FLVFileConsumer(out, None if args.seconds is None else int(args.seconds * 1000), finish)

    def endpoint_for(u):
        return client_endpoint(reactor, u, verify=not args.no_verify, ca_file=args.ca_file)

    relay = Relay(url, PLAY, clock=reactor, endpoint_for=endpoint_for, consumer=consumer)
    reactor.callWhenRunning(relay.start)
    reactor.callLater(args.timeout, finish)
    reactor.run()
    out.flush()
    if out is not sys.stdout.buffer:
        out.close()
    print(f"{consumer.media} media messages; relay {relay.describe()}", file=sys.stderr)
    return 0 if consumer.media else 1


if __name__ == "__main__":
    sys.exit(main())
