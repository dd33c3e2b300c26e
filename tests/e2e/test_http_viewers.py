"""HTTP viewers end to end: one app's auth and notify decide RTMP, HTTP-FLV and HLS players alike.

ffmpeg publishes, ffmpeg/ffprobe play over RTMP, HTTP-FLV and HLS, urllib makes the refused and
guessed requests; a real notify backend (the standard library's http.server) records the calls.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from rtmpserver.handlers.auth import sign_url
from tests.e2e.helpers import ffprobe_json, wait_until
from tests.e2e.test_notify import Backend

pytestmark = pytest.mark.e2e

SECRET = "e2e-viewer-secret-0123456789"
KEY = "viewer-key-0123456"
VIEWER_TIMEOUT = 3  # hls_viewer_timeout


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()
    assert b.errors == [], f"the backend failed on a request: {b.errors}"


def test_auth_and_notify_decide_rtmp_flv_and_hls_viewers(e2e, backend):
    srv = e2e.server(
        {"app:live": {
            "handlers": "auth, notify, hls, live",
            "auth.publish": "none", "auth.play": "key, signed", "auth.play_keys": KEY, "auth.secret": SECRET,
            "notify.on_play": backend.url("/play"), "notify.on_play_done": backend.url("/play_done"),
            "hls.fragment": "1", "hls.window": "3",
        }},
        http={"hls_viewer_timeout": str(VIEWER_TIMEOUT)},
    )  # fmt: skip
    pub = e2e.publish(srv.url("live/cam"), seconds=25)
    m3u8 = srv.http_url("hls/live/cam.m3u8")
    flv = srv.http_url("live/cam.flv")
    assert wait_until(lambda: _get(f"{m3u8}?key={KEY}")[0] == 200, 15), f"no playlist\n{e2e.context(pub)}"
    backend.calls.clear()  # that poll was a viewer too; judged below with fresh ones
    assert wait_until(lambda: len(backend.forms("play_done")) >= 1, VIEWER_TIMEOUT + 5)
    backend.calls.clear()

    # Refused alike: RTMP play, HTTP-FLV, HLS playlist, a guessed segment URL.
    rtmp = e2e.play(srv.url("live/cam"), seconds=1)
    assert rtmp.wait(timeout=20) != 0, f"an RTMP player without a key was served\n{e2e.context(rtmp)}"
    status, text = _get(flv)
    assert status == 403 and b"key" in text, (status, text)
    assert _get(f"{flv}?key=wrong-key-000000")[0] == 403
    assert _get(m3u8)[0] == 403
    assert _get(srv.http_url("hls/live/cam-1.ts"))[0] == 403
    status, text = _get(f"{m3u8}?key={KEY}")
    assert status == 200
    uri = next(line for line in text.decode().splitlines() if ".ts?vt=" in line)
    assert _get(srv.http_url(f"hls/live/{uri}"))[0] == 200  # the playlist's own URI works
    forged = f"{uri.split('?')[0]}?vt=1.{int(time.time()) + 60}.{'0' * 32}"
    assert _get(srv.http_url(f"hls/live/{forged}"))[0] == 403
    assert backend.forms("play") == [backend.forms("play")[0]], "refused viewers reached notify"

    # Allowed alike, with a key or a signed URL; ffprobe reads what it is given.
    signed = sign_url(SECRET, "live", "cam", int(time.time()) + 600, action="play")
    flv_probe = ffprobe_json(f"{flv}?key={KEY}", "-show_streams")["streams"]
    hls_probe = ffprobe_json(f"{m3u8}?{signed.lstrip('?')}", "-show_streams")["streams"]
    for streams in (flv_probe, hls_probe):
        assert {s["codec_type"] for s in streams} == {"video", "audio"}, streams
    player = e2e.play(srv.url(f"live/cam?key={KEY}"), seconds=1.5)
    player.wait_ok(timeout=25)

    # notify heard every viewer that was let through: play, then play_done (HLS after its idle timeout).
    ctx = e2e.context(pub, player) + "\n" + srv.log_text()[-3000:]
    assert wait_until(lambda: len(backend.forms("play_done")) >= 4, VIEWER_TIMEOUT + 10), f"{backend.calls}\n{ctx}"
    plays = backend.forms("play")
    done = backend.forms("play_done")
    assert sorted(f["clientid"] for f in plays) == sorted(f["clientid"] for f in done)
    assert len(plays) == 4, plays  # urllib's HLS viewer, ffprobe HTTP-FLV, ffprobe HLS, ffmpeg RTMP
    assert all(p["name"] == "cam" and p["addr"] == "127.0.0.1" for p in plays), plays
    # auth takes its key and signature out of the arguments before notify sees them.
    assert not any({"key", "sign"} & set(p) for p in plays), [sorted(p) for p in plays]
    http_plays = [p for p in plays if p["tcurl"].startswith("http://")]
    assert len(http_plays) == 3 and not any("?" in p["tcurl"] for p in http_plays), http_plays
    pub.wait_ok(timeout=30)
