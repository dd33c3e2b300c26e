"""RTMPS connection rate and server CPU per TLS handshake, RSA 2048 vs ECDSA P-256.

Starts ``twistd -n rtmp`` on loopback with an ssl: listener (self-signed certificate of each
kind), then for a bounded time opens connections one after another from ``--clients`` threads:
TLS handshake (stdlib ssl, no verification), the simple RTMP handshake (C0+C1, S0+S1+S2, C2),
close.  Reports connections per second (wall clock) and the server's CPU time (utime+stime from
/proc/PID/stat) divided by the number of connections.  Each run is bounded by --seconds.

    python bench/tlsconnect.py --seconds 10 --clients 2
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.e2e import helpers  # noqa: E402
from tests.e2e.test_tls import make_ecdsa_cert  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_connection(port: int, ctx: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        # Without it Nagle holds C0+C1 behind the client's TLS 1.3 Finished until the server's
        # delayed ACK (~40 ms): a client artifact that would hide the server's cost.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw) as sock:
            helpers.simple_handshake(sock)


def run(kind: str, version: ssl.TLSVersion, seconds: float, clients: int, workdir: Path) -> tuple[int, float, float]:
    if kind == "rsa":
        key, cert = helpers.make_self_signed_cert(workdir, "rsa")
    else:
        key, cert = make_ecdsa_cert(workdir, "ecdsa")
    port, ssl_port = helpers.free_port(), helpers.free_port()
    config = workdir / f"{kind}.ini"
    config.write_text(helpers.render_config({
        "server": {"listen": [f"tcp:{port}:interface=127.0.0.1",
                              f"ssl:{ssl_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
                   "name": "bench", "access_log": "no"},
        "limits": {"max_connections_per_ip": "100000", "max_pending_per_ip": "100000"},
        "app:live": {"handlers": "live"},
    }))  # fmt: skip
    server = helpers.ServerProcess(workdir, config, [port, ssl_port])
    server.start()
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        for _ in range(5):  # warm up
            one_connection(ssl_port, ctx)
        pid = server.proc.pid
        count = [0] * clients
        stop = time.monotonic() + seconds

        def worker(i: int) -> None:
            while time.monotonic() < stop:
                one_connection(ssl_port, ctx)
                count[i] += 1

        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        return sum(count), wall, cpu
    finally:
        server.terminate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    ap.add_argument("--clients", type=int, default=2, help="client threads (default 2)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.clients} client threads, {args.seconds:.0f} s per run; "
          f"client and server on the same machine")  # fmt: skip
    print(f"{'certificate':<12} {'TLS':<4} {'connections':>11} {'conn/s':>7} {'server CPU ms/conn':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("rsa", "ecdsa"):
            for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                n, wall, cpu = run(kind, version, args.seconds, args.clients, Path(tmp))
                label = "RSA 2048" if kind == "rsa" else "ECDSA P-256"
                ver = "1.3" if version == ssl.TLSVersion.TLSv1_3 else "1.2"
                print(f"{label:<12} {ver:<4} {n:>11} {n / wall:>7.0f} {cpu / max(n, 1) * 1000:>19.2f}")


if __name__ == "__main__":
    main()
