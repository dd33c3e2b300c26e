"""``access``: allow or deny connect, publish and play by client address.

The model is nginx-rtmp's access module (``allow publish 127.0.0.1; deny publish all;``): rules
are tried in the order written, the first rule for the request's action whose address matches
decides, and an action no rule matched takes ``access.default`` (allow, as in nginx-rtmp).
Connect is checked only when at least one ``connect`` rule exists, so that ``access.default = deny``
with rules for publish and play does not also lock every client out at connect.

Addresses are compared as ``ipaddress`` objects, never as text: ``::ffff:10.0.0.1`` (how a dual-stack
``tcp6`` listener reports an IPv4 client) is the IPv4 address 10.0.0.1 both in rules and for peers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import Rejected
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.settings import Section, choice

__all__ = ["AccessHandler", "AccessFactory", "Rule", "client_address", "parse_rules", "factory"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ACTIONS = ("connect", "publish", "play")
_CODES = {
    "connect": "NetConnection.Connect.Rejected",
    "publish": "NetStream.Publish.Denied",
    "play": "NetStream.Play.Failed",
}
_VERBS = {"connect": "Connecting", "publish": "Publishing", "play": "Playing"}
# Rules are separated by commas or line breaks (a multi-line config value keeps its newlines).
_RULE_SEPARATOR = re.compile(r"[,\n]")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def client_address(host: str) -> Address | None:
    """The peer's address as an ``ipaddress`` object, IPv4-mapped IPv6 turned into IPv4.

    A dual-stack listener (``tcp6:1935`` on Linux) reports IPv4 clients as ``::ffff:a.b.c.d``;
    without this, ``allow publish 127.0.0.1`` would not match such a client.  ``None`` when the
    host is not an IP address (a UNIX socket, a test transport): only ``all`` rules match it.
    """
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.scope_id:  # fe80::1%eth0: the zone says where, not who
            addr = ipaddress.IPv6Address(addr.compressed.partition("%")[0])
    return addr


def _network(text: str) -> Network:
    """``text`` as a network, IPv4-mapped IPv6 networks as IPv4 (see ``client_address``).

    Host bits must be zero: ``10.0.0.1/8`` is refused rather than read as 10.0.0.0/8, because a
    typo in an access list should stop startup, not widen the list.
    """
    if "%" in text:
        raise ValueError("a zone (%...) is not allowed in an access rule")
    net = ipaddress.ip_network(text, strict=True)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        v4 = ipaddress.IPv6Address(net.network_address).ipv4_mapped
        assert v4 is not None
        net = ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


@dataclass(frozen=True)
class Rule:
    """One ``allow|deny ACTION ADDRESS...`` entry; ``networks`` is None for ``all``."""

    allow: bool
    action: str
    networks: tuple[Network, ...] | None
    text: str  # as written, for logs

    def matches(self, addr: Address | None) -> bool:
        if self.networks is None:
            return True
        if addr is None:
            return False
        return any(addr.version == net.version and addr in net for net in self.networks)


class _BadRule(Exception):
    pass


def parse_rules(text: str) -> list[Rule]:
    """Parse ``access.rules``; raises ValueError naming the faulty rule.

    Grammar: rules separated by ``,`` or line breaks; each is
    ``allow|deny connect|publish|play ADDRESS [ADDRESS ...]`` where ADDRESS is ``all``, an IPv4 or
    IPv6 address, or a network in CIDR form.  Empty entries (a trailing comma) are skipped.
    """
    rules: list[Rule] = []
    for raw in _RULE_SEPARATOR.split(text):
        words = raw.split()
        if not words:
            continue
        shown = " ".join(words)
        if len(words) < 3:
            raise ValueError(f"rule {shown!r}: expected 'allow|deny connect|publish|play ADDRESS'")
        permission, action, *addresses = words
        if permission not in ("allow", "deny"):
            raise ValueError(f"rule {shown!r}: expected 'allow' or 'deny' first, got {permission!r}")
        if action not in ACTIONS:
            raise ValueError(f"rule {shown!r}: expected connect, publish or play after {permission!r}, got {action!r}")
        networks: list[Network] = []
        for a in addresses:
            if a == "all":
                if len(addresses) > 1:
                    raise ValueError(f"rule {shown!r}: 'all' cannot be combined with other addresses")
                break
            try:
                networks.append(_network(a))
            except ValueError as e:
                raise ValueError(f"rule {shown!r}: {a!r} is not an IP address or network ({e})") from None
        rules.append(Rule(permission == "allow", action, None if "all" in addresses else tuple(networks), shown))
    return rules


@implementer(IAppHandler)
class AccessHandler:
    """The rules of one application."""

    _log = Logger()

    def __init__(self, app: str, rules: list[Rule], default_allow: bool, refusals: Any = None) -> None:
        self.app = app
        self.refusals = refusals  # prometheus Counter (app, action), shared by the server's apps
        self.default_allow = default_allow
        self.rules = {a: [r for r in rules if r.action == a] for a in ACTIONS}
        # Connect is opt-in: see the module docstring.
        self.check_connect = bool(self.rules["connect"])

    def decide(self, action: str, host: str) -> tuple[bool, Rule | None]:
        """(allowed, the rule that decided or None for the default)."""
        addr = client_address(host)
        for rule in self.rules[action]:
            if rule.matches(addr):
                return rule.allow, rule
        return self.default_allow, None

    def _check(self, action: str, request: Any, what: str) -> None:
        session = request.session
        allowed, rule = self.decide(action, session.host)
        if allowed:
            return
        self._log.info(
            "{peer}: {action} {what} denied by access {reason}",
            peer=session.peer, action=action, what=what,
            reason=f"rule {rule.text!r}" if rule else "default (deny)",
        )
        if self.refusals is not None:
            self.refusals.labels(app=self.app, action=action).inc()
        raise Rejected(_CODES[action], f"{_VERBS[action]} from {session.host} is not allowed.")

    def connect(self, request: Any, proceed: Any) -> Any:
        if self.check_connect:
            self._check("connect", request, f"to app {request.app}")
        return proceed(request)

    def publish(self, request: Any, proceed: Any) -> Any:
        self._check("publish", request, f"{request.app}/{request.name}")
        return proceed(request)

    def play(self, request: Any, proceed: Any) -> Any:
        self._check("play", request, f"{request.app}/{request.name}")
        return proceed(request)

    def close_stream(self, event: Any) -> None:
        pass


@implementer(IAppHandlerFactory, IPlugin)
class AccessFactory:
    name = "access"
    description = "allow or deny connect, publish and play by client IP address or network"

    def build(self, settings: Mapping[str, str], context: Any) -> AccessHandler:
        section = Section.for_handler(self.name, settings, context)
        section.check_known(("rules", "default"))
        text = section.raw("rules")
        try:
            rules = parse_rules(text)
        except ValueError as e:
            raise section.error("rules", str(e), text) from None
        if not rules:
            raise section.error("rules", "expected at least one rule such as 'allow publish 127.0.0.1, deny publish all'", text)
        default = section.get("default", choice("allow", "deny", expectation="allow or deny"), "allow")
        # The metrics hook (IServerMetrics): one counter per server, labelled by application.
        refusals = context.metrics.shared(self, _refusals_counter)
        return AccessHandler(context.app.name, rules, default == "allow", refusals)


def _refusals_counter() -> Any:
    from prometheus_client import Counter

    return Counter("access_refusals", "Requests refused by the access handler", ["app", "action"], registry=None)


factory = AccessFactory()
