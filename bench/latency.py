"""Glass-to-glass latency of each delivery: RTMP, HTTP-FLV, WebSocket-FLV, HLS and LL-HLS.

    .venv/bin/python bench/latency.py [--seconds 15] [--warmup 8]
                                      [--only rtmp,httpflv,httpflv-browser,hls,llhls[,wsflv]] [--json FILE]

One rtmpserver (twistd) with ``[app:live] handlers = hls, live`` (HLS defaults: MPEG-TS,
``hls.fragment = 2``) and ``[app:ll] handlers = hls, live`` with ``hls.format = fmp4``,
``hls.low_latency = yes`` (``hls.part = 0.5``), and an ``[http:main]`` listener; all on 127.0.0.1.

For each delivery a fresh publisher (tests/e2e/barcode.py) hands numbered frames to FFmpeg at
30 fps (x264 ultrafast/zerolatency, GOP 1 s), noting the wall-clock time of each; the number is
burned into the picture as a barcode.  The player reads the barcode of every picture it shows:

- RTMP and HTTP-FLV: FFmpeg as the player (``-fflags nobuffer -flags low_delay``), time = when
  the decoded picture comes out of FFmpeg;
- HTTP-FLV (``httpflv-browser``) and WebSocket-FLV (``wsflv``, ``ws://.../APP/STREAM.flv``, needs
  a server with WebSocket-FLV): mpegts.js in headless Chromium with its low-latency settings
  (``enableStashBuffer: false``, ``liveBufferLatencyChasing: true``);
- HLS and LL-HLS: hls.js (tests/e2e/browser, default settings; ``lowLatencyMode`` for LL-HLS) in
  headless Chromium, time = the presentation time ``requestVideoFrameCallback`` reports.

Latency = shown - handed to the encoder, so encoding, RTMP ingest, segmenting/packaging, HTTP,
the player's buffer and decoding are all in it.  The first ``--warmup`` seconds of each player
are left out (start-up, catching up after the GOP cache); the table gives median, p10 and p90
over the next ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.e2e.barcode import BarcodePublisher, FFmpegReader  # noqa: E402
from tests.e2e.test_browser import Chromium, PageServer  # noqa: E402

DELIVERIES = ("rtmp", "httpflv", "httpflv-browser", "hls", "llhls")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir: str, part: float = 0.5) -> None:
        self.dir = workdir
        self.rtmp = free_port()
        self.http = free_port()
        conf = os.path.join(workdir, "server.ini")
        with open(conf, "w") as f:
            f.write(
                f"[server]\nlisten = tcp:{self.rtmp}:interface=127.0.0.1\n"
                "[app:live]\nhandlers = hls, live\n"
                f"[app:ll]\nhandlers = hls, live\nhls.format = fmp4\nhls.low_latency = yes\nhls.part = {part}\n"
                f"[http:main]\nlisten = tcp:{self.http}:interface=127.0.0.1\n"
            )
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.log = os.path.join(workdir, "server.log")
        self.proc = subprocess.Popen([twistd, "-n", "--pidfile=", f"--logfile={self.log}", "rtmp", "--config", conf],
                                     cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 15
        for port in (self.rtmp, self.http):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"server did not start; see {self.log}") from None
                    time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def summarize(latencies: list[float]) -> dict:
    if not latencies:
        return {"n": 0}
    q = statistics.quantiles(latencies, n=10) if len(latencies) > 1 else [latencies[0]] * 9
    return {"n": len(latencies), "median_ms": round(statistics.median(latencies)), "p10_ms": round(q[0]),
            "p90_ms": round(q[-1])}  # fmt: skip


def window(samples: list[tuple[int, float]], pub: BarcodePublisher, warmup: float, seconds: float) -> list[float]:
    """Latencies of the samples shown between ``warmup`` and ``warmup + seconds`` after the first."""
    if not samples:
        return []
    first = samples[0][1]
    out = []
    for n, shown in samples:
        if warmup <= shown - first < warmup + seconds:
            ms = pub.latency_ms(n, shown)
            if ms is not None:
                out.append(ms)
    return out


def measure_ffmpeg(url: str, rtmp_url: str, warmup: float, seconds: float, workdir: str) -> dict:
    pub = BarcodePublisher(rtmp_url, warmup + seconds + 15)
    time.sleep(1.5)
    reader = FFmpegReader(url, stderr=open(os.path.join(workdir, "reader.stderr"), "wb"))
    deadline = time.monotonic() + warmup + seconds + 20
    try:
        while time.monotonic() < deadline:
            if reader.shown and reader.shown[-1][1] - reader.shown[0][1] > warmup + seconds:
                break
            time.sleep(0.2)
    finally:
        reader.stop()
        pub.stop()
    return {"player": "ffmpeg", **summarize(window(reader.shown, pub, warmup, seconds)), "frames": len(reader.shown)}


def measure_browser(url: str, rtmp_url: str, low_latency: bool, warmup: float, seconds: float, workdir: str,
                    player: str = "hlsjs") -> dict:  # fmt: skip
    pub = BarcodePublisher(rtmp_url, warmup + seconds + 40)
    page = PageServer()
    browser = None
    try:
        if player == "hlsjs":
            # hls.js joins a live playlist a few segments back: let them exist first.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        if r.read().decode().count("#EXTINF") >= 3:
                            break
                except OSError:
                    pass
                time.sleep(0.2)
        else:
            time.sleep(1.5)  # the stream exists (HTTP-FLV answers 404 before)
        query = urllib.parse.urlencode({"url": url, "lowlatency": int(low_latency), "seconds": warmup + seconds,
                                        "limit": warmup + seconds + 30, "player": player})  # fmt: skip
        browser = Chromium(page.url(f"latency.html?{query}"), __import__("pathlib").Path(workdir))
        page.received.wait(timeout=warmup + seconds + 45)
    finally:
        if browser is not None:
            browser.stop()
        page.close()
        pub.stop()
    report = page.report or {}
    samples = [(int(n), float(t)) for n, t in report.get("samples", [])]
    fatal = [e for e in report.get("errors", []) if not isinstance(e, dict) or e.get("fatal")]
    name = f"hls.js {report.get('hlsjs')}" + (" lowLatencyMode" if low_latency else "")
    if player == "mpegts":
        name = f"mpegts.js {report.get('mpegtsjs')}"
    return {"player": name,
            **summarize(window(samples, pub, warmup, seconds)), "frames": len(samples),
            "fatal_errors": fatal, "parts_loaded": report.get("partsLoaded"),
            "hlsjs_latency_s": report.get("hlsLatency", [])[-1:]}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--only", default=",".join(DELIVERIES))
    p.add_argument("--part", type=float, default=0.5, help="hls.part of the LL-HLS app")
    p.add_argument("--json")
    args = p.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="latency-")
    server = Server(workdir, args.part)
    results = {}
    try:
        for i, what in enumerate(args.only.split(",")):
            name = f"lat{i}"
            app = "ll" if what == "llhls" else "live"
            rtmp_url = f"rtmp://127.0.0.1:{server.rtmp}/{app}/{name}"
            if what == "rtmp":
                r = measure_ffmpeg(rtmp_url, rtmp_url, args.warmup, args.seconds, workdir)
            elif what == "httpflv":
                r = measure_ffmpeg(f"http://127.0.0.1:{server.http}/{app}/{name}.flv", rtmp_url, args.warmup, args.seconds, workdir)
            elif what in ("httpflv-browser", "wsflv"):
                scheme = "ws" if what == "wsflv" else "http"
                url = f"{scheme}://127.0.0.1:{server.http}/{app}/{name}.flv"
                r = measure_browser(url, rtmp_url, False, args.warmup, args.seconds, workdir, player="mpegts")
            elif what in ("hls", "llhls"):
                playlist = f"http://127.0.0.1:{server.http}/hls/{app}/{name}.m3u8"
                r = measure_browser(playlist, rtmp_url, what == "llhls", args.warmup, args.seconds, workdir)
            else:
                raise SystemExit(f"unknown delivery {what!r}; one of {', '.join(DELIVERIES)}, wsflv")
            results[what] = r
            print(f"{what}: {r}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    labels = {"rtmp": "RTMP", "httpflv": "HTTP-FLV", "httpflv-browser": "HTTP-FLV", "wsflv": "WebSocket-FLV",
              "hls": "HLS (MPEG-TS, 2 s segments)",
              "llhls": f"LL-HLS (fMP4, {args.part:g} s parts)"}  # fmt: skip
    print("| delivery | player | median ms | p10 ms | p90 ms | frames |")
    print("|---|---|---|---|---|---|")
    for what, r in results.items():
        print(f"| {labels[what]} | {r['player']} | {r.get('median_ms', '-')} | {r.get('p10_ms', '-')} | "
              f"{r.get('p90_ms', '-')} | {r.get('n', 0)} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
