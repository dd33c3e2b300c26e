"""Frames that carry their own number, for glass-to-glass latency (bench/latency.py and
tests/e2e/test_browser_hls.py).

``BarcodePublisher`` makes raw 4:2:0 frames whose top band is a 16-bit barcode of the frame
number (bit i is block i, 24 px wide, white for 1), hands one to an FFmpeg encoder every 1/fps
second and remembers when (``time.time()``): that moment is the "glass" a frame leaves.  FFmpeg
encodes with x264 ``zerolatency`` (no B-frames, no lookahead) and publishes over RTMP.  Whoever
shows the frame later reads the barcode back (``decode_band``; the browser page does the same in
JavaScript) and the difference of the two clocks is the latency.  All on one machine, so both
sides read the same clock.
"""

from __future__ import annotations

import subprocess
import threading
import time

WIDTH, HEIGHT = 384, 216
BAND = 32  # rows of the barcode
BITS = 16
BLOCK = WIDTH // BITS  # 24 px
FPS = 30


def frame(n: int) -> bytes:
    """Frame ``n`` (yuv420p): barcode band on top, a moving ramp below so the encoder has work."""
    bits = n & ((1 << BITS) - 1)
    band_row = b"".join((b"\xeb" if bits >> i & 1 else b"\x10") * BLOCK for i in range(BITS))
    ramp = bytes((x + 4 * n) & 0xFF for x in range(WIDTH))
    luma = band_row * BAND + ramp * (HEIGHT - BAND)
    chroma = b"\x80" * (WIDTH * HEIGHT // 2)
    return luma + chroma


def decode_band(gray: bytes) -> int:
    """The frame number from the top band, as gray bytes (``WIDTH`` per row, at least BAND rows)."""
    row = (BAND // 2) * WIDTH
    return sum(1 << i for i in range(BITS) if gray[row + i * BLOCK + BLOCK // 2] > 128)


# Video encoders: x264 without lookahead or B-frames; SVT-AV1 at its fastest preset (FFmpeg 9 from
# imageio-ffmpeg publishes AV1 over Enhanced RTMP).
ENCODERS = {
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS)],
    "av1": ["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", f"keyint={FPS}"],
}


def publish_command(ffmpeg: str, url: str, codec: str = "h264") -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "pipe:0",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        *ENCODERS[codec], "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-shortest",
        "-rw_timeout", "10000000", "-f", "flv", url,
    ]  # fmt: skip


class BarcodePublisher:
    """Feeds numbered frames to an FFmpeg publisher at ``FPS`` for ``seconds``; ``sent[n]`` = time.time()."""

    def __init__(self, url: str, seconds: float, ffmpeg: str = "ffmpeg", stderr=subprocess.DEVNULL,
                 codec: str = "h264") -> None:  # fmt: skip
        self.sent: dict[int, float] = {}
        self.seconds = seconds
        self.proc = subprocess.Popen(publish_command(ffmpeg, url, codec), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=stderr)  # fmt: skip
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set() and n < self.seconds * FPS:
                due = start + n / FPS
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                data = frame(n)
                self.sent[n & ((1 << BITS) - 1)] = time.time()
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                n += 1
        except (BrokenPipeError, OSError) as e:
            self.error = e
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def latency_ms(self, n: int, shown: float) -> float | None:
        """``shown`` (epoch seconds) minus when frame ``n`` was handed to the encoder."""
        sent = self.sent.get(n)
        if sent is None or not 0 <= shown - sent < 60:
            return None
        return (shown - sent) * 1000

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class FFmpegReader:
    """An FFmpeg player (RTMP, HTTP-FLV, HLS) that decodes with low delay and reports, for each
    picture, (frame number, time.time() when it came out of the decoder)."""

    def __init__(self, url: str, ffmpeg: str = "ffmpeg", stderr=subprocess.DEVNULL) -> None:
        self.cmd = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
            "-fflags", "nobuffer", "-flags", "low_delay", "-rw_timeout", "10000000",
            "-i", url, "-an", "-vf", f"crop={WIDTH}:{BAND}:0:0", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1",
        ]  # fmt: skip
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        self.shown: list[tuple[int, float]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        size = WIDTH * BAND
        out = self.proc.stdout
        while True:
            buf = out.read(size)
            if len(buf) < size:
                return
            self.shown.append((decode_band(buf), time.time()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.thread.join(timeout=5)
