"""Players that stop reading, over plain RTMP and over RTMPS, with the server's RSS sampled.

A ~5 Mbit/s stream is published by our own client (RTMPConnection over a socket, paced in real
time) and one player connects, plays and then never reads again.  The server must keep that
player's cost bounded whatever the transport: Twisted's write buffer over its limit pauses the
connection (through the TLS layer too), the player's frames queue in its bounded backlog
(``player_backlog_bytes``) and are dropped whole down to the next keyframe (logged as "fell behind").
With ``send_timeout`` the player is closed after that many seconds of taking nothing.

RSS bound while the player is stuck: after a warm-up (GOP cache, kernel and TLS buffers filled,
the backlog at its limit at least once) the server's RSS may not grow by more than
``player_backlog_bytes`` + 8 MB (allocator slack, a GOP's worth of frames) over the rest of the run.
Before the write path kept flow control through TLS, RSS grew ~10 MB per 30 s and kept rising.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection
from tests.e2e import helpers

pytestmark = pytest.mark.e2e

MB = 1_000_000
FPS = 30
VIDEO_BYTES = 20_000  # 30 fps x 20 kB = 4.8 Mbit/s of video
BACKLOG = 2 * MB


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Client:
    """Blocking RTMP client with our codec: handshake, connect, createStream."""

    def __init__(self, port: int, use_tls: bool, rcvbuf: int | None = None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: small window
        raw.settimeout(30)
        raw.connect(("127.0.0.1", port))
        if use_tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            raw = ctx.wrap_socket(raw)
        self.sock = raw
        self.conn = RTMPConnection(server=False)
        self.conn.initiate()
        self.flush()
        while not self.conn.handshake_complete:
            self.receive()
        self.conn.send_command("connect", 1.0, {"app": "live", "tcUrl": f"rtmp://127.0.0.1:{port}/live"})
        self.flush()
        self.wait_result(1.0)
        self.conn.send_command("createStream", 2.0, None)
        self.flush()
        self.stream_id = int(self.wait_result(2.0).arguments[0])

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def receive(self) -> list:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        msgs = self.conn.receive_data(data)
        self.flush()
        return msgs

    def wait_result(self, tid: float):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for msg in self.receive():
                if isinstance(msg, m.CommandMessage) and msg.transaction_id == tid:
                    assert msg.name == "_result", msg
                    return msg
        raise AssertionError(f"no answer to transaction {tid}")

    def command(self, name: str, *args) -> None:
        self.conn.send_command(name, 0.0, None, *args, stream_id=self.stream_id)
        self.flush()


class Publisher(threading.Thread):
    """Publishes 30 fps of VIDEO_BYTES video (keyframe every second) + AAC-shaped audio in real time."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.client = Client(port, use_tls=False)
        self.client.command("publish", "s", "live")
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        c = self.client
        sid = c.stream_id
        try:
            c.conn.send(m.VideoMessage(0, sid, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x00"))
            c.conn.send(m.AudioMessage(0, sid, b"\xaf\x00\x12\x10"))
            start = time.monotonic()
            n = 0
            while not self.stop.is_set():
                ts = n * 1000 // FPS
                first = b"\x17" if n % FPS == 0 else b"\x27"
                c.conn.send(m.VideoMessage(ts, sid, first + b"\x01\x00\x00\x00" + bytes(VIDEO_BYTES)))
                c.conn.send(m.AudioMessage(ts, sid, b"\xaf\x01" + bytes(300)))
                c.flush()
                n += 1
                delay = start + n / FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                # Drain what the server sends us (acks, pings) so we never block on it.
                c.sock.setblocking(False)
                try:
                    while c.sock.recv(65536):
                        pass
                except (BlockingIOError, ssl.SSLWantReadError):
                    pass
                finally:
                    c.sock.setblocking(True)
        except BaseException as e:  # reported by the test
            self.error = e


def start_server(e2e, send_timeout: int):
    return e2e.server(
        {
            "limits": {"send_timeout": str(send_timeout), "idle_timeout": "120", "ping_interval": "0"},
            "app:live": {"handlers": "live", "player_backlog_bytes": str(BACKLOG), "player_backlog_time": "3"},
        },
        need_process=True,
    )


@pytest.mark.parametrize("use_tls", [False, True], ids=["rtmp", "rtmps"])
def test_player_that_never_reads_keeps_server_memory_bounded(e2e, use_tls):
    srv = start_server(e2e, send_timeout=300)
    pid = srv.process.proc.pid
    pub = Publisher(srv.port)
    pub.start()
    try:
        time.sleep(1.5)
        player = Client(srv.ssl_port if use_tls else srv.port, use_tls, rcvbuf=16384)
        player.command("play", "s", -2.0)
        # From here on the player reads nothing.
        samples = []
        for _ in range(30):
            time.sleep(1.0)
            samples.append(rss(pid))
            assert pub.error is None, pub.error
        log = srv.log_text()
    finally:
        pub.stop.set()
        pub.join(timeout=10)
    growth = max(samples[10:]) - samples[9]
    print("RSS MB:", [round(s / MB, 1) for s in samples], f"growth after warm-up {growth / MB:.1f} MB")
    # Flow control reached the player's backlog: it filled up and was dropped to a keyframe.
    assert "fell behind" in log, helpers.tail(log)
    bound = BACKLOG + 8 * MB
    assert growth < bound, f"RSS grew {growth / MB:.1f} MB after warm-up (bound {bound / MB:.1f} MB): {samples}"
    player.sock.close()


@pytest.mark.parametrize("use_tls", [False, True], ids=["rtmp", "rtmps"])
def test_player_that_never_reads_is_closed_after_send_timeout(e2e, use_tls):
    srv = start_server(e2e, send_timeout=4)
    pub = Publisher(srv.port)
    pub.start()
    try:
        time.sleep(1.0)
        player = Client(srv.ssl_port if use_tls else srv.port, use_tls, rcvbuf=16384)
        player.command("play", "s", -2.0)
        assert helpers.wait_until(lambda: "(send_timeout)" in srv.log_text(), timeout=30), helpers.tail(srv.log_text())
        assert pub.error is None and pub.is_alive()  # the publisher was not affected
    finally:
        pub.stop.set()
        pub.join(timeout=10)
    player.sock.close()
