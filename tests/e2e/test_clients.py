"""Players other than FFmpeg: librtmp (rtmpdump), the library OBS and many players are built on."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.e2e.helpers import check_media, wait_live

pytestmark = pytest.mark.e2e


def test_librtmp_player_gets_a_clean_stream(e2e, tmp_path):
    rtmpdump = shutil.which("rtmpdump")
    assert rtmpdump, "rtmpdump (Debian package rtmpdump) is missing: `make test` installs it"
    srv = e2e.server()
    url = srv.url("live/librtmp")
    pub = e2e.publish(url, seconds=7)
    wait_live(srv.port, "live", "librtmp")
    out = tmp_path / "librtmp.flv"
    # A live pull never ends by itself: rtmpdump runs for 4 s and is then stopped.
    p = subprocess.Popen([rtmpdump, "-q", "-v", "-r", url, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(4)
        assert p.poll() is None, f"rtmpdump ended early ({p.returncode}): {p.stderr.read().decode(errors='replace')[-2000:]}"
    finally:
        p.terminate()
        p.wait(timeout=10)
    # ~4 s at 30 fps; the file starts at a keyframe from the GOP cache.
    summary = check_media(out, min_video_frames=90, max_video_frames=4 * 30 + 45, min_audio_frames=120, context=e2e.context(pub))
    assert summary.video["codec_name"] == "h264"
    pub.wait_ok(timeout=15)
