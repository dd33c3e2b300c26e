"""rtmpserver.http.hls: /hls/<app>/ goes to that app's IHLSProvider, found by interface."""

from __future__ import annotations

from zope.interface import implementer

from rtmpserver.http.hls import hls_routes
from rtmpserver.interfaces import IHLSProvider


@implementer(IHLSProvider)
class Provider:
    def __init__(self, tag):
        self.tag = tag

    def segmenter(self, app, name):
        return f"{self.tag} {app} {name}"


class Chain:
    def __init__(self, *handlers):
        self.handlers = [(f"h{i}", h) for i, h in enumerate(handlers)]


def test_each_app_gets_its_own_provider_and_others_404():
    routes = hls_routes({"live": Chain(object(), Provider("a")), "tv": Chain(Provider("b")), "plain": Chain(object())})
    assert routes.segmenter("live", "cam") == "a live cam"
    assert routes.segmenter("tv", "x") == "b tv x"
    assert routes.segmenter("plain", "cam") is None
    assert routes.segmenter("nohls", "cam") is None


def test_no_provider_anywhere_means_no_routes():
    assert hls_routes({"live": Chain(object())}) is None
