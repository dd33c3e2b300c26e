"""Soak test: steady fan-out plus publisher and player churn; does the server's memory stay flat?

    .venv/bin/python bench/soak.py [--minutes 10] [--players 300] [--churn-players 20]
                                   [--bound 0.5] [--json FILE] [--keep-logs]

The server runs the example configuration (etc/server.ini: access log on, HTTP listener on) with
its listeners moved to free loopback ports and the per-IP connection limit lifted, pinned to
CPU 0; everything this tool starts runs on CPU 1 (as in bench/load.py).

- steady: one 2 Mbit/s H.264/AAC-shaped publisher (bench/load.py's) and ``--players`` players
  that read everything for the whole run;
- churn, every ``--churn-interval`` (25 s): FFmpeg publishes a new stream (a fresh name each
  cycle, so name-keyed records of ended streams would show) for ``--churn-publish`` (20 s) from a
  file made once at start (``-c copy``: no encoding during the run), and ``--churn-players`` (20)
  FFmpeg players join it for ``--churn-play`` (12 s);
- the server's RSS (/proc/PID/status VmRSS) and open fds (/proc/PID/fd) are sampled every
  ``--sample`` seconds, and again at the end of every churn cycle, when every churn client has
  gone: those quiet points are what the slope is fitted to (least squares, after ``--warmup``),
  and their fd count must equal the count before the first cycle;
- unless ``--no-probe``, the server runs under bench/_soakprobe.py, which also records Python's
  allocated blocks and the number of live Session/protocol/stream objects, to tell retained
  objects (counts grow) from allocator fragmentation (RSS grows, blocks flat).

PASS when the RSS slope after warm-up is under ``--bound`` MB an hour and fds were back to the
baseline after every churn cycle; exit status 0 on PASS, 1 on FAIL.  Every process started here
is stopped on exit, on Ctrl-C and on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import load  # noqa: E402
from _rtmpclient import Client, open_client  # noqa: E402

from rtmpserver.codec import messages as m  # noqa: E402

HOST = load.HOST
APP = "live"
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


# -- steady players (a load process) ---------------------------------------------------------------


class CountingPlayer(Client):
    """Counts video and audio messages; keeps nothing per message (the run is long)."""

    def __init__(self) -> None:
        super().__init__()
        self.video = 0
        self.audio = 0

    def on_video(self, msg, now_ns: int) -> None:
        self.video += 1

    def on_audio(self, msg, now_ns: int) -> None:
        self.audio += 1


async def _steady_main(pipe, port: int, stream: str, count: int) -> None:
    tc_url = f"rtmp://{HOST}:{port}/{APP}"
    sem = asyncio.Semaphore(50)
    players: list[CountingPlayer] = []

    async def start_one() -> None:
        async with sem:
            p = await open_client(HOST, port, CountingPlayer)
            players.append(p)
            await asyncio.wait_for(p.connect(APP, tc_url), 15)
            sid = await asyncio.wait_for(p.create_stream(), 15)
            fut = p.wait_status(sid, "NetStream.Play.Start")
            p.notify("play", None, stream, -2000.0, stream_id=sid)
            p.conn.send(m.UserControl.set_buffer_length(sid, 3000))
            p.send()
            await asyncio.wait_for(fut, 15)

    results = await asyncio.gather(*(start_one() for _ in range(count)), return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    pipe.send({"ready": count - len(errors), "errors": errors[:3]})
    while True:
        try:
            cmd = await load._pipe_recv(pipe, 60)
        except TimeoutError:
            continue
        if cmd == "report":
            break
    pipe.send({
        "video": [p.video for p in players],
        "audio": [p.audio for p in players],
        "disconnected": sum(1 for p in players if p.closed.done()),
    })
    for p in players:
        p.close()
    await asyncio.sleep(0.2)


def steady_players_process(pipe, port: int, stream: str, count: int) -> None:
    load._die_with_parent()
    load._pin(load.LOAD_CPU)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            load.run_async(_steady_main(pipe, port, stream, count))
        except Exception as e:
            with contextlib.suppress(Exception):
                pipe.send({"error": f"{type(e).__name__}: {e}"})


# -- the server ------------------------------------------------------------------------------------------


def _sub(pattern: str, repl: str, text: str) -> str:
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit(f"etc/server.ini no longer has a line matching {pattern!r}; update bench/soak.py")
    return new


class SoakServer:
    """twistd with the example configuration, pinned to CPU 0, optionally under the probe."""

    def __init__(self, workdir: str, probe_interval: float | None) -> None:
        self.dir = workdir
        self.port = load.free_port()
        self.http_port = load.free_port()
        self.log = os.path.join(workdir, "server.log")
        self.probe = os.path.join(workdir, "probe.jsonl") if probe_interval else None
        self.probe_interval = probe_interval
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(os.path.join(ROOT, "etc", "server.ini")) as f:
            text = f.read()
        text = _sub(r"^listen = tcp:1935$", f"listen = tcp:{self.port}:interface={HOST}", text)
        text = _sub(r"^listen = tcp:8080:interface=127\.0\.0\.1$", f"listen = tcp:{self.http_port}:interface={HOST}", text)
        text = _sub(r"^max_connections_per_ip = \d+", "max_connections_per_ip = 100000", text)
        # Every client comes from one address, the steady players in a burst.
        text = _sub(r"^max_pending_per_ip = \d+", "max_pending_per_ip = 100000", text)
        conf = os.path.join(self.dir, "server.ini")
        with open(conf, "w") as f:
            f.write(text)
        twistd_args = ["-n", "--pidfile=", f"--logfile={self.log}", "rtmp", "--config", conf]
        if self.probe:
            cmd = [sys.executable, os.path.join(HERE, "_soakprobe.py"), self.probe, str(self.probe_interval), *twistd_args]
        else:
            cmd = [os.path.join(os.path.dirname(sys.executable), "twistd"), *twistd_args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        self._out = open(os.path.join(self.dir, "stdout.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, preexec_fn=load._server_preexec, start_new_session=True)
        load.wait_port(self.port, self.proc, 30.0, self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_by_mapping(self) -> dict[str, int]:
        """Resident KiB by kind of mapping (/proc/PID/smaps): the brk heap (glibc malloc), anonymous
        mappings (Python's object arenas, large mallocs, thread stacks) and file-backed ones
        (the interpreter's and libraries' code and data, paged in as first used)."""
        out = {"heap": 0, "anon": 0, "file": 0, "other": 0}
        kind = "other"
        with open(f"/proc/{self.pid}/smaps") as f:
            for line in f:
                first = line.split(None, 6)
                if "-" in first[0] and len(first) >= 5 and ":" in first[3]:
                    path = first[5].strip() if len(first) > 5 else ""
                    kind = "heap" if path == "[heap]" else "anon" if not path else "file" if path.startswith("/") else "other"
                elif first[0] == "Rss:":
                    out[kind] += int(first[1])
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._out.close()
        self.proc = None

    def probe_lines(self) -> list[dict]:
        if not self.probe or not os.path.exists(self.probe):
            return []
        with open(self.probe) as f:
            return [json.loads(line) for line in f if line.strip().endswith("}")]


# -- FFmpeg churn ------------------------------------------------------------------------------------------


def _client_preexec() -> None:
    load._die_with_parent()
    load._pin(load.LOAD_CPU)


def make_churn_file(path: str, seconds: float) -> None:
    """A short H.264/AAC FLV, made once: publishing it with -c copy costs the load core little."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60",
           "-b:v", "1500k", "-c:a", "aac", "-b:a", "96k", "-f", "flv", path]
    subprocess.run(cmd, check=True, timeout=300, stdin=subprocess.DEVNULL, preexec_fn=_client_preexec)


def ffmpeg(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            preexec_fn=_client_preexec)


# -- figures --------------------------------------------------------------------------------------------


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) in value per hour (nan with fewer than 3 points)."""
    n = len(points)
    if n < 3:
        return float("nan")
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return float("nan")
    return sum((t - mt) * (v - mv) for t, v in points) / den * 3600.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds before the slope is fitted (default: a quarter of the run, at most 600)")
    ap.add_argument("--players", type=int, default=300, help="steady players of the steady stream (default 300)")
    ap.add_argument("--players-per-worker", type=int, default=100, help="steady players per load process (default 100)")
    ap.add_argument("--video-bps", type=int, default=2_000_000, help="steady stream's video bitrate (default 2 Mbit/s)")
    ap.add_argument("--churn-interval", type=float, default=25.0, help="seconds between churn cycles (default 25)")
    ap.add_argument("--churn-publish", type=float, default=20.0, help="seconds FFmpeg publishes each churn stream (default 20)")
    ap.add_argument("--churn-players", type=int, default=20, help="FFmpeg players per churn stream (default 20)")
    ap.add_argument("--churn-play", type=float, default=12.0, help="seconds each churn player plays (default 12)")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS/fd samples (default 5)")
    ap.add_argument("--bound", type=float, default=0.5, help="largest RSS growth that passes, MB an hour (default 0.5)")
    ap.add_argument("--no-probe", action="store_true", help="plain twistd, without the in-process memory probe")
    ap.add_argument("--json", help="write the settings, samples and result to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep the working directory (server log, probe samples)")
    args = ap.parse_args()
    if args.churn_publish + 3 > args.churn_interval or args.churn_play + 2 > args.churn_publish:
        ap.error("churn must fit its cycle: --churn-play + 2 <= --churn-publish <= --churn-interval - 3")
    total = args.minutes * 60.0
    warmup = args.warmup if args.warmup is not None else min(600.0, total / 4)
    if total - warmup < 3 * args.churn_interval:
        ap.error("run too short: at least three churn cycles must follow the warm-up")

    workdir = tempfile.mkdtemp(prefix="rtmpserver-soak-")
    server = SoakServer(workdir, None if args.no_probe else 10.0)
    children = load.Children()
    churn: list[subprocess.Popen] = []
    ffmpeg_log = open(os.path.join(workdir, "ffmpeg.log"), "wb")  # noqa: SIM115
    samples: list[dict] = []
    cycles: list[dict] = []

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    result: dict = {}
    try:
        churn_file = os.path.join(workdir, "churn.flv")
        make_churn_file(churn_file, args.churn_publish)
        server.start()
        print(f"server pid {server.pid} on {HOST}:{server.port}; work directory {workdir}", flush=True)
        _, pub_pipe = children.start(load.publisher_process, server.port, "steady", total + 30.0, args.video_bps)
        load.recv(pub_pipe, 30, "steady publisher")
        per = max(1, args.players_per_worker)
        counts = [min(per, args.players - i) for i in range(0, args.players, per)]
        pl_pipes = [children.start(steady_players_process, server.port, "steady", c)[1] for c in counts]
        for pipe, c in zip(pl_pipes, counts, strict=True):
            ready = load.recv(pipe, 120, "steady players")
            if ready["ready"] != c:
                raise RuntimeError(f"only {ready['ready']} of {c} steady players started: {ready['errors']}")
        pub_pipe.send("go")
        load.recv(pub_pipe, 30, "steady publisher")
        time.sleep(3.0)
        t0 = time.monotonic()
        end = t0 + total
        baseline_fds = server.fds()
        load0 = os.getloadavg()
        print(f"{args.players} steady players; baseline fds {baseline_fds}; load average {load0[0]:.1f}", flush=True)
        next_sample = t0

        def sample(kind: str) -> dict:
            s = {"t": round(time.monotonic() - t0, 1), "kind": kind, "rss_kib": load.rss_kib(server.pid), "fds": server.fds()}
            samples.append(s)
            return s

        def wait_sampling(until: float) -> None:
            nonlocal next_sample
            while True:
                now = time.monotonic()
                if not server.alive():
                    raise RuntimeError(f"server exited with status {server.proc.returncode}; log:\n{load.tail(server.log)}")
                if now >= next_sample:
                    sample("periodic")
                    next_sample += args.sample
                if now >= until:
                    return
                time.sleep(min(0.2, until - now))

        n = 0
        while time.monotonic() + args.churn_interval <= end:
            start = time.monotonic()
            url = f"rtmp://{HOST}:{server.port}/{APP}/churn-{n}"
            churn.append(ffmpeg(["-re", "-i", churn_file, "-c", "copy", "-f", "flv", url], ffmpeg_log))
            wait_sampling(start + 1.5)
            for _ in range(args.churn_players):
                churn.append(ffmpeg(["-rw_timeout", "10000000", "-i", url, "-t", f"{args.churn_play:g}", "-c", "copy", "-f", "null", "-"], ffmpeg_log))
            wait_sampling(start + args.churn_interval - 2.0)
            overran = failed = 0
            for p in churn:
                try:
                    rc = p.wait(timeout=max(0.0, start + args.churn_interval - 1.0 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    overran += 1
                    p.kill()
                    rc = p.wait(5)
                failed += rc != 0
            churn.clear()
            # Quiet point: every churn client is gone; fds must be back at the baseline.
            deadline = start + args.churn_interval
            while server.fds() != baseline_fds and time.monotonic() < deadline:
                time.sleep(0.1)
            s = sample("cycle-end")
            cycles.append({"cycle": n, "t": s["t"], "rss_kib": s["rss_kib"], "fds": s["fds"], "overran": overran, "failed": failed,
                           "rss_by_mapping_kib": server.rss_by_mapping()})
            print(f"cycle {n:3d} t={s['t']:7.1f}s rss={s['rss_kib'] / 1024:7.2f} MB fds={s['fds']} clients failed={failed} overran={overran}", flush=True)
            wait_sampling(deadline)
            n += 1

        report = {"video": [], "disconnected": 0}
        for pipe in pl_pipes:
            pipe.send("report")
            r = load.recv(pipe, 60, "steady players")
            report["video"] += r["video"]
            report["disconnected"] += r["disconnected"]
        load1 = os.getloadavg()
        elapsed = time.monotonic() - t0

        quiet = [(c["t"], c["rss_kib"] / 1024) for c in cycles if c["t"] >= warmup]
        slope = slope_per_hour(quiet)
        all_slope = slope_per_hour([(s["t"], s["rss_kib"] / 1024) for s in samples if s["t"] >= warmup])
        fd_bad = [c["cycle"] for c in cycles if c["fds"] != baseline_fds]
        client_failures = sum(c["failed"] + c["overran"] for c in cycles)
        probe = [p for p in server.probe_lines()]
        after = [p for p in probe if p["t"] >= warmup]
        blocks_slope = slope_per_hour([(p["t"], p["blocks"]) for p in after])
        expected_video = elapsed * load.FPS
        videos = report["video"]
        passed = slope < args.bound and not fd_bad and report["disconnected"] == 0
        result = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_start": load0, "load_average_end": load1},
            "settings": {k: v for k, v in vars(args).items() if k not in ("json",)} | {"warmup_s": warmup},
            "elapsed_s": round(elapsed, 1),
            "cycles": cycles,
            "samples": samples,
            "probe": probe,
            "baseline_fds": baseline_fds,
            "rss_first_mb": samples[0]["rss_kib"] / 1024 if samples else None,
            "rss_last_mb": samples[-1]["rss_kib"] / 1024 if samples else None,
            "rss_slope_mb_per_h": slope,
            "rss_slope_all_samples_mb_per_h": all_slope,
            "blocks_slope_per_h": blocks_slope,
            "fd_not_at_baseline_after_cycles": fd_bad,
            "churn_client_failures": client_failures,
            "steady": {"players": args.players, "disconnected": report["disconnected"],
                       "video_min": min(videos, default=0), "video_max": max(videos, default=0),
                       "video_expected": round(expected_video)},
            "pass": passed,
        }
        print()
        print(f"run {elapsed / 60:.1f} min, {len(cycles)} churn cycles ({args.churn_players} players each), {args.players} steady players")
        print(f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end ({os.cpu_count()} CPUs)")
        if samples:
            w = [s for s in samples if s["t"] >= warmup]
            print(f"RSS {samples[0]['rss_kib'] / 1024:.2f} MB at start, {w[0]['rss_kib'] / 1024 if w else float('nan'):.2f} MB after "
                  f"{warmup / 60:.1f} min warm-up, {samples[-1]['rss_kib'] / 1024:.2f} MB at end")
        print(f"RSS slope after warm-up: {slope:+.2f} MB/h at the quiet points ({len(quiet)} cycle ends), "
              f"{all_slope:+.2f} MB/h over all samples; bound {args.bound} MB/h")
        if after:
            types0, types1 = after[0]["types"], after[-1]["types"]
            print(f"Python allocated blocks: {after[0]['blocks']} -> {after[-1]['blocks']} ({blocks_slope:+.0f}/h); "
                  f"gc-tracked objects {after[0]['gc_objects']} -> {after[-1]['gc_objects']}; "
                  f"full collections {after[-1]['collections'][2] - after[0]['collections'][2]}")
            if "malloc" in after[0]:
                m0, m1 = after[0]["malloc"], after[-1]["malloc"]
                print("glibc malloc (MB, after warm-up -> at end): " + ", ".join(
                    f"{k} {m0[k] / 1e6:.2f}->{m1[k] / 1e6:.2f}" for k in ("heap", "in_use", "free", "mmapped")))
            print("live objects after warm-up -> at end: " + ", ".join(
                f"{k} {types0.get(k, 0)}->{types1.get(k, 0)}" for k in sorted(set(types0) | set(types1))))
        wc = [c for c in cycles if c["t"] >= warmup]
        if wc:
            print("RSS by mapping (MB, first quiet point after warm-up -> last; slope MB/h): " + ", ".join(
                f"{k} {wc[0]['rss_by_mapping_kib'][k] / 1024:.2f}->{wc[-1]['rss_by_mapping_kib'][k] / 1024:.2f} "
                f"({slope_per_hour([(c['t'], c['rss_by_mapping_kib'][k] / 1024) for c in wc]):+.2f})"
                for k in ("heap", "anon", "file", "other")))
        print(f"fds: baseline {baseline_fds}; cycles not back at baseline: {fd_bad or 'none'}")
        print(f"steady players: {report['disconnected']} disconnected; video messages per player {min(videos, default=0)}..{max(videos, default=0)} "
              f"(~{expected_video:.0f} sent); churn clients failed or overran: {client_failures}")
        print("PASS" if passed else "FAIL")
        return 0 if passed else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for p in churn:
            with contextlib.suppress(Exception):
                p.kill()
                p.wait(5)
        children.stop_all(timeout=3.0)
        server.stop()
        ffmpeg_log.close()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result or {"samples": samples, "cycles": cycles}, f, indent=1)
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
