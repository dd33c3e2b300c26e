"""The ``relay`` handler between real server processes: pull on demand, origin restarts, push to us and to nginx-rtmp.

Server A is the origin, server B pulls from it (``relay.pull``) or A pushes to B (``relay.push``).
Players and publishers are ffmpeg; ffprobe and ffmpeg's decoder judge what the players got.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.helpers import (
    FPS,
    ClientProcess,
    ServerProcess,
    check_media,
    decode_errors,
    ffprobe_json,
    free_port,
    make_self_signed_cert,
    render_config,
    tail,
    wait_until,
)

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


def relays(srv) -> list[dict]:
    with urllib.request.urlopen(srv.http_url("api/v1/relays"), timeout=5) as r:
        return json.load(r)["relays"]


def server(e2e, label: str, overrides: dict | None = None, http: dict | None = None, port: int | None = None,
           tls: bool = False) -> Server:
    """A server in its own directory (config and log of two servers must not share files);
    ``tls`` adds an RTMPS listener with a self-signed certificate for ``localhost`` (``label/server.crt``)."""
    workdir = e2e.workdir / label
    workdir.mkdir(exist_ok=True)
    port = port or free_port()
    listen = [f"tcp:{port}:interface=127.0.0.1"]
    ssl_port = None
    if tls:
        ssl_port = free_port()
        key, cert = make_self_signed_cert(workdir)
        listen.append(f"ssl:{ssl_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    sections = {"server": {"listen": listen, "name": label}, "app:live": {"handlers": "live"}}
    http_port = None
    if http is not None:
        http_port = free_port()
        sections["http:main"] = {"listen": f"tcp:{http_port}:interface=127.0.0.1", **http}
    for section, keys in (overrides or {}).items():
        sections.setdefault(section, {}).update(keys)
    config = workdir / "server.ini"
    config.write_text(render_config(sections))
    process = ServerProcess(workdir, config, [port] + ([ssl_port] if ssl_port else []) + ([http_port] if http_port else []))
    srv = Server(port, ssl_port, process, http_port)
    e2e.servers.append(srv)
    process.start()
    return srv


def pull_client(e2e, url: str, out: Path, seconds: float) -> ClientProcess:
    cmd = [sys.executable, "-m", "rtmpserver.relay.tool", "pull", url, str(out), "--seconds", str(seconds), "--timeout", "25"]
    client = ClientProcess(e2e._name("relay-player"), cmd, e2e.workdir)
    e2e.clients.append(client)
    return client


def packets(path: Path, stream: str) -> list:
    return ffprobe_json(path, "-select_streams", stream, "-show_entries", "packet=pts_time", "-show_packets")["packets"]


def quick(**keys) -> dict:
    """relay.* keys for a test: short backoff so reconnects happen within seconds."""
    return {"handlers": "relay, live", "relay.backoff_initial": "0.2", "relay.backoff_max": "1", **keys}


def test_pull_on_demand_survives_an_origin_restart(e2e):
    a = server(e2e, "a")
    b = server(e2e, "b", {"app:live": quick(**{"relay.pull": f"rtmp://127.0.0.1:{a.port}/live/{{name}}", "relay.linger": "1"})},
               http={"api": "yes", "stat": "yes"})
    pub = e2e.publish(a.url("live/cam"), seconds=30)
    time.sleep(1.0)
    assert relays(b) == []  # nobody asked yet: no upstream connection
    # The player is our relay client (it keeps its connection across UnpublishNotify/PublishNotify,
    # which FFmpeg's player treats as the end) and logs every stop and start of the stream.
    out = e2e.workdir / "player.flv"
    player = pull_client(e2e, b.url("live/cam"), out, seconds=6)
    assert wait_until(lambda: any(r["state"] == "playing" for r in relays(b)), timeout=10), relays(b)
    with urllib.request.urlopen(b.http_url("api/v1/streams"), timeout=5) as r:
        streams = json.load(r)["streams"]
    assert [(s["name"], s["publisher"]["protocol"], s["publisher"]["address"]) for s in streams] == [
        ("cam", "relay", f"rtmp://127.0.0.1:{a.port}/live/cam")], streams
    time.sleep(2.5)
    # The origin dies (no goodbye) and comes back on the same port; its publisher starts again.
    a.process.terminated_by_test = True
    a.process.proc.kill()
    a.process.proc.wait(timeout=5)
    pub.kill()
    a2 = server(e2e, "a2", port=a.port)
    pub2 = e2e.publish(a2.url("live/cam"), seconds=30)
    player.wait_ok(timeout=30)
    err = player.stderr_text()
    events = [line for line in err.splitlines() if line.startswith("stream ")]
    # B told its player (StreamEOF + UnpublishNotify, then PublishNotify + StreamBegin; either pair is enough).
    assert len(events) >= 3 and events[0] == events[2] == "stream started", err
    assert events[1].startswith("stream stopped: unpublished upstream"), err
    assert "'connections': 1," in err, err  # the player's own connection to B never dropped
    rows = relays(b)
    assert len(rows) == 1 and rows[0]["direction"] == "pull", rows
    row = rows[0]
    assert row["url"] == f"rtmp://127.0.0.1:{a.port}/live/cam" and row["reconnects"] >= 1 and row["connections"] >= 2, row
    assert row["bytes_in"] > 100_000, row
    stat = urllib.request.urlopen(b.http_url("stat"), timeout=5).read().decode()
    assert "<relay><name>cam</name><direction>pull</direction>" in stat, stat[-2000:]
    # One player across two publishers of the origin: it got media from both.
    # (The first frame after the restart repeats the previous frame's timestamp -- LiveSink.restart
    # continues at last_ts -- which ffmpeg's muxer reports; nothing else may be wrong.)
    errors = [line for line in decode_errors(out).splitlines() if "non monotonically increasing dts" not in line]
    assert errors == [], errors
    # (ffprobe -show_frames crashes on the second sequence header here; packets are enough.)
    assert len(packets(out, "v:0")) >= 5 * FPS - 15 and len(packets(out, "a:0")) >= 150
    # The last player left: after relay.linger the upstream connection is closed.
    assert wait_until(lambda: relays(b) == [], timeout=10), relays(b)
    pub2.kill()


def test_pull_over_rtmps_verifies_the_origin(e2e):
    a = server(e2e, "a", tls=True)
    url = f"rtmps://localhost:{a.ssl_port}/live/{{name}}"
    b = server(e2e, "b", {
        # Verification on (the default): the self-signed origin is refused ...
        "app:live": quick(**{"relay.pull": url}),
        # ... and accepted when its certificate is the one trusted.
        "app:trusted": quick(**{"relay.pull": url, "relay.ca_file": str(e2e.workdir / "a" / "server.crt")}),
    }, http={"api": "yes"})
    pub = e2e.publish(a.url("live/cam"), seconds=20)
    refused = e2e.play(b.url("live/cam"), seconds=1)
    player = e2e.play(b.url("trusted/cam"), seconds=2)
    player.wait_ok(timeout=20)
    check_media(player.out_path, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, player))
    rows = {r["app"]: r for r in relays(b)}
    assert rows["trusted"]["state"] == "playing", rows
    assert rows["live"]["state"] in ("backoff", "connecting", "handshaking") and rows["live"]["connections"] == 0, rows
    assert "certificate verify failed" in rows["live"]["last_error"] or "VerificationError" in rows["live"]["last_error"], rows
    assert refused.poll() is None  # still waiting for a stream that cannot come
    refused.kill()
    pub.kill()
    # B first: its refused relay keeps reconnecting to A, and a TLS connection that A's factory
    # refuses while shutting down makes Twisted's TLS wrapper log a traceback (not ours to test here).
    rc, _ = b.process.terminate()
    assert b.process.clean_stop_problem(rc) is None


def test_static_pull_is_always_on(e2e):
    a = server(e2e, "a")
    b = server(e2e, "b", {"app:live": quick(**{"relay.pull_static": f"mirror rtmp://127.0.0.1:{a.port}/live/cam"})},
               http={"api": "yes"})
    # Up before any player asks (our origin lets a player wait for a stream not published yet).
    assert wait_until(lambda: relays(b) and relays(b)[0]["state"] == "playing", timeout=10), relays(b)
    pub = e2e.publish(a.url("live/cam"), seconds=20)
    assert wait_until(lambda: relays(b)[0]["state"] == "playing", timeout=15), relays(b)
    player = e2e.play(b.url("live/mirror"), seconds=2)
    player.wait_ok(timeout=20)
    check_media(player.out_path, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, player))
    assert relays(b)[0]["direction"] == "pull-static"
    pub.kill()


def test_http_flv_viewer_starts_a_pull_and_waits_for_it(e2e):
    a = server(e2e, "a")
    b = server(e2e, "b", {"app:live": quick(**{"relay.pull": f"rtmp://127.0.0.1:{a.port}/live/{{name}}"})},
               http={"api": "yes", "flv": "yes"})
    pub = e2e.publish(a.url("live/cam"), seconds=20)
    time.sleep(1.0)
    player = e2e.play(b.http_url("live/cam.flv"), seconds=2)
    player.wait_ok(timeout=20)
    check_media(player.out_path, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, player))
    assert relays(b)[0]["state"] == "playing"
    pub.kill()


def test_push_to_another_server(e2e):
    b = server(e2e, "b")
    a = server(e2e, "a", {"app:live": quick(**{"relay.push": [f"rtmp://127.0.0.1:{b.port}/live/{{name}}_copy",
                                                            f"rtmp://127.0.0.1:{b.port}/live/{{name}}_second"]})},
               http={"api": "yes"})
    pub = e2e.publish(a.url("live/cam"), seconds=20)
    assert wait_until(lambda: len(relays(a)) == 2 and all(r["state"] == "publishing" for r in relays(a)), timeout=15), relays(a)
    p1 = e2e.play(b.url("live/cam_copy"), seconds=2)
    p2 = e2e.play(b.url("live/cam_second"), seconds=2)
    p1.wait_ok(timeout=20)
    p2.wait_ok(timeout=20)
    for p in (p1, p2):
        check_media(p.out_path, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, p))
    # The publisher leaves: its pushes end with it.
    pub.kill()
    assert wait_until(lambda: relays(a) == [], timeout=10), relays(a)


class Nginx:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "nginx"
        self.dir.mkdir()
        self.log = self.dir / "error.log"
        conf = self.dir / "nginx.conf"
        conf.write_text(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"error_log {self.log} info;\npid {self.dir}/nginx.pid;\n"
            f"load_module {NGINX_RTMP_MODULE};\n"
            "events { worker_connections 64; }\n"
            "rtmp { server {\n"
            f"  listen 127.0.0.1:{self.port};\n"
            "  application live { live on; }\n"
            "} }\n"
        )
        self.proc = subprocess.Popen([NGINX, "-p", f"{self.dir}/", "-e", str(self.log), "-c", str(conf)],
                                     cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def nginx(tmp_path):
    # `make system-deps` installs nginx-light and libnginx-mod-rtmp: missing ones fail, not skip.
    assert Path(NGINX).exists() and Path(NGINX_RTMP_MODULE).exists(), "nginx with libnginx-mod-rtmp missing: run `make system-deps`"
    n = Nginx(tmp_path)
    import socket

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", n.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    assert wait_until(up, timeout=10), tail(n.log.read_text(errors="replace") if n.log.exists() else "")
    yield n
    n.stop()


def test_push_to_nginx_rtmp(e2e, nginx):
    a = server(e2e, "a", {"app:live": quick(**{"relay.push": f"rtmp://127.0.0.1:{nginx.port}/live/{{name}}"})}, http={"api": "yes"})
    pub = e2e.publish(a.url("live/cam"), seconds=20)
    assert wait_until(lambda: relays(a) and relays(a)[0]["state"] == "publishing", timeout=15), relays(a)
    time.sleep(1.0)  # nginx-rtmp has no GOP cache: let a keyframe pass after the player joins
    player = e2e.play(f"rtmp://127.0.0.1:{nginx.port}/live/cam", seconds=3)
    player.wait_ok(timeout=20)
    check_media(player.out_path, min_video_frames=2 * FPS, min_audio_frames=60, context=e2e.context(pub, player))
    pub.kill()
