"""Load test: one 2 Mbit/s publisher, a ramp of players, idle memory and connection rate.

    .venv/bin/python bench/load.py [--compare-nginx] [--players 10,25,50,100,200,400]
                                   [--duration 10] [--merge 0,20] [--rtmps] [--json FILE] [--quick]
                                   [--workers N]

What runs where (a 2-core machine): the server under test is pinned to CPU 0 and everything this
tool starts (itself, the publisher, the player processes) to CPU 1, so the server has a core of
its own and the load generator cannot steal it.  All sockets are on 127.0.0.1.

For each server (rtmpserver with ``write_merge_ms`` = each value of ``--merge``; nginx with
libnginx-mod-rtmp, one worker, when ``--compare-nginx``):

1. idle memory: K connections that completed handshake + connect (``_result`` received) are held
   open; (server VmRSS after - before) / K;
2. connection rate: handshake + connect + ``_result`` over fresh TCP connections for a few
   seconds, one at a time and with 50 in parallel; then full player setups as FFmpeg and librtmp
   do them (handshake with a C1 digest, connect, createStream, play of a stream that has a
   publisher, Set Buffer Length, NetStream.Play.Start, close), ``--setup-parallel`` (64) at a
   time: setups/s, server CPU and server CPU per setup (ms);
3. the ramp: for each N, N players play a fresh stream, then one publisher sends H.264/AAC-shaped
   messages (30 fps video totalling 2 Mbit/s, keyframe every 2 s, ~43 AAC frames/s) for
   ``--duration`` seconds.  Every video body carries its send time (time.time_ns()) and a
   sequence number, so players measure publisher-to-player latency and count what they got.
   A step passes when every player received every frame and p99 latency < 500 ms; the ramp
   stops at the first step that fails.  Server CPU comes from /proc/PID/stat (utime+stime)
   over the publishing window.

With ``--rtmps`` rtmpserver also listens with TLS (a throwaway self-signed certificate made with
openssl) and the ramp runs once more with the players on RTMPS (the publisher stays on RTMP): the
cost of a TLS player next to an RTMP one (nginx-rtmp has no TLS of its own, so it is not run so).
At the end one table lists every step of every server: players, server CPU, delivered ratio,
p50/p99 latency and the load generator's CPU.

With ``--workers N`` (N > 1) rtmpserver runs with ``[server] workers = N`` (a supervisor that binds
the listeners and N worker processes; a player on another worker than the publisher's is served
through the inter-worker relay) and nginx with ``worker_processes N;`` and ``rtmp_auto_push on;``
(master process on).  The server then cannot have a core of its own, so nothing is pinned: the
server's processes and the load generator share every core.  Server CPU is then the sum over the
server's whole process tree (supervisor/master and workers, children that appear or exit during
the window included), and each step also reports how busy the whole machine was (/proc/stat), so
that a saturated load generator or machine shows.  For rtmpserver each step asks /api/v1/clients
(an ``[http:bench]`` listener on loopback, added only then) which worker serves each player and
reports players and complete players per worker.  The default, ``--workers 1``, is the pinned
single-process run described above.

Every wait is bounded, and every process started here is stopped on exit, on Ctrl-C and on errors
(children also get SIGTERM from the kernel if this process dies: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

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
from _rtmpclient import Client, open_client  # noqa: E402

from rtmpserver.codec import amf0  # noqa: E402
from rtmpserver.codec import messages as m  # noqa: E402
from rtmpserver.codec.amftypes import ECMAArray  # noqa: E402

HOST = "127.0.0.1"
APP = "live"
SERVER_CPU = 0
LOAD_CPU = 1
P99_LIMIT_MS = 500.0
AUDIO_RATE = 44100 / 1024  # AAC frames per second at 44.1 kHz
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
CLK_TCK = os.sysconf("SC_CLK_TCK")

try:
    import uvloop
except ImportError:  # pragma: no cover - the bench extra installs it
    uvloop = None


def run_async(coro):
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# -- processes -------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the process that started us goes away."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _pin(cpu: int | None) -> None:
    """Pin to ``cpu``; ``None`` (``--workers`` > 1): allow every core."""
    if (os.cpu_count() or 1) >= 2:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu} if cpu is not None else set(range(os.cpu_count() or 1)))


def _server_preexec() -> None:
    _die_with_parent()
    if os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {SERVER_CPU})


def _server_preexec_unpinned() -> None:
    _die_with_parent()
    _pin(None)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant (parent pids from /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds per process of ``root``'s tree: utime + stime + cutime + cstime.

    The children's fields (cutime, cstime) hold the CPU of children their parent has reaped, so
    the difference of the sums between two readings also counts a worker that exited (and was
    waited for) between them; one that appeared between them starts from 0.
    """
    out = {}
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        out[pid] = sum(int(x) for x in f[11:15]) / CLK_TCK
    return out


def tree_cpu_used(before: dict[int, float], after: dict[int, float]) -> tuple[float, dict[int, float]]:
    """CPU seconds the tree used between two ``tree_cpu`` readings, in total and per process
    alive at the end.  The total subtracts every process of the first reading: one that exited
    since then moved all its CPU into its parent's cutime/cstime."""
    return sum(after.values()) - sum(before.values()), {pid: after[pid] - before.get(pid, 0.0) for pid in after}


def tree_rss_kib(root: int) -> int:
    """VmRSS summed over the tree (pages shared between processes counted in each)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            total += rss_kib(pid)
    return total


def cpu_busy() -> dict[int, float]:
    """Busy seconds per CPU from /proc/stat (user, nice, system, irq, softirq, steal), to see
    whether anything else ran on the cores during a measurement."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v]
                out[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK
    return out


def wait_quiet(max_wait: float, threshold: float = 15.0) -> float:
    """Wait (at most ``max_wait`` s) until every core was under ``threshold``% busy for a second.

    Other work on the machine (a test suite, a build) would otherwise be measured as our latency.
    Returns the busiest core's % over the last second looked at.
    """
    deadline = time.monotonic() + max_wait
    while True:
        b0 = cpu_busy()
        time.sleep(1.0)
        b1 = cpu_busy()
        worst = max((b1[c] - b0.get(c, 0)) * 100 for c in b1)
        if worst < threshold or time.monotonic() >= deadline:
            return worst


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def make_cert(directory: str) -> tuple[str, str]:
    """A throwaway self-signed certificate (EC P-256) for the ``--rtmps`` listener."""
    key, cert = os.path.join(directory, "bench.key"), os.path.join(directory, "bench.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=30,
    )
    return key, cert


def client_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # our own throwaway certificate
    return ctx


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float, log: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} during start-up; log:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s; log:\n{tail(log)}")


def unaccepted_unix(directory: str) -> int:
    """Connections waiting in the accept queue of Unix listening sockets under ``directory``
    (``ss -xl``, Recv-Q): nginx-rtmp's auto-push sockets there should never hold any for long."""
    try:
        out = subprocess.run(["ss", "-xlnH"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    waiting = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[4].startswith(directory + "/") and parts[2].isdigit():
            waiting += int(parts[2])
    return waiting


def api_clients(http_port: int) -> list[dict]:
    """rtmpserver's merged /api/v1/clients (every worker's clients, each with its ``worker``)."""
    with urllib.request.urlopen(f"http://{HOST}:{http_port}/api/v1/clients", timeout=10) as r:
        return json.load(r)["clients"]


def tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Server:
    """A server under test: rtmpserver (twistd) or nginx-rtmp, pinned to SERVER_CPU (with
    ``workers`` > 1: N worker processes, not pinned)."""

    def __init__(self, kind: str, workdir: str, merge_ms: float = 0.0, extra_ini: str = "", tag: str = "",
                 tls: bool = False, workers: int = 1) -> None:
        """``extra_ini`` is appended to rtmpserver's config (more apps, ``[http:...]``); ``tag``
        tells servers with different ``extra_ini`` apart in labels and directory names; ``tls``:
        players connect to an ``ssl:`` listener (rtmpserver only); ``workers``: rtmpserver's
        ``[server] workers``, nginx's ``worker_processes`` (with ``rtmp_auto_push on``)."""
        self.kind = kind
        self.tls = tls
        self.workers = workers
        if tls:
            tag += " rtmps"
        if workers > 1:
            tag += f" workers={workers}"
        self.merge_ms = merge_ms
        self.extra_ini = extra_ini
        self.label = f"rtmpserver write_merge_ms={merge_ms:g}{tag}" if kind == "rtmpserver" else "nginx-rtmp" + tag
        self.dir = os.path.join(workdir, f"{kind}-{merge_ms:g}{tag}".replace(" ", "-") if kind == "rtmpserver" else kind)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.ssl_port = free_port() if tls else None
        # /api/v1/clients tells which worker serves each player (rtmpserver, workers > 1 only).
        self.http_port = free_port() if kind == "rtmpserver" and workers > 1 else None
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(self.dir, "server.log" if kind == "rtmpserver" else "error.log")

    def start(self) -> None:
        if self.kind == "rtmpserver":
            conf = os.path.join(self.dir, "server.ini")
            listen = f"listen = tcp:{self.port}:interface={HOST}\n"
            if self.tls:
                key, cert = make_cert(self.dir)
                listen += f"    ssl:{self.ssl_port}:interface={HOST}:privateKey={key}:certKey={cert}\n"
            if self.workers > 1:
                listen += f"workers = {self.workers}\n"
            with open(conf, "w") as f:
                f.write(
                    "[server]\n"
                    + listen +
                    "out_chunk_size = 4096\n"
                    "access_log = no\n"
                    "[limits]\n"
                    "max_connections_per_ip = 100000\n"
                    "max_pending_per_ip = 100000\n"  # the load generator connects in bursts from one address
                    "idle_timeout = 300\n"
                    "handshake_timeout = 30\n"
                    "[app:live]\n"
                    f"write_merge_ms = {self.merge_ms:g}\n"
                    + self.extra_ini
                    + (f"[http:bench]\nlisten = tcp:{self.http_port}:interface={HOST}\n" if self.http_port else "")
                )
            twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
            cmd = [twistd, "-n", "--pidfile=", f"--logfile={self.log}", "rtmp", "--config", conf]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        else:
            conf = os.path.join(self.dir, "nginx.conf")
            if self.workers > 1:
                # Several workers need the master process; rtmp_auto_push (a main-context directive
                # of ngx_rtmp_auto_push_module) makes each worker push every published stream to
                # the others over Unix sockets in rtmp_socket_dir (default /tmp: ours instead).
                # As root the master would run its workers as nobody: keep them root, as the
                # single-process run is, so they can use our directories.
                head = (
                    "master_process on;\n"
                    f"worker_processes {self.workers};\n"
                    + ("user root;\n" if os.geteuid() == 0 else "")
                )
                # After load_module: the directives are the module's.
                auto_push = f"rtmp_auto_push on;\nrtmp_socket_dir {self.dir};\n"
            else:
                head, auto_push = "master_process off;\nworker_processes 1;\n", ""
            with open(conf, "w") as f:
                f.write(
                    "daemon off;\n"
                    + head +
                    "worker_rlimit_nofile 20000;\n"
                    f"error_log {self.log} warn;\n"
                    f"pid {self.dir}/nginx.pid;\n"
                    + (f"load_module {NGINX_RTMP_MODULE};\n" if NGINX_RTMP_MODULE else "")
                    + auto_push +
                    "events { worker_connections 10000; }\n"
                    "rtmp {\n"
                    "    access_log off;\n"
                    "    server {\n"
                    f"        listen {HOST}:{self.port};\n"
                    "        chunk_size 4096;\n"
                    "        application live { live on; }\n"
                    "    }\n"
                    "}\n"
                )
            cmd = [NGINX, "-p", self.dir + "/", "-e", self.log, "-c", conf]
            env = dict(os.environ)
        self._out = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            preexec_fn=_server_preexec if self.workers == 1 else _server_preexec_unpinned, start_new_session=True,
        )
        wait_port(self.port, self.proc, 20.0, self.log if self.kind == "nginx" else self.log)
        if self.workers > 1:
            self._wait_workers(30.0)

    def _wait_workers(self, timeout: float) -> None:
        """With workers the supervisor (or nginx's master) listens before the workers run: wait
        until N children exist and, for rtmpserver, the merged /api/v1 answers (every worker
        connected to the supervisor)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode} during start-up; log:\n{tail(self.log)}")
            if len(process_tree(self.pid)) - 1 >= self.workers:
                if self.http_port is None:
                    return
                with contextlib.suppress(OSError, ValueError):
                    api_clients(self.http_port)
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.workers} workers not up within {timeout:.0f} s; log:\n{tail(self.log)}")

    def cpu(self) -> dict[int, float]:
        """A CPU reading: the server process, or (workers > 1) every process of its tree."""
        if self.workers == 1:
            return {self.pid: cpu_seconds(self.pid)}
        return tree_cpu(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid) if self.workers == 1 else tree_rss_kib(self.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def player_port(self) -> int:
        return self.ssl_port if self.tls else self.port

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind == "rtmpserver" else signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.workers > 1:
            # Workers left behind by a supervisor/master that did not stop them: its own session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._out.close()
        self.proc = None


# -- players ----------------------------------------------------------------------------------------


class Player(Client):
    """Counts media and records each video frame's latency (ms) into a shared array."""

    def __init__(self, latencies: array.array) -> None:
        super().__init__()
        self.latencies = latencies
        self.video = 0
        self.audio = 0
        self.max_seq = -1
        self.out_of_order = 0
        self.reads = 0  # data_received calls: how many pieces the server's writes arrived in

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        super().data_received(data)

    def on_video(self, msg, now_ns: int) -> None:
        p = msg.payload
        if len(p) < STAMP_OFFSET + STAMP.size or p[1] != 1:
            return  # sequence header
        sent_ns, seq = STAMP.unpack_from(p, STAMP_OFFSET)
        self.latencies.append((now_ns - sent_ns) / 1e6)
        self.video += 1
        if seq != self.max_seq + 1:
            self.out_of_order += 1
        if seq > self.max_seq:
            self.max_seq = seq

    def on_audio(self, msg, now_ns: int) -> None:
        if len(msg.payload) > 1 and msg.payload[1] == 1:
            self.audio += 1


def _local_port(client: Client) -> int:
    """The player's own TCP port: the server's client list shows it as the client's ``port``."""
    with contextlib.suppress(Exception):
        return client.transport.get_extra_info("sockname")[1]
    return 0


async def _pipe_recv(pipe, timeout: float):
    """Wait (without blocking the loop) for the next message on a multiprocessing pipe."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    fd = pipe.fileno()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_reader(fd)
        # uvloop (libuv) leaves a watched fd non-blocking; a large pipe.send() would then fail
        # half-way with EAGAIN and corrupt the pipe.
        os.set_blocking(fd, True)
    return pipe.recv()


async def _players_main(pipe, port: int, stream: str, count: int, ready_timeout: float, tls: bool = False) -> None:
    latencies = array.array("d")
    tc_url = f"{'rtmps' if tls else 'rtmp'}://{HOST}:{port}/{APP}"
    sem = asyncio.Semaphore(50)
    players: list[Player] = []
    ctx = client_tls() if tls else None

    async def start_one() -> None:
        async with sem:
            p = await open_client(HOST, port, lambda: Player(latencies), ssl=ctx)
            players.append(p)
            await asyncio.wait_for(p.connect(APP, tc_url), 15)
            sid = await asyncio.wait_for(p.create_stream(), 15)
            fut = p.wait_status(sid, "NetStream.Play.Start")
            p.notify("play", None, stream, -2000.0, stream_id=sid)
            p.conn.send(m.UserControl.set_buffer_length(sid, 3000))
            p.send()
            await asyncio.wait_for(fut, 15)

    results = await asyncio.wait_for(
        asyncio.gather(*(start_one() for _ in range(count)), return_exceptions=True), ready_timeout
    )
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    pipe.send({"ready": count - len(errors), "errors": errors[:3]})
    cmd = await _pipe_recv(pipe, 600)
    assert cmd == "report", cmd
    pipe.send(
        {
            "video": [p.video for p in players],
            "audio": [p.audio for p in players],
            "out_of_order": sum(p.out_of_order for p in players),
            "reads": sum(p.reads for p in players),
            "disconnected": sum(1 for p in players if p.closed.done()),
            "latencies": latencies.tobytes(),
            "ports": [_local_port(p) for p in players],
        }
    )
    for p in players:
        p.close()
    await asyncio.sleep(0.2)


def players_process(pipe, port: int, stream: str, count: int, ready_timeout: float, tls: bool = False,
                    pinned: bool = True) -> None:
    _die_with_parent()
    _pin(LOAD_CPU if pinned else None)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run_async(_players_main(pipe, port, stream, count, ready_timeout, tls))
        except Exception as e:
            with contextlib.suppress(Exception):
                pipe.send({"error": f"{type(e).__name__}: {e}"})


# -- publisher ----------------------------------------------------------------------------------------


async def _publisher_main(pipe, port: int, stream: str, duration: float, video_bps: int) -> None:
    loop = asyncio.get_running_loop()
    pub = await open_client(HOST, port)
    tc_url = f"rtmp://{HOST}:{port}/{APP}"
    await asyncio.wait_for(pub.connect(APP, tc_url, type="nonprivate", flashVer="FMLE/3.0 (compatible; bench)"), 15)
    pub.conn.send(m.SetChunkSize(4096))  # as FFmpeg and OBS do
    pub.notify("releaseStream", None, stream)
    pub.notify("FCPublish", None, stream)
    sid = await asyncio.wait_for(pub.create_stream(), 15)
    fut = pub.wait_status(sid, "NetStream.Publish.Start")
    pub.notify("publish", None, stream, "live", stream_id=sid)
    await asyncio.wait_for(fut, 15)
    pipe.send({"published": True})
    cmd = await _pipe_recv(pipe, 120)
    assert cmd == "go", cmd

    conn = pub.conn
    transport = pub.transport
    key_size, p_size = frame_sizes(video_bps)
    gop = int(FPS * GOP_SECONDS)
    pool = PayloadPool(seed=7)
    rng = random.Random(11)
    meta = ECMAArray(
        width=1280.0, height=720.0, framerate=float(FPS), videocodecid=7.0, videodatarate=video_bps / 1000,
        audiocodecid=10.0, audiosamplerate=44100.0, audiosamplesize=16.0, stereo=True, encoder="rtmpserver bench",
    )
    conn.send_raw(18, amf0.encode("@setDataFrame", "onMetaData", meta), stream_id=sid)
    conn.send_raw(9, AVC_SEQUENCE_HEADER, stream_id=sid)
    conn.send_raw(8, AAC_SEQUENCE_HEADER, stream_id=sid)
    transport.write(conn.data_to_send())

    n_video = int(duration * FPS)
    n_audio = int(duration * AUDIO_RATE)
    t0 = loop.time()
    vi = ai = 0
    late_max = 0.0
    buf_max = 0
    pipe.send({"started": time.time()})
    while vi < n_video or ai < n_audio:
        tv = vi / FPS if vi < n_video else float("inf")
        ta = ai / AUDIO_RATE if ai < n_audio else float("inf")
        # Video first on a tie: a player starts at the keyframe, audio before it would be held back.
        due = min(tv, ta)
        delay = t0 + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late_max = max(late_max, -delay)
        if pub.error is not None:
            raise RuntimeError(f"publisher connection failed: {pub.error}")
        if tv <= ta:
            key = vi % gop == 0
            size = int((key_size if key else p_size) * rng.uniform(0.8, 1.2))
            conn.send_raw(9, video_body(pool, size, key, time.time_ns(), vi), stream_id=sid, timestamp=int(tv * 1000))
            vi += 1
        else:
            conn.send_raw(8, audio_body(pool, rng.randint(300, 440)), stream_id=sid, timestamp=int(ta * 1000))
            ai += 1
        transport.write(conn.data_to_send())
        buf_max = max(buf_max, transport.get_write_buffer_size())
    pipe.send({"done": True, "video": n_video, "audio": n_audio, "late_max_ms": late_max * 1000, "write_buffer_max": buf_max})
    cmd = await _pipe_recv(pipe, 120)
    pub.close()
    await asyncio.sleep(0.1)


def publisher_process(pipe, port: int, stream: str, duration: float, video_bps: int, pinned: bool = True) -> None:
    _die_with_parent()
    _pin(LOAD_CPU if pinned else None)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run_async(_publisher_main(pipe, port, stream, duration, video_bps))
        except Exception as e:
            with contextlib.suppress(Exception):
                pipe.send({"error": f"{type(e).__name__}: {e}"})


# -- orchestration -----------------------------------------------------------------------------------


class Children:
    """Every helper process of a step; all are stopped on exit, whatever happens."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.procs: list = []

    def start(self, target, *args):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=target, args=(child, *args), daemon=True)
        p.start()
        child.close()
        self.procs.append(p)
        return p, parent

    def stop_all(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)
        self.procs.clear()


def recv(pipe, timeout: float, what: str):
    if not pipe.poll(timeout):
        raise TimeoutError(f"no answer from the {what} within {timeout:.0f} s")
    msg = pipe.recv()
    if isinstance(msg, dict) and "error" in msg:
        raise RuntimeError(f"{what}: {msg['error']}")
    return msg


def percentile(sorted_values, q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q / 100 * (len(sorted_values) - 1)))))
    return sorted_values[i]


PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")


def start_profile(server: Server, n: int, seconds: float, workdir: str):
    """py-spy (sampling, non-blocking) on the rtmpserver process for the publishing window."""
    if server.kind != "rtmpserver" or server.workers > 1 or not os.path.exists(PY_SPY):
        return None
    out = os.path.join(workdir, f"profile-{server.label.split('=')[-1]}-{n}.txt")
    cmd = [PY_SPY, "record", "--nonblocking", "-r", "200", "-f", "raw", "-F", "-d", str(max(1, int(seconds))),
           "-p", str(server.pid), "-o", out]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    return proc, out


def summarize_profile(path: str, top: int = 15) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed-stack output."""
    self_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            c = int(count)
            total += c
            frames = stack.split(";")
            self_n[frames[-1]] = self_n.get(frames[-1], 0) + c
            for fr in set(frames):
                incl_n[fr] = incl_n.get(fr, 0) + c
    def share(d, skip_outer=False):
        rows = sorted(d.items(), key=lambda kv: -kv[1])
        if skip_outer:  # the reactor loop and twistd start-up frames hold ~100% and say nothing
            rows = [kv for kv in rows if kv[1] < 0.9 * total]
        return [(k, round(v / max(1, total) * 100, 1)) for k, v in rows[:top]]
    return {"samples": total, "self": share(self_n), "inclusive": share(incl_n, True)}


def worker_pids(server: Server) -> dict[int, int]:
    """pid -> worker index, from the supervisor's "worker N started (pid P)" log lines (the last
    line per index wins: a restarted worker has a new pid)."""
    out: dict[int, int] = {}
    with contextlib.suppress(OSError), open(server.log, errors="replace") as f:
        for line in f:
            i = line.find("worker ")
            if i < 0 or " started (pid " not in line:
                continue
            with contextlib.suppress(ValueError, IndexError):
                index = int(line[i + 7:].split()[0])
                pid = int(line.split(" started (pid ", 1)[1].split(")")[0])
                out = {p: w for p, w in out.items() if w != index}
                out[pid] = index
    return out


def worker_breakdown(server: Server, cpu_by_pid: dict[int, float], wall: float, clients, ports: list[int],
               videos: list[int], audios: list[int], done: dict) -> dict:
    """CPU per process of the server's tree and (rtmpserver) players and complete players per
    worker; players are matched to /api/v1/clients rows by their TCP port."""
    out: dict = {"server_cpu_root_pct": cpu_by_pid.get(server.pid, 0.0) / wall * 100}
    if server.kind == "rtmpserver":
        index = worker_pids(server)
        out["worker_cpu_pct"] = {
            str(index.get(pid, f"pid {pid}")): used / wall * 100 for pid, used in sorted(cpu_by_pid.items()) if pid != server.pid
        }
    else:
        out["worker_cpu_pct"] = {f"pid {pid}": used / wall * 100 for pid, used in sorted(cpu_by_pid.items()) if pid != server.pid}
    if clients is None:
        return out
    by_port = {c.get("port"): c.get("worker") for c in clients if c.get("role") == "player"}
    players: dict[str, int] = {}
    complete: dict[str, int] = {}
    for port, v, a in zip(ports, videos, audios, strict=False):
        w = str(by_port.get(port, "?"))
        players[w] = players.get(w, 0) + 1
        complete[w] = complete.get(w, 0) + (v == done["video"] and a == done["audio"])
    pubs = [c.get("worker") for c in clients if c.get("role") == "publisher"]
    out["publisher_worker"] = pubs[0] if pubs else None
    if pubs:
        players.setdefault(str(pubs[0]), 0)
        complete.setdefault(str(pubs[0]), 0)
    out["players_by_worker"] = dict(sorted(players.items()))
    out["complete_by_worker"] = dict(sorted(complete.items()))
    return out


def run_step(server: Server, n: int, args, children: Children) -> dict:
    stream = f"bench{n}-{uuid.uuid4().hex[:6]}"
    quiet = wait_quiet(args.wait_quiet)
    per_worker = args.players_per_worker
    shares = [min(per_worker, n - i) for i in range(0, n, per_worker)]
    pinned = server.workers == 1
    workers = [children.start(players_process, server.player_port, stream, k, 60.0, server.tls, pinned) for k in shares]
    res: dict = {"n": n, "workers": len(workers), "busiest_core_before_pct": quiet}
    prof = None
    try:
        ready = 0
        errors: list[str] = []
        for _, pipe in workers:
            msg = recv(pipe, 70, "player process")
            ready += msg["ready"]
            errors += msg["errors"]
        res["players_ready"] = ready
        if ready < n:
            res.update(passed=False, why=f"only {ready}/{n} players started: {errors[:2]}")
            return res
        pub, ppipe = children.start(publisher_process, server.port, stream, args.duration, args.video_bps, pinned)
        recv(ppipe, 30, "publisher")
        clients = None
        if server.kind == "nginx" and server.workers > 1:
            # rtmp_auto_push connects the publishing worker to each other worker's Unix socket
            # when the publish starts; one still waiting to be accepted is a push that never began.
            time.sleep(0.5)
            res["auto_push_unaccepted"] = unaccepted_unix(server.dir)
        if server.http_port is not None:
            # Before the window: which worker serves each player (by its port) and the publisher.
            try:
                clients = api_clients(server.http_port)
            except (OSError, ValueError) as e:
                res["api_error"] = f"{type(e).__name__}: {e}"
        load_pids = [pub.pid] + [w.pid for w, _ in workers]
        cpu0 = server.cpu()
        load0 = sum(cpu_seconds(p) for p in load_pids)
        busy0 = cpu_busy()
        prof = start_profile(server, n, args.duration, server.dir) if args.profile else None
        ppipe.send("go")
        recv(ppipe, 10, "publisher")  # started
        t0 = time.monotonic()
        done = recv(ppipe, args.duration + 30, "publisher")
        t1 = time.monotonic()
        cpu1 = server.cpu()
        load1 = sum(cpu_seconds(p) for p in load_pids)
        busy1 = cpu_busy()
        time.sleep(args.drain)
        rss = server.rss_kib()
        videos: list[int] = []
        audios: list[int] = []
        lat = array.array("d")
        ports: list[int] = []
        out_of_order = disconnected = reads = 0
        for _, pipe in workers:
            pipe.send("report")
        for _, pipe in workers:
            r = recv(pipe, 60, "player process")
            videos += r["video"]
            audios += r["audio"]
            ports += r["ports"]
            out_of_order += r["out_of_order"]
            disconnected += r["disconnected"]
            reads += r["reads"]
            lat.frombytes(r["latencies"])
        ppipe.send("stop")
        if prof is not None:
            with contextlib.suppress(Exception):
                prof[0].wait(timeout=30)
                res["profile"] = summarize_profile(prof[1])
        lat_sorted = sorted(lat)
        wall = t1 - t0
        complete = sum(1 for v, a in zip(videos, audios, strict=False) if v == done["video"] and a == done["audio"])
        cpu_used, cpu_by_pid = tree_cpu_used(cpu0, cpu1)
        if server.workers > 1:
            res.update(worker_breakdown(server, cpu_by_pid, wall, clients, ports, videos, audios, done))
            res["machine_busy_pct"] = sum(busy1[c] - busy0.get(c, 0) for c in busy1) / wall * 100 / max(1, len(busy1))
        res.update(
            video_sent=done["video"],
            audio_sent=done["audio"],
            players_complete=complete,
            min_video=min(videos) if videos else 0,
            min_audio=min(audios) if audios else 0,
            frames_missing=sum(done["video"] - v for v in videos) + sum(done["audio"] - a for a in audios),
            delivered=(sum(videos) + sum(audios)) / max(1, n * (done["video"] + done["audio"])),
            out_of_order=out_of_order,
            disconnected=disconnected,
            p50_ms=percentile(lat_sorted, 50),
            p99_ms=percentile(lat_sorted, 99),
            max_ms=lat_sorted[-1] if lat_sorted else float("nan"),
            server_cpu_pct=cpu_used / wall * 100,
            load_cpu_pct=(load1 - load0) / wall * 100,
            # Everything that ran on each core (incl. kernel softirq for loopback TCP and other
            # users' processes); busy minus server (CPU 0) or minus load (CPU 1) is interference.
            cpu_busy_pct={c: (busy1[c] - busy0.get(c, 0)) / wall * 100 for c in busy1},
            server_rss_mib=rss / 1024,
            publisher_late_max_ms=done["late_max_ms"],
            publisher_write_buffer_max=done["write_buffer_max"],
            window_s=wall,
            # Socket reads per player per second of publishing (the drain adds ~none): fewer, larger reads
            # mean the server wrote in fewer, larger pieces (merged writes).
            reads_per_player_s=reads / n / wall,
        )
        res["cpu_per_player_pct"] = res["server_cpu_pct"] / n
        why = []
        if complete < n:
            why.append(f"{n - complete} players missed frames ({res['frames_missing']} missing)")
        if res.get("auto_push_unaccepted"):
            why.append(f"{res['auto_push_unaccepted']} auto-push connection(s) never accepted by the other worker(s): "
                       "a loaded nginx-rtmp module? see bench/build_nginx_rtmp.sh")
        if not res["p99_ms"] < P99_LIMIT_MS:
            why.append(f"p99 {res['p99_ms']:.0f} ms >= {P99_LIMIT_MS:.0f}")
        res["passed"] = not why
        res["why"] = "; ".join(why)
        if server.workers == 1:
            res["load_bound"] = res["load_cpu_pct"] > 90
            if res["load_bound"]:
                res["why"] = (res["why"] + "; " if res["why"] else "") + "load generator near 100% CPU: figures are a lower bound"
        else:
            # Nothing pinned: the load generator and the server share the cores.  A machine near
            # 100% busy is the limit being measured, not a saturated generator; say so, whose
            # share is whose is in the server and load CPU columns.
            res["load_bound"] = False
            if res["machine_busy_pct"] > 95:
                res["why"] = (res["why"] + "; " if res["why"] else "") + (
                    f"machine {res['machine_busy_pct']:.0f}% busy (load generator {res['load_cpu_pct']:.0f}% of one core)")
        return res
    finally:
        if prof is not None and prof[0].poll() is None:
            prof[0].kill()
            prof[0].wait(5)
        children.stop_all()


async def _hold_idle(port: int, k: int, rss, settle: float) -> dict:
    """``rss``: the server's RSS in KiB now (Server.rss_kib)."""
    tc_url = f"rtmp://{HOST}:{port}/{APP}"
    sem = asyncio.Semaphore(50)

    async def one() -> Client:
        async with sem:
            c = await open_client(HOST, port)
            await asyncio.wait_for(c.connect(APP, tc_url), 15)
            return c

    warm = await asyncio.gather(*(one() for _ in range(20)))
    for c in warm:
        c.close()
    await asyncio.sleep(settle)
    before = rss()
    clients = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(k)), return_exceptions=True), 120)
    ok = [c for c in clients if isinstance(c, Client)]
    await asyncio.sleep(settle)
    after = rss()
    for c in ok:
        c.close()
    await asyncio.sleep(0.5)
    return {"k": len(ok), "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "kib_per_conn": (after - before) / max(1, len(ok))}


async def _connect_rate(port: int, seconds: float, parallel: int) -> dict:
    tc_url = f"rtmp://{HOST}:{port}/{APP}"
    done = 0
    errors = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def worker() -> None:
        nonlocal done, errors
        while loop.time() < deadline:
            c = None
            try:
                c = await open_client(HOST, port, timeout=10)
                await asyncio.wait_for(c.connect(APP, tc_url), 10)
                done += 1
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)
            finally:
                if c is not None:
                    c.close()

    t0 = loop.time()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return {"parallel": parallel, "connects": done, "errors": errors, "per_s": done / (loop.time() - t0)}


async def _hold_publisher(port: int, stream: str) -> Client:
    """A publisher of ``stream`` that sends metadata and the AVC/AAC sequence headers, then nothing:
    players of the setup test join a published stream, as real viewers do, and both servers send
    them the same things (no media frames, so a GOP cache plays no part)."""
    pub = await open_client(HOST, port)
    await asyncio.wait_for(pub.connect(APP, f"rtmp://{HOST}:{port}/{APP}", type="nonprivate",
                                       flashVer="FMLE/3.0 (compatible; bench)"), 15)
    sid = await asyncio.wait_for(pub.create_stream(), 15)
    fut = pub.wait_status(sid, "NetStream.Publish.Start")
    pub.notify("publish", None, stream, "live", stream_id=sid)
    await asyncio.wait_for(fut, 15)
    meta = ECMAArray(width=1280.0, height=720.0, framerate=float(FPS), videocodecid=7.0, audiocodecid=10.0)
    pub.conn.send_raw(18, amf0.encode("@setDataFrame", "onMetaData", meta), stream_id=sid)
    pub.conn.send_raw(9, AVC_SEQUENCE_HEADER, stream_id=sid)
    pub.conn.send_raw(8, AAC_SEQUENCE_HEADER, stream_id=sid)
    pub.send()
    return pub


async def _setup_rate(port: int, seconds: float, parallel: int, stream: str | None) -> dict:
    """Full player setups over fresh TCP connections, ``parallel`` at a time, for ``seconds``.

    One setup is what FFmpeg's and librtmp's players do: the handshake with a C1 digest
    (bench/_rtmpclient.py, as ``ClientHandshake`` sends by default), connect, createStream, play
    (live, start -2000) and Set Buffer Length, then wait for NetStream.Play.Start and close.
    ``stream``: the name of a stream with a publisher (None: one without, made up per setup).
    """
    tc_url = f"rtmp://{HOST}:{port}/{APP}"
    done = 0
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def one() -> None:
        c = await open_client(HOST, port, timeout=10)
        try:
            await asyncio.wait_for(c.connect(APP, tc_url), 10)
            sid = await asyncio.wait_for(c.create_stream(), 10)
            fut = c.wait_status(sid, "NetStream.Play.Start")
            c.notify("play", None, stream or f"nobody-{uuid.uuid4().hex[:8]}", -2000.0, stream_id=sid)
            c.conn.send(m.UserControl.set_buffer_length(sid, 3000))
            c.send()
            await asyncio.wait_for(fut, 10)
        finally:
            c.close()

    async def worker() -> None:
        nonlocal done
        while loop.time() < deadline:
            try:
                await one()
                done += 1
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
                await asyncio.sleep(0.01)

    t0 = loop.time()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    wall = loop.time() - t0
    return {"parallel": parallel, "setups": done, "errors": len(errors), "first_errors": errors[:3],
            "per_s": done / wall, "window_s": wall}


def measure_setups(server: Server, seconds: float, parallel: int, published: bool = True) -> dict:
    """``_setup_rate`` with server CPU (utime+stime over the window) and the load generator's own
    CPU; CPU per setup = server CPU seconds / setups completed."""

    async def run() -> dict:
        stream = f"setup-{uuid.uuid4().hex[:6]}" if published else None
        pub = await _hold_publisher(server.port, stream) if published else None
        await asyncio.sleep(0.3)
        try:
            me = os.getpid()
            cpu0, load0, busy0 = cpu_seconds(server.pid), cpu_seconds(me), cpu_busy()
            r = await _setup_rate(server.port, seconds, parallel, stream)
            cpu1, load1, busy1 = cpu_seconds(server.pid), cpu_seconds(me), cpu_busy()
        finally:
            if pub is not None:
                pub.close()
        wall = r["window_s"]
        r.update(
            published=published,
            server_cpu_pct=(cpu1 - cpu0) / wall * 100,
            load_cpu_pct=(load1 - load0) / wall * 100,
            cpu_busy_pct={c: (busy1[c] - busy0.get(c, 0)) / wall * 100 for c in busy1},
            server_cpu_ms_per_setup=(cpu1 - cpu0) * 1000 / max(1, r["setups"]),
        )
        return r

    return run_async(run())


def measure_connections(server: Server, args) -> dict:
    out: dict = {"busiest_core_before_pct": wait_quiet(args.wait_quiet)}
    out["idle"] = run_async(_hold_idle(server.port, args.idle, server.rss_kib, 1.0))
    for parallel in (1, 50):
        cpu0, t0 = server.cpu(), time.monotonic()
        r = run_async(_connect_rate(server.port, args.connect_seconds, parallel))
        r["server_cpu_pct"] = tree_cpu_used(cpu0, server.cpu())[0] / (time.monotonic() - t0) * 100
        out[f"connect_{parallel}"] = r
        time.sleep(0.5)
    out["setup"] = measure_setups(server, args.connect_seconds, args.setup_parallel)
    time.sleep(0.5)
    return out


def print_setups(c: dict) -> None:
    r = c["setup"]
    print(
        f"  setups (handshake with digest, connect, createStream, play, Play.Start, close), {r['parallel']} in parallel: "
        f"{r['per_s']:.0f}/s ({r['setups']} ok, {r['errors']} errors), server CPU {r['server_cpu_pct']:.0f}% = "
        f"{r['server_cpu_ms_per_setup']:.3f} ms per setup, load CPU {r['load_cpu_pct']:.0f}%"
        + (f"  first errors: {r['first_errors']}" if r["errors"] else ""),
        flush=True,
    )


def print_setup_table(results: dict) -> None:
    """Connection figures of every server measured (Markdown, for docs/performance.md)."""
    rows = [(label, tr["connections"]) for label, tr in results["targets"].items() if tr.get("connections")]
    if not rows:
        return
    print("\n| server | idle KiB/conn | setups/s | server CPU | server CPU per setup | load generator CPU |")
    print("|---|---|---|---|---|---|")
    for label, c in rows:
        r = c["setup"]
        print(
            f"| {label} | {c['idle']['kib_per_conn']:.1f} | {r['per_s']:.0f} ({r['parallel']} in parallel) | "
            f"{r['server_cpu_pct']:.0f}% | {r['server_cpu_ms_per_setup']:.3f} ms | {r['load_cpu_pct']:.0f}% |"
        )


def versions() -> dict:
    v = {"python": sys.version.split()[0]}
    with contextlib.suppress(Exception):
        import twisted

        v["twisted"] = twisted.__version__
    v["uvloop"] = getattr(uvloop, "__version__", None) if uvloop else None
    with contextlib.suppress(Exception):
        r = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=5)
        v["nginx"] = (r.stderr or r.stdout).strip().split(":", 1)[-1].strip()
        v["nginx_binary"] = NGINX
        v["nginx_rtmp_module"] = NGINX_RTMP_MODULE or "compiled in"
    with contextlib.suppress(Exception):
        v["git"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
    with contextlib.suppress(Exception):
        v["loadavg_at_start"] = open("/proc/loadavg").read().split()[:3]
    return v


def fmt_ms(x) -> str:
    return "-" if x is None or x != x else f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def print_step(label: str, r: dict) -> None:
    if "p50_ms" not in r:
        print(f"  {label:<30} N={r['n']:<4} FAIL  {r.get('why', '')}", flush=True)
        return
    print(
        f"  {label:<30} N={r['n']:<4} {'pass' if r['passed'] else 'FAIL'}  "
        f"complete {r['players_complete']}/{r['n']}  p50 {fmt_ms(r['p50_ms'])} ms  p99 {fmt_ms(r['p99_ms'])} ms  "
        f"max {fmt_ms(r['max_ms'])} ms  server CPU {r['server_cpu_pct']:.0f}% ({r['cpu_per_player_pct']:.2f}%/player)  "
        f"load CPU {r['load_cpu_pct']:.0f}%  busy CPU0/CPU1 {r['cpu_busy_pct'].get(0, 0):.0f}/{r['cpu_busy_pct'].get(1, 0):.0f}%  "
        f"reads/player/s {r['reads_per_player_s']:.0f}  RSS {r['server_rss_mib']:.0f} MiB"
        + (f"  machine busy {r['machine_busy_pct']:.0f}%  {workers_text(r)}" if "machine_busy_pct" in r else "")
        + (f"  [{r['why']}]" if r["why"] else ""),
        flush=True,
    )


def workers_text(r: dict) -> str:
    """Per worker (workers > 1): players (complete ones) and CPU; the supervisor's/master's CPU."""
    parts = [f"supervisor/master CPU {r['server_cpu_root_pct']:.0f}%"]
    players, complete = r.get("players_by_worker", {}), r.get("complete_by_worker", {})
    for w in sorted(set(players) | set(r["worker_cpu_pct"]), key=str):
        text = f"worker {w}:"
        if w in players:
            text += f" {players[w]} players ({complete.get(w, 0)} complete)"
            if r.get("publisher_worker") is not None and str(r["publisher_worker"]) == w:
                text += " + publisher"
        if w in r["worker_cpu_pct"]:
            text += f" CPU {r['worker_cpu_pct'][w]:.0f}%"
        parts.append(text)
    return "; ".join(parts)


def main() -> int:
    global NGINX, NGINX_RTMP_MODULE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare-nginx", action="store_true", help="also run nginx with libnginx-mod-rtmp")
    ap.add_argument("--players", default="10,25,50,100,200,400,600,800,1000,1200,1400,1600,1800,2000", help="the ramp of player counts (max 2000)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds the publisher sends per step (max 120)")
    ap.add_argument("--drain", type=float, default=3.0, help="seconds to wait for late frames after the publisher stops")
    ap.add_argument("--merge", default="0,20", help="write_merge_ms values to run rtmpserver with")
    ap.add_argument("--video-bps", type=int, default=2_000_000, help="video bitrate (default 2 Mbit/s)")
    ap.add_argument("--players-per-worker", type=int, default=100, help="players per load process")
    ap.add_argument("--idle", type=int, default=500, help="idle connections for the memory figure")
    ap.add_argument("--connect-seconds", type=float, default=5.0, help="seconds per connection-rate test")
    ap.add_argument("--setup-parallel", type=int, default=64, help="player setups in flight in the setup-rate test")
    ap.add_argument("--no-connections", action="store_true", help="skip idle memory and connection rate")
    ap.add_argument("--no-ramp", action="store_true", help="skip the player ramp")
    ap.add_argument("--wait-quiet", type=float, default=60.0, help="before each measurement wait up to this many seconds for idle cores")
    ap.add_argument("--max-seconds", type=float, default=1800.0, help="stop starting new steps after this")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--profile", action="store_true", help="sample rtmpserver with py-spy during each step (top functions in --json)")
    ap.add_argument("--quick", action="store_true", help="smoke test: --players 5,10 --duration 3 --idle 50 --connect-seconds 1")
    ap.add_argument("--keep-logs", action="store_true", help="keep the server working directory")
    ap.add_argument("--workers", type=int, default=1,
                    help="rtmpserver [server] workers and nginx worker_processes (with rtmp_auto_push on); "
                         "above 1 nothing is pinned and server CPU is summed over its processes (1-16)")
    ap.add_argument("--nginx", default=NGINX, help="the nginx binary for --compare-nginx")
    ap.add_argument("--nginx-module", default=NGINX_RTMP_MODULE,
                    help="the dynamic nginx-rtmp module to load_module ('' when the binary has it built in)")
    ap.add_argument("--rtmps", action="store_true", help="also run the ramp with the players on RTMPS (rtmpserver, write_merge_ms = first --merge value)")
    args = ap.parse_args()
    if args.quick:
        args.players, args.duration, args.idle, args.connect_seconds, args.drain = "5,10", 3.0, 50, 1.0, 1.0
        args.wait_quiet = min(args.wait_quiet, 2.0)
    ramp = sorted({int(x) for x in args.players.split(",") if x.strip()})
    if not ramp or ramp[0] < 1 or ramp[-1] > 2000:
        ap.error("--players: counts from 1 to 2000")
    args.duration = min(max(args.duration, 1.0), 120.0)
    args.idle = min(max(args.idle, 1), 5000)
    args.connect_seconds = min(max(args.connect_seconds, 0.5), 60.0)
    merges = [float(x) for x in args.merge.split(",") if x.strip()]
    if not 1 <= args.workers <= 16:
        ap.error("--workers: 1 to 16")
    # Absolute: nginx runs in its own directory.
    NGINX = os.path.abspath(shutil.which(args.nginx) or args.nginx)
    NGINX_RTMP_MODULE = os.path.abspath(args.nginx_module) if args.nginx_module else ""

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    pinned = (os.cpu_count() or 1) >= 2 and args.workers == 1
    if pinned:
        os.sched_setaffinity(0, {LOAD_CPU})
    else:
        _pin(None)
    info = versions()
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    info["pinning"] = (
        f"server on CPU {SERVER_CPU}, load generator on CPU {LOAD_CPU}" if pinned
        else f"none: {args.workers} server workers and the load generator share {os.cpu_count()} CPUs" if args.workers > 1
        else "none (1 CPU)"
    )
    print(f"rtmpserver load test  {info}", flush=True)

    workdir = tempfile.mkdtemp(prefix="rtmpbench-")
    targets = [Server("rtmpserver", workdir, mg, workers=args.workers) for mg in merges]
    if args.rtmps:
        targets.append(Server("rtmpserver", workdir, merges[0] if merges else 0.0, tls=True, workers=args.workers))
    if args.compare_nginx:
        if NGINX_RTMP_MODULE and not os.path.exists(NGINX_RTMP_MODULE):
            print(f"nginx-rtmp module not found at {NGINX_RTMP_MODULE} (apt-get install libnginx-mod-rtmp)", file=sys.stderr)
            return 2
        targets.append(Server("nginx", workdir, workers=args.workers))
    results: dict = {"info": info, "args": vars(args), "targets": {}}
    started = time.monotonic()
    children = Children()
    try:
        for idx, server in enumerate(targets):
            print(f"\n== {server.label} (port {server.port}) ==", flush=True)
            server.start()
            tr: dict = {"steps": []}
            results["targets"][server.label] = tr
            try:
                # Merging writes changes nothing for idle or connecting clients: measure once per server kind.
                if not args.no_connections and (idx == 0 or server.kind == "nginx") and not server.tls:
                    c = measure_connections(server, args)
                    tr["connections"] = c
                    i = c["idle"]
                    print(
                        f"  idle: {i['k']} connected clients: RSS {i['rss_before_mib']:.1f} -> {i['rss_after_mib']:.1f} MiB, "
                        f"{i['kib_per_conn']:.1f} KiB per connection",
                        flush=True,
                    )
                    for key in ("connect_1", "connect_50"):
                        r = c[key]
                        print(
                            f"  connects, {r['parallel']:>2} in parallel: {r['per_s']:.0f}/s "
                            f"({r['connects']} ok, {r['errors']} errors, server CPU {r['server_cpu_pct']:.0f}%)",
                            flush=True,
                        )
                    print_setups(c)
                if not args.no_ramp:
                    for n in ramp:
                        if time.monotonic() - started > args.max_seconds:
                            print(f"  stopping: --max-seconds {args.max_seconds:.0f} reached", flush=True)
                            break
                        try:
                            r = run_step(server, n, args, children)
                        except (TimeoutError, RuntimeError, OSError, EOFError) as e:
                            r = {"n": n, "passed": False, "why": f"{type(e).__name__}: {e}"}
                        tr["steps"].append(r)
                        print_step(server.label, r)
                        if not server.alive():
                            print(f"  server died; log:\n{tail(server.log)}", flush=True)
                            break
                        if not r["passed"] or r.get("load_bound"):
                            # Past a saturated load generator the figures measure the load, not the server.
                            break
                        time.sleep(1.0)
                    passed = [s["n"] for s in tr["steps"] if s.get("passed")]
                    tr["max_players"] = max(passed) if passed else 0
                    last = tr["steps"][-1] if tr["steps"] else {}
                    tr["load_bound"] = bool(last.get("load_bound"))
                    tr["ramp_exhausted"] = bool(last.get("passed")) and last.get("n") == ramp[-1]
            finally:
                server.stop()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all(timeout=2)
        for s in targets:
            with contextlib.suppress(Exception):
                s.stop()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nSummary ({args.video_bps / 1e6:g} Mbit/s video + audio, {args.duration:g} s per step; pass = all frames to every player and p99 < {P99_LIMIT_MS:.0f} ms)")
    for label, tr in results["targets"].items():
        line = f"  {label:<30}"
        if "max_players" in tr:
            line += f" largest passing N: {tr['max_players']}"
            if tr.get("load_bound"):
                line += " (load generator saturated: the server's limit is higher)"
            elif tr.get("ramp_exhausted"):
                line += " (end of --players: the limit is higher)"
        c = tr.get("connections")
        if c:
            line += (
                f"; idle {c['idle']['kib_per_conn']:.1f} KiB/conn; connects/s {c['connect_1']['per_s']:.0f} sequential, "
                f"{c['connect_50']['per_s']:.0f} with 50 in parallel; player setups/s {c['setup']['per_s']:.0f} "
                f"({c['setup']['server_cpu_ms_per_setup']:.3f} ms server CPU each)"
            )
        print(line)
    print_table(results)
    print_setup_table(results)
    return 0


def print_table(results: dict) -> None:
    """Every step of every server in one table (Markdown, for docs/performance.md)."""
    if results["args"].get("workers", 1) > 1:
        print_workers_table(results)
        return
    print("\n| server | players | server CPU | delivered | p50 | p99 | load generator CPU | passed |")
    print("|---|---|---|---|---|---|---|---|")
    for label, tr in results["targets"].items():
        for r in tr.get("steps", []):
            if "p50_ms" not in r:
                print(f"| {label} | {r['n']} | - | - | - | - | - | no: {r.get('why', '')} |")
                continue
            print(
                f"| {label} | {r['n']} | {r['server_cpu_pct']:.0f}% | {r['delivered'] * 100:.1f}% | "
                f"{fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['p99_ms'])} ms | {r['load_cpu_pct']:.0f}% | "
                f"{'yes' if r['passed'] else 'no'} |"
            )


def print_workers_table(results: dict) -> None:
    """The table for ``--workers`` > 1: server CPU summed over its processes (% of one core),
    the whole machine's busy %, and players (complete/total) per worker where known."""
    print("\n| server | players | server CPU (all processes) | machine busy | delivered | p50 | p99 | "
          "load generator CPU | players per worker (complete/served) | passed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, tr in results["targets"].items():
        for r in tr.get("steps", []):
            if "p50_ms" not in r:
                print(f"| {label} | {r['n']} | - | - | - | - | - | - | - | no: {r.get('why', '')} |")
                continue
            players, complete = r.get("players_by_worker"), r.get("complete_by_worker", {})
            spread = ", ".join(
                f"w{w}{'*' if str(r.get('publisher_worker')) == w else ''} {complete.get(w, 0)}/{k}" for w, k in players.items()
            ) if players else "-"
            print(
                f"| {label} | {r['n']} | {r['server_cpu_pct']:.0f}% | {r['machine_busy_pct']:.0f}% | "
                f"{r['delivered'] * 100:.1f}% | {fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['p99_ms'])} ms | "
                f"{r['load_cpu_pct']:.0f}% | {spread} | {'yes' if r['passed'] else 'no: ' + r['why'] if r['why'] else 'no'} |"
            )
    print("(CPU columns: % of one core; machine busy: % of all cores; * = the publisher's worker)")


if __name__ == "__main__":
    sys.exit(main())
