"""Players that wait for a publisher survive the server's ping deadline; silent peers do not.

With the default limits (ping_interval 15 s, ping_timeout 10 s) a connection that sends nothing
gets a PingRequest after 15 s and is closed when nothing arrives within 10 s more.  Real players
answer the ping: FFmpeg, librtmp (rtmpdump, GStreamer's rtmpsrc) and GStreamer's rtmp2src wait 40 s
for a publisher and then play it.  A raw client that completes the handshake and then stays silent
is the control: it must be closed within 30 s.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import ClientProcess, simple_handshake, wait_closed_by_peer

pytestmark = pytest.mark.e2e

IDLE_WAIT = 40.0  # seconds the players wait for the publisher: more than one ping deadline (25 s)


def test_players_answer_pings_across_a_40_s_wait_and_a_silent_peer_is_closed(e2e):
    srv = e2e.server()
    url = srv.url("live/later")
    silent = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    simple_handshake(silent)
    silent_since = time.monotonic()
    outs = {name: e2e.workdir / f"{name}.flv" for name in ("ffmpeg", "rtmpdump", "rtmpsrc", "rtmp2src")}
    players = {
        # -rw_timeout above the ping interval: the pings are all FFmpeg receives while it waits.
        "ffmpeg": ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rw_timeout", "30000000",
                   "-i", url, "-t", "2", "-c", "copy", "-f", "flv", str(outs["ffmpeg"])],
        "rtmpdump": ["rtmpdump", "-r", url, "--live", "-m", "30", "-o", str(outs["rtmpdump"])],
        "rtmpsrc": ["gst-launch-1.0", "-e", "rtmpsrc", f"location={url} live=1 timeout=30", "!",
                    "filesink", "buffer-mode=unbuffered", f"location={outs['rtmpsrc']}"],
        "rtmp2src": ["gst-launch-1.0", "-e", "rtmp2src", f"location={url}", "!",
                     "filesink", f"location={outs['rtmp2src']}"],
    }  # fmt: skip
    clients = {name: ClientProcess(name, cmd, e2e.workdir) for name, cmd in players.items()}
    e2e.clients.extend(clients.values())
    started = time.monotonic()

    closed, _, how = wait_closed_by_peer(silent, 31.0 - (time.monotonic() - silent_since))
    silent_for = time.monotonic() - silent_since
    silent.close()
    assert closed and 20.0 <= silent_for <= 31.0, f"silent peer: {how} after {silent_for:.1f} s"

    time.sleep(max(0.0, IDLE_WAIT - (time.monotonic() - started)))
    for name, client in clients.items():
        assert client.poll() is None, f"{name} did not wait {IDLE_WAIT:.0f} s for the publisher\n{client.describe()}"
    log = srv.log_text()
    closed_for_pings = [line for line in log.splitlines() if "] closing " in line and "no answer to a ping" in line]
    assert len(closed_for_pings) == 1, helpers.tail(log)  # the silent peer only

    pub = e2e.publish(url, seconds=4)
    clients["ffmpeg"].wait_ok(timeout=15)  # -t 2
    time.sleep(max(0.0, 3.0 - (time.monotonic() - clients["ffmpeg"].started)))
    rest = ("rtmpdump", "rtmpsrc", "rtmp2src")
    for name in rest:
        assert clients[name].poll() is None, f"{name} ended early\n{clients[name].describe()}"
    # rtmpdump and gst-launch -e (EOS) finish their files on SIGINT, except rtmpsrc, which sits in
    # librtmp's blocking read: it is killed (its filesink writes unbuffered).
    for name, sig in (("rtmpdump", signal.SIGINT), ("rtmp2src", signal.SIGINT), ("rtmpsrc", signal.SIGKILL)):
        clients[name].proc.send_signal(sig)
    for name in rest:
        clients[name].wait(timeout=10)
    pub.wait_ok(timeout=15)
    for name, path in outs.items():
        frames = len(helpers.video_frames(path))
        assert frames >= 30, f"{name}: {frames} video frames after the wait\n{clients[name].describe()}"
