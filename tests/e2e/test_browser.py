"""A real browser plays what rtmpserver serves: headless Chromium (Debian's package) loads
tests/e2e/browser/players.html, which plays the HLS stream with hls.js and the HTTP-FLV stream with
mpegts.js while ffmpeg publishes over RTMP, and reports back what each player saw.

The page comes from a small HTTP server of the test's own (another origin than rtmpserver, so the
players' requests only work because rtmpserver sends Access-Control-Allow-Origin) and POSTs its
report as JSON to that server; the test then ends Chromium.  No DevTools protocol, no npm browser
download: ``tests/e2e/browser/setup.sh`` (run by ``make system-deps``) installs Chromium with
apt-get and the exact hls.js/mpegts.js versions of package-lock.json with npm.

Debian's Chromium may be built without H.264 decoding.  The page reports what its Media Source
Extensions accept; without H.264 the test still asserts everything short of decoding (the
players load the playlist / stream, their demuxers find H.264 and AAC of the right size) and
says so in a warning, so a reduced run is never mistaken for a full one.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, wait_until

pytestmark = pytest.mark.e2e

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = "/usr/bin/chromium"
SETUP_HINT = "run tests/e2e/browser/setup.sh (make system-deps does)"

SIZE = (384, 216)
ADVANCE = 3.0  # seconds of playback each player must show
PAGE_LIMIT = 25.0  # seconds the page waits for that before it reports anyway
PUBLISH_SECONDS = 30  # longer than any run; the publisher is stopped when the test ends
REPORT_TIMEOUT = PAGE_LIMIT + 15  # browser start-up + page limit + slack


class PageServer:
    """Serves tests/e2e/browser/ on 127.0.0.1 and takes the page's report at POST /result."""

    def __init__(self) -> None:
        self.report: dict | None = None
        self.received = threading.Event()
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(BROWSER_DIR), **kwargs)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/result" and outer.report is None:
                    outer.report = json.loads(body)
                    outer.received.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, fmt, *args):
                outer.requests.append(fmt % args)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Chromium:
    """Headless Chromium on one URL, in its own process group so that all of it can be ended."""

    def __init__(self, url: str, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=workdir)
        self.log_path = workdir / "chromium.stderr.txt"
        self._log = open(self.log_path, "wb")
        self.cmd = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
            # Page console messages go to stderr, attached to the report when the test fails.
            "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={self.profile}", *extra, url,
        ]  # fmt: skip
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        """SIGTERM to the browser's process group, SIGKILL if it is still there after 10 s."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def _require_browser() -> None:
    """Chromium and the player libraries are installed by setup.sh: missing ones fail, never skip."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(CHROMIUM)
    for lib in ("hls.js/dist/hls.min.js", "mpegts.js/dist/mpegts.js"):
        if not (BROWSER_DIR / "node_modules" / lib).is_file():
            missing.append(f"tests/e2e/browser/node_modules/{lib}")
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {SETUP_HINT}", pytrace=False)


def _playlist_segments(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return sum(1 for line in r.read().decode().splitlines() if line.startswith("#EXTINF"))
    except OSError:
        return 0


def _starts(codec: str | None, prefix: str) -> bool:
    return isinstance(codec, str) and codec.startswith(prefix)


def test_hlsjs_and_mpegtsjs_play_in_chromium(e2e, request):
    _require_browser()
    srv = e2e.server({"app:live": {"handlers": "hls, live", "hls.fragment": "1", "hls.window": "5"}}, http={})
    name = "browser"
    hls_url = srv.http_url(f"hls/live/{name}.m3u8")
    flv_url = srv.http_url(f"live/{name}.flv")
    pub = e2e.publish(srv.url(f"live/{name}"), seconds=PUBLISH_SECONDS, size=f"{SIZE[0]}x{SIZE[1]}")
    # hls.js starts three target durations behind the live edge: let three segments exist first.
    assert wait_until(lambda: _playlist_segments(hls_url) >= 3, timeout=15, interval=0.2), (
        f"no 3 HLS segments within 15 s\n{e2e.context(pub)}"
    )

    page = PageServer()
    query = urllib.parse.urlencode({"hls": hls_url, "flv": flv_url, "advance": ADVANCE, "limit": PAGE_LIMIT})
    browser = Chromium(page.url(f"players.html?{query}"), e2e.workdir)
    try:
        got = page.received.wait(timeout=REPORT_TIMEOUT)
        exited = browser.proc.poll()
    finally:
        browser.stop()
        page.close()
    context = (
        f"chromium: {' '.join(browser.cmd)}\n--- chromium output ---\n{helpers.tail(browser.log_text(), 40)}\n"
        f"--- page server ---\n" + "\n".join(page.requests[-20:]) + f"\n{e2e.context(pub)}"
    )
    assert got, f"no report from the page within {REPORT_TIMEOUT} s (chromium exit status {exited})\n{context}"
    report = page.report
    request.node.user_properties.append(("browser_report", json.dumps(report)))
    text = json.dumps(report, indent=1)
    ctx = f"\n--- page report ---\n{helpers.tail(text, 150)}\n{context}"

    assert not report["pageErrors"], f"errors on the page{ctx}"
    assert report["mse"]["hlsjs"] and report["mse"]["mpegtsjs"], f"the players find no MSE{ctx}"

    # What holds whether or not this Chromium decodes H.264: each player got the stream and its
    # demuxer found H.264 and AAC of the published size in it.
    hls, flv = report["hls"], report["flv"]
    assert hls["manifestParsed"] and hls["manifestParsed"]["levels"] == 1, f"hls.js: playlist not parsed{ctx}"
    assert hls["fragsLoaded"] >= 2, f"hls.js loaded {hls['fragsLoaded']} segments{ctx}"
    tracks = hls["tracks"] or {}
    assert _starts(tracks.get("video", {}).get("codec"), "avc1.") and _starts(tracks.get("audio", {}).get("codec"), "mp4a.40."), (
        f"hls.js demuxed tracks {tracks}{ctx}"
    )
    info = flv["mediaInfo"] or {}
    assert info.get("hasVideo") and info.get("hasAudio"), f"mpegts.js media info {info}{ctx}"
    assert _starts(info.get("videoCodec"), "avc1.") and _starts(info.get("audioCodec"), "mp4a.40."), f"mpegts.js codecs {info}{ctx}"
    assert (info.get("width"), info.get("height")) == SIZE and info.get("audioSampleRate") == 44100, f"mpegts.js {info}{ctx}"
    assert flv["statisticsEvents"] > 0 and flv["statistics"]["speed"] > 0, f"mpegts.js statistics {flv['statistics']}{ctx}"

    decodes = report["mse"]["h264"] and report["mse"]["aac"]
    if not decodes:
        # Not a skip: everything up to decoding was asserted above; playback cannot be.
        warnings.warn(
            f"this Chromium ({report['userAgent']}) accepts no H.264/AAC in MSE "
            f"(avc1 {report['mse']['h264']}, mp4a {report['mse']['aac']}): asserted loading and demuxing "
            f"only, not playback",
            stacklevel=1,
        )
        return

    # Playback: segments / tags were appended to MSE, and the clock moved on with decoded frames.
    assert hls["fragsBuffered"] >= 2, f"hls.js buffered {hls['fragsBuffered']} segments{ctx}"
    for player, what in ((hls, "hls.js"), (flv, "mpegts.js")):
        fatal = [e for e in player["errors"] if not isinstance(e, dict) or e.get("fatal", True)]
        assert not fatal, f"{what}: errors {fatal}{ctx}"
        assert player["finishedBy"] == "advanced", (
            f"{what}: currentTime went from {player['firstTime']} to {player['lastTime']}, not {ADVANCE} s on{ctx}"
        )
        final = player["final"]
        assert (final["width"], final["height"]) == SIZE, f"{what}: video element shows {final['width']}x{final['height']}{ctx}"
        assert final["decodedFrames"] >= ADVANCE * FPS / 2, f"{what}: {final['decodedFrames']} frames decoded{ctx}"
        assert final["error"] is None, f"{what}: media element error {final['error']}{ctx}"
