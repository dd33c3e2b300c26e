"""WebSocket-FLV over the HTTP site's own channel and a StringTransport: upgrade, messages, limits."""

from __future__ import annotations

import base64
import hashlib

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from rtmpserver import config as configmod
from rtmpserver.http.site import build_site
from rtmpserver.media.flv import FLVReader
from rtmpserver.protocol import RTMPServerFactory
from tests.http.test_site import live_stream
from tests.test_protocol import aac, inter, key

KEY = base64.b64encode(b"0123456789abcdef")
# RFC 6455 4.2.2: Sec-WebSocket-Accept is base64(SHA-1(key + this GUID)).
ACCEPT = base64.b64encode(hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


def make(app_extra="", http_extra=""):
    cfg = configmod.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\n"
        f"[app:live]\n{app_extra}\n"
        f"[http:main]\nlisten = tcp:0:interface=127.0.0.1\n{http_extra}\n",
        "t.ini",
    )
    f = RTMPServerFactory(cfg, Clock())
    return f, build_site(f, cfg.http["main"])


def connect(site, path="/live/cam.flv", host="127.0.0.1", port=40000, upgrade=True):
    addr = IPv4Address("TCP", host, port)
    channel = site.buildProtocol(addr)
    t = StringTransport(peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
    t.protocol = channel  # what autobahn's resource re-points, as on a tcp.Server transport
    channel.makeConnection(t)
    headers = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1:8080"]
    if upgrade:
        headers += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY.decode()}",
                    "Sec-WebSocket-Version: 13", "Origin: http://example.test"]
    channel.dataReceived(("\r\n".join(headers) + "\r\n\r\n").encode())
    return channel, t


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked server frames in data (RFC 6455 5.2)."""
    out, i = [], 0
    while i + 2 <= len(data):
        op, n = data[i] & 0x0F, data[i + 1] & 0x7F
        assert data[i] & 0x80 and not data[i + 1] & 0x80  # FIN set, server frames are not masked
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append((op, data[i:i + n]))
        i += n
    assert i == len(data)
    return out


def split(raw: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, raw
    return head, frames(rest)


def test_upgrade_streams_one_flv_tag_per_binary_message():
    f, site = make()
    pub, sid = live_stream(f)
    channel, t = connect(site)
    pub.send_media(sid, "v", 33, inter())
    head, msgs = split(t.value())
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Accept: " + ACCEPT in head
    assert all(op == 2 for op, _ in msgs)  # binary
    assert msgs[0][1][:3] == b"FLV" and len(msgs[0][1]) == 13  # header + PreviousTagSize0
    reader = FLVReader()
    tags = []
    for _, payload in msgs:
        got = reader.feed(payload)
        assert len(got) == (0 if payload[:3] == b"FLV" else 1)  # a message is exactly one tag
        tags += got
    assert [t.type for t in tags[:3]] == [18, 9, 8]
    assert [t.payload for t in tags[3:]] == [key(), aac(), inter()]
    client = next(iter(site.resource.flv_clients))
    assert client.describe(0)["protocol"] == "ws-flv"
    assert t.producer is client  # the transport pauses delivery, not the HTTP channel
    # The publisher leaving closes the WebSocket with 1000 (RFC 6455 7.4.1).
    t.clear()
    pub.call("deleteStream", None, float(sid))
    (op, payload), = frames(t.value())
    assert op == 8 and payload[:2] == (1000).to_bytes(2, "big")
    assert not site.resource.flv_clients


def test_slow_viewer_drops_to_the_next_keyframe():
    f, site = make()
    pub, sid = live_stream(f)
    channel, t = connect(site)
    client = next(iter(site.resource.flv_clients))
    client.pauseProducing()
    for i in range(200):
        pub.send_media(sid, "v", 40 + i * 33, inter(40000))
    assert client.dropped > 0 and client.resyncs >= 1
    client.resumeProducing()
    t.clear()
    pub.send_media(sid, "v", 9000, inter())
    assert t.value() == b""
    pub.send_media(sid, "v", 9033, key())
    assert len(frames(t.value())) == 1


def test_chain_refusal_is_the_http_answer_and_no_upgrade():
    f, site = make(app_extra="handlers = access, live\naccess.rules = deny play all")
    live_stream(f)
    channel, t = connect(site)
    assert t.value().startswith(b"HTTP/1.1 403 ") and b"Upgrade" not in t.value()
    assert not site.resource.flv_clients


def test_unknown_stream_is_404_and_plain_get_is_still_http_flv():
    f, site = make()
    _, t = connect(site, "/live/nothing.flv")
    assert t.value().startswith(b"HTTP/1.1 404 ")
    live_stream(f)
    _, t = connect(site, upgrade=False)
    assert t.value().startswith(b"HTTP/1.1 200 ") and b"video/x-flv" in t.value()


def test_ws_off_and_per_ip_cap():
    f, site = make(http_extra="ws = no")
    live_stream(f)
    _, t = connect(site)
    assert t.value().startswith(b"HTTP/1.1 404 ")
    f, site = make(http_extra="max_flv_clients_per_ip = 1")
    live_stream(f)
    connect(site, port=1)
    _, t = connect(site, port=2)
    assert t.value().startswith(b"HTTP/1.1 503 ")
    _, t = connect(site, host="127.0.0.2", port=3)
    assert t.value().startswith(b"HTTP/1.1 101 ")


def test_connection_count_comes_back_when_the_websocket_ends():
    f, site = make()
    live_stream(f)
    channel, t = connect(site)
    assert site.per_ip == {"127.0.0.1": 1}
    assert t.protocol is not channel  # the WebSocket has the transport now
    t.protocol.connectionLost(Failure(ConnectionDone()))
    assert site.per_ip == {} and not site.resource.flv_clients


def masked(op: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (RFC 6455 5.3: client frames are masked)."""
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_big_tags_go_out_and_big_incoming_messages_close_the_connection():
    f, site = make()
    pub, sid = live_stream(f)
    channel, t = connect(site)
    pub.send_media(sid, "v", 33, inter(100000))
    _, msgs = split(t.value())
    assert len(msgs[-1][1]) == 11 + len(inter(100000)) + 4
    ws = t.protocol
    ws.dataReceived(masked(2, b"x" * 2000, fin=False))
    assert not t.disconnecting
    for _ in range(2):  # fragments of 2000 bytes: each frame is small, the message is not
        ws.dataReceived(masked(0, b"x" * 2000, fin=False))
    assert t.disconnecting


def test_a_stream_of_another_worker_is_fetched_before_the_upgrade():
    """[server] workers: the hub's fetch opens the relay; the upgrade waits for it, as HTTP-FLV's does."""
    from twisted.internet.defer import Deferred

    f, site = make()
    asked, waiting = [], Deferred()

    def fetch(app, name):
        asked.append((app, name))
        return waiting

    f.hub.fetch = fetch
    channel, t = connect(site)
    assert asked == [("live", "cam")]
    assert b"101 " not in t.value()  # nothing answered while the relay starts
    pub, sid = live_stream(f)  # the relay publishes it here
    waiting.callback(None)
    head, msgs = split(t.value())
    assert head.startswith(b"HTTP/1.1 101 ")
    assert msgs[0][1][:3] == b"FLV"
