"""Relay URL parsing, template filling and endpoint choice."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.testing import MemoryReactorClock

from rtmpserver.relay.url import client_endpoint, fill_template, parse_url


@pytest.mark.parametrize(
    "text, scheme, host, port, app, name, query",
    [
        ("rtmp://origin/live/cam", "rtmp", "origin", 1935, "live", "cam", ""),
        ("rtmps://origin/live/cam", "rtmps", "origin", 443, "live", "cam", ""),
        ("rtmp://origin:1936/live/inst/cam?token=s3cret", "rtmp", "origin", 1936, "live/inst", "cam", "token=s3cret"),
        ("rtmp://[::1]:2000/live/cam", "rtmp", "::1", 2000, "live", "cam", ""),
        ("RTMP://user:pw@origin/live/cam", "rtmp", "origin", 1935, "live", "cam", ""),
        ("rtmp://origin/live/a%20b", "rtmp", "origin", 1935, "live", "a b", ""),
        ("rtmp+unix://%2Frun%2Frtmp%2Fw1.sock/live/cam", "rtmp+unix", "/run/rtmp/w1.sock", 0, "live", "cam", ""),
    ],
)
def test_parse(text, scheme, host, port, app, name, query):
    u = parse_url(text)
    assert (u.scheme, u.host, u.port, u.app, u.name, u.query) == (scheme, host, port, app, name, query)


def test_tc_url_stream_name_and_public_form():
    u = parse_url("rtmp://user:pw@origin:1936/live/cam?token=s3cret")
    assert u.tc_url == "rtmp://origin:1936/live"
    assert u.stream_name == "cam?token=s3cret"
    assert u.public == "rtmp://origin:1936/live/cam"
    assert "s3cret" not in str(u) and "pw" not in str(u)
    assert parse_url("rtmp://[::1]/live/cam").tc_url == "rtmp://[::1]/live"
    assert parse_url("rtmps://h:443/live/cam").tc_url == "rtmps://h/live"
    assert parse_url("rtmp+unix://%2Ftmp%2Fx.sock/live/cam").tc_url == "rtmp://localhost/live"


@pytest.mark.parametrize(
    "text",
    [
        "http://origin/live/cam",
        "rtmp://origin/cam",  # no app
        "rtmp://origin/live//cam",
        "rtmp://origin/live/",
        "rtmp:///live/cam",
        "rtmp://origin:99999/live/cam",
        "rtmp://origin/live/cam#frag",
        "rtmp://origin/live/ca m",
        "rtmp://origin/live/c%00m",
        "rtmp://origin/live/a%2Fb",  # a name cannot hold "/"
        "rtmp+unix://relative.sock/live/cam",
        "rtmp://origin/live/" + "x" * 300,
        "rtmp://origin/live/" + "x" * 3000,
    ],
)
def test_invalid(text):
    with pytest.raises(ValueError):
        parse_url(text)


def test_template_fills_encoded_single_segments():
    u = fill_template("rtmp://origin/{app}/{name}?{args}", name="cam 1", app="live", args="token=a&b=c d")
    assert (u.app, u.name) == ("live", "cam 1")
    assert u.query == "token=a&b=c+d"
    # no args: the dangling "?" goes
    assert fill_template("rtmp://origin/{app}/{name}?{args}", name="cam", app="live").stream_name == "cam"


@pytest.mark.parametrize("name", ["a/../b", "../../x", "a?x=1"])
def test_template_names_cannot_add_segments_or_query(name):
    try:
        u = fill_template("rtmp://origin/edge/{name}", name=name)
    except ValueError:
        return  # refused outright is fine too
    assert u.app == "edge" and u.name == name and u.query == ""


def test_template_args_cannot_add_fragment_or_path():
    u = fill_template("rtmp://origin/live/{name}?{args}", name="cam", args="a=1#frag/x&b=/../y")
    assert u.app == "live" and u.name == "cam"
    assert "#" not in u.query and u.query.count("&") == 1


def test_template_rejects_unknown_fields_and_bad_names():
    with pytest.raises(ValueError):
        fill_template("rtmp://origin/{app}/{nam}", name="cam", app="live")
    with pytest.raises(ValueError):
        fill_template("rtmp://origin/live/{name}", name="")
    with pytest.raises(ValueError):
        fill_template("rtmp://origin/live/{name}", name="a\nb")


def test_endpoints(tmp_path):
    reactor = MemoryReactorClock()
    assert isinstance(client_endpoint(reactor, parse_url("rtmp://origin/live/cam")), HostnameEndpoint)
    assert isinstance(client_endpoint(reactor, parse_url("rtmp+unix://%2Ftmp%2Fx.sock/live/cam")), UNIXClientEndpoint)
    tls = client_endpoint(reactor, parse_url("rtmps://origin/live/cam"))
    assert type(tls).__name__ == "_WrapperEndpoint"
    # verify off and a CA file are accepted; a missing CA file is an error at build time
    client_endpoint(reactor, parse_url("rtmps://origin/live/cam"), verify=False)
    with pytest.raises(OSError):
        client_endpoint(reactor, parse_url("rtmps://origin/live/cam"), ca_file=str(tmp_path / "missing.pem"))


def test_endpoint_connects_where_the_url_says():
    reactor = MemoryReactorClock()
    from twisted.internet.protocol import Factory, Protocol

    client_endpoint(reactor, parse_url("rtmp+unix://%2Ftmp%2Fx.sock/live/cam")).connect(Factory.forProtocol(Protocol))
    assert reactor.unixClients[0][0] == "/tmp/x.sock"
