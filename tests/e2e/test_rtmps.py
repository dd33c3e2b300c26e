"""RTMPS: the same live stream over TLS (self-signed certificate; ffmpeg does not verify by default)."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, check_media

pytestmark = pytest.mark.e2e


def test_rtmps_push_and_pull(e2e):
    srv = e2e.server(need_process=True)
    pub = e2e.publish(srv.url("live/secure", tls=True), seconds=6)
    helpers.wait_live(srv.port, "live", "secure")
    over_tls = e2e.play(srv.url("live/secure", tls=True), seconds=3, name="tls-player")
    # One hub for both listeners: a plain RTMP player sees what came in over TLS.
    plain = e2e.play(srv.url("live/secure"), seconds=3, name="plain-player")
    for player in (over_tls, plain):
        player.wait_ok(timeout=20)
    for player in (over_tls, plain):
        check_media(player.out_path, min_video_frames=3 * FPS - 9, max_video_frames=3 * FPS + 5,
                    min_audio_frames=120, context=e2e.context(pub, player))  # fmt: skip
    pub.wait_ok(timeout=15)


def test_tls_listener_presents_the_configured_certificate(e2e):
    srv = e2e.server(need_process=True)
    ctx = ssl.create_default_context(cafile=str(e2e.workdir / "server.crt"))
    with socket.create_connection(("127.0.0.1", srv.ssl_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            cert = tls.getpeercert()
    assert dict(x[0] for x in cert["subject"])["commonName"] == "localhost"
