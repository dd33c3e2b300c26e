"""rtmpserver.http.hls: /hls/<app>/ goes to that app's IHLSProvider, found by interface."""

from __future__ import annotations

from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from rtmpserver.http.hls import hls_routes
from rtmpserver.interfaces import IHLSProvider


@implementer(IHLSProvider)
class Provider:
    def __init__(self, tag):
        self.tag = tag

    def render_hls(self, request, app, filename):
        return f"{self.tag} {app} {filename}".encode()


class Chain:
    def __init__(self, *handlers):
        self.handlers = [(f"h{i}", h) for i, h in enumerate(handlers)]


def test_each_app_gets_its_own_provider_and_others_404():
    routes = hls_routes({"live": Chain(object(), Provider("a")), "tv": Chain(Provider("b")), "plain": Chain(object())})
    assert routes.render(DummyRequest([]), "live", "cam.m3u8") == b"a live cam.m3u8"
    assert routes.render(DummyRequest([]), "tv", "x-1.ts") == b"b tv x-1.ts"
    request = DummyRequest([])
    assert routes.render(request, "plain", "cam.m3u8") == b"not found\n"
    assert request.responseCode == 404


def test_no_provider_anywhere_means_no_routes():
    assert hls_routes({"live": Chain(object())}) is None
