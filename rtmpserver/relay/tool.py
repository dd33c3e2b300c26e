"""Command-line relay client, for trying a relay target by hand and for the end-to-end tests.

    python -m rtmpserver.relay.tool pull URL OUT.flv [--seconds S] [--timeout T] [--no-verify] [--ca-file PEM]
    python -m rtmpserver.relay.tool push IN.flv URL [--timeout T] [--no-verify] [--ca-file PEM]

``pull`` plays ``URL`` through the same ``Relay`` the server uses (reconnecting with backoff while
it runs) and writes what arrives as FLV to ``OUT.flv`` (``-`` for stdout).  It stops after ``S``
seconds of media, or after ``T`` seconds of wall time; exit status 0 if any media arrived.

``push`` publishes the tags of ``IN.flv`` to ``URL`` at the pace of their timestamps (like
``ffmpeg -re``), through a publish-mode ``Relay``; while the connection is full it skips to the next
keyframe.  Exit status 0 if every tag was sent.
"""

from __future__ import annotations

import argparse
import sys

from zope.interface import implementer

from rtmpserver.interfaces import IRelayConsumer, IRelayFeeder
from rtmpserver.media.flv import FLVWriter, is_video_keyframe

__all__ = ["FLVFileConsumer", "FLVFilePusher", "main"]


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
        # One line per start/stop on stderr: what a test (or a person) watching an origin restart
        # wants to see (Play.Start / PublishNotify / StreamBegin, then UnpublishNotify / StreamEOF).
        print("stream started", file=sys.stderr, flush=True)

    def metadata(self, timestamp: int, payload: bytes) -> None:
        self._write(18, timestamp, payload, False)

    def data(self, timestamp: int, payload: bytes) -> None:
        self._write(18, timestamp, payload, False)

    def video(self, timestamp: int, payload: bytes) -> None:
        self._write(9, timestamp, payload, True)

    def audio(self, timestamp: int, payload: bytes) -> None:
        self._write(8, timestamp, payload, True)

    def relay_stopped(self, reason: str) -> None:
        print(f"stream stopped: {reason}", file=sys.stderr, flush=True)


@implementer(IRelayFeeder)
class FLVFilePusher:
    """Sends FLV tags through a publish-mode relay, paced by their timestamps on ``clock``."""

    def __init__(self, tags, relay, clock, on_done=lambda: None) -> None:
        self.tags = tags
        self.relay = relay
        self.clock = clock
        self.on_done = on_done
        self.index = 0
        self.sent = 0
        self.skipped = 0
        self.started_at = 0.0
        self.need_key = False
        self._call = None
        relay.feed(self)

    def relay_ready(self) -> None:
        # (Re)start from the beginning of the file on every (re)connection.
        self.index = 0
        self.started_at = self.clock.seconds()
        self._cancel()
        self._next()

    def relay_writable(self) -> None:
        pass

    def relay_down(self, reason: str) -> None:
        self._cancel()

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _next(self) -> None:
        self._call = None
        base = self.tags[0].timestamp if self.tags else 0
        while self.index < len(self.tags):
            tag = self.tags[self.index]
            due = self.started_at + (tag.timestamp - base) / 1000.0
            wait = due - self.clock.seconds()
            if wait > 0.001:
                self._call = self.clock.callLater(wait, self._next)
                return
            self.index += 1
            self._send(tag)
        self.on_done()

    def _send(self, tag) -> None:
        relay = self.relay
        if not relay.ready:
            return
        if tag.type == 9 and self.need_key:
            if not is_video_keyframe(tag.payload):
                self.skipped += 1
                return
            self.need_key = False
        if relay.full and tag.type in (8, 9):
            self.skipped += 1
            self.need_key = True
            return
        if tag.type == 18:
            if not _is_metadata(tag.payload):
                return
            relay.send_metadata(tag.payload, tag.timestamp)
        elif tag.type == 9:
            relay.send_video(tag.timestamp, tag.payload)
        else:
            relay.send_audio(tag.timestamp, tag.payload)
        self.sent += 1


def _is_metadata(payload: bytes) -> bool:
    return payload.startswith(b"\x02\x00\x0aonMetaData")


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
    push = sub.add_parser("push", help="publish an FLV file to URL in real time")
    push.add_argument("input")
    push.add_argument("url")
    push.add_argument("--timeout", type=float, default=60.0, help="stop after this much wall time")
    push.add_argument("--no-verify", action="store_true", help="rtmps: do not verify the server certificate")
    push.add_argument("--ca-file", default=None, help="rtmps: trust only this PEM certificate")
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

    def endpoint_for(u):
        return client_endpoint(reactor, u, verify=not args.no_verify, ca_file=args.ca_file)

    if args.command == "push":
        return _push(args, url, reactor, endpoint_for)
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
    relay: Relay | None = None

    def finish() -> None:
        if relay is not None:
            relay.stop()
        if reactor.running:
            reactor.callLater(0.2, reactor.stop)

    consumer = FLVFileConsumer(out, None if args.seconds is None else int(args.seconds * 1000), finish)

    relay = Relay(url, PLAY, clock=reactor, endpoint_for=endpoint_for, consumer=consumer)
    reactor.callWhenRunning(relay.start)
    reactor.callLater(args.timeout, finish)
    reactor.run()
    out.flush()
    if out is not sys.stdout.buffer:
        out.close()
    print(f"{consumer.media} media messages; relay {relay.describe()}", file=sys.stderr)
    return 0 if consumer.media else 1


def _push(args, url, reactor, endpoint_for) -> int:
    from rtmpserver.media.flv import read_file
    from rtmpserver.relay.client import PUBLISH
    from rtmpserver.relay.manager import Relay

    tags = read_file(args.input)
    relay = Relay(url, PUBLISH, clock=reactor, endpoint_for=endpoint_for)
    done = []

    def finish() -> None:
        done.append(True)
        relay.stop()
        if reactor.running:
            reactor.callLater(0.2, reactor.stop)

    pusher = FLVFilePusher(tags, relay, reactor, finish)
    reactor.callWhenRunning(relay.start)
    timeout = reactor.callLater(args.timeout, finish)
    reactor.run()
    complete = pusher.index == len(tags) and pusher.sent > 0
    if timeout.active():
        timeout.cancel()
    print(f"{pusher.sent} of {len(tags)} tags sent, {pusher.skipped} skipped; relay {relay.describe()}", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
