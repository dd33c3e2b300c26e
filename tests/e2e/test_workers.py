"""``[server] workers = 2``: two worker processes behind the same listeners, one server from outside.

Real clients only: FFmpeg publishes and plays over TCP (the kernel picks the worker), HTTP clients
fetch HLS and HTTP-FLV, and where a test must reach one particular worker it uses that worker's
private Unix-socket RTMP listener (the one other workers relay from) with our relay client
(``rtmpserver.relay``), which also reports the NetStream statuses a player sees.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e import helpers

PLAYERS = 20

# A player printing what it sees: "started", "stopped <reason>", "video <n>" (every 30th frame).
_WATCHER = r"""
import sys, time
from twisted.internet import reactor
from zope.interface import implementer
from rtmpserver.interfaces import IRelayConsumer
from rtmpserver.relay.client import PLAY
from rtmpserver.relay.manager import Relay
from rtmpserver.relay.url import client_endpoint, parse_url

@implementer(IRelayConsumer)
class Watch:
    videos = 0
    def say(self, *words):
        print(f"{time.monotonic():.3f}", *words, flush=True)
    def relay_started(self): self.say("started")
    def relay_stopped(self, reason): self.say("stopped", reason)
    def metadata(self, ts, payload): self.say("metadata")
    def data(self, ts, payload): pass
    def video(self, ts, payload):
        self.videos += 1
        if self.videos % 30 == 1: self.say("video", self.videos)
    def audio(self, ts, payload): pass

relay = Relay(parse_url(sys.argv[1]), PLAY, clock=reactor, consumer=Watch(),
              endpoint_for=lambda u: client_endpoint(reactor, u))
reactor.callWhenRunning(relay.start)
reactor.callLater(float(sys.argv[2]), reactor.stop)
reactor.run()
"""


def _server(e2e, **app):
    srv = e2e.server(
        {"server": {"workers": "2"}, "app:live": {"handlers": "hls", **app}},
        need_process=True, http={},
    )
    # The supervisor's sockets accept (into the backlog) before the workers run: wait for both.
    ready = helpers.wait_until(lambda: all(f"/w{i}.rtmp'" in srv.log_text() for i in (0, 1)), 15, 0.1)
    assert ready, "the workers did not start"
    return srv


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _api(srv, what: str) -> list[dict]:
    code, body = _get(srv.http_url(f"/api/v1/{what}"))
    assert code == 200, body
    return json.loads(body)[what]


def _runtime_dir(srv) -> str:
    m = re.search(r"'(/[^']*)/w0\.rtmp'", srv.log_text())
    assert m, "worker 0's Unix RTMP listener is not in the log"
    return m.group(1)


def _worker_pids(srv) -> dict[int, int]:
    """The latest pid of each worker, from the supervisor's "worker N started (pid P)" lines."""
    return {int(i): int(p) for i, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", srv.log_text())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not "left behind" only once reaped; ask /proc.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _unix_url(runtime: str, worker: int, path: str) -> str:
    return f"rtmp+unix://{quote(f'{runtime}/w{worker}.rtmp', safe='')}/{path}"


def _publisher_worker(srv, name: str, timeout: float = 10.0) -> int:
    found: list[int] = []

    def publishing() -> bool:
        found[:] = [c["worker"] for c in _api(srv, "clients") if c["role"] == "publisher" and name in c["streams"]]
        return bool(found)

    assert helpers.wait_until(publishing, timeout, 0.2), f"no publisher of {name} in /api/v1/clients"
    return found[0]


def _parallel(fn, n: int) -> list:
    out: list = [None] * n

    def run(i: int) -> None:
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def _served_by(srv, needle: str) -> set[int]:
    """Workers whose access log shows a 200 for a request line containing ``needle``."""
    return {int(w) for w, line in re.findall(r"worker (\d+): (.*)", srv.log_text()) if needle in line and '" 200 ' in line}


def test_players_on_both_workers_hls_flv_and_clean_stop(e2e):
    srv = _server(e2e)
    publisher = e2e.publish(srv.url("live/cam"), seconds=25)
    _publisher_worker(srv, "cam")
    time.sleep(2.5)  # a couple of HLS segments (2 s each)
    # HTTP-FLV first, before any RTMP player: the worker without the publisher has no relay yet
    # and opens one for the request.  Viewers held open (more, in bursts) until /api shows both
    # workers serving some.
    done = threading.Event()
    heads: list[bytes] = []

    def flv() -> None:
        with urllib.request.urlopen(srv.http_url("/live/cam.flv"), timeout=5) as r:
            heads.append(r.read(100_000))
            done.wait(20)

    flv_workers: set[int] = set()

    def both_serve_flv() -> bool:
        flv_workers.update(c["worker"] for c in _api(srv, "clients") if c["protocol"] == "http-flv")
        return flv_workers == {0, 1}

    readers: list[threading.Thread] = []
    for _ in range(5):
        burst = [threading.Thread(target=flv) for _ in range(8)]
        for t in burst:
            t.start()
        readers.extend(burst)
        if helpers.wait_until(both_serve_flv, 3, 0.3):
            break
    served = both_serve_flv()
    done.set()
    for t in readers:
        t.join(20)
    assert served, f"HTTP-FLV served only by workers {flv_workers}"
    assert len(heads) == len(readers) and all(h[:3] == b"FLV" and len(h) == 100_000 for h in heads)

    players = [e2e.play(srv.url("live/cam"), seconds=4) for _ in range(PLAYERS)]
    spread: set[int] = set()

    def both_serve() -> bool:
        spread.update(c["worker"] for c in _api(srv, "clients") if c["role"] == "player")
        return spread == {0, 1}

    assert helpers.wait_until(both_serve, 10, 0.3), f"players only on workers {spread}"
    # One stream from outside: its publisher, and every player whichever worker serves it.
    streams = _api(srv, "streams")
    assert [s["name"] for s in streams] == ["cam"] and streams[0]["publisher"] is not None
    for p in players:
        p.wait_ok(30)
    for p in players:
        helpers.check_media(p.out_path, min_video_frames=90, context=e2e.context(p, publisher))

    # HLS, whichever worker a request lands on.  Concurrent requests spread over
    # the workers, though not evenly when they are idle (docs/performance.md, "Workers"): send
    # bursts until both have answered some, every answer a 200.
    code, playlist = _get(srv.http_url("/hls/live/cam.m3u8"))
    assert code == 200, playlist
    segment = [line for line in playlist.decode().splitlines() if line and not line.startswith("#")][-1]
    for _ in range(6):
        codes = _parallel(lambda i: _get(srv.http_url("/hls/live/cam.m3u8"))[0], 12)
        seg_codes = _parallel(lambda i: _get(srv.http_url(f"/hls/live/{segment}"))[0], 12)
        assert codes == [200] * 12 and seg_codes == [200] * 12, (codes, seg_codes)
        if _served_by(srv, "GET /hls/live/cam.m3u8") == {0, 1} and _served_by(srv, "GET /hls/live/cam-") == {0, 1}:
            break
    assert _served_by(srv, "GET /hls/live/cam.m3u8") == {0, 1}, "HLS playlists were not served by both workers"
    assert _served_by(srv, "GET /hls/live/cam-") == {0, 1}, "HLS segments were not served by both workers"

    # /metrics counts the players of both workers at once.
    code, metrics = _get(srv.http_url("/metrics"))
    assert code == 200 and b'rtmp_streams{app="live"} 1.0' in metrics

    # SIGTERM: a clean stop, and no worker left behind.
    pids = _worker_pids(srv)
    assert len(pids) == 2
    rc, _ = srv.process.terminate()
    assert srv.process.clean_stop_problem(rc) is None, srv.process.clean_stop_problem(rc)
    assert helpers.wait_until(lambda: not any(_alive(p) for p in pids.values()), 5), "a worker outlived SIGTERM"


@pytest.mark.parametrize("clash", ["reject", "takeover"])
def test_publisher_clash_across_workers(e2e, tmp_path, clash):
    srv = _server(e2e, publisher_clash=clash)
    first = e2e.publish(srv.url("live/one"), seconds=20)
    owner = _publisher_worker(srv, "one")
    other = 1 - owner
    # A file to publish with our relay client, straight into the other worker.
    clip = tmp_path / "clip.flv"
    subprocess.run(helpers.publish_command(str(clip), 2)[:-1] + [str(clip)], check=True, timeout=60,
                   stdin=subprocess.DEVNULL, capture_output=True)
    url = _unix_url(_runtime_dir(srv), other, "live/one")
    r = subprocess.run([sys.executable, "-m", "rtmpserver.relay.tool", "push", str(clip), url, "--timeout", "5"],
                       capture_output=True, text=True, timeout=30, env=helpers.server_env())
    if clash == "reject":
        assert "NetStream.Publish.BadName" in r.stderr, r.stderr
        assert re.search(rf"worker {other}: .*published on another worker", srv.log_text())
        assert _publisher_worker(srv, "one") == owner  # the first publisher is untouched
        assert first.poll() is None
    else:
        assert "NetStream.Publish.BadName" not in r.stderr, r.stderr
        assert re.search(rf"worker {owner}: .*taken over by a publisher on another worker", srv.log_text())
        # The first publisher was evicted (FFmpeg gives up on a closed connection).
        assert first.wait(15) != 0


def test_kill_publishing_worker(e2e):
    srv = _server(e2e)
    runtime = _runtime_dir(srv)
    e2e.publish(srv.url("live/k"), seconds=40)
    owner = _publisher_worker(srv, "k")
    other = 1 - owner
    # A player on the other worker: it is served through the inter-worker relay.
    watcher = helpers.ClientProcess("watcher", [sys.executable, "-c", _WATCHER, _unix_url(runtime, other, "live/k"), "30"],
                                    e2e.workdir, stdout=subprocess.PIPE)
    e2e.clients.append(watcher)
    lines: list[str] = []

    def read() -> None:
        for raw in iter(watcher.proc.stdout.readline, b""):
            lines.append(raw.decode(errors="replace").strip())

    threading.Thread(target=read, daemon=True).start()

    def seen(word: str, after: int = 0) -> bool:
        return any(line.split()[1:2] == [word] for line in lines[after:])

    assert helpers.wait_until(lambda: seen("video"), 15, 0.2), f"no video through the relay: {lines}"
    pid = _worker_pids(srv)[owner]
    os.kill(pid, signal.SIGKILL)
    mark = len(lines)
    assert helpers.wait_until(lambda: seen("stopped", mark), 10, 0.1), f"no stream end on worker {other}: {lines}"
    assert helpers.wait_until(lambda: _worker_pids(srv)[owner] != pid, 10, 0.2), "the killed worker was not restarted"
    assert f"worker {owner} died" in srv.log_text()
    # The publisher lost its connection; it comes back (on whichever worker) and the player sees it.
    mark = len(lines)
    e2e.publish(srv.url("live/k"), seconds=20)
    assert helpers.wait_until(lambda: seen("started", mark), 15, 0.2), f"no new start: {lines}"
    assert helpers.wait_until(lambda: seen("video", mark), 15, 0.2), f"no frames after the restart: {lines}"


def test_workers_stop_when_the_supervisor_is_killed(e2e):
    srv = _server(e2e)
    pids = _worker_pids(srv)
    srv.process.terminated_by_test = True  # we end it ourselves, the hard way
    srv.process.proc.kill()
    srv.process.proc.wait(5)
    assert helpers.wait_until(lambda: not any(_alive(p) for p in pids.values()), 10, 0.1), "workers outlived the supervisor"
