"""How evenly two worker processes share incoming connections: one inherited listening socket
(what ``[server] workers`` does: the supervisor binds, each worker ``adoptStreamPort``s it) against
one SO_REUSEPORT socket per worker.

Each worker is a Twisted reactor (epoll) that accepts and holds connections and, like a loaded
server, spends ``--work`` ms of CPU per accepted connection.  The client opens ``--connections``
connections in bursts of ``--burst`` (concurrently) and then one at a time, and each worker
reports how many it accepted.  Run:

    .venv/bin/python bench/workers_accept.py [--connections 400] [--burst 50] [--work 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

_WORKER = r"""
import json, os, socket, sys, time
from twisted.internet import reactor, protocol

mode, arg, work_ms, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
count = [0]
held = []

class Hold(protocol.Protocol):
    def connectionMade(self):
        count[0] += 1
        held.append(self)
        end = time.perf_counter() + work_ms / 1000
        while time.perf_counter() < end:
            pass

f = protocol.Factory.forProtocol(Hold)
if mode == "adopt":
    reactor.adoptStreamPort(int(arg), socket.AF_INET, f)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", int(arg)))
    s.listen(1024)
    s.setblocking(False)
    reactor.adoptStreamPort(s.fileno(), socket.AF_INET, f)
    s.close()

def report():
    with open(out, "w") as fh:
        json.dump(count[0], fh)

import signal
signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(report))
reactor.run()
"""


def _connect(port: int, n: int, burst: int) -> list[socket.socket]:
    socks = []
    for start in range(0, n, burst):
        batch = []
        for _ in range(min(burst, n - start)):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            batch.append(s)
        socks.extend(batch)
        time.sleep(0.05)
    return socks


def _run(mode: str, n: int, burst: int, work: float, tmp: str) -> list[int]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    shared = None
    procs = []
    outs = [os.path.join(tmp, f"{mode}-{i}.json") for i in range(2)]
    if mode == "adopt":
        shared = socket.socket()
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        shared.bind(("127.0.0.1", port))
        shared.listen(1024)
        shared.setblocking(False)
    for out in outs:
        arg = str(shared.fileno()) if shared is not None else str(port)
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, mode, arg, str(work), out],
                                      pass_fds=(shared.fileno(),) if shared is not None else ()))
    time.sleep(1.5)
    socks = _connect(port, n, burst) + _connect(port, n // 4, 1)
    time.sleep(1.0)
    counts = []
    for p in procs:
        p.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    for p, out in zip(procs, outs, strict=True):
        with open(out) as fh:
            counts.append(json.load(fh))
        p.terminate()
        p.wait(5)
    for s in socks:
        s.close()
    if shared is not None:
        shared.close()
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=400)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--work", type=float, default=2.0, help="ms of CPU per accepted connection")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("adopt", "reuseport"):
            for r in range(args.rounds):
                counts = _run(mode, args.connections, args.burst, args.work, tmp)
                total = sum(counts)
                print(f"{mode:9} round {r + 1}: {counts} of {total} ({100 * max(counts) / max(total, 1):.0f}% on the busier worker)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
