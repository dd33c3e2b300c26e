"""Admin endpoints and secrets: CORS on media only, /control's token, Host check and filters,
the loopback-only test, the access log without query strings, /stat always well-formed XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from twisted.internet.address import IPv4Address
from twisted.web import server
from twisted.web.test.requesthelper import DummyChannel

from rtmpserver import config as configmod
from rtmpserver.http.site import access_log_line
from tests.handlers.test_hls import make as make_hls
from tests.handlers.test_hls import publish_capture
from tests.http.test_site import TOKEN, Request, body, live_stream, make
from tests.test_protocol import Peer

AUTH = {"authorization": f"Bearer {TOKEN}"}


def request(root, path, args=None, headers=None, method=b"GET", local="127.0.0.1"):
    path, _, query = path.partition("?")
    args = {**dict(p.split("=", 1) for p in query.split("&") if p), **(args or {})}
    req = Request([p.encode() for p in path.strip("/").split("/")])
    req.method = method
    req.args = {k.encode(): [v.encode()] for k, v in args.items()}
    for k, v in (headers or {}).items():
        req.requestHeaders.setRawHeaders(k, [v])
    req.getHost = lambda: IPv4Address("TCP", local, 8080)
    result = root.render(req)
    if isinstance(result, bytes):
        req.write(result)
        req.finish()
    return req


def cors(req):
    return req.responseHeaders.getRawHeaders(b"access-control-allow-origin")


# --- CORS ---------------------------------------------------------------------------------------


def test_cors_only_on_media_responses():
    f, root = make()
    live_stream(f)
    for path in ("stat", "api/v1/streams", "api/v1/clients", "metrics", "control/drop/client"):
        req = request(root, path, {"app": "live"}, AUTH)
        assert req.responseCode in (None, 200), path
        assert cors(req) is None, path
    assert cors(request(root, "nothing/here")) is None
    assert cors(request(root, "live/cam.flv")) == [b"*"]
    f, root = make_hls()
    publish_capture(f, repeat=3)
    playlist = request(root, "hls/live/cam.m3u8")
    assert cors(playlist) == [b"*"]
    uri = [line for line in body(playlist).decode().splitlines() if ".ts?vt=" in line][-1]
    assert cors(request(root, f"hls/live/{uri}")) == [b"*"]


# --- /control -----------------------------------------------------------------------------------


def test_control_needs_a_token_even_on_loopback():
    with pytest.raises(configmod.ConfigError, match="control = yes needs a token"):
        make(http_extra="control = yes")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:8080", None])
def test_loopback_host_names_are_accepted(host):
    f, root = make()
    headers = {**AUTH, **({"host": host} if host else {})}
    assert request(root, "control/drop/client", {"app": "nope"}, headers).responseCode in (None, 200)
    assert request(root, "stat", headers=headers).responseCode in (None, 200)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil", "[::1]x"])
def test_dns_rebinding_host_is_refused_on_a_loopback_address(host):
    f, root = make()
    pub, _ = live_stream(f)
    req = request(root, "control/drop/client", {"app": "live"}, {**AUTH, "host": host})
    assert req.responseCode == 403 and not pub.closed
    assert request(root, "stat", headers={**AUTH, "host": host}).responseCode == 403
    # Arriving on a public address, the Host header is whatever name the server has.
    req = request(root, "control/drop/client", {"app": "live"}, {**AUTH, "host": host}, local="192.0.2.1")
    assert req.responseCode in (None, 200) and body(req) == b"1"


def test_control_answers_get_and_post_and_other_paths_refuse_post():
    f, root = make()
    pub, _ = live_stream(f)
    req = request(root, "control/drop/publisher", {"app": "live", "name": "cam"}, AUTH, method=b"POST")
    assert body(req) == b"1" and pub.closed
    assert request(root, "control/drop/publisher", {"app": "live"}, method=b"POST").responseCode == 401
    for path in ("stat", "live/cam.flv", "api/v1/streams"):
        req = request(root, path, headers=AUTH, method=b"POST")
        assert req.responseCode == 405, path
        assert req.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]


@pytest.mark.parametrize("action", ["drop/client", "drop/publisher", "redirect/subscriber"])
def test_drop_and_redirect_need_a_filter(action):
    f, root = make()
    pub, _ = live_stream(f)
    player = Peer(f)
    player.play("cam")
    req = request(root, f"control/{action}", {"newname": "x"}, AUTH)
    assert req.responseCode == 400 and b"at least one of" in body(req)
    assert not pub.closed and not player.closed


# --- the loopback-only test ---------------------------------------------------------------------


@pytest.mark.parametrize("endpoint, interface", [
    ("tcp:8080:interface=127.0.0.1", "127.0.0.1"),
    ("tcp:8080:127.0.0.1", "127.0.0.1"),
    ("tcp6:8080:interface=\\:\\:1", "::1"),
    ("tcp:8080", ""),
    # An escaped colon is part of the value: this listener has no interface, it binds them all.
    ("ssl:8443:privateKey=k\\:interface=127.0.0.1", ""),
    ("ssl:8443:privateKey=k:certKey=c:interface=127.0.0.1", "127.0.0.1"),
])
def test_endpoint_interface_is_read_like_twisted_reads_it(endpoint, interface):
    assert configmod._endpoint_interface(endpoint) == interface
    assert configmod._loopback_only(endpoint) == (interface in ("127.0.0.1", "::1"))


# --- logs and /stat -----------------------------------------------------------------------------


def test_access_log_has_no_query_strings():
    req = server.Request(DummyChannel(), False)
    req.method, req.uri, req.clientproto = b"GET", b"/hls/live/cam.m3u8?key=secret-key&sign=abc", b"HTTP/1.1"
    req.code, req.sentLength = 200, 42
    req.requestHeaders.setRawHeaders(b"referer", [b"http://page.example/x?token=tok"])
    req.requestHeaders.setRawHeaders(b"user-agent", [b'agent "1"'])
    line = access_log_line("[ts]", req)
    assert line == '"192.168.1.1" - - [ts] "GET /hls/live/cam.m3u8 HTTP/1.1" 200 42 "http://page.example/x" "agent \\"1\\""'


def test_stat_stays_well_formed_whatever_clients_send():
    f, root = make(http_extra="")
    hostile = "a\x00b\x01\x1f\ufffe\uffff<&>\"'"
    pub = Peer(f)
    pub.connect(flashVer=hostile, pageUrl=hostile, swfUrl=hostile)
    sid = pub.create_stream()
    pub.call("publish", None, "cam\ufffex", "live", stream_id=sid)
    req = request(root, "stat")
    doc = ET.fromstring(body(req))
    texts = [el.text or "" for el in doc.iter()]
    assert "cam\ufffdx" in texts, texts
    assert texts.count("a\ufffdb\ufffd\ufffd\ufffd\ufffd<&>\"'") == 3, texts  # flashver, pageurl, swfurl
