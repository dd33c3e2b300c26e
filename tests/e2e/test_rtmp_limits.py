"""RTMP connection limits end to end, with real sockets against a real twistd: over-limit
connections on an ``ssl:`` listener closed at once, a half-open flood from one address that does
not keep real clients (FFmpeg, rtmpdump) from the same address out, and the per-address cap on
established sessions (docs/configuration.md, [limits])."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import ssl
import threading
import time
import urllib.request

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import (
    FPS,
    ClientProcess,
    check_media,
    simple_handshake,
    wait_until,
)

pytestmark = pytest.mark.e2e


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _closed_within(socks: list[socket.socket], seconds: float, enough: int | None = None) -> set[int]:
    """Indexes of the sockets the server closed (EOF or reset) within ``seconds`` (or once ``enough`` were)."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    closed: set[int] = set()
    deadline = time.monotonic() + seconds
    enough = len(socks) if enough is None else enough
    while len(closed) < enough and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data:
                closed.add(key.data)
                sel.unregister(key.fileobj)
    sel.close()
    return closed


def test_over_limit_connections_on_an_ssl_listener_are_closed_at_once(e2e):
    """300 idle connections to the ssl: port with max_connections = 20: the 280 over the limit are
    closed at once (Twisted's TLS wrapper kept them open when buildProtocol returned None)."""
    srv = e2e.server({"limits": {"max_connections": "20", "max_pending_per_ip": "1000", "handshake_timeout": "60"}})
    pid = srv.process.proc.pid
    # The harness's start-up probes have been counted out once a fresh connection is kept.
    assert wait_until(lambda: _open_fds(pid) < 40, 5)
    baseline = _open_fds(pid)
    flood, reset_at_connect = [], 0
    # The connects take a few seconds: 300 in a row overflow the listen backlog (50) now and
    # then, and the kernel retries a dropped SYN after 1 s.  What counts is what is left after.
    for _ in range(300):
        try:
            flood.append(socket.create_connection(("127.0.0.1", srv.ssl_port), timeout=5))
        except ConnectionResetError:  # aborted before connect() returned: refused just the same
            reset_at_connect += 1
    t0 = time.monotonic()
    closed = _closed_within(flood, 5.0, enough=280 - reset_at_connect)
    took = time.monotonic() - t0
    kept = [sock for i, sock in enumerate(flood) if i not in closed]
    assert not _closed_within(kept, 1.0), "connections within max_connections were closed"
    assert len(closed) + reset_at_connect >= 280 - 2, (
        f"only {len(closed) + reset_at_connect} of 280 over-limit connections closed in {took:.1f} s")
    assert len(flood) - len(closed) <= 20
    assert _open_fds(pid) <= baseline + 20 + 2
    print(f"{len(closed) + reset_at_connect} of 300 TLS connections closed, all within {took:.2f} s of the last connect")
    assert "max_connections" in srv.log_text()
    for s in flood:
        s.close()
    # Once the flood is gone a TLS client gets in again.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def tls_client_gets_in() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", srv.ssl_port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as sock:
                    simple_handshake(sock)
                    return True
        except (OSError, AssertionError):
            return False

    assert wait_until(tls_client_gets_in, 10)


class HalfOpenFlood:
    """From 127.0.0.1: connection after connection that sends C0 and part of C1, then nothing."""

    def __init__(self, port: int, per_second: float = 100.0):
        self.port = port
        self.interval = 1.0 / per_second
        self.opened = 0
        self.closed_by_server = 0
        self.most_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            while not self._stop.is_set():
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                    s.sendall(b"\x03" + os.urandom(100))
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ)
                    self.opened += 1
                except OSError:
                    pass
                time.sleep(self.interval)
                for key, _ in sel.select(timeout=0):
                    try:
                        data = key.fileobj.recv(65536)
                    except (ConnectionResetError, BlockingIOError):
                        data = b""
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        self.closed_by_server += 1
                self.most_open = max(self.most_open, len(sel.get_map()))
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()


def _metric(srv, name: str) -> float:
    with urllib.request.urlopen(srv.http_url("/metrics"), timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_real_clients_from_the_flooding_address_still_play(e2e):
    """Defaults (max_pending_per_ip = 16): a flood of half-open connections from 127.0.0.1 holds at
    most 16 slots; FFmpeg and rtmpdump from the same address connect and play during it."""
    srv = e2e.server(http={})
    pub = e2e.publish(srv.url("live/flood"), seconds=14)
    time.sleep(1.5)
    with HalfOpenFlood(srv.port) as flood:
        assert wait_until(lambda: flood.closed_by_server > 50, 10), (
            f"the server closed only {flood.closed_by_server} of {flood.opened} half-open connections")
        player = e2e.play(srv.url("live/flood"), seconds=3)
        out = e2e.workdir / "rtmpdump.flv"
        # A live pull does not end by itself: rtmpdump runs for 4 s and is then stopped.
        dump = ClientProcess("rtmpdump", ["rtmpdump", "-r", srv.url("live/flood"), "--live", "-o", str(out)], e2e.workdir)
        e2e.clients.append(dump)
        time.sleep(4)
        assert dump.poll() is None, f"rtmpdump ended early\n{dump.describe()}"
        dump.kill(signal.SIGTERM)
        player.wait_ok(timeout=20)
        opened, most_open = flood.opened, flood.most_open
    check_media(player.out_path, min_video_frames=2 * FPS, min_audio_frames=60, context=e2e.context(pub, player))
    assert len(helpers.video_frames(out)) > 2 * FPS, dump.describe()
    # The flood ran all along (more connections than any per-address limit) and the server held
    # at most max_pending_per_ip of them (the client side sees closes a little late).
    assert opened > 300, opened
    assert most_open <= 16 + 8, most_open
    assert _metric(srv, "rtmp_pending_evicted_total") > 250
    print(f"flood: {opened} half-open connections, at most {most_open} open at once (client side), "
          f"{_metric(srv, 'rtmp_pending_evicted_total'):.0f} evicted")
    pub.wait_ok(timeout=20)


def test_established_sessions_per_address(e2e):
    srv = e2e.server({"limits": {"max_connections_per_ip": "3"}})
    held = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.3", 0))
        simple_handshake(s)
        held.append(s)
    over = socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.3", 0))
    assert _closed_within([over], 2.0) == {0}, "the fourth connection from 127.0.0.3 was not closed at once"
    other = socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.4", 0))
    simple_handshake(other)  # another address is not affected
    held[0].close()

    def room_again() -> bool:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.3", 0)) as s:
            try:
                simple_handshake(s, timeout=2)
                return True
            except (OSError, AssertionError):
                return False

    assert wait_until(room_again, 5)
    for s in [*held, over, other]:
        s.close()


def test_a_connection_that_sends_nothing_is_closed_after_the_default_handshake_timeout(e2e):
    srv = e2e.server()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    t0 = time.monotonic()
    closed = _closed_within([s], 8.0)
    took = time.monotonic() - t0
    s.close()
    assert closed == {0} and 4.0 <= took <= 6.5, f"closed={bool(closed)} after {took:.1f} s (handshake_timeout 5)"


class NonReadingPlayer:
    """A player that connects, plays, reads until media flows, then never reads again.

    The RTMP client is our sans-IO codec over a socket with a small receive buffer (set before
    connect, so the window stays small): a peer that stops reading, like a hung player.
    """

    def __init__(self, port: int, app: str, name: str):
        from rtmpserver.codec import messages as m
        from rtmpserver.codec.connection import RTMPConnection

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        client = RTMPConnection(server=False)
        client.initiate()
        steps = iter([
            lambda: client.send_command("connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1:{port}/{app}"}),
            lambda: client.send_command("createStream", 2.0, None),
            lambda: client.send_command("play", 0.0, None, name, -2.0, stream_id=1),
        ])
        deadline = time.monotonic() + 10
        media = 0
        while media < 10 and time.monotonic() < deadline:
            out = client.data_to_send()
            if out:
                self.sock.sendall(out)
            data = self.sock.recv(65536)
            assert data, "server closed the player during its start"
            for msg in client.receive_data(data):
                if isinstance(msg, m.CommandMessage) and msg.name == "_result":
                    next(steps)()
                elif isinstance(msg, (m.VideoMessage, m.AudioMessage)):
                    media += 1
            if client.handshake_complete and not getattr(self, "_started", False):
                self._started = True
                next(steps)()
        assert media >= 10, "no media reached the player"
        out = client.data_to_send()
        if out:
            self.sock.sendall(out)


def _http_flv_non_reader(port: int, path: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert s.recv(1024).startswith(b"HTTP/1.1 200"), "HTTP-FLV request refused"
    return s


def test_players_that_take_no_bytes_are_closed_after_send_timeout(e2e):
    """send_timeout = 3: an RTMP player and an HTTP-FLV viewer that stop reading while a 2 Mbit/s
    stream flows are closed and counted; a normal player of the same stream keeps playing."""
    srv = e2e.server({"limits": {"send_timeout": "3"}}, http={})
    url = srv.url("live/stall")
    pub = ClientProcess("publisher", [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "anoisesrc=r=44100",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-b:v", "2M",
        "-pix_fmt", "yuv420p", "-x264-params", "nal-hrd=cbr", "-c:a", "aac", "-t", "25",
        "-f", "flv", url], e2e.workdir)  # fmt: skip
    e2e.clients.append(pub)
    time.sleep(2.0)
    player = e2e.play(url, seconds=12)
    rtmp = NonReadingPlayer(srv.port, "live", "stall")
    flv = _http_flv_non_reader(srv.http_port, "/live/stall.flv")
    t0 = time.monotonic()
    assert wait_until(lambda: _metric(srv, "rtmp_send_timeouts_total") >= 2, 20), (
        f"stalled players not closed: {helpers.tail(srv.log_text(), 20)}")
    took = time.monotonic() - t0
    print(f"two non-reading players closed {took:.1f} s after they stopped reading (send_timeout 3 s)")
    # What was queued can still be read, then the reset: the server aborted both connections.
    assert _closed_within([rtmp.sock, flv], 5.0) == {0, 1}
    rtmp.sock.close()
    flv.close()
    log = srv.log_text()
    assert "nothing could be sent" in log and "took nothing for 3 s" in log
    player.wait_ok(timeout=30)
    check_media(player.out_path, size=(640, 360), min_video_frames=10 * FPS, context=e2e.context(pub, player))
    pub.kill()
