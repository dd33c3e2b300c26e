"""HTTP load test: CPU per published stream with HLS on and off, and HTTP-FLV viewers per core.

    .venv/bin/python bench/httpload.py [--publishers 1,4,8,16] [--viewers 100,200,400,...]
                                       [--duration 10] [--json FILE] [--quick]

(Not ``bench/http.py``: load.py puts bench/ first on sys.path, so that name would hide the
standard library's ``http`` package from every bench process.)

One rtmpserver (twistd) with ``[app:live] handlers = live``, ``[app:hls] handlers = hls, live``
and an ``[http:main]`` listener, pinned to CPU 0; everything this tool starts runs on CPU 1, as
in load.py.  All sockets are on 127.0.0.1.

1. Publishers (``--publishers``): K publishers each send the same synthetic stream as load.py
   (30 fps video totalling ``--video-bps``, keyframe every 2 s, ~43 AAC frames/s) to K streams of
   app ``live``, then of app ``hls``, no players.  Server CPU (utime+stime) over the publishing
   window, per stream; the HLS cost per stream is the difference.  With ``--hls-fetch`` a third
   series also fetches each stream's playlist once a second and every new segment once, as one
   HLS viewer per stream would, so serving is included.  After each HLS step the playlist of every
   stream is fetched to check that segments were cut.
2. HTTP-FLV viewers (``--viewers``): one publisher on ``live``, N viewers (processes of
   ``--viewers-per-worker``, asyncio) ``GET /live/<stream>.flv`` over HTTP/1.1, de-chunk the body
   and parse FLV tags; each video tag carries its send time (see _media.py), so latency is
   publisher write -> viewer read as for load.py's RTMP players.  Viewers connect after the
   publisher has sent its metadata and sequence headers (HTTP-FLV answers 404 until the stream is
   live) and before the first frame, so each must get every frame.  Pass = every viewer got every
   frame and p99 < 500 ms; the ramp stops at the first failure or when the load generator's core
   is saturated.  Unless ``--no-rtmp``, the same N are then run with load.py's RTMP players
   against the same server for comparison.

Every wait is bounded and every process started here is stopped on exit, Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import load  # noqa: E402
from _media import (  # noqa: E402
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    FPS,
    GOP_SECONDS,
    STAMP,
    STAMP_OFFSET,
    PayloadPool,
    audio_body,
    frame_sizes,
    video_body,
)
from _rtmpclient import open_client  # noqa: E402
from load import (  # noqa: E402
    AUDIO_RATE,
    HOST,
    LOAD_CPU,
    P99_LIMIT_MS,
    Children,
    Server,
    _die_with_parent,
    _pin,
    _pipe_recv,
    cpu_busy,
    cpu_seconds,
    percentile,
    recv,
    rss_kib,
    run_async,
    wait_quiet,
)

from rtmpserver.codec import amf0  # noqa: E402
from rtmpserver.codec.amftypes import ECMAArray  # noqa: E402

HLS_FRAGMENT = 2
HLS_WINDOW = 5


def cpu_ns_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` from /proc/PID/task/*/schedstat (nanoseconds).

    /proc/PID/stat counts in 10 ms ticks: over a 10 s window that is 0.1% of a core, as large as
    the per-stream differences measured here.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def server_ini(http_port: int) -> str:
    return (
        "[app:hls]\n"
        "handlers = hls, live\n"
        f"hls.fragment = {HLS_FRAGMENT}\n"
        f"hls.window = {HLS_WINDOW}\n"
        "hls.linger = 5\n"
        "[http:main]\n"
        f"listen = tcp:{http_port}:interface={HOST}\n"
        "max_flv_clients = 10000\n"
        "stat = no\n"
        "api = no\n"
        "metrics = no\n"
    )


# -- a small HTTP/1.1 GET (playlists and segments) ----------------------------------------------------


async def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a fresh connection (``Connection: close``); returns (status, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        out = bytearray()
        pos = 0
        while True:
            eol = body.index(b"\r\n", pos)
            n = int(body[pos:eol].split(b";")[0], 16)
            if n == 0:
                break
            out += body[eol + 2 : eol + 2 + n]
            pos = eol + 2 + n + 2
        body = bytes(out)
    return status, body


class HLSFetcher:
    """One HLS viewer of one stream: playlist once a second, each new segment once."""

    def __init__(self, port: int, app: str, stream: str) -> None:
        self.port, self.app, self.stream = port, app, stream
        self.seen: set[str] = set()
        self.requests = self.bytes = self.errors = 0

    async def poll(self) -> None:
        try:
            status, body = await http_get(self.port, f"/hls/{self.app}/{self.stream}.m3u8")
            self.requests += 1
            if status != 200:
                return
            for line in body.decode().splitlines():
                if line and not line.startswith("#") and line not in self.seen:
                    self.seen.add(line)
                    st, data = await http_get(self.port, f"/hls/{self.app}/{line}")
                    self.requests += 1
                    self.bytes += len(data)
                    if st != 200:
                        self.errors += 1
        except (TimeoutError, OSError, ValueError):
            self.errors += 1


# -- publishers -------------------------------------------------------------------------------------


async def _publishers_main(pipe, port: int, app: str, streams: list[str], duration: float, video_bps: int,
                           fetch: bool, http_port: int) -> None:
    """K publishers of the same message sequence (one body, sent on K connections)."""
    loop = asyncio.get_running_loop()
    tc_url = f"rtmp://{HOST}:{port}/{app}"
    meta = ECMAArray(
        width=1280.0, height=720.0, framerate=float(FPS), videocodecid=7.0, videodatarate=video_bps / 1000,
        audiocodecid=10.0, audiosamplerate=44100.0, audiosamplesize=16.0, stereo=True, encoder="rtmpserver bench",
    )

    async def start(stream: str):
        pub = await open_client(HOST, port)
        await asyncio.wait_for(pub.connect(app, tc_url, type="nonprivate", flashVer="FMLE/3.0 (compatible; bench)"), 15)
        pub.conn.send(load.m.SetChunkSize(4096))
        pub.notify("releaseStream", None, stream)
        pub.notify("FCPublish", None, stream)
        sid = await asyncio.wait_for(pub.create_stream(), 15)
        fut = pub.wait_status(sid, "NetStream.Publish.Start")
        pub.notify("publish", None, stream, "live", stream_id=sid)
        await asyncio.wait_for(fut, 15)
        # Configuration first, as encoders send it: HTTP-FLV viewers that join now get a complete
        # FLV header and the sequence headers before the first frame.
        pub.conn.send_raw(18, amf0.encode("@setDataFrame", "onMetaData", meta), stream_id=sid)
        pub.conn.send_raw(9, AVC_SEQUENCE_HEADER, stream_id=sid)
        pub.conn.send_raw(8, AAC_SEQUENCE_HEADER, stream_id=sid)
        pub.send()
        return pub, sid

    pubs = await asyncio.wait_for(asyncio.gather(*(start(s) for s in streams)), 60)
    await asyncio.sleep(0.3)  # let the server take in the sequence headers
    pipe.send({"published": len(pubs)})
    cmd = await _pipe_recv(pipe, 180)
    assert cmd == "go", cmd

    fetchers = [HLSFetcher(http_port, app, s) for s in streams] if fetch else []
    fetch_tasks: set = set()
    key_size, p_size = frame_sizes(video_bps)
    gop = int(FPS * GOP_SECONDS)
    pool = PayloadPool(seed=7)
    rng = random.Random(11)
    n_video = int(duration * FPS)
    n_audio = int(duration * AUDIO_RATE)
    t0 = loop.time()
    next_fetch = 1.0
    vi = ai = 0
    late_max = 0.0
    pipe.send({"started": time.time()})
    while vi < n_video or ai < n_audio:
        tv = vi / FPS if vi < n_video else float("inf")
        ta = ai / AUDIO_RATE if ai < n_audio else float("inf")
        due = min(tv, ta)
        delay = t0 + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late_max = max(late_max, -delay)
        if fetchers and due >= next_fetch:
            next_fetch += 1.0
            for f in fetchers:
                t = asyncio.ensure_future(f.poll())
                fetch_tasks.add(t)
                t.add_done_callback(fetch_tasks.discard)
        if tv <= ta:
            key = vi % gop == 0
            size = int((key_size if key else p_size) * rng.uniform(0.8, 1.2))
            body, type_id, ts = video_body(pool, size, key, time.time_ns(), vi), 9, int(tv * 1000)
            vi += 1
        else:
            body, type_id, ts = audio_body(pool, rng.randint(300, 440)), 8, int(ta * 1000)
            ai += 1
        for pub, sid in pubs:
            if pub.error is not None:
                raise RuntimeError(f"publisher connection failed: {pub.error}")
            pub.conn.send_raw(type_id, body, stream_id=sid, timestamp=ts)
            pub.transport.write(pub.conn.data_to_send())
    if fetch_tasks:
        await asyncio.wait(fetch_tasks, timeout=10)
    pipe.send({
        "done": True, "video": n_video, "audio": n_audio, "late_max_ms": late_max * 1000,
        "fetch_requests": sum(f.requests for f in fetchers), "fetch_bytes": sum(f.bytes for f in fetchers),
        "fetch_errors": sum(f.errors for f in fetchers),
    })
    await _pipe_recv(pipe, 120)  # "stop"
    for pub, _ in pubs:
        pub.close()
    await asyncio.sleep(0.2)


def publishers_process(pipe, *args) -> None:
    _die_with_parent()
    _pin(LOAD_CPU)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run_async(_publishers_main(pipe, *args))
        except Exception as e:
            with contextlib.suppress(Exception):
                pipe.send({"error": f"{type(e).__name__}: {e}"})


# -- HTTP-FLV viewers ---------------------------------------------------------------------------------

_HEAD, _SIZE, _DATA, _CRLF = range(4)  # chunked-body states
_PREFIX = STAMP_OFFSET + STAMP.size  # bytes of a video tag's body a viewer looks at


class Viewer(asyncio.Protocol):
    """GET an .flv over HTTP/1.1 and parse it without holding whole tags.

    Two small state machines over each read: de-chunking (RFC 9112 7.1), then FLV (a 13-byte file
    header + first PreviousTagSize, then per tag an 11-byte header, the body, a 4-byte
    PreviousTagSize).  Of a body only the first ``_PREFIX`` bytes are kept; the rest is skipped
    by count, so the cost per read does not grow with the bitrate more than it must.
    """

    def __init__(self, path: bytes, latencies: array.array, ready: asyncio.Future) -> None:
        self.path = path
        self.latencies = latencies
        self.ready = ready
        self.transport = None
        self.status = 0
        self.video = self.audio = self.reads = self.out_of_order = 0
        self.max_seq = -1
        self.closed = False
        self.error: str | None = None
        self._state = _HEAD
        self._buf = bytearray()  # headers / chunk-size line
        self._chunk_left = 0
        # FLV: collect ``_want`` bytes into ``_small``, then skip ``_skip`` bytes.
        self._small = bytearray()
        self._want = 13
        self._skip = 0
        self._tag: tuple[int, int] | None = None  # (type, body size) while reading a body prefix
        self._now = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"GET " + self.path + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nUser-Agent: rtmpserver-bench\r\n\r\n")

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the sequence header (status {self.status})"))

    def _fail(self, why: str) -> None:
        self.error = why
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._now = time.time_ns()
        self.reads += 1
        mv = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            st = self._state
            if st == _DATA:
                k = min(self._chunk_left, end - pos)
                self._flv(mv[pos : pos + k])
                pos += k
                self._chunk_left -= k
                if not self._chunk_left:
                    self._state = _CRLF
                    self._chunk_left = 2
            elif st == _CRLF:
                k = min(self._chunk_left, end - pos)
                pos += k
                self._chunk_left -= k
                if not self._chunk_left:
                    self._state = _SIZE
            elif st == _SIZE:
                i = data.find(b"\n", pos)
                if i < 0:
                    self._buf += mv[pos:]
                    return
                self._buf += mv[pos:i]
                pos = i + 1
                n = int(bytes(self._buf).split(b";")[0].strip() or b"0", 16)
                self._buf.clear()
                if n == 0:
                    self._state = _HEAD + 99  # last chunk: the stream ended
                    return
                self._chunk_left = n
                self._state = _DATA
            elif st == _HEAD:
                self._buf += mv[pos:]
                i = self._buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(self._buf) > 16384:
                        self._fail("response header too long")
                    return
                head = bytes(self._buf[:i])
                rest = bytes(self._buf[i + 4 :])
                self._buf.clear()
                self.status = int(head.split(b" ", 2)[1])
                if self.status != 200:
                    self._fail(f"HTTP status {self.status}")
                    return
                if b"chunked" not in head.lower():
                    self._fail("expected a chunked body")
                    return
                self._state = _SIZE
                data, mv, pos, end = rest, memoryview(rest), 0, len(rest)
            else:
                return

    def _flv(self, mv: memoryview) -> None:
        pos, end = 0, len(mv)
        while pos < end:
            if self._skip:
                k = min(self._skip, end - pos)
                pos += k
                self._skip -= k
                continue
            need = self._want - len(self._small)
            k = min(need, end - pos)
            self._small += mv[pos : pos + k]
            pos += k
            if k < need:
                return
            self._got()

    def _got(self) -> None:
        small = self._small
        if self._tag is None:
            if self._want == 13:  # file header + PreviousTagSize0
                if small[:3] != b"FLV":
                    self._fail("not an FLV body")
                self._small = bytearray()
                self._want = 11
                self._tag = None
                self._want_tag_header()
                return
            t = small[0] & 0x1F
            size = int.from_bytes(small[1:4], "big")
            self._tag = (t, size)
            self._small = bytearray()
            self._want = min(size, _PREFIX if t == 9 else 2)
            self._skip = 0
            if self._want == 0:
                self._end_tag(size)
            return
        t, size = self._tag
        if t == 9 and len(small) >= 2:
            if small[1] == 1 and len(small) >= _PREFIX:
                sent_ns, seq = STAMP.unpack_from(small, STAMP_OFFSET)
                self.latencies.append((self._now - sent_ns) / 1e6)
                self.video += 1
                if seq != self.max_seq + 1:
                    self.out_of_order += 1
                if seq > self.max_seq:
                    self.max_seq = seq
            elif small[1] == 0 and not self.ready.done():
                self.ready.set_result(None)
        elif t == 8 and len(small) >= 2 and small[1] == 1:
            self.audio += 1
        self._end_tag(size - len(small))

    def _end_tag(self, left: int) -> None:
        self._small = bytearray()
        self._tag = None
        self._skip = left + 4  # rest of the body + PreviousTagSize
        self._want_tag_header()

    def _want_tag_header(self) -> None:
        self._want = 11


async def _viewers_main(pipe, http_port: int, app: str, stream: str, count: int, ready_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    latencies = array.array("d")
    path = f"/{app}/{stream}.flv".encode()
    sem = asyncio.Semaphore(50)
    viewers: list[Viewer] = []

    async def start_one() -> None:
        async with sem:
            ready = loop.create_future()
            _, v = await asyncio.wait_for(loop.create_connection(lambda: Viewer(path, latencies, ready), HOST, http_port), 15)
            viewers.append(v)
            await asyncio.wait_for(ready, 15)

    results = await asyncio.wait_for(asyncio.gather(*(start_one() for _ in range(count)), return_exceptions=True), ready_timeout)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    pipe.send({"ready": count - len(errors), "errors": errors[:3]})
    cmd = await _pipe_recv(pipe, 600)
    assert cmd == "report", cmd
    pipe.send({
        "video": [v.video for v in viewers],
        "audio": [v.audio for v in viewers],
        "out_of_order": sum(v.out_of_order for v in viewers),
        "reads": sum(v.reads for v in viewers),
        "disconnected": sum(1 for v in viewers if v.closed),
        "latencies": latencies.tobytes(),
    })
    for v in viewers:
        if v.transport is not None:
            v.transport.close()
    await asyncio.sleep(0.2)


def viewers_process(pipe, *args) -> None:
    _die_with_parent()
    _pin(LOAD_CPU)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run_async(_viewers_main(pipe, *args))
        except Exception as e:
            with contextlib.suppress(Exception):
                pipe.send({"error": f"{type(e).__name__}: {e}"})


# -- steps ----------------------------------------------------------------------------------------------


async def _check_playlists(http_port: int, app: str, streams: list[str]) -> list[int]:
    """Segments listed in each stream's playlist (0 when there is none)."""
    out = []
    for s in streams:
        status, body = await http_get(http_port, f"/hls/{app}/{s}.m3u8")
        out.append(body.count(b"#EXTINF") if status == 200 else 0)
    return out


def publish_step(server: Server, http_port: int, app: str, k: int, fetch: bool, args, children: Children) -> dict:
    streams = [f"pub{k}-{i}-{uuid.uuid4().hex[:6]}" for i in range(k)]
    res: dict = {"k": k, "app": app, "fetch": fetch, "busiest_core_before_pct": wait_quiet(args.wait_quiet)}
    try:
        pub, pipe = children.start(publishers_process, server.port, app, streams, args.duration, args.video_bps, fetch, http_port)
        recv(pipe, 60, "publishers")
        cpu0, load0, busy0 = cpu_ns_seconds(server.pid), cpu_seconds(pub.pid), cpu_busy()
        pipe.send("go")
        recv(pipe, 10, "publishers")
        t0 = time.monotonic()
        done = recv(pipe, args.duration + 30, "publishers")
        t1 = time.monotonic()
        cpu1, load1, busy1 = cpu_ns_seconds(server.pid), cpu_seconds(pub.pid), cpu_busy()
        if app == "hls":
            res["segments_listed"] = run_async(_check_playlists(http_port, app, streams))
        pipe.send("stop")
        wall = t1 - t0
        res.update(
            server_cpu_pct=(cpu1 - cpu0) / wall * 100,
            load_cpu_pct=(load1 - load0) / wall * 100,
            cpu_busy_pct={c: (busy1[c] - busy0.get(c, 0)) / wall * 100 for c in busy1},
            server_rss_mib=rss_kib(server.pid) / 1024,
            window_s=wall,
            publisher_late_max_ms=done["late_max_ms"],
            fetch_requests=done["fetch_requests"], fetch_bytes=done["fetch_bytes"], fetch_errors=done["fetch_errors"],
        )
        res["cpu_per_stream_pct"] = res["server_cpu_pct"] / k
        # Segments are cut at keyframes once HLS_FRAGMENT s have passed; the one being built is not listed.
        res["ok"] = app != "hls" or min(res["segments_listed"]) >= max(1, int(args.duration // HLS_FRAGMENT) - 1)
        return res
    finally:
        children.stop_all()


def viewers_step(server: Server, http_port: int, n: int, args, children: Children) -> dict:
    stream = f"flv{n}-{uuid.uuid4().hex[:6]}"
    res: dict = {"n": n, "busiest_core_before_pct": wait_quiet(args.wait_quiet)}
    try:
        pub, ppipe = children.start(publishers_process, server.port, "live", [stream], args.duration, args.video_bps, False, http_port)
        recv(ppipe, 60, "publisher")
        per = args.viewers_per_worker
        workers = [children.start(viewers_process, http_port, "live", stream, min(per, n - i), 60.0) for i in range(0, n, per)]
        ready, errors = 0, []
        for _, pipe in workers:
            msg = recv(pipe, 70, "viewer process")
            ready += msg["ready"]
            errors += msg["errors"]
        res["viewers_ready"] = ready
        if ready < n:
            res.update(passed=False, why=f"only {ready}/{n} viewers started: {errors[:2]}")
            return res
        load_pids = [pub.pid] + [w.pid for w, _ in workers]
        cpu0, load0, busy0 = cpu_seconds(server.pid), sum(cpu_seconds(p) for p in load_pids), cpu_busy()
        ppipe.send("go")
        recv(ppipe, 10, "publisher")
        t0 = time.monotonic()
        done = recv(ppipe, args.duration + 30, "publisher")
        t1 = time.monotonic()
        cpu1, load1, busy1 = cpu_seconds(server.pid), sum(cpu_seconds(p) for p in load_pids), cpu_busy()
        time.sleep(args.drain)
        rss = rss_kib(server.pid)
        videos, audios, lat = [], [], array.array("d")
        out_of_order = disconnected = reads = 0
        for _, pipe in workers:
            pipe.send("report")
        for _, pipe in workers:
            r = recv(pipe, 60, "viewer process")
            videos += r["video"]
            audios += r["audio"]
            out_of_order += r["out_of_order"]
            disconnected += r["disconnected"]
            reads += r["reads"]
            lat.frombytes(r["latencies"])
        ppipe.send("stop")
        lat_sorted = sorted(lat)
        wall = t1 - t0
        complete = sum(1 for v, a in zip(videos, audios, strict=False) if v == done["video"] and a == done["audio"])
        res.update(
            video_sent=done["video"], audio_sent=done["audio"], players_complete=complete,
            frames_missing=sum(done["video"] - v for v in videos) + sum(done["audio"] - a for a in audios),
            out_of_order=out_of_order, disconnected=disconnected,
            p50_ms=percentile(lat_sorted, 50), p99_ms=percentile(lat_sorted, 99),
            max_ms=lat_sorted[-1] if lat_sorted else float("nan"),
            server_cpu_pct=(cpu1 - cpu0) / wall * 100, load_cpu_pct=(load1 - load0) / wall * 100,
            cpu_busy_pct={c: (busy1[c] - busy0.get(c, 0)) / wall * 100 for c in busy1},
            server_rss_mib=rss / 1024, publisher_late_max_ms=done["late_max_ms"], window_s=wall,
            reads_per_player_s=reads / n / wall,
        )
        res["cpu_per_player_pct"] = res["server_cpu_pct"] / n
        why = []
        if complete < n:
            why.append(f"{n - complete} viewers missed frames ({res['frames_missing']} missing)")
        if not res["p99_ms"] < P99_LIMIT_MS:
            why.append(f"p99 {res['p99_ms']:.0f} ms >= {P99_LIMIT_MS:.0f}")
        res["passed"] = not why
        res["load_bound"] = res["load_cpu_pct"] > 90
        if res["load_bound"]:
            why.append("load generator near 100% CPU: figures are a lower bound")
        res["why"] = "; ".join(why)
        return res
    finally:
        children.stop_all()


def print_publish(r: dict) -> None:
    label = r["app"] + (" + fetch" if r["fetch"] else "")
    extra = ""
    if "segments_listed" in r:
        extra += f"  segments listed {min(r['segments_listed'])}-{max(r['segments_listed'])}"
    if r["fetch"]:
        extra += f"  fetched {r['fetch_requests']} requests, {r['fetch_bytes'] / 1e6:.1f} MB, {r['fetch_errors']} errors"
    print(
        f"  {label:<12} K={r['k']:<3} server CPU {r['server_cpu_pct']:5.1f}%  per stream {r['cpu_per_stream_pct']:.2f}%  "
        f"load CPU {r['load_cpu_pct']:.0f}%  busy CPU0/CPU1 {r['cpu_busy_pct'].get(0, 0):.0f}/{r['cpu_busy_pct'].get(1, 0):.0f}%  "
        f"RSS {r['server_rss_mib']:.0f} MiB  publisher late max {r['publisher_late_max_ms']:.0f} ms{extra}"
        + ("" if r["ok"] else "  [NO SEGMENTS]"),
        flush=True,
    )


def ramp(label: str, ns: list[int], step, out: list) -> None:
    for n in ns:
        try:
            r = step(n)
        except (TimeoutError, RuntimeError, OSError, EOFError) as e:
            r = {"n": n, "passed": False, "why": f"{type(e).__name__}: {e}"}
        out.append(r)
        load.print_step(label, r)
        if not r["passed"] or r.get("load_bound"):
            break
        time.sleep(1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishers", default="1,4,8,16", help="publisher counts K (max 32)")
    ap.add_argument("--hls-fetch", action="store_true", help="also run HLS with one fetching viewer per stream")
    ap.add_argument("--viewers", default="200,400,600,800,1000,1200,1400,1600", help="HTTP-FLV viewer ramp (max 2000)")
    ap.add_argument("--viewers-per-worker", type=int, default=100)
    ap.add_argument("--no-publishers", action="store_true", help="skip part 1")
    ap.add_argument("--no-viewers", action="store_true", help="skip part 2")
    ap.add_argument("--no-rtmp", action="store_true", help="skip the RTMP players comparison in part 2")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per step (max 60)")
    ap.add_argument("--drain", type=float, default=2.0)
    ap.add_argument("--video-bps", type=int, default=2_000_000)
    ap.add_argument("--wait-quiet", type=float, default=30.0)
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--quick", action="store_true", help="smoke test: --publishers 1,2 --viewers 5,10 --duration 3")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.publishers, args.viewers, args.duration, args.drain = "1,2", "5,10", 3.0, 1.0
        args.wait_quiet = min(args.wait_quiet, 2.0)
    ks = sorted({int(x) for x in args.publishers.split(",") if x.strip()})
    ns = sorted({int(x) for x in args.viewers.split(",") if x.strip()})
    if not ks or ks[0] < 1 or ks[-1] > 32:
        ap.error("--publishers: counts from 1 to 32")
    if not ns or ns[0] < 1 or ns[-1] > 2000:
        ap.error("--viewers: counts from 1 to 2000")
    args.duration = min(max(args.duration, 3.0), 60.0)
    # load.run_step (the RTMP comparison) reads these.
    args.players_per_worker = args.viewers_per_worker
    args.profile = False

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {LOAD_CPU})
    info = load.versions()
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"rtmpserver HTTP load test  {info}", flush=True)
    workdir = tempfile.mkdtemp(prefix="rtmpbench-http-")
    http_port = load.free_port()
    server = Server("rtmpserver", workdir, 0.0, server_ini(http_port), tag=" +http")
    results: dict = {"info": info, "args": vars(args), "publish": [], "flv": [], "rtmp": []}
    children = Children()
    try:
        server.start()
        load.wait_port(http_port, server.proc, 10.0, server.log)
        print(f"\n== server: RTMP port {server.port}, HTTP port {http_port} ==", flush=True)
        if not args.no_publishers:
            print(f"\n-- publishers, {args.video_bps / 1e6:g} Mbit/s each, no players --", flush=True)
            # Baseline: what the server spends with nothing connected (timers, logging), so the
            # per-stream figures can be read as marginal costs.
            wait_quiet(args.wait_quiet)
            c0, t0 = cpu_ns_seconds(server.pid), time.monotonic()
            time.sleep(args.duration)
            idle = (cpu_ns_seconds(server.pid) - c0) / (time.monotonic() - t0) * 100
            results["idle_server_cpu_pct"] = idle
            print(f"  idle server (nothing connected): {idle:.2f}% of a core", flush=True)
            modes = [("live", False), ("hls", False)] + ([("hls", True)] if args.hls_fetch else [])
            for app, fetch in modes:
                for k in ks:
                    r = publish_step(server, http_port, app, k, fetch, args, children)
                    results["publish"].append(r)
                    print_publish(r)
                    time.sleep(1.0)
        if not args.no_viewers:
            print(f"\n-- HTTP-FLV viewers, {args.video_bps / 1e6:g} Mbit/s --", flush=True)
            ramp("HTTP-FLV", ns, lambda n: viewers_step(server, http_port, n, args, children), results["flv"])
            if not args.no_rtmp:
                print("\n-- RTMP players (load.py), same server --", flush=True)
                ramp("RTMP", ns, lambda n: load.run_step(server, n, args, children), results["rtmp"])
        if not server.alive():
            print(f"server died; log:\n{load.tail(server.log)}", flush=True)
        with contextlib.suppress(OSError), open(server.log, errors="replace") as f:
            logtext = f.read()
        results["hls_not_segmented_warnings"] = logtext.count("not segmented")
        results["log_tracebacks"] = logtext.count("Traceback")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all(timeout=2)
        server.stop()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print("\nSummary")
    pub = {(r["app"], r["fetch"], r["k"]): r for r in results["publish"]}
    for k in ks:
        a, b = pub.get(("live", False, k)), pub.get(("hls", False, k))
        if a and b:
            line = (f"  K={k:<3} per stream: live {a['cpu_per_stream_pct']:.2f}%  hls+live {b['cpu_per_stream_pct']:.2f}%  "
                    f"HLS cost {b['cpu_per_stream_pct'] - a['cpu_per_stream_pct']:.2f}% of a core")
            c = pub.get(("hls", True, k))
            if c:
                line += f"  (+ one HLS viewer per stream: {c['cpu_per_stream_pct']:.2f}%)"
            print(line)
    for key, label in (("flv", "HTTP-FLV"), ("rtmp", "RTMP")):
        passed = [r["n"] for r in results[key] if r.get("passed")]
        if results[key]:
            print(f"  {label:<8} largest passing N: {max(passed) if passed else 0}")
    print(f"  server log: {results.get('hls_not_segmented_warnings', '?')} 'not segmented' warnings, "
          f"{results.get('log_tracebacks', '?')} tracebacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
