"""The dashboard in headless Chromium: ffmpeg publishes, the page served by rtmpserver at ``/`` lists
the stream with its codecs and size, draws its bitrate graph, plays it (``?play=live/NAME``, mpegts.js
over HTTP-FLV), and, once the operator has typed the token, starts a recording with its button.

The page is driven and read through Chromium's DevTools protocol (``--remote-debugging-port``) over
a plain WebSocket, as an operator would use it: typing into the token field, clicking the button,
reading what the page shows.  A screenshot is kept with the test's files and, with
``RTMPSERVER_UPDATE_SCREENSHOT=1``, written to docs/dashboard.png.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, wait_until
from tests.e2e.test_browser import Chromium, _require_browser
from tests.e2e.test_ws_flv import ws_connect

pytestmark = pytest.mark.e2e

TOKEN = "dashboard-test-token-0123456789"
DOCS_SHOT = helpers.REPO_ROOT / "docs" / "dashboard.png"


class DevTools:
    """Just enough of the DevTools protocol: commands over the page target's WebSocket."""

    def __init__(self, port: int, path: str) -> None:
        self.sock, self.buf = ws_connect(port, path, timeout=10)
        self.next_id = 0

    def _send(self, text: bytes) -> None:
        mask = os.urandom(4)  # RFC 6455 5.3: a client masks its frames
        n = len(text)
        head = b"\x81" + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
                          if n < 65536 else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))

    def _frame(self) -> tuple[int, bytes]:
        def need(k: int) -> None:
            while len(self.buf) < k:
                data = self.sock.recv(1 << 20)
                assert data, "DevTools connection closed"
                self.buf += data

        need(2)
        op, n, i = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        if n == 126:
            need(4)
            n, i = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            need(10)
            n, i = int.from_bytes(self.buf[2:10], "big"), 10
        need(i + n)
        fin = self.buf[0] & 0x80
        payload, self.buf = self.buf[i:i + n], self.buf[i + n:]
        return (op if fin else -op), payload

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        want = self.next_id
        self._send(json.dumps({"id": want, "method": method, "params": params}).encode())
        parts = b""
        while True:
            op, payload = self._frame()
            parts += payload
            if op < 0 or op == 0 and not parts:  # a fragment: more to come
                continue
            msg, parts = json.loads(parts), b""
            if msg.get("id") == want:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def close(self) -> None:
        self.sock.close()


STATE_JS = """JSON.stringify({
  updates: dashboard.updates, error: dashboard.lastError,
  streams: [...dashboard.streams.entries()].map(([k, s]) => ({key: k, points: s.history.length, data: s.data})),
  graph: (document.querySelector('[data-key="live/dash"] svg.graph polyline') || {getAttribute: () => ""}).getAttribute("points"),
  text: (document.querySelector('[data-key="live/dash"]') || {innerText: ""}).innerText,
  player: dashboard.player && {currentTime: dashboard.player.currentTime, decoded: dashboard.player.decodedFrames,
                               dropped: dashboard.player.droppedFrames, errors: dashboard.player.errors},
  mse: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"'),
})"""


def _devtools_port(profile: Path, timeout: float = 15.0) -> int:
    f = profile / "DevToolsActivePort"
    assert wait_until(lambda: f.exists() and f.read_text().strip(), timeout, 0.1), "Chromium wrote no DevToolsActivePort"
    return int(f.read_text().split()[0])


def test_dashboard_lists_plays_and_records_a_live_stream(e2e):
    _require_browser()
    rec_dir = e2e.workdir / "rec"
    srv = e2e.server({"app:live": {"handlers": "record, live", "record.mode": "manual",
                                   "record.path": f"{rec_dir}/{{app}}/{{name}}-{{time}}.flv"}},
                     http={"control": "yes", "token": TOKEN})
    pub = e2e.publish(srv.url("live/dash"), seconds=60, size="640x360")
    streams = srv.http_url("api/v1/streams")

    def live() -> bool:
        req = urllib.request.Request(streams, headers={"authorization": f"Bearer {TOKEN}"})
        return "dash" in urllib.request.urlopen(req, timeout=5).read().decode()

    assert wait_until(live, timeout=15, interval=0.2), e2e.context(pub)

    browser = Chromium(srv.http_url("?play=live/dash"), e2e.workdir,
                       extra=("--window-size=1280,900", "--remote-debugging-port=0"))
    tools = None
    states: list[dict] = []
    try:
        port = _devtools_port(Path(browser.profile))
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
        page = next(p for p in pages if p["type"] == "page")
        tools = DevTools(port, page["webSocketDebuggerUrl"].split(str(port), 1)[1])

        def state() -> dict:
            s = json.loads(tools.evaluate(STATE_JS) or "{}") if tools.evaluate("typeof dashboard") == "object" else {}
            states.append(s)
            return s

        # Without the token the API answers 401 and the page says so.
        assert wait_until(lambda: "token" in (state().get("error") or ""), 15, 0.3), states[-1:]
        tools.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)}; "
                       "document.getElementById('auth').requestSubmit(); true")

        def listed() -> bool:
            s = state()
            return any(st["key"] == "live/dash" and st["points"] >= 4 for st in s.get("streams", []))

        assert wait_until(listed, 20, 0.5), states[-1:]
        s = states[-1]
        st = next(x for x in s["streams"] if x["key"] == "live/dash")
        video = st["data"]["meta"]["video"]
        assert (video.get("codec"), video.get("width"), video.get("height")) == ("H264", 640, 360), video
        assert "H264" in s["text"] and "640×360" in s["text"] and "AAC" in s["text"], s["text"]
        points = [p.split(",") for p in s["graph"].split()]
        assert len(points) >= 4 and any(float(y) < 100 for _, y in points), s["graph"]  # a rate above zero

        # The player (started by ?play=) advances.
        first = state()["player"]
        assert first is not None, states[-1]
        if s["mse"]:
            t0 = time.monotonic()
            assert wait_until(lambda: (state()["player"] or {}).get("currentTime", 0) >= 3.0, 25, 0.5), states[-1]
            p = states[-1]["player"]
            assert p["decoded"] >= FPS and not p["errors"], (p, time.monotonic() - t0)

        # The WebSocket-FLV button: the page's CSP lets it connect to ws:// on its own origin.
        tools.evaluate("[...document.querySelectorAll('[data-key=\"live/dash\"] button')]"
                       ".find((b) => b.textContent === 'play WebSocket-FLV').click(); true")
        assert wait_until(lambda: (state()["player"] or {}).get("currentTime") is not None, 5, 0.3)
        assert tools.evaluate("dashboard.player.url").startswith("ws://"), states[-1]
        if s["mse"]:
            assert wait_until(lambda: (state()["player"] or {}).get("currentTime", 0) >= 2.0, 25, 0.5), states[-1]
            assert not states[-1]["player"]["errors"], states[-1]["player"]
        assert wait_until(lambda: "ws-flv" in tools.evaluate("JSON.stringify(dashboard.clients.map((c) => c.protocol))"),
                          10, 0.5), "the page never listed its own WebSocket-FLV viewer"

        # Record button: the server starts a recording, the page shows it.
        tools.evaluate("[...document.querySelectorAll('[data-key=\"live/dash\"] button')]"
                       ".find((b) => b.textContent === 'record').click(); true")
        assert wait_until(lambda: any(x["key"] == "live/dash" and x["data"]["recordings"]
                                      for x in state().get("streams", [])), 15, 0.5), states[-1]
        assert "rec/live/dash-" in states[-1]["text"], states[-1]["text"]

        shot = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        (e2e.workdir / "dashboard.png").write_bytes(shot)
        if os.environ.get("RTMPSERVER_UPDATE_SCREENSHOT") == "1":
            DOCS_SHOT.write_bytes(shot)
    finally:
        if tools is not None:
            tools.close()
        browser.stop()
    assert TOKEN not in helpers.tail(srv.log_text(), 100000)  # the token never reaches the log

