"""The auth handler end to end: ffmpeg publishes with a stream key or a signed URL.

A refusal must come before ``NetStream.Publish.Start``: ffmpeg then reports the server's error and
exits non-zero instead of streaming into nothing.
"""

from __future__ import annotations

import time

import pytest

from rtmpserver.handlers.auth import sign_url
from tests.e2e import helpers
from tests.e2e.helpers import FPS, check_media, wait_until

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-0123456789"
KEY = "Kx7-pQ2_v9Lm"  # maps to stream "alice"


def auth_server(e2e, **settings: str):
    keys = {"handlers": "auth", **{f"auth.{k}": v for k, v in settings.items()}}
    return e2e.server({"app:live": keys}, need_process=True)


def _media(seconds: float) -> dict:
    n = int(seconds * FPS)
    return {"min_video_frames": n - n // 5, "max_video_frames": n + 5, "min_audio_frames": int(seconds * 30)}


def _refused(e2e, pub, srv, what: str) -> None:
    rc = pub.wait(timeout=20)
    ctx = e2e.context(pub)
    assert rc != 0, f"ffmpeg published although {what}\n{ctx}"
    assert "Publishing needs" in pub.stderr_text(), f"ffmpeg did not report the server's refusal\n{ctx}"
    assert wait_until(lambda: "refused by auth" in srv.log_text(), 5), "no refusal in the server log"


def test_stream_key_publishes_under_the_mapped_name_and_a_player_gets_media(e2e):
    srv = auth_server(e2e, stream_keys=f"alice:{KEY}")
    pub = e2e.publish(srv.url(f"live/{KEY}"), seconds=6)
    helpers.wait_live(srv.port, "live", "alice")
    player = e2e.play(srv.url("live/alice"), seconds=3)
    player.wait_ok(timeout=25)
    check_media(player.out_path, **_media(3), context=e2e.context(pub, player))
    pub.wait_ok(timeout=20)
    log = srv.log_text()
    assert "allowed by auth" in log and "publishing as alice" in log
    assert KEY not in log, "the stream key appears in the server log"


def test_wrong_stream_key_is_refused_before_publish_start(e2e):
    srv = auth_server(e2e, stream_keys=f"alice:{KEY}")
    pub = e2e.publish(srv.url("live/not-the-key"), seconds=5)
    _refused(e2e, pub, srv, "its key is wrong")
    pub = e2e.publish(srv.url(f"live/alice?key={KEY}x"), seconds=5)
    _refused(e2e, pub, srv, "its ?key= is wrong")
    assert "not-the-key" not in srv.log_text(), "a refused stream name (maybe a mistyped key) was logged"


def test_signed_url_publish_and_play_and_expired_signature_refused(e2e):
    srv = auth_server(e2e, publish="signed", play="signed", secret=SECRET)
    now = int(time.time())
    expired = sign_url(SECRET, "live", "cam", now - 5)
    pub = e2e.publish(srv.url(f"live/cam?{expired}"), seconds=5)
    _refused(e2e, pub, srv, "its signature had expired")
    assert "signature expired" in srv.log_text()

    pub = e2e.publish(srv.url(f"live/cam?{sign_url(SECRET, 'live', 'cam', now + 600)}"), seconds=6)
    time.sleep(1.5)
    # A player without a signature gets nothing; one with a play signature gets the stream.
    unsigned = e2e.play(srv.url("live/cam"), seconds=2)
    assert unsigned.wait(timeout=20) != 0, f"an unsigned player was served\n{e2e.context(unsigned)}"
    assert unsigned.reader.video_frames() == []
    player = e2e.play(srv.url(f"live/cam?{sign_url(SECRET, 'live', 'cam', now + 600, action='play')}"), seconds=2)
    player.wait_ok(timeout=25)
    check_media(player.out_path, **_media(2), context=e2e.context(pub, player))
    pub.wait_ok(timeout=20)
