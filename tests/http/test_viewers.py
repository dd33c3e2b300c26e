"""HTTP viewers (HTTP-FLV, HLS) go through the application's handler chain like RTMP players."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rtmpserver import config as configmod
from rtmpserver.handlers.auth import sign_url
from rtmpserver.http.hls import hls_routes
from rtmpserver.http.site import RootResource
from rtmpserver.interfaces import IAppHandler, ISessionView
from rtmpserver.protocol import RTMPServerFactory
from rtmpserver.requests import HandlerContext
from tests.handlers.test_hls import publish_capture
from tests.http.test_site import Request, body
from tests.test_protocol import Peer, statuses

SECRET = "s3cret-for-signed-urls-0123"
KEY = "viewer-key-0123"


def make(rules="deny play 10.0.0.0/8", extra="", clock=None):
    cfg = configmod.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[app:live]\nhandlers = access, auth, hls, live\n"
        f"access.rules = {rules}\n"
        "auth.publish = none\nauth.play = key, signed\n"
        f"auth.play_keys = {KEY}\n"
        f"auth.secret = {SECRET}\n"
        "hls.fragment = 1\nhls.window = 3\n"
        f"[http:main]\nlisten = tcp:0:interface=127.0.0.1\nhls_viewer_timeout = 30\n{extra}",
        "t.ini",
    )
    f = RTMPServerFactory(cfg, clock or Clock())
    return f, RootResource(f, cfg.http["main"], hls_routes(f.chains))


@implementer(IAppHandler)
class Recorder:
    """A third-party handler at the head of the chain: sees every play and close_stream."""

    def __init__(self):
        self.plays = []
        self.closed = []

    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        return proceed(request)

    def play(self, request, proceed):
        self.plays.append(request)
        return proceed(request)

    def close_stream(self, event):
        self.closed.append(event)


def record(f):
    r = Recorder()
    f.chains["live"].handlers.insert(0, ("recorder", r))
    return r


class ViewerRequest(Request):
    def __init__(self, path, host):
        super().__init__(path)
        self.client_host = host
        self.uri = ("/" + "/".join(p.decode() for p in path)).encode()

    def getClientAddress(self):
        return IPv4Address("TCP", self.client_host, 40000)


def get(root, path, args=None, host="192.0.2.7"):
    path, _, query = path.partition("?")  # a playlist's segment URI carries its viewer token
    args = {**dict(p.split("=", 1) for p in query.split("&") if p), **(args or {})}
    req = ViewerRequest([p.encode() for p in path.strip("/").split("/")], host)
    req.args = {k.encode(): [v.encode()] for k, v in args.items()}
    result = root.render(req)
    if isinstance(result, bytes):
        req.write(result)
        req.finish()
    return req


def play_args(name, expires=4_000_000_000):
    query = sign_url(SECRET, "live", name, expires, action="play")
    return dict(p.split("=", 1) for p in query.lstrip("?").split("&"))


def rtmp_play(f, name, host="192.0.2.7"):
    return statuses(Peer(f, host=host).play(name)[1])


# --- refusals -----------------------------------------------------------------------------------


def test_same_config_refuses_rtmp_flv_and_hls_without_a_key():
    f, root = make()
    publish_capture(f, repeat=3)
    assert "NetStream.Play.Start" not in rtmp_play(f, "cam")
    flv = get(root, "live/cam.flv")
    assert flv.responseCode == 403 and b"key" in body(flv)
    assert flv.finished
    m3u8 = get(root, "hls/live/cam.m3u8")
    assert m3u8.responseCode == 403
    # A guessed segment URL, with or without a made-up token, is refused before any lookup.
    assert get(root, "hls/live/cam-0.ts").responseCode == 403
    assert get(root, "hls/live/cam-0.ts?vt=1.4000000000.00000000000000000000000000000000").responseCode == 403


def test_access_rules_refuse_http_viewers_by_address():
    f, root = make()
    publish_capture(f, repeat=3)
    assert "NetStream.Play.Start" not in rtmp_play(f, f"cam?key={KEY}", host="10.1.2.3")
    flv = get(root, "live/cam.flv", {"key": KEY}, host="10.1.2.3")
    assert flv.responseCode == 403 and b"10.1.2.3" in body(flv)
    assert get(root, "hls/live/cam.m3u8", {"key": KEY}, host="10.1.2.3").responseCode == 403


def test_same_config_allows_all_three_with_a_key_or_a_signed_url():
    f, root = make()
    publish_capture(f, repeat=3)
    assert "NetStream.Play.Start" in rtmp_play(f, f"cam?key={KEY}")
    for args in ({"key": KEY}, play_args("cam")):
        flv = get(root, "live/cam.flv", args)
        assert flv.responseCode is None or flv.responseCode == 200
        assert body(flv).startswith(b"FLV")
        m3u8 = get(root, "hls/live/cam.m3u8", args)
        playlist = body(m3u8).decode()
        assert m3u8.responseCode in (None, 200) and playlist.startswith("#EXTM3U"), playlist
        uris = [line for line in playlist.splitlines() if ".ts?vt=" in line]
        seg = get(root, f"hls/live/{uris[-1]}")
        assert seg.responseCode in (None, 200)
        assert body(seg)[0] == 0x47


# --- the session view and the chain ------------------------------------------------------------


def test_handlers_see_an_http_viewer_view_with_its_protocol_and_args():
    f, root = make(rules="allow play all")
    rec = record(f)
    publish_capture(f, repeat=3)
    get(root, "live/cam.flv", {"key": KEY, "x": "1"})
    get(root, "hls/live/cam.m3u8", {"key": KEY})
    rtmp_play(f, f"cam?key={KEY}")
    flv, hls, rtmp = rec.plays
    for req in (flv, hls, rtmp):
        verifyObject(ISessionView, req.session)
    assert flv.session.protocol == "http-flv" and hls.session.protocol == "hls" and rtmp.session.protocol == "rtmp"
    assert flv.args == {"key": KEY, "x": "1"} and flv.session.host == "192.0.2.7"
    assert flv.session.connect_params["args"] == {"key": KEY, "x": "1"}
    assert "key" not in flv.session.connect_params["tcUrl"]
    assert len({flv.session.id, hls.session.id, rtmp.session.id}) == 3


def test_flv_viewer_leaving_closes_its_stream_in_the_chain():
    f, root = make(rules="allow play all")
    rec = record(f)
    publish_capture(f, repeat=1)
    req = get(root, "live/cam.flv", {"key": KEY})
    assert rec.plays and not rec.closed
    req.processingFailed(Exception("gone"))  # the connection dropped
    assert [(e.app, e.name, e.role) for e in rec.closed] == [("live", "cam", "player")]
    assert rec.closed[0].session is rec.plays[0].session and rec.closed[0].session.closed


def test_flv_unpublish_closes_the_viewer_stream_once():
    f, root = make(rules="allow play all")
    rec = record(f)
    pub, sid = publish_capture(f, repeat=1)
    req = get(root, "live/cam.flv", {"key": KEY})
    pub.call("deleteStream", None, float(sid))
    assert req.finished
    players = [(e.name, e.reason) for e in rec.closed if e.role == "player"]
    assert players == [("cam", "unpublished")]


def test_rename_serves_the_renamed_stream():
    f, root = make(rules="allow play all")
    import dataclasses

    @implementer(IAppHandler)
    class Renamer(Recorder):
        def play(self, request, proceed):
            return proceed(dataclasses.replace(request, name="cam"))

    f.chains["live"].handlers.insert(0, ("renamer", Renamer()))
    publish_capture(f, repeat=3)
    assert body(get(root, "live/other.flv", {"key": KEY})).startswith(b"FLV")
    playlist = body(get(root, "hls/live/other.m3u8", {"key": KEY})).decode()
    uri = [line for line in playlist.splitlines() if ".ts?vt=" in line][-1]
    assert uri.startswith("cam-")
    assert body(get(root, f"hls/live/{uri}"))[0] == 0x47


def test_unknown_stream_is_404_after_the_chain_allowed_it():
    f, root = make(rules="allow play all")
    assert get(root, "live/nobody.flv", {"key": KEY}).responseCode == 404
    assert get(root, "hls/live/nobody.m3u8", {"key": KEY}).responseCode == 404


# --- HLS viewer sessions ------------------------------------------------------------------------


def hls_session(f, root, host="192.0.2.7"):
    playlist = body(get(root, "hls/live/cam.m3u8", {"key": KEY}, host=host)).decode()
    return [line for line in playlist.splitlines() if ".ts?vt=" in line]


def test_hls_playlist_polls_reuse_the_decision_and_idle_viewers_end():
    clock = Clock()
    f, root = make(rules="allow play all", clock=clock)
    rec = record(f)
    publish_capture(f, repeat=3)
    hls_session(f, root)
    for _ in range(5):
        clock.advance(20)
        uris = hls_session(f, root)
        assert uris
        assert len(rec.plays) == 1, "a playlist poll of the same viewer ran the chain again"
    assert not rec.closed
    clock.advance(29)
    assert not rec.closed
    assert get(root, f"hls/live/{uris[-1]}").responseCode in (None, 200)  # a segment keeps it alive
    clock.advance(29)
    assert not rec.closed
    clock.advance(2)
    assert [(e.name, e.role, e.reason) for e in rec.closed] == [("cam", "player", "idle")]
    assert rec.closed[0].session.protocol == "hls"
    # The session is over: its segment URIs no longer work, and a new playlist request is decided anew.
    assert get(root, f"hls/live/{uris[-1]}").responseCode == 403
    hls_session(f, root)
    assert len(rec.plays) == 2


def test_hls_segment_token_is_bound_to_address_stream_and_expiry():
    clock = Clock()
    f, root = make(rules="allow play all", clock=clock)
    publish_capture(f, repeat=3)
    uri = hls_session(f, root)[-1]
    segment, token = uri.split("?vt=")
    assert get(root, f"hls/live/{uri}", host="192.0.2.99").responseCode == 403  # another address
    sid, expiry, mac = token.split(".")
    assert get(root, f"hls/live/{segment}?vt={sid}.{int(expiry) + 100}.{mac}").responseCode == 403  # forged expiry
    assert get(root, f"hls/live/{segment}?vt={sid}.{expiry}.{'0' * 32}").responseCode == 403
    other = segment.replace("cam-", "other-")
    assert get(root, f"hls/live/{other}?vt={token}").responseCode == 403  # another stream
    assert get(root, f"hls/live/{segment}?vt={token}").responseCode in (None, 200)
    clock.advance(31)  # the token expired (and the viewer went idle)
    assert get(root, f"hls/live/{segment}?vt={token}").responseCode == 403


def test_hls_viewers_are_bounded():
    f, root = make(rules="allow play all", extra="max_hls_viewers = 2\n")
    publish_capture(f, repeat=3)
    hls_session(f, root, host="192.0.2.1")
    hls_session(f, root, host="192.0.2.2")
    assert get(root, "hls/live/cam.m3u8", {"key": KEY}, host="192.0.2.3").responseCode == 503


@pytest.mark.parametrize("key, value", [("hls_viewer_timeout", "0"), ("max_hls_viewers", "x")])
def test_hls_viewer_settings_are_checked(key, value):
    with pytest.raises(configmod.ConfigError, match=key):
        make(extra=f"{key} = {value}\n")


# --- notify hears HTTP viewers ------------------------------------------------------------------


def test_notify_sees_http_viewers_play_and_play_done():
    from rtmpserver.handlers import notify
    from tests.handlers.test_notify import FakeAgent, FakeResponse

    clock = Clock()
    f, root = make(rules="allow play all", clock=clock)
    urls = {"on_play": "http://backend.example/play", "on_play_done": "http://backend.example/done"}
    settings = notify.NotifySettings(urls=urls, timeout=5.0, method="POST")
    agent = FakeAgent([FakeResponse(200) for _ in range(10)])
    caller = notify.HTTPCaller(clock, 5.0, "POST", reactor=lambda: pytest.fail("reactor used"), agent=agent)
    chain = f.chains["live"]
    ctx = HandlerContext(app=f.config.apps["live"], server=f.config, hub=f.hub, clock=clock)
    assert [n for n, _ in chain.handlers[:2]] == ["access", "auth"]
    chain.handlers.insert(2, ("notify", notify.NotifyHandler(settings, ctx, caller)))
    publish_capture(f, repeat=3)

    flv = get(root, "live/cam.flv", {"key": KEY, "room": "7"})
    uris = hls_session(f, root)
    assert uris and body(flv).startswith(b"FLV")
    plays = [agent.form(i) for i, call in enumerate(agent.calls) if call[1].endswith(b"/play")]
    assert [(p["call"], p["name"], p["addr"], p.get("room")) for p in plays] == [
        ("play", "cam", "192.0.2.7", "7"), ("play", "cam", "192.0.2.7", None)]
    assert "key" not in plays[0]  # auth took the key out before notify saw the request
    flv.processingFailed(Exception("gone"))
    clock.advance(31)  # the HLS viewer went idle
    done = [agent.form(i) for i, call in enumerate(agent.calls) if call[1].endswith(b"/done")]
    assert sorted(d["clientid"] for d in done) == sorted(p["clientid"] for p in plays)
    assert all(d["call"] == "play_done" and d["name"] == "cam" for d in done)


def test_hls_viewers_end_when_the_site_stops():
    from rtmpserver.http.site import build_site

    f, root = make(rules="allow play all")
    site = build_site(f, f.config.http["main"], hls_routes(f.chains))
    rec = record(f)
    publish_capture(f, repeat=3)
    assert hls_session(f, site.resource)
    site.doStart()
    site.doStop()
    assert [(e.role, e.reason) for e in rec.closed] == [("player", "server shutdown")]


def test_rtmps_sessions_say_so():
    from twisted.internet.interfaces import ISSLTransport
    from twisted.internet.testing import StringTransport
    from zope.interface import directlyProvides

    f, root = make(rules="allow play all")
    plain = f.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    plain.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000)))
    tls = f.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5001))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5001))
    directlyProvides(transport, ISSLTransport)
    tls.makeConnection(transport)
    assert (plain.session.view.protocol, tls.session.view.protocol) == ("rtmp", "rtmps")
