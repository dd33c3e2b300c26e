"""Glass-to-glass latency of the FLV deliveries: RTMP, RTMPT, HTTP-FLV and WebSocket-FLV.

    .venv/bin/python bench/latency_flv.py [--warmup 8] [--seconds 15]

Measured as bench/latency.py measures HLS, with its helpers (tests/e2e/barcode.py, from the HLS
work): a publisher hands numbered frames to FFmpeg (x264 ultrafast/zerolatency, 30 fps, GOP 1 s)
and notes when; the number is burned into the picture as a barcode and read back from every
picture the player shows, on the same machine's clock.

- RTMP, RTMPT and HTTP-FLV with FFmpeg as the player (``-fflags nobuffer -flags low_delay``);
- HTTP-FLV and WebSocket-FLV with mpegts.js in headless Chromium (tests/e2e/browser/latency-flv.html),
  with its default settings and with ``enableStashBuffer: false, liveBufferLatencyChasing: true``.

The first ``--warmup`` seconds of each player are left out; median, p10 and p90 over the next
``--seconds``.  One rtmpserver (twistd) on 127.0.0.1 with ``[http:main] rtmpt = yes``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.e2e.test_browser import Chromium, PageServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summarize(latencies: list[float]) -> dict:
    if len(latencies) < 2:
        return {"n": len(latencies)}
    q = statistics.quantiles(latencies, n=10)
    return {"n": len(latencies), "median_ms": round(statistics.median(latencies)), "p10_ms": round(q[0]),
            "p90_ms": round(q[-1])}  # fmt: skip


def window(samples, pub, warmup: float, seconds: float) -> list[float]:
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args(argv)
    try:
        from tests.e2e.barcode import BarcodePublisher, FFmpegReader
    except ImportError:
        raise SystemExit("needs tests/e2e/barcode.py (bench/latency.py's helper from the HLS work)") from None
    warm, secs = args.warmup, args.seconds
    wd = tempfile.mkdtemp(prefix="latency-flv-")
    rtmp, http = free_port(), free_port()
    conf = os.path.join(wd, "server.ini")
    with open(conf, "w") as f:
        f.write(f"[server]\nlisten = tcp:{rtmp}:interface=127.0.0.1\n[app:live]\n"
                f"[http:main]\nlisten = tcp:{http}:interface=127.0.0.1\nrtmpt = yes\n")
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    srv = subprocess.Popen([twistd, "-n", "--pidfile=", f"--logfile={wd}/server.log", "rtmp", "--config", conf],
                           cwd=wd, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    time.sleep(3)

    def ffmpeg(url: str, name: str) -> dict:
        pub = BarcodePublisher(f"rtmp://127.0.0.1:{rtmp}/live/{name}", warm + secs + 15)
        time.sleep(1.5)
        reader = FFmpegReader(url)
        t0 = time.monotonic()
        while time.monotonic() - t0 < warm + secs + 20:
            if reader.shown and reader.shown[-1][1] - reader.shown[0][1] > warm + secs:
                break
            time.sleep(0.2)
        reader.stop()
        pub.stop()
        return {"player": "ffmpeg", **summarize(window(reader.shown, pub, warm, secs))}

    def browser(url: str, name: str, low: bool) -> dict:
        pub = BarcodePublisher(f"rtmp://127.0.0.1:{rtmp}/live/{name}", warm + secs + 40)
        time.sleep(1.5)
        page = PageServer()
        query = urllib.parse.urlencode({"url": url, "seconds": warm + secs, "limit": warm + secs + 30, "lowlatency": int(low)})
        chromium = Chromium(page.url(f"latency-flv.html?{query}"), pathlib.Path(wd))
        page.received.wait(timeout=warm + secs + 45)
        chromium.stop()
        page.close()
        pub.stop()
        report = page.report or {}
        samples = [(int(n), float(t)) for n, t in report.get("samples", [])]
        return {"player": "mpegts.js " + ("low-latency" if low else "default"),
                **summarize(window(samples, pub, warm, secs)), "dropped_frames": report.get("droppedFrames"),
                "errors": report.get("errors")}  # fmt: skip

    results = {}
    try:
        results["RTMP"] = ffmpeg(f"rtmp://127.0.0.1:{rtmp}/live/a", "a")
        results["RTMPT"] = ffmpeg(f"rtmpt://127.0.0.1:{http}/live/b", "b")
        results["HTTP-FLV"] = ffmpeg(f"http://127.0.0.1:{http}/live/c.flv", "c")
        for low in (False, True):
            results[f"HTTP-FLV ({int(low)})"] = browser(f"http://127.0.0.1:{http}/live/d{int(low)}.flv", f"d{int(low)}", low)
            results[f"WebSocket-FLV ({int(low)})"] = browser(f"ws://127.0.0.1:{http}/live/e{int(low)}.flv", f"e{int(low)}", low)
        for what, r in results.items():
            print(f"{what}: {r}", file=sys.stderr, flush=True)
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
    print("| delivery | player | median ms | p10 ms | p90 ms | frames |")
    print("|---|---|---|---|---|---|")
    for what, r in results.items():
        print(f"| {what.split(' (')[0]} | {r['player']} | {r.get('median_ms', '-')} | {r.get('p10_ms', '-')} | "
              f"{r.get('p90_ms', '-')} | {r.get('n', 0)} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
