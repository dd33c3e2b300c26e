"""RTMPT over the HTTP site's own channel and a StringTransport, on a Clock: sessions, polling, bounds."""

from __future__ import annotations

import re

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rtmpserver import config as configmod
from rtmpserver.http.rtmpt import POLL_HOLD
from rtmpserver.http.site import build_site
from rtmpserver.protocol import RTMPServerFactory


def make(http_extra="rtmpt = yes", limits=""):
    cfg = configmod.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\n"
        f"[limits]\n{limits}\n"
        f"[http:main]\nlisten = tcp:0:interface=127.0.0.1\n{http_extra}\n",
        "t.ini",
    )
    clock = Clock()
    f = RTMPServerFactory(cfg, clock)
    return f, build_site(f, cfg.http["main"]), clock


class Client:
    """One keep-alive HTTP connection to the site, as librtmp and FFmpeg use for RTMPT."""

    def __init__(self, site, host="127.0.0.1", port=40000):
        addr = IPv4Address("TCP", host, port)
        self.channel = site.buildProtocol(addr)
        self.t = StringTransport(peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.channel.makeConnection(self.t)

    def post(self, path: str, body: bytes = b"\x00", extra: str = "") -> None:
        self.t.clear()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/x-fcs\r\n"
                f"{extra}Content-Length: {len(body)}\r\n\r\n")
        self.channel.dataReceived(head.encode() + body)

    def response(self) -> tuple[int, bytes] | None:
        raw = self.t.value()
        if not raw:
            return None
        head, _, body = raw.partition(b"\r\n\r\n")
        n = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        assert len(body) == n and b"chunked" not in head.lower(), raw[:300]
        return int(head.split()[1]), body


def open_session(c: Client) -> str:
    c.post("/open/1")
    code, body = c.response()
    assert code == 200 and body.endswith(b"\n")
    return body[:-1].decode()


def test_ident2_is_404_and_open_gives_unguessable_ids():
    f, site, _ = make()
    c = Client(site)
    c.post("/fcs/ident2")
    assert c.response()[0] == 404
    ids = {open_session(c) for _ in range(3)}
    assert len(ids) == 3 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert len(f.connections) == 3  # each session is an RTMP connection of the factory


def test_send_carries_the_handshake_and_the_answer_starts_with_the_interval():
    f, site, _ = make()
    c = Client(site)
    sid = open_session(c)
    c.post(f"/send/{sid}/1", b"\x03" + bytes(1536))
    code, body = c.response()
    assert code == 200 and body[0] == 1 and body[1] == 3 and len(body) == 1 + 1 + 1536 + 1536


def test_idle_poll_is_held_until_data_or_timeout_and_the_interval_grows():
    f, site, clock = make()
    c = Client(site)
    sid = open_session(c)
    session = site.resource.rtmpt.sessions[sid]
    c.post(f"/idle/{sid}/1")
    assert c.response() is None  # held: nothing queued
    clock.advance(POLL_HOLD)
    assert c.response() == (200, b"\x03")
    intervals = []
    for seq in range(2, 8):
        c.post(f"/idle/{sid}/{seq}")
        clock.advance(POLL_HOLD)
        intervals.append(c.response()[1][0])
    assert intervals == [5, 9, 17, 33, 33, 33]
    c.post(f"/idle/{sid}/9")
    session.transport.write(b"me")  # data while held: answered on the next turn, interval back to 1
    session.transport.write(b"dia")
    assert c.response() is None
    clock.advance(0)
    assert c.response() == (200, b"\x01media")


def test_unknown_session_and_rtmpt_off():
    f, site, _ = make()
    c = Client(site)
    c.post("/idle/0123456789abcdef0123456789abcdef/1")
    assert c.response()[0] == 404
    f, site, _ = make(http_extra="")
    c = Client(site)
    c.post("/open/1")
    assert c.t.value().startswith(b"HTTP/1.1 405 ")  # a body on anything but /control


def test_idle_sessions_close_and_their_connection_ends():
    f, site, clock = make(http_extra="rtmpt = yes\nrtmpt_idle_timeout = 5")
    c = Client(site)
    sid = open_session(c)
    clock.advance(4)
    c.post(f"/send/{sid}/1", b"\x03" + bytes(1536))  # a request keeps it alive
    clock.advance(4)
    assert sid in site.resource.rtmpt.sessions
    clock.advance(2)
    assert sid not in site.resource.rtmpt.sessions and not f.connections


def test_queue_bound_pauses_then_closes():
    f, site, clock = make(http_extra="rtmpt = yes\nrtmpt_max_queue = 65536")
    c = Client(site)
    sid = open_session(c)
    session = site.resource.rtmpt.sessions[sid]
    proto = session.protocol
    session.transport.write(bytes(20000))
    assert proto.paused  # over a quarter: the session's players fall back to their backlogs
    c.post(f"/idle/{sid}/1")
    assert len(c.response()[1]) == 20001 and not proto.paused
    session.transport.write(bytes(70000))
    clock.advance(0)  # lost on the next turn, as a TCP connection would be
    assert sid not in site.resource.rtmpt.sessions and not f.connections


def test_bodies_are_bounded_and_never_chunked():
    f, site, _ = make(http_extra="rtmpt = yes\nrtmpt_max_body = 4096")
    c = Client(site)
    sid = open_session(c)
    c.post(f"/send/{sid}/1", bytes(5000))
    assert c.t.value().startswith(b"HTTP/1.1 413 ")
    c = Client(site, port=40001)
    c.t.clear()
    c.channel.dataReceived(f"POST /send/{sid}/2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    assert c.t.value().startswith(b"HTTP/1.1 413 ")


def test_rtmp_connection_limits_apply():
    f, site, _ = make(limits="max_connections_per_ip = 1")
    c = Client(site)
    open_session(c)
    c.post("/open/1")
    assert c.response()[0] == 503


def test_close_ends_the_session_and_a_closing_rtmp_side_delivers_its_last_bytes():
    f, site, clock = make()
    c = Client(site)
    sid = open_session(c)
    c.post(f"/close/{sid}/1")
    assert c.response()[0] == 200 and not f.connections
    sid = open_session(c)
    session = site.resource.rtmpt.sessions[sid]
    session.protocol.close("nothing queued")
    assert f.connections  # not inside close()
    clock.advance(0)
    assert not f.connections
    sid = open_session(c)
    session = site.resource.rtmpt.sessions[sid]
    session.protocol.write(b"bye")
    session.protocol.close("test")
    clock.advance(0)
    assert f.connections  # waits for the client to collect what is queued
    c.post(f"/idle/{sid}/1")
    assert c.response() == (200, b"\x01bye")
    clock.advance(0)
    assert not f.connections and sid not in site.resource.rtmpt.sessions


def test_sessions_say_rtmpt():
    f, site, _ = make()
    c = Client(site)
    sid = open_session(c)
    assert site.resource.rtmpt.sessions[sid].protocol.session.protocol == "rtmpt"


def test_a_closing_session_whose_client_never_collects_ends_after_the_grace():
    from rtmpserver.http.rtmpt import CLOSE_GRACE

    f, site, clock = make()
    c = Client(site)
    sid = open_session(c)
    session = site.resource.rtmpt.sessions[sid]
    session.protocol.write(b"unread")
    session.protocol.close("test")
    clock.advance(0)
    clock.advance(CLOSE_GRACE - 0.1)
    assert f.connections
    clock.advance(0.2)
    assert not f.connections and sid not in site.resource.rtmpt.sessions
