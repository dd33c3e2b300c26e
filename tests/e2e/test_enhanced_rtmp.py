"""Enhanced RTMP end to end: FFmpeg 9 publishes HEVC, AV1 and VP9 and plays them back.

Debian 12's FFmpeg (5.1) predates Enhanced RTMP, so these tests use the static FFmpeg 9 that the
``imageio-ffmpeg`` package ships (a test dependency only; the server never runs it). The player
copies what the server sends into Matroska, and Debian's ffprobe/ffmpeg (which decode all three
codecs) judge it: the codec arrived unchanged, the frame count is right, and it decodes cleanly.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS

pytestmark = pytest.mark.e2e

SECONDS = 4

# (encoder arguments, the codec name ffprobe reports). Small pictures and the fastest presets keep
# the encoders well ahead of real time on a busy 2-core machine.
CODECS = {
    "hevc": (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=30:bframes=0"], "hevc"),
    "av1": (["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "keyint=30"], "av1"),
    "vp9": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1", "-g", "30"], "vp9"),
}


@pytest.fixture(scope="session")
def ffmpeg9() -> str:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30).stdout
    assert "version n" in out or "version " in out, out
    return exe


def _publish_cmd(ffmpeg: str, url: str, codec: str) -> list[str]:
    args, _ = CODECS[codec]
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        *args, "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k",
        "-t", str(SECONDS + 3),
        "-rw_timeout", "10000000",
        "-f", "flv", url,
    ]  # fmt: skip


def _play_cmd(ffmpeg: str, url: str, out: Path) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rw_timeout", "10000000", "-i", url, "-t", str(SECONDS),
        "-c", "copy", "-f", "matroska", str(out),
    ]  # fmt: skip


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_enhanced_rtmp_codec_is_forwarded_unchanged(e2e, ffmpeg9, codec):
    srv = e2e.server()
    url = srv.url(f"live/ex_{codec}")
    pub = helpers.ClientProcess(f"publisher-{codec}", _publish_cmd(ffmpeg9, url, codec), e2e.workdir)
    e2e.clients.append(pub)
    # The player asks before the stream exists and waits for it (the server holds players until
    # a publisher starts), so it sees the stream from its first keyframe.
    time.sleep(0.5)
    out = e2e.workdir / f"{codec}.mkv"
    player = helpers.ClientProcess(f"player-{codec}", _play_cmd(ffmpeg9, url, out), e2e.workdir)
    e2e.clients.append(player)
    player.wait_ok(timeout=60)
    ctx = e2e.context(pub, player)

    streams = {s["codec_type"]: s for s in helpers.streams(out)}
    assert set(streams) == {"video", "audio"}, f"streams {sorted(streams)}\n{ctx}"
    assert streams["video"]["codec_name"] == CODECS[codec][1], f"{streams['video']['codec_name']}\n{ctx}"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert streams["audio"]["codec_name"] == "aac"
    frames = helpers.video_frames(out)
    assert SECONDS * FPS * 0.8 <= len(frames) <= SECONDS * FPS + 5, f"{len(frames)} video frames\n{ctx}"
    assert frames[0].get("key_frame") == 1, f"first frame is not a keyframe\n{ctx}"
    errors = helpers.decode_errors(out)
    assert not errors, f"decoding the {codec} stream reported errors:\n{errors}\n{ctx}"
    pub.wait(timeout=30)
