"""HTTP endpoints over twisted.web's test request: /stat, API, metrics, control, HTTP-FLV, tokens."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from rtmpserver import config as configmod
from rtmpserver.codec import messages as m
from rtmpserver.http.site import RootResource
from rtmpserver.media.flv import FLVReader
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.session.streams import EOF_DELAY
from tests.test_protocol import (
    AAC_SEQ,
    Peer,
    aac,
    inter,
    key,
    media,
    statuses,
    stream_eofs,
)

TOKEN = "0123456789abcdef-token"


def make(http_extra=f"control = yes\ntoken = {TOKEN}"):
    cfg = configmod.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\n"
        f"[http:main]\nlisten = tcp:0:interface=127.0.0.1\n{http_extra}\n",
        "t.ini",
    )
    f = RTMPServerFactory(cfg, Clock())
    return f, RootResource(f, cfg.http["main"])


class Request(DummyRequest):
    """DummyRequest drives only pull producers; HTTP-FLV clients are push producers."""

    producer = None

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def isSecure(self):
        return False


def get(root, path, args=None, headers=None):
    path, _, query = path.partition("?")  # a playlist's segment URI carries its viewer token
    args = {**dict(p.split("=", 1) for p in query.split("&") if p), **(args or {})}
    req = Request([p.encode() for p in path.strip("/").split("/")])
    req.args = {k.encode(): [v.encode()] for k, v in args.items()}
    for k, v in (headers or {}).items():
        req.requestHeaders.setRawHeaders(k, [v])
    body = root.render(req)
    if body is not NOT_DONE_YET:
        req.write(body)
        req.finish()
    return req


def ctl(root, path, args=None):
    """A /control request carrying the token (control always needs one)."""
    return get(root, path, args, headers={"authorization": f"Bearer {TOKEN}"})


def body(req):
    return b"".join(req.written)


def live_stream(f):
    pub = Peer(f)
    sid, _ = pub.publish("cam")
    pub.send_metadata(sid, {"width": 320.0, "height": 240.0, "framerate": 30.0})
    # A real AVC sequence header (320x240 Baseline) and AAC LC 44.1 kHz stereo config.
    avc = bytes.fromhex("170000000001 42c00d ffe1 0019 6742c00dd9014196c044000003000400000300783c50a9a0 01 0004 68cb8cb2".replace(" ", ""))
    pub.send_media(sid, "v", 0, avc)
    pub.send_media(sid, "a", 0, AAC_SEQ)
    pub.send_media(sid, "v", 0, key())
    pub.send_media(sid, "a", 10, aac())
    return pub, sid


def test_stat_has_nginx_rtmp_structure():
    f, root = make(http_extra="")
    pub, sid = live_stream(f)
    player = Peer(f)
    player.play("cam")
    doc = ET.fromstring(body(get(root, "stat")))
    assert doc.tag == "rtmp"
    for el in ("nginx_version", "nginx_rtmp_version", "pid", "uptime", "naccepted", "bw_in", "bytes_in", "bw_out", "bytes_out"):
        assert doc.find(el) is not None, el
    app = doc.find("server/application")
    assert app.findtext("name") == "live"
    stream = app.find("live/stream")
    assert stream.findtext("name") == "cam"
    for el in ("time", "bw_in", "bytes_in", "bw_out", "bytes_out", "bw_audio", "bw_video", "nclients"):
        assert stream.find(el) is not None, el
    assert stream.findtext("nclients") == "2"
    assert stream.find("publishing") is not None and stream.find("active") is not None
    clients = stream.findall("client")
    assert len(clients) == 2
    assert sum(1 for c in clients if c.find("publishing") is not None) == 1
    for c in clients:
        for el in ("id", "address", "time", "flashver", "dropped", "avsync", "timestamp"):
            assert c.find(el) is not None, el
    video = stream.find("meta/video")
    assert video.findtext("width") == "320" and video.findtext("height") == "240"
    assert video.findtext("codec") == "H264" and video.findtext("profile") == "Baseline"
    audio = stream.find("meta/audio")
    assert audio.findtext("codec") == "AAC" and audio.findtext("channels") == "2"
    assert audio.findtext("sample_rate") == "44100"
    assert app.findtext("live/nclients") == "2"


def test_api_streams_and_clients():
    f, root = make(http_extra="")
    live_stream(f)
    streams = json.loads(body(get(root, "api/v1/streams")))["streams"]
    assert [(s["app"], s["name"], s["active"]) for s in streams] == [("live", "cam", True)]
    assert streams[0]["publisher"]["role"] == "publisher"
    clients = json.loads(body(get(root, "api/v1/clients")))["clients"]
    assert [c["role"] for c in clients] == ["publisher"]


def test_metrics_parse_with_prometheus_parser():
    f, root = make(http_extra="")
    pub, sid = live_stream(f)
    bad = Peer(f)
    bad.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    req = get(root, "metrics")
    families = {fam.name: fam for fam in text_string_to_metric_families(body(req).decode())}
    assert families["rtmp_streams"].samples[0].labels == {"app": "live"}
    assert families["rtmp_streams"].samples[0].value == 1
    assert [s.value for s in families["rtmp_protocol_errors"].samples if s.name.endswith("_total")] == [1]
    assert any(s.value > 0 for s in families["rtmp_bytes_in"].samples)


def test_control_drop_publisher_and_players_see_unpublish():
    f, root = make()
    pub, sid = live_stream(f)
    player = Peer(f)
    player.play("cam")
    player.take()
    req = ctl(root, "control/drop/publisher", {"app": "live", "name": "cam"})
    assert body(req) == b"1"
    assert pub.closed
    pub.lose()
    f.clock.advance(EOF_DELAY)
    assert stream_eofs(player.take()) == [1]


def test_control_redirect_subscriber():
    f, root = make()
    live_stream(f)
    other = Peer(f)
    osid, _ = other.publish("other")
    other.send_media(osid, "v", 0, key())
    player = Peer(f)
    player.play("cam")
    player.take()
    assert body(ctl(root, "control/redirect/subscriber", {"app": "live", "name": "cam", "newname": "other"})) == b"1"
    got = player.take()
    assert "NetStream.Play.Start" in statuses(got)
    assert [x.payload for x in media(got)] == [key()]


def test_control_is_off_by_default_and_errors_are_clear():
    f, root = make(http_extra="")
    assert get(root, "control/drop/publisher").responseCode == 404
    f, root = make()
    assert ctl(root, "control/drop/everyone").responseCode == 404
    assert ctl(root, "control/redirect/subscriber", {"name": "x"}).responseCode == 400


def test_token_is_required_when_set():
    f, root = make(http_extra=f"control = yes\ntoken = {TOKEN}")
    assert get(root, "stat").responseCode == 401
    assert get(root, "control/drop/client").responseCode == 401
    assert get(root, "stat", {"token": "wrong-wrong-wrong-wrong"}).responseCode == 401
    assert get(root, "stat", {"token": TOKEN}).responseCode in (200, None)
    ok = get(root, "metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.responseCode in (200, None) and body(ok).startswith(b"#")


def test_http_flv_streams_header_metadata_headers_gop_then_live():
    f, root = make()
    pub, sid = live_stream(f)
    req = get(root, "live/cam.flv")
    assert req.responseHeaders.getRawHeaders(b"content-type") == [b"video/x-flv"]
    pub.send_media(sid, "v", 33, inter())
    reader = FLVReader()
    tags = reader.feed(body(req))
    assert reader.has_video and reader.has_audio
    kinds = [(t.type, t.timestamp) for t in tags]
    assert kinds[0][0] == 18  # onMetaData
    assert [t.type for t in tags[1:3]] == [9, 8]  # sequence headers
    assert [t.payload for t in tags[3:]] == [key(), aac(), inter()]
    assert [t.timestamp for t in tags[3:]] == [0, 10, 33]
    # The publisher leaving ends the response.
    pub.call("deleteStream", None, float(sid))
    assert req.finished


def test_http_flv_unknown_stream_and_bad_names_are_404():
    f, root = make()
    assert get(root, "live/nothing.flv").responseCode == 404
    assert get(root, "live/..%2f.flv").responseCode == 404
    assert get(root, "nope/x.flv").responseCode == 404


def test_http_flv_slow_client_drops_and_resyncs():
    f, root = make()
    pub, sid = live_stream(f)
    req = get(root, "live/cam.flv")
    client = next(iter(root.flv_clients))
    client.pauseProducing()
    for i in range(200):
        pub.send_media(sid, "v", 40 + i * 33, inter(40000))
    assert client.dropped > 0 and client.backlog_bytes <= f.config.apps["live"].player_backlog_bytes + 50000
    client.resumeProducing()
    n = len(req.written)
    pub.send_media(sid, "v", 9000, inter())
    assert len(req.written) == n  # waits for a keyframe
    pub.send_media(sid, "v", 9033, key())
    assert len(req.written) == n + 1


def test_unauthorized_names_the_bearer_scheme():
    f, root = make(http_extra=f"token = {TOKEN}")
    req = get(root, "metrics")
    assert req.responseCode == 401
    assert req.responseHeaders.getRawHeaders(b"www-authenticate") == [b'Bearer realm="rtmpserver"']


def test_http_flv_announces_video_even_before_its_sequence_header():
    f, root = make()
    pub = Peer(f)
    sid, _ = pub.publish("early")
    pub.send_media(sid, "a", 0, AAC_SEQ)  # audio first, video header not here yet
    req = get(root, "live/early.flv")
    reader = FLVReader()
    reader.feed(body(req))
    assert reader.has_video and reader.has_audio


def test_dashboard_page_and_files_need_no_token_but_its_data_does():
    f, root = make(http_extra=f"token = {TOKEN}")
    page = get(root, "")
    assert page.responseCode in (None, 200) and b"dashboard.js" in body(page)
    csp = page.responseHeaders.getRawHeaders(b"content-security-policy")[0]
    assert b"script-src 'self'" in csp and b"frame-ancestors 'none'" in csp
    assert TOKEN.encode() not in body(page)
    js = get(root, "static/dashboard.js")
    assert js.responseHeaders.getRawHeaders(b"content-type") == [b"text/javascript; charset=utf-8"]
    assert len(body(get(root, "static/vendor/mpegts.js"))) > 100000 and len(body(get(root, "static/vendor/hls.min.js"))) > 100000
    assert get(root, "static/../config.py").responseCode == 404
    assert get(root, "static/vendor/nothing.js").responseCode == 404
    assert get(root, "api/v1/streams").responseCode == 401
    f, root = make(http_extra="dashboard = no")
    assert get(root, "").responseCode == 404


def test_streams_json_counts_drops_resyncs_recordings_and_relays():
    f, root = make()
    pub, sid = live_stream(f)
    get(root, "live/cam.flv")
    client = next(iter(root.flv_clients))
    client.pauseProducing()
    for i in range(200):
        pub.send_media(sid, "v", 40 + i * 33, inter(40000))
    st, = json.loads(body(ctl(root, "api/v1/streams")))["streams"]
    assert st["dropped"] == client.dropped > 0 and st["resyncs"] == client.resyncs >= 1
    assert (st["recordings"], st["relays_out"], st["relayed_in"]) == ([], 0, False)


def test_vendored_players_are_the_versions_the_browser_tests_install():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    wanted = json.loads((root / "tests/e2e/browser/package.json").read_text())["dependencies"]
    vendor = root / "rtmpserver/http/static/vendor"
    assert f'"{wanted["mpegts.js"]}"'.encode() in (vendor / "mpegts.js").read_bytes()
    assert f'"{wanted["hls.js"]}"'.encode() in (vendor / "hls.min.js").read_bytes()
    notes = (vendor / "README.txt").read_text()
    assert f"mpegts.js {wanted['mpegts.js']}" in notes and f"hls.js {wanted['hls.js']}" in notes


def test_http_flv_viewer_that_takes_no_bytes_is_closed_after_send_timeout():
    f, root = make()
    pub, sid = live_stream(f)
    req = get(root, "live/cam.flv")
    req.transport = StringTransport()
    client = next(iter(root.flv_clients))
    client.pauseProducing()
    f.clock.advance(10)
    client.resumeProducing()  # it drained: the timer starts again
    client.pauseProducing()
    f.clock.advance(14)
    assert not req.transport.disconnecting and root.flv_clients
    f.clock.advance(1)
    assert req.transport.disconnecting and not root.flv_clients  # aborted, slot freed
    assert f.stats["send_timeouts"] == 1
    assert f.hub.get("live", "cam").sinks == []


def test_over_limit_http_connection_on_a_tls_listener_is_aborted_at_once(tmp_path):
    """HTTPS listeners too: the site refuses with a protocol (a None breaks the TLS wrapper)."""
    from twisted.internet.address import IPv4Address

    from rtmpserver.http.site import build_site
    from rtmpserver.protocol import Refused
    from tests.test_protocol import tls_wrapped

    class TCPTransport(StringTransport):
        def setTcpNoDelay(self, enabled):
            pass

    f, _ = make("max_connections = 1")
    site = build_site(f, f.config.http["main"])
    wrapped = tls_wrapped(site, tmp_path)
    transports = []
    for port in (5000, 5001):
        addr = IPv4Address("TCP", "10.0.0.1", port)
        t = TCPTransport(peerAddress=addr)
        wrapped.buildProtocol(addr).makeConnection(t)
        transports.append(t)
    assert [t.disconnecting for t in transports] == [False, True]
    assert isinstance(site.buildProtocol(IPv4Address("TCP", "10.0.0.2", 5002)), Refused)


def _dechunk(data: bytes) -> bytes:
    """An HTTP/1.1 chunked body (RFC 9112 section 7.1) decoded; fails on bad framing."""
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        assert data[size : size + 2] == b"\r\n", "chunk not followed by CRLF"
        out += data[:size]
        data = data[size + 2 :]
        if size == 0:
            break
    return bytes(out)


def test_http_flv_viewers_share_tag_bytes_over_real_http_connections():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from rtmpserver.http.site import build_site

    f, _ = make()
    site = build_site(f, f.config.http["main"])
    pub, sid = live_stream(f)
    viewers = []
    for port in (6001, 6002):
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        parts: list = []
        orig = transport.writeSequence
        transport.writeSequence = lambda seq, orig=orig, parts=parts: (parts.append(list(seq)), orig(seq))
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        viewers.append((channel, transport, parts))
    frame = inter(3000)
    pub.client.send(m.VideoMessage(33, sid, frame))
    pub.client.send(m.AudioMessage(40, sid, aac()))
    for _, _, parts in viewers:
        parts.clear()
    pub.proto.dataReceived(pub.client.data_to_send())  # one read of the publisher, two messages
    shared = []
    for _, transport, parts in viewers:
        assert len(parts) == 1 and len(parts[0]) == 6  # both tags in one write: (head, payload, tail) x 2
        shared.append(parts[0][1])
        head, _, rest = transport.value().partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        reader = FLVReader()
        tags = reader.feed(_dechunk(rest))
        assert [t.payload for t in tags][-2:] == [frame, aac()]
        assert [t.timestamp for t in tags][-2:] == [33, 40]
    # The publisher's payload object itself went to both viewers: not copied per viewer.
    assert shared[0] is shared[1]
    # Unpublishing ends both responses with the last chunk, after every tag.
    pub.call("deleteStream", None, float(sid))
    for _, transport, _ in viewers:
        assert transport.value().endswith(b"0\r\n\r\n")
        _dechunk(transport.value().partition(b"\r\n\r\n")[2])


def test_http_flv_over_http_1_0_is_raw_flv_on_the_direct_path():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from rtmpserver.http.site import build_site

    f, _ = make()
    site = build_site(f, f.config.http["main"])
    pub, sid = live_stream(f)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6003))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 6003))
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /live/cam.flv HTTP/1.0\r\n\r\n")
    pub.send_media(sid, "v", 33, inter())
    head, _, rest = transport.value().partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    tags = FLVReader().feed(rest)
    assert [t.payload for t in tags][-3:] == [key(), aac(), inter()]
