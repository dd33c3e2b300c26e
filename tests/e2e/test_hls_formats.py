"""HLS formats end to end: FFmpeg publishes over RTMP, FFmpeg/ffprobe read the server's live
playlists over HTTP -- MPEG-TS and fMP4, with and without LL-HLS parts, H.264 from Debian's
FFmpeg and HEVC/AV1 over Enhanced RTMP from FFmpeg 9 (imageio-ffmpeg, as in
test_enhanced_rtmp.py) -- and the files ``hls.path`` writes are a playlist FFmpeg reads too.
A blocking playlist request (``_HLS_msn``) is answered as soon as the next segment exists."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import wait_until
from tests.e2e.test_enhanced_rtmp import CODECS, _publish_cmd, ffmpeg9  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

READ_SECONDS = 3


def _get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def _segments(url: str) -> int:
    try:
        return _get(url, 5).count("#EXTINF")
    except OSError:
        return 0


def _hls_server(e2e, **hls):
    settings = {"handlers": "hls, live", "hls.fragment": "1", "hls.window": "6", **{f"hls.{k}": v for k, v in hls.items()}}
    return e2e.server({"app:live": settings}, http={})


def _read(e2e, url: str, name: str, ffmpeg: str = "ffmpeg"):
    out = e2e.workdir / f"{name}.mkv"
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-live_start_index", "0",
           "-i", url, "-t", str(READ_SECONDS), "-c", "copy", "-f", "matroska", str(out)]  # fmt: skip
    reader = helpers.ClientProcess(f"reader-{name}", cmd, e2e.workdir)
    e2e.clients.append(reader)
    reader.wait_ok(timeout=60)
    return out


@pytest.mark.parametrize("fmt, low_latency", [("ts", "no"), ("fmp4", "no"), ("ts", "yes"), ("fmp4", "yes")])
def test_ffmpeg_reads_live_h264_playlists(e2e, fmt, low_latency):
    srv = _hls_server(e2e, format=fmt, low_latency=low_latency)
    name = f"h264_{fmt}_{low_latency}"
    url = srv.http_url(f"hls/live/{name}.m3u8")
    pub = e2e.publish(srv.url(f"live/{name}"), seconds=20)
    assert wait_until(lambda: _segments(url) >= 3, timeout=20, interval=0.2), e2e.context(pub)
    text = _get(url)
    assert ("#EXT-X-MAP:URI=" in text) == (fmt == "fmp4")
    assert ("#EXT-X-PART:" in text) == (low_latency == "yes")
    out = _read(e2e, url, name)
    streams = {s["codec_type"]: s for s in helpers.streams(out)}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac", e2e.context(pub)
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    frames = len(helpers.video_frames(out))
    assert frames >= READ_SECONDS * helpers.FPS - 2, f"{frames} frames\n{e2e.context(pub)}"
    assert helpers.decode_errors(out) == ""


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_enhanced_rtmp_codecs_play_from_fmp4_playlists(e2e, ffmpeg9, codec):  # noqa: F811
    srv = _hls_server(e2e, format="fmp4", low_latency="yes")
    name = f"ex_{codec}"
    url = srv.http_url(f"hls/live/{name}.m3u8")
    pub = helpers.ClientProcess(f"publisher-{codec}", _publish_cmd(ffmpeg9, srv.url(f"live/{name}"), codec), e2e.workdir)
    e2e.clients.append(pub)
    assert wait_until(lambda: _segments(url) >= 3, timeout=30, interval=0.2), e2e.context(pub)
    init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', _get(url)).group(1)
    init = urllib.request.urlopen(srv.http_url(f"hls/live/{init_uri}"), timeout=10).read()
    assert (b"hvcC" if codec == "hevc" else b"av1C") in init
    out = _read(e2e, url, name)
    streams = {s["codec_type"]: s for s in helpers.streams(out)}
    assert streams["video"]["codec_name"] == CODECS[codec][1], e2e.context(pub)
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert streams["audio"]["codec_name"] == "aac"
    assert len(helpers.video_frames(out)) >= READ_SECONDS * helpers.FPS - 2
    assert helpers.decode_errors(out) == ""


def test_hls_path_files_play_and_blocking_reload_waits_for_the_next_segment(e2e):
    hls_dir = e2e.workdir / "hls"
    srv = _hls_server(e2e, format="fmp4", low_latency="yes", path=str(hls_dir))
    url = srv.http_url("hls/live/disk.m3u8")
    pub = e2e.publish(srv.url("live/disk"), seconds=30)
    playlist = hls_dir / "live" / "disk.m3u8"
    assert wait_until(lambda: playlist.exists() and playlist.read_text().count("#EXTINF") >= 3, timeout=20), e2e.context(pub)
    # The files on disk make a playlist of their own (no tokens, no parts) that FFmpeg reads.
    text = playlist.read_text()
    assert 'URI="disk-init0.mp4"' in text and "#EXT-X-PART" not in text and "?vt=" not in text
    out = e2e.workdir / "disk.mkv"
    reader = helpers.ClientProcess("reader-disk", ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
                                                   "-live_start_index", "0", "-i", str(playlist), "-t", str(READ_SECONDS),
                                                   "-c", "copy", "-f", "matroska", str(out)],
                                   e2e.workdir)  # fmt: skip
    e2e.clients.append(reader)
    reader.wait_ok(timeout=60)
    assert len(helpers.video_frames(out)) >= READ_SECONDS * helpers.FPS - 2 and helpers.decode_errors(out) == ""

    # Blocking reload over real HTTP: ask for the segment after the last finished one.
    live = _get(url)
    last = max(int(m) for m in re.findall(r"^disk-(\d+)\.m4s\?", live, re.M))
    started = time.monotonic()
    answer = _get(f"{url}?_HLS_msn={last + 1}", timeout=15)
    waited = time.monotonic() - started
    assert re.search(rf"^disk-{last + 1}\.m4s\?", answer, re.M), answer
    assert 0.05 < waited < 3.5, f"answered after {waited:.2f} s"
