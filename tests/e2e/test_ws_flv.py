"""WebSocket-FLV end to end: mpegts.js in headless Chromium plays ws://127.0.0.1:PORT/live/NAME.flv
while ffmpeg publishes over RTMP, and a plain Python WebSocket client checks the messages: the first
is the FLV header, each later one exactly one FLV tag, and the bytes put together are an FLV file
that ffprobe/ffmpeg decode cleanly.

The browser part reuses tests/e2e/test_browser.py's page server, Chromium runner and players.html
(mpegts.js picks its WebSocket loader for a ws:// URL).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.parse
import urllib.request
import warnings

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, wait_until
from tests.e2e.test_browser import (
    ADVANCE,
    PAGE_LIMIT,
    REPORT_TIMEOUT,
    SIZE,
    Chromium,
    PageServer,
    _require_browser,
)

pytestmark = pytest.mark.e2e


def ws_connect(port: int, path: str, timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    """RFC 6455 4.1 opening handshake; returns the socket and whatever followed the 101 headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"closed during the handshake: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def ws_messages(sock: socket.socket, buf: bytes, seconds: float) -> list[tuple[int, bytes]]:
    """Unmasked server frames (RFC 6455 5.2) received for ``seconds``, as (opcode, payload)."""
    out = []
    deadline = time.monotonic() + seconds
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        while len(buf) >= 2:
            fin, op, n, i = buf[0] & 0x80, buf[0] & 0x0F, buf[1] & 0x7F, 2
            assert not buf[1] & 0x80, "a server frame must not be masked"
            if n == 126:
                if len(buf) < 4:
                    break
                n, i = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, i = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < i + n:
                break
            assert fin, "our messages are single frames"
            out.append((op, buf[i:i + n]))
            buf = buf[i + n:]
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        buf += data
    return out


def test_python_client_gets_one_flv_tag_per_message(e2e):
    srv = e2e.server(http={})
    pub = e2e.publish(srv.url("live/wspy"), seconds=30)
    assert wait_until(lambda: "wspy" in urllib.request.urlopen(srv.http_url("api/v1/streams"), timeout=5).read().decode(),
                      timeout=15, interval=0.2), e2e.context(pub)
    sock, rest = ws_connect(srv.http_port, "/live/wspy.flv")
    try:
        msgs = ws_messages(sock, rest, 4.0)
    finally:
        sock.close()
    assert msgs and all(op == 2 for op, _ in msgs), f"opcodes {sorted({op for op, _ in msgs})}"
    first, *tags = [p for _, p in msgs]
    assert first[:3] == b"FLV" and len(first) == 13, first
    last_ts = -1
    for m in tags:
        size = int.from_bytes(m[1:4], "big")
        assert len(m) == 11 + size + 4 and int.from_bytes(m[-4:], "big") == 11 + size, "one whole tag per message"
        ts = int.from_bytes(m[4:7], "big") | m[7] << 24
        assert ts >= last_ts
        last_ts = ts
    video = [m for m in tags if m[0] == 9 and m[12] == 1]  # AVC NALUs
    assert video and video[0][11] >> 4 == 1, "video starts at a keyframe"
    assert len(video) >= 2 * FPS, f"{len(video)} video frames in 4 s"
    path = e2e.workdir / "ws.flv"
    path.write_bytes(b"".join(p for _, p in msgs))
    helpers.check_media(path, min_video_frames=2 * FPS, context=e2e.context(pub))


def test_mpegtsjs_plays_websocket_flv_in_chromium(e2e, request):
    _require_browser()
    srv = e2e.server(http={})
    pub = e2e.publish(srv.url("live/wsbrowser"), seconds=40, size=f"{SIZE[0]}x{SIZE[1]}")
    assert wait_until(lambda: "wsbrowser" in urllib.request.urlopen(srv.http_url("api/v1/streams"), timeout=5).read().decode(),
                      timeout=15, interval=0.2), e2e.context(pub)
    ws_url = f"ws://127.0.0.1:{srv.http_port}/live/wsbrowser.flv"
    page = PageServer()
    query = urllib.parse.urlencode({"flv": ws_url, "advance": ADVANCE, "limit": PAGE_LIMIT})
    browser = Chromium(page.url(f"players.html?{query}"), e2e.workdir)
    clients = None
    try:
        got = page.received.wait(timeout=REPORT_TIMEOUT)
        # The server's view while the page still plays (or just finished): a ws-flv client, no drops.
        clients = json.loads(urllib.request.urlopen(srv.http_url("api/v1/clients"), timeout=5).read())["clients"]
    finally:
        browser.stop()
        page.close()
    context = (f"--- chromium output ---\n{helpers.tail(browser.log_text(), 40)}\n"
               f"--- page server ---\n" + "\n".join(page.requests[-20:]) + f"\n{e2e.context(pub)}")
    assert got, f"no report from the page within {REPORT_TIMEOUT} s\n{context}"
    report = page.report
    request.node.user_properties.append(("browser_report", json.dumps(report)))
    ctx = f"\n--- page report ---\n{helpers.tail(json.dumps(report, indent=1), 150)}\n{context}"
    assert not report["pageErrors"], f"errors on the page{ctx}"
    flv = report["flv"]
    info = flv["mediaInfo"] or {}
    assert info.get("hasVideo") and info.get("hasAudio") and (info.get("width"), info.get("height")) == SIZE, f"mpegts.js {info}{ctx}"
    assert str(info.get("videoCodec", "")).startswith("avc1.") and str(info.get("audioCodec", "")).startswith("mp4a.40."), ctx
    ws = [c for c in clients or [] if c.get("protocol") == "ws-flv"]
    assert ws and all(c["dropped"] == 0 for c in ws), f"server side ws-flv clients {ws}{ctx}"
    if not (report["mse"]["h264"] and report["mse"]["aac"]):
        warnings.warn(f"this Chromium accepts no H.264/AAC in MSE: asserted demuxing only ({report['userAgent']})",
                      stacklevel=1)
        return
    fatal = [e for e in flv["errors"] if not isinstance(e, dict) or e.get("fatal", True)]
    assert not fatal, f"mpegts.js errors {fatal}{ctx}"
    assert flv["finishedBy"] == "advanced", f"currentTime {flv['firstTime']} -> {flv['lastTime']}{ctx}"
    final = flv["final"]
    assert final["decodedFrames"] >= ADVANCE * FPS / 2, f"{final['decodedFrames']} frames decoded{ctx}"
    assert final["droppedFrames"] == 0, f"{final['droppedFrames']} frames dropped by the video element{ctx}"
    assert final["error"] is None, ctx


def test_wss_and_rtmpts_on_an_https_listener(e2e):
    """wss:// (the upgrade hands a TLS connection over) and rtmpts:// (RTMPT in HTTPS) on an ssl: listener."""
    import ssl

    port, ssl_port, https_port = helpers.free_port(), helpers.free_port(), helpers.free_port()
    sections = e2e.default_sections(port, ssl_port)
    key, cert = e2e.workdir / "server.key", e2e.workdir / "server.crt"
    sections["http:main"] = {"listen": f"ssl:{https_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                             "rtmpt": "yes", "stat": "no", "api": "no", "metrics": "no"}
    srv = e2e.start_process(e2e.write_config(sections), port, ssl_port, http_port=https_port)
    pub = e2e.publish(srv.url("live/secure"), seconds=30)
    player = e2e.play(f"rtmpts://127.0.0.1:{https_port}/live/secure", seconds=3, name="ffmpeg-rtmpts")
    player.wait_ok(timeout=30)
    helpers.check_media(player.out_path, min_video_frames=FPS, context=e2e.context(pub, player))

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", https_port), timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    key64 = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /live/secure.flv HTTP/1.1\r\nHost: localhost:{https_port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key64}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, buf
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    try:
        msgs = ws_messages(sock, rest, 3.0)
    finally:
        sock.close()
    assert msgs[0][1][:3] == b"FLV"
    video = [p for op, p in msgs[1:] if op == 2 and p[0] == 9 and p[12] == 1]
    assert len(video) >= FPS, f"{len(video)} video frames over wss in 3 s\n{helpers.tail(srv.log_text())}"
