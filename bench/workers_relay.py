"""CPU cost of the inter-worker relay (``[server] workers = 2``).

Starts ``twistd rtmp`` with two workers and one FFmpeg publisher (~2 Mbit/s), then measures the
CPU time (user + system, from /proc) of each worker over ``--seconds`` in three phases:

1. publisher only;
2. one player on the *other* worker (through its private Unix-socket listener, so the placement
   is certain): the other worker runs the relay, the publishing worker serves it as a player;
3. one player on the publishing worker itself (no relay).

The relay's cost is phase 2 minus phase 3, summed over both workers.  Run:

    .venv/bin/python bench/workers_relay.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    rtmp, http = _port(), _port()
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "server.ini"
        ini.write_text(f"[server]\nlisten = tcp:{rtmp}:interface=127.0.0.1\nworkers = 2\n[app:live]\n"
                       f"[http:main]\nlisten = tcp:{http}:interface=127.0.0.1\n")
        log = open(Path(tmp) / "server.log", "w+")  # noqa: SIM115
        server = subprocess.Popen([TWISTD, "-n", "--pidfile=", "--logfile=-", "rtmp", "--config", str(ini)], stdout=log, stderr=log)
        procs = [server]
        try:
            time.sleep(4)
            text = Path(log.name).read_text()
            pids = {int(i): int(p) for i, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", text)}
            runtime = re.search(r"'(/[^']*)/w0\.rtmp'", text).group(1)
            pub = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                 "testsrc2=size=640x360:rate=30", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M",
                 "-g", "30", "-t", str(4 * args.seconds + 20), "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/b"],
                stdin=subprocess.DEVNULL)
            procs.append(pub)
            time.sleep(3)
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/v1/clients") as r:
                owner = next(c["worker"] for c in json.load(r)["clients"] if c["role"] == "publisher")
            other = 1 - owner

            def measure(label: str, player_on: int | None) -> dict:
                player = None
                if player_on is not None:
                    url = f"rtmp+unix://{quote(f'{runtime}/w{player_on}.rtmp', safe='')}/live/b"
                    player = subprocess.Popen([sys.executable, "-m", "rtmpserver.relay.tool", "pull", url, os.devnull,
                                               "--timeout", str(args.seconds + 5)], stderr=subprocess.DEVNULL)
                    time.sleep(2)
                t0 = {i: _cpu(p) for i, p in pids.items()}
                time.sleep(args.seconds)
                used = {i: (_cpu(p) - t0[i]) / args.seconds * 100 for i, p in pids.items()}
                if player is not None:
                    player.terminate()
                    player.wait(10)
                time.sleep(1)
                print(f"{label:40} publishing worker {used[owner]:5.1f}%  other worker {used[other]:5.1f}%", flush=True)
                return used

            base = measure("publisher only", None)
            relayed = measure("1 player on the other worker (relay)", other)
            local = measure("1 player on the publishing worker", owner)
            cost = sum(relayed.values()) - sum(local.values())
            print(f"relay cost: {cost:.1f}% of a core (both workers); baseline {sum(base.values()):.1f}%")
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
