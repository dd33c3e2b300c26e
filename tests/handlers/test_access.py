"""The access handler: address rules for connect, publish and play."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers.access import client_address, factory, parse_rules
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.requests import (
    ConnectRequest,
    HandlerContext,
    PlayRequest,
    PublishRequest,
    SessionView,
)

CONFIG = "/etc/rtmp/server.ini"


class FakeSession:
    def __init__(self, host: str) -> None:
        self.id = 7
        self.host = host
        self.peer = f"[{host}]:50000" if ":" in host else f"{host}:50000"
        self.app = "live"
        self.connect_params = {"args": {}}
        self.handler_data: dict = {}
        self.closed = False


class FakeProceed:
    """Records what was passed on; returns the outcome a real chain would give back."""

    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, request):
        self.calls.append(request)
        return defer.succeed(None)


def context() -> HandlerContext:
    return HandlerContext(app=SimpleNamespace(name="live"), server=SimpleNamespace(path=CONFIG), hub=None, clock=Clock())


def build(**settings: str):
    return factory.build(settings, context())


def publish(handler, host: str, name: str = "cam"):
    proceed = FakeProceed()
    request = PublishRequest(app="live", name=name, mode="live", args={}, session=SessionView(FakeSession(host)))
    handler.publish(request, proceed)
    assert proceed.calls == [request]


def play(handler, host: str, name: str = "cam"):
    proceed = FakeProceed()
    request = PlayRequest(app="live", name=name, start=-2, duration=-1, reset=True, args={}, session=SessionView(FakeSession(host)))
    handler.play(request, proceed)
    assert proceed.calls == [request]


def connect(handler, host: str):
    proceed = FakeProceed()
    request = ConnectRequest(app="live", tc_url="rtmp://x/live", page_url="", swf_url="", flash_ver="FMLE/3.0",
                             args={}, params={}, session=SessionView(FakeSession(host)))  # fmt: skip
    handler.connect(request, proceed)
    assert proceed.calls == [request]


def refused(call, handler, host: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(handler, host)
    return info.value


def test_factory_and_handler_provide_their_interfaces():
    verifyObject(IAppHandlerFactory, factory)
    assert factory.name == "access"
    verifyObject(IAppHandler, build(rules="allow publish all"))


def test_first_matching_rule_wins_like_nginx_rtmp():
    h = build(rules="allow publish 127.0.0.1, deny publish all")
    publish(h, "127.0.0.1")
    e = refused(publish, h, "10.1.2.3")
    assert e.code == "NetStream.Publish.Denied"
    assert "10.1.2.3" in e.description and "not allowed" in e.description
    # Order matters: the same two rules the other way round refuse everybody.
    h = build(rules="deny publish all, allow publish 127.0.0.1")
    refused(publish, h, "127.0.0.1")


def test_rules_of_other_actions_do_not_apply():
    h = build(rules="deny publish all")
    play(h, "10.1.2.3")
    connect(h, "10.1.2.3")


def test_play_refusal_code():
    h = build(rules="allow play 192.168.0.0/16, deny play all")
    play(h, "192.168.77.1")
    e = refused(play, h, "192.169.0.1")
    assert e.code == "NetStream.Play.Failed"


def test_default_allow_and_default_deny():
    h = build(rules="deny publish 10.0.0.0/8")
    publish(h, "192.0.2.1")  # no rule matched: allowed by default
    play(h, "10.0.0.1")
    h = build(rules="allow publish 10.0.0.0/8", default="deny")
    publish(h, "10.9.9.9")
    refused(publish, h, "192.0.2.1")
    refused(play, h, "10.9.9.9")  # play has no rules: the default decides


def test_connect_is_checked_only_when_connect_rules_exist():
    h = build(rules="allow publish 10.0.0.0/8", default="deny")
    connect(h, "192.0.2.1")
    h = build(rules="allow connect 10.0.0.0/8, allow play all", default="deny")
    connect(h, "10.2.3.4")
    e = refused(connect, h, "192.0.2.1")
    assert e.code == "NetConnection.Connect.Rejected"
    h = build(rules="deny connect 192.0.2.0/24")
    connect(h, "192.0.3.1")
    refused(connect, h, "192.0.2.200")


def test_ipv4_mapped_peer_matches_ipv4_rule():
    h = build(rules="allow publish 127.0.0.1, deny publish all")
    publish(h, "::ffff:127.0.0.1")
    refused(publish, h, "::ffff:127.0.0.2")


def test_ipv4_mapped_rule_matches_ipv4_peer():
    h = build(rules="allow publish ::ffff:10.0.0.0/104, deny publish all")
    publish(h, "10.200.0.1")
    publish(h, "::ffff:10.200.0.1")
    refused(publish, h, "11.0.0.1")


def test_ipv6_rules():
    h = build(rules="allow publish 2001:db8::/32 ::1, deny publish all")
    publish(h, "2001:db8:1::5")
    publish(h, "::1")
    refused(publish, h, "2001:db9::1")
    refused(publish, h, "127.0.0.1")  # an IPv4 peer is not in an IPv6 network


def test_ipv6_peer_with_zone_is_matched_without_it():
    h = build(rules="deny publish fe80::/10")
    refused(publish, h, "fe80::1%eth0")


def test_a_host_that_is_not_an_address_matches_only_all():
    h = build(rules="allow publish 127.0.0.1, deny publish all")
    refused(publish, h, "unix")
    h = build(rules="deny publish 127.0.0.1", default="allow")
    publish(h, "unix")


def test_rules_separated_by_newlines_with_several_addresses_and_a_trailing_comma():
    h = build(rules="allow publish 127.0.0.1 ::1 10.0.0.0/8\ndeny publish all,\n\nallow play all,")
    publish(h, "10.3.3.3")
    publish(h, "::1")
    refused(publish, h, "192.0.2.1")
    play(h, "192.0.2.1")


def test_refusal_is_logged_with_peer_and_rule():
    h = build(rules="allow publish 127.0.0.1, deny publish all")
    with capturedLogs() as events:
        refused(publish, h, "10.1.2.3")
    texts = [e["log_format"].format(**{k: v for k, v in e.items() if not k.startswith("log_")}) for e in events]
    assert any("10.1.2.3:50000" in t and "deny publish all" in t and "live/cam" in t for t in texts), texts


def test_close_stream_is_a_no_op():
    assert build(rules="deny publish all").close_stream(object()) is None


@pytest.mark.parametrize(
    "settings, key, expected",
    [
        ({}, "rules", "expected at least one rule"),
        ({"rules": ""}, "rules", "expected at least one rule"),
        ({"rules": " , \n "}, "rules", "expected at least one rule"),
        ({"rules": "allow publish"}, "rules", "expected 'allow|deny connect|publish|play ADDRESS'"),
        ({"rules": "permit publish all"}, "rules", "expected 'allow' or 'deny' first"),
        ({"rules": "allow record all"}, "rules", "expected connect, publish or play"),
        ({"rules": "allow publish 300.1.1.1"}, "rules", "'300.1.1.1' is not an IP address or network"),
        ({"rules": "allow publish localhost"}, "rules", "'localhost' is not an IP address or network"),
        ({"rules": "allow publish 10.0.0.1/8"}, "rules", "has host bits set"),
        ({"rules": "allow publish 10.0.0.0/33"}, "rules", "is not an IP address or network"),
        ({"rules": "allow publish all 10.0.0.0/8"}, "rules", "'all' cannot be combined"),
        ({"rules": "allow publish fe80::1%eth0"}, "rules", "zone"),
        ({"rules": "allow publish all", "default": "reject"}, "default", "expected allow or deny"),
        ({"rules": "allow publish all", "rule": "x"}, "rule", "unknown key"),
    ],
)
def test_config_errors_name_file_app_and_key(settings, key, expected):
    with pytest.raises(ConfigError) as info:
        build(**settings)
    msg = str(info.value)
    assert msg.startswith(f"{CONFIG}: [app:live] access.{key}: "), msg
    assert expected in msg
    if key != "rule":
        assert ", got '" in msg


def test_parse_rules_keeps_order_and_normalises():
    rules = parse_rules("allow publish ::ffff:192.0.2.0/120, deny play all")
    assert [(r.allow, r.action, r.networks) for r in rules] == [
        (True, "publish", (ipaddress.ip_network("192.0.2.0/24"),)),
        (False, "play", None),
    ]


def test_client_address():
    assert client_address("::ffff:1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    assert client_address("[::1]") == ipaddress.ip_address("::1")
    assert client_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert client_address("example.org") is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_ipv4_cidr_matches_exactly_the_addresses_inside(addr_int, prefix, other_int):
    addr = ipaddress.IPv4Address(addr_int)
    net = ipaddress.IPv4Network((addr_int, prefix), strict=False)
    h = build(rules=f"allow publish {net}, deny publish all")
    publish(h, str(addr))
    publish(h, f"::ffff:{addr}")
    other = ipaddress.IPv4Address(other_int)
    if other in net:
        publish(h, str(other))
    else:
        refused(publish, h, str(other))
        refused(publish, h, f"::ffff:{other}")


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# Whole IPv6 space, plus the IPv4-mapped range on purpose (random 128-bit numbers never hit it).
_V6 = st.one_of(st.integers(0, 2**128 - 1), st.integers(0, 2**32 - 1).map(lambda v: 0xFFFF_0000_0000 | v))


@settings(max_examples=200, deadline=None)
@given(_V6, st.integers(0, 128), _V6)
def test_ipv6_cidr_matches_exactly_the_addresses_inside(addr_int, prefix, other_int):
    net = ipaddress.IPv6Network((addr_int, prefix), strict=False)
    h = build(rules=f"deny play {net}")
    # A mapped peer is an IPv4 peer: only a rule that lies wholly in the mapped range (and so is
    # read as an IPv4 rule) can match it.
    rule_is_v4 = net.prefixlen >= 96 and net.subnet_of(_MAPPED)
    for candidate in (addr_int, other_int):
        a = ipaddress.IPv6Address(candidate)
        peer_is_v4 = a in _MAPPED
        if a in net and peer_is_v4 == rule_is_v4:
            refused(play, h, str(a))
        else:
            play(h, str(a))
