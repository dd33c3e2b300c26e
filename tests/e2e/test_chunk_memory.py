"""Memory the server spends on a peer that sets chunk size 1 and sends large messages.

Every payload byte then comes as its own chunk (1 header byte + 1 payload byte).  The chunk reader
must hold incomplete messages in memory proportional to their payload, so that ``[limits]
max_partial_bytes`` bounds the real cost; this was ~90x the payload before (a Python object per
chunk).  The client is our own codec (RTMPConnection, ChunkWriter) over a plain or TLS socket.

Measured: the server's peak RSS (VmHWM, reset through /proc/PID/clear_refs just before the
attack) minus its RSS before.  Bound: ``3 * max_partial_bytes + 20 MB``.  Reasoning: the reader
holds under 2x the counted bytes (1.25x at chunk size 1: small chunks are coalesced into one
bytearray) and completing a message adds one copy of it (so under 3x at the peak); plus the TLS
and socket read buffers and the allocator's slack, well under 20 MB.  The previous reader
(a Python object per chunk) grew by ~88 MB here.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection
from tests.e2e import helpers
from tests.e2e.helpers import wait_closed_by_peer

pytestmark = pytest.mark.e2e

BIG = 1_000_000
SMALL = 64 * 1024
MB = 1_000_000


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def start(e2e, max_message_size: int, max_partial_bytes: int):
    port, ssl_port = helpers.free_port(), helpers.free_port()
    sections = e2e.default_sections(port, ssl_port)
    sections["limits"] = {"max_message_size": str(max_message_size), "max_partial_bytes": str(max_partial_bytes)}
    return e2e.start_process(e2e.write_config(sections), port, ssl_port)


class RawClient:
    """Blocking RTMP client: handshake and connect with our codec, then raw chunk bytes."""

    def __init__(self, port: int, use_tls: bool):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
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

    def wait_result(self, transaction_id: float) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for msg in self.receive():
                if isinstance(msg, m.CommandMessage) and msg.transaction_id == transaction_id:
                    assert msg.name == "_result", msg
                    return
        raise AssertionError(f"no answer to transaction {transaction_id}")

    def set_chunk_size_1(self) -> None:
        self.conn.send(m.SetChunkSize(1))
        self.flush()


def measure(pid: int, attack) -> tuple[int, object]:
    before = _status(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    result = attack()
    return _status(pid, "VmHWM") - before, result


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_chunk_size_1_memory_is_bounded_by_max_partial_bytes(e2e, use_tls):
    limit = 2 * 1024 * 1024
    srv = start(e2e, max_message_size=1024 * 1024, max_partial_bytes=limit)
    pid = srv.process.proc.pid
    client = RawClient(srv.ssl_port if use_tls else srv.port, use_tls)

    def attack():
        client.set_chunk_size_1()
        for i in range(3):
            client.conn.send_raw(9, bytes([0x17]) + bytes(SMALL - 1), stream_id=1, timestamp=i)
            client.flush()
        client.conn.send_raw(9, bytes([0x17]) + bytes(BIG - 1), stream_id=1, timestamp=3)
        client.conn.send_command("createStream", 2.0, None)  # answered only once all the above is parsed
        client.flush()
        client.wait_result(2.0)

    growth, _ = measure(pid, attack)
    bound = 3 * limit + 20 * MB
    print(f"peak RSS growth {growth / MB:.1f} MB (bound {bound / MB:.1f} MB)")
    assert growth < bound, f"peak RSS grew by {growth / MB:.1f} MB, bound {bound / MB:.1f} MB"
    client.sock.close()


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_over_max_partial_bytes_at_chunk_size_1_closes_the_connection(e2e, use_tls):
    limit = BIG
    srv = start(e2e, max_message_size=BIG, max_partial_bytes=limit)
    pid = srv.process.proc.pid
    client = RawClient(srv.ssl_port if use_tls else srv.port, use_tls)

    def attack():
        client.set_chunk_size_1()
        # One byte of a 64 KiB message in flight on another chunk stream, then the 1,000,000-byte
        # message: its last byte takes the held total to limit + 1.
        writer = client.conn.writer
        header, _ = writer.header(8, 0, 9, 1, SMALL)
        client.conn.queue(header + b"\x17")
        client.conn.send_raw(9, bytes([0x17]) + bytes(BIG - 1), stream_id=1, timestamp=1)
        try:
            client.flush()
        except OSError:
            pass  # the server may close before it has read everything
        return wait_closed_by_peer(client.sock, timeout=60)

    growth, (closed, _received, how) = measure(pid, attack)
    print(f"peak RSS growth {growth / MB:.1f} MB")
    assert closed, how
    assert helpers.wait_until(lambda: f"over the limit of {limit}" in srv.log_text(), timeout=10), helpers.tail(
        srv.log_text()
    )
    bound = 3 * limit + 20 * MB
    assert growth < bound, f"peak RSS grew by {growth / MB:.1f} MB, bound {bound / MB:.1f} MB"
