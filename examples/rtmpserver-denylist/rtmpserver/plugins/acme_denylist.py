"""``denylist``: refuse publish and play for listed stream names or client networks.

An example of a third-party rtmpserver handler (docs/plugins.md). The module name starts with the
author's prefix (``acme_``) because every distribution's plugin modules share one namespace,
``rtmpserver.plugins``.

    [app:live]
    handlers = denylist, live
    denylist.names = spam*, test
    denylist.networks = 192.0.2.0/24
"""

from __future__ import annotations

import fnmatch
import ipaddress

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import Rejected
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.settings import Invalid, Section, words


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise Invalid("an IP network") from None


CODES = {"publish": "NetStream.Publish.Denied", "play": "NetStream.Play.Failed"}


@implementer(IAppHandler)
class Denylist:
    _log = Logger()

    def __init__(self, app, names, networks, refusals):
        self.app = app
        self.names = names
        self.networks = networks
        self.refusals = refusals  # a prometheus_client Counter shared by the server's apps
        self.refused_by_name: dict[str, int] = {}  # shown in /api as the stream's extra fields

    def _why(self, request):
        if any(fnmatch.fnmatchcase(request.name, pattern) for pattern in self.names):
            return f"stream name {request.name!r} is on the deny list"
        try:
            host = ipaddress.ip_address(request.session.host)
        except ValueError:
            return None
        if any(host in net for net in self.networks):
            return f"client {request.session.host} is on the deny list"
        return None

    def _check(self, hook, request, proceed):
        why = self._why(request)
        if why is None:
            return proceed(request)
        self.refusals.labels(app=self.app, hook=hook).inc()
        self.refused_by_name[request.name] = self.refused_by_name.get(request.name, 0) + 1
        self._log.info("{peer}: {hook} {app}/{name} refused: {why}", peer=request.session.peer, hook=hook,
                       app=self.app, name=request.name, why=why)
        raise Rejected(CODES[hook], why)

    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        return self._check("publish", request, proceed)

    def play(self, request, proceed):
        return self._check("play", request, proceed)

    def close_stream(self, event):
        pass

    def annotate(self, app, name):
        count = self.refused_by_name.get(name)
        return {"denylist_refusals": count} if count else {}


def _refusals_counter():
    from prometheus_client import Counter

    return Counter("acme_denylist_refusals", "Requests refused by the denylist handler", ["app", "hook"], registry=None)


@implementer(IPlugin, IAppHandlerFactory)
class DenylistFactory:
    name = "denylist"
    description = "refuse publish and play for listed stream names or client networks"

    def build(self, settings, context):
        # rtmpserver.settings gives the same rules and one-line messages as the server's own keys.
        section = Section.for_handler(self.name, settings, context)
        values = section.convert({
            "names": (words(what="stream name patterns", allow_empty=True), ""),
            "networks": (words(_network, what="IP networks such as 192.0.2.0/24", allow_empty=True), ""),
        })
        names, networks = list(values["names"]), list(values["networks"])
        if not names and not networks:
            raise section.problem("names", "expected at least one name pattern (or denylist.networks)")
        # One counter per server (build() runs once per application), in the server's registry.
        refusals = context.metrics.shared(self, _refusals_counter)
        handler = Denylist(context.app.name, names, networks, refusals)
        context.annotate_stream(handler.annotate)
        return handler


denylist = DenylistFactory()  # the module-level instance is what plugin discovery finds
