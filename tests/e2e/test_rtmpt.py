"""RTMPT end to end: real RTMP clients tunnel through the HTTP listener (``rtmpt = yes``).

rtmpdump (librtmp) and ffmpeg play ``rtmpt://127.0.0.1:HTTPPORT/live/NAME`` of a stream ffmpeg
publishes over plain RTMP, and ffmpeg publishes over rtmpt:// for an RTMP player; each pulled
copy is judged by ffprobe/ffmpeg's decoders (helpers.check_media).
"""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, wait_until

pytestmark = pytest.mark.e2e


def _live(srv, name: str) -> bool:
    try:
        data = json.loads(urllib.request.urlopen(srv.http_url("api/v1/streams"), timeout=5).read())
    except OSError:
        return False
    return name in json.dumps(data)


def _rtmpt(srv, name: str) -> str:
    return f"rtmpt://127.0.0.1:{srv.http_port}/live/{name}"


def test_rtmpdump_and_ffmpeg_play_over_rtmpt(e2e):
    srv = e2e.server(http={"rtmpt": "yes"})
    pub = e2e.publish(srv.url("live/tunnel"), seconds=30)
    assert wait_until(lambda: _live(srv, "tunnel"), timeout=15, interval=0.2), e2e.context(pub)

    out = e2e.workdir / "rtmpdump.flv"
    dump = helpers.ClientProcess("rtmpdump", ["rtmpdump", "-q", "--live", "-r", _rtmpt(srv, "tunnel"),
                                              "-o", str(out)], e2e.workdir)
    player = e2e.play(_rtmpt(srv, "tunnel"), seconds=4, name="ffmpeg-rtmpt")
    player.wait_ok(timeout=30)
    assert dump.poll() is None, f"rtmpdump ended early\n{dump.describe()}\n{e2e.context(pub)}"
    # A live stream has no end: rtmpdump stops on SIGINT, closing the file and the session
    # (status 2, "incomplete", is what it reports for an interrupted live download).
    dump.kill(signal.SIGINT)
    assert dump.proc.returncode in (0, 2), f"rtmpdump status {dump.proc.returncode}\n{dump.describe()}"
    helpers.check_media(out, min_video_frames=2 * FPS, context=dump.describe() + e2e.context(pub))
    helpers.check_media(player.out_path, min_video_frames=2 * FPS, context=e2e.context(pub, player))
    log = srv.log_text()
    assert log.count("RTMPT session opened") >= 2, helpers.tail(log)


def test_ffmpeg_publishes_over_rtmpt(e2e):
    srv = e2e.server(http={"rtmpt": "yes"})
    pub = e2e.publish(_rtmpt(srv, "uphill"), seconds=30)
    assert wait_until(lambda: _live(srv, "uphill"), timeout=15, interval=0.2), e2e.context(pub)
    clients = json.loads(urllib.request.urlopen(srv.http_url("api/v1/clients"), timeout=5).read())["clients"]
    assert [c["protocol"] for c in clients if c["role"] == "publisher"] == ["rtmpt"], clients
    player = e2e.play(srv.url("live/uphill"), seconds=4)
    player.wait_ok(timeout=30)
    helpers.check_media(player.out_path, min_video_frames=2 * FPS, context=e2e.context(pub, player))
