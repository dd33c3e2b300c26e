"""HTTP limits end to end, with real sockets against a real twistd: connection caps (total and per
address), the deadline for request headers, bodies refused before they are read, and the per
address cap on HTTP-FLV viewers."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.helpers import wait_until

pytestmark = pytest.mark.e2e


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s.settimeout(5)
    return s


def _closed_by_server(s: socket.socket, within: float = 3.0) -> bytes | None:
    """What the server sent before closing, or None if it is still open after ``within`` s."""
    s.settimeout(within)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk
    except ConnectionResetError:
        return got
    except TimeoutError:
        return None


def _get_stat(s: socket.socket) -> bytes:
    s.sendall(b"GET /stat HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    s.settimeout(5)
    return s.recv(65536)


def test_connection_caps_total_and_per_address(e2e):
    srv = e2e.server(http={"max_connections": "4", "max_connections_per_ip": "2"})
    port = srv.http_port
    held: list[socket.socket] = []

    def fill() -> bool:
        # Two from one address, two from another: exactly the total.  Retried until the
        # harness's own start-up probe of the port has been counted out.
        for s in held:
            s.close()
        held[:] = [_connect(port, "127.0.0.2"), _connect(port, "127.0.0.2")]
        return all(_closed_by_server(s, 0.3) is None for s in held)

    assert wait_until(fill, 10), "2 connections within the limits were not both kept"
    assert _closed_by_server(_connect(port, "127.0.0.2"), 2) == b"", "a 3rd connection from one address was kept"
    held += [_connect(port, "127.0.0.3"), _connect(port, "127.0.0.3")]
    assert all(_closed_by_server(s, 0.3) is None for s in held), "a connection within the limits was closed"
    assert _closed_by_server(_connect(port, "127.0.0.4"), 2) == b"", "a 5th connection in total was kept"
    assert _get_stat(held[0]).startswith(b"HTTP/1.1 200")
    # RTMP is not starved by HTTP: its own limits count RTMP only.
    rtmp = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    rtmp.sendall(b"\x03" + bytes(1536))
    assert len(rtmp.recv(1)) == 1
    rtmp.close()
    held[0].close()
    # A closed connection is counted out again.
    assert wait_until(lambda: _get_stat(_connect(port, "127.0.0.4")).startswith(b"HTTP/1.1 200"), 5)
    assert wait_until(lambda: "max_connections_per_ip (2) reached" in srv.log_text() and "(max_connections)" in srv.log_text(), 5)


def test_request_headers_have_a_deadline_that_trickling_does_not_extend(e2e):
    srv = e2e.server(http={"header_timeout": "2"})
    s = _connect(srv.http_port)
    started = time.monotonic()
    s.sendall(b"GET /stat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer = None
    for i in range(12):  # one header line every 0.5 s, for up to 6 s
        answer = _closed_by_server(s, 0.5)
        if answer is not None:
            break
        try:
            s.sendall(b"X-Trickle-%d: 1\r\n" % i)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
            break
    elapsed = time.monotonic() - started
    assert answer is not None, "a trickling client kept its connection for 6 s with header_timeout = 2"
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 1.5 <= elapsed <= 4.0, elapsed
    # A client that says nothing at all is closed the same way.
    assert _closed_by_server(_connect(srv.http_port), 4).startswith(b"HTTP/1.1 408")
    # A kept-alive connection gets the same deadline for its next request, not before.
    s = _connect(srv.http_port)
    assert _get_stat(s).startswith(b"HTTP/1.1 200")
    assert _closed_by_server(s, 4).startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("path, code", [("/stat", b"405"), ("/live/cam.flv", b"405"), ("/control/drop/client?app=x", b"413")])
def test_bodies_are_refused_before_they_are_read(e2e, path, code):
    srv = e2e.server(http={"control": "yes", "token": "e2e-monitoring-token-0123456789"})
    s = _connect(srv.http_port)
    # 40 MB announced, none sent: the answer must come without the server waiting for (or
    # spooling) the body.
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40000000\r\n\r\n" + bytes(1000))
    answer = _closed_by_server(s, 3)
    assert answer is not None and answer.startswith(b"HTTP/1.1 " + code), answer
    s = _connect(srv.http_port)
    s.sendall(b"GET /stat HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    answer = _closed_by_server(s, 3)
    assert answer is not None and answer.startswith(b"HTTP/1.1 405"), answer


def test_http_flv_viewers_per_address(e2e):
    srv = e2e.server(http={"max_flv_clients_per_ip": "1"})
    pub = e2e.publish(srv.url("live/cam"), seconds=15)
    url = srv.http_url("live/cam.flv")

    def opened():
        try:
            return urllib.request.urlopen(url, timeout=5)
        except urllib.error.HTTPError as e:
            e.close()
            return None

    assert wait_until(lambda: _live(url), 10), f"the stream never went live\n{e2e.context(pub)}"
    first = opened()
    assert first is not None and first.read(3) == b"FLV"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 503
    refused.value.close()
    first.close()
    assert wait_until(lambda: _live(url), 5), "the viewer slot was not given back"


def _live(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read(3) == b"FLV"
    except urllib.error.HTTPError as e:
        e.close()
        return False
