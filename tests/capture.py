"""Record one TCP connection's traffic, both directions, for use as test data.

Usage::

    python tests/capture.py --listen 127.0.0.1:19351 --target 127.0.0.1:19350 --out tests/data/NAME

Accepts one client on --listen, connects to --target, relays bytes both ways unchanged and writes
what the client sent to NAME.c2s.bin and what the server sent to NAME.s2c.bin.  Exits when both
sides have closed (or after --timeout seconds).  Standalone: standard library only, so it can run
with any python3 while a real client (ffmpeg) talks to a real server (nginx-rtmp) through it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out) -> int:
    """Copy until EOF, recording every byte; half-close the far side so the peer sees EOF too."""
    total = 0
    try:
        while data := await reader.read(65536):
            out.write(data)
            total += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
    return total


async def _main(args: argparse.Namespace) -> int:
    done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if done.done() or getattr(handle, "busy", False):
            c_writer.close()  # one connection only
            return
        handle.busy = True  # type: ignore[attr-defined]
        s_reader, s_writer = await asyncio.open_connection(*args.target)
        with open(args.out + ".c2s.bin", "wb") as c2s, open(args.out + ".s2c.bin", "wb") as s2c:
            sent, received = await asyncio.gather(
                _pump(c_reader, s_writer, c2s), _pump(s_reader, c_writer, s2c)
            )
        c_writer.close()
        s_writer.close()
        done.set_result((sent, received))

    server = await asyncio.start_server(handle, *args.listen)
    print(f"listening on {args.listen[0]}:{args.listen[1]} -> {args.target[0]}:{args.target[1]}",
          file=sys.stderr, flush=True)
    try:
        sent, received = await asyncio.wait_for(done, args.timeout)
    except TimeoutError:
        print("timed out", file=sys.stderr)
        return 1
    finally:
        server.close()
    print(f"c2s {sent} bytes, s2c {received} bytes -> {args.out}.{{c2s,s2c}}.bin", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_hostport, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--target", type=_hostport, required=True, help="HOST:PORT to relay to")
    parser.add_argument("--out", required=True, help="output prefix (writes .c2s.bin and .s2c.bin)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
