"""The metrics hook seen from HTTP: a plugin's collector in /metrics, its fields in /api and /stat."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

import rtmpserver.plugins
from rtmpserver import config as configmod
from rtmpserver.http.site import RootResource
from rtmpserver.metrics import ServerMetrics
from rtmpserver.protocol import RTMPServerFactory
from tests.http.test_site import body, get, live_stream
from tests.test_protocol import Peer

PLUGIN = textwrap.dedent(
    '''
    from prometheus_client import Counter
    from twisted.plugin import IPlugin
    from zope.interface import implementer
    from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory

    @implementer(IAppHandler)
    class Counting:
        def __init__(self, counter, context):
            self.counter = counter
            self.app = context.app.name
            self.publishes = {}
            self.clients = set()
            context.annotate_stream(lambda app, name: {"acme_publishes": self.publishes.get(name, 0)})
            context.annotate_client(lambda app, cid: {"acme_seen": cid in self.clients})
        def connect(self, request, proceed):
            self.clients.add(request.session.id)
            return proceed(request)
        def publish(self, request, proceed):
            self.counter.labels(app=self.app).inc()
            self.publishes[request.name] = self.publishes.get(request.name, 0) + 1
            return proceed(request)
        def play(self, request, proceed):
            return proceed(request)
        def close_stream(self, event):
            pass

    @implementer(IPlugin, IAppHandlerFactory)
    class CountingFactory:
        name = "acmecount"
        description = "counts publishes"
        def build(self, settings, context):
            counter = context.metrics.shared(self, lambda: Counter(
                "acme_publishes", "Publishes seen by acmecount", ["app"], registry=None))
            return Counting(counter, context)

    acmecount = CountingFactory()
    '''
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    plugdir = tmp_path / "site" / "rtmpserver" / "plugins"
    plugdir.mkdir(parents=True)
    (plugdir / "acme_count.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    saved = list(rtmpserver.plugins.__path__)
    importlib.reload(rtmpserver.plugins)
    yield
    rtmpserver.plugins.__path__[:] = saved
    sys.modules.pop("rtmpserver.plugins.acme_count", None)


def make_two_sites():
    cfg = configmod.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[app:live]\nhandlers = acmecount, live\n"
        "[app:other]\nhandlers = acmecount, access, live\naccess.rules = deny publish all\n"
        "[http:a]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[http:b]\nlisten = tcp:0:interface=127.0.0.1\n",
        "t.ini",
    )
    f = RTMPServerFactory(cfg, Clock())
    return f, RootResource(f, cfg.http["a"]), RootResource(f, cfg.http["b"])


def samples(root) -> dict:
    out = {}
    for fam in text_string_to_metric_families(body(get(root, "/metrics")).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_handler_collector_shows_on_every_sites_metrics(plugin):
    f, a, b = make_two_sites()
    live_stream(f)  # publishes live/cam
    refused = Peer(f)
    refused.connect("other")
    refused.call("publish", None, "x", "live", stream_id=refused.create_stream())
    for root in (a, b):
        got = samples(root)
        assert got[("acme_publishes_total", (("app", "live"),))] == 1
        assert got[("acme_publishes_total", (("app", "other"),))] == 1
        # the built-in access handler counts through the same hook
        assert got[("access_refusals_total", (("action", "publish"), ("app", "other")))] == 1
        assert ("rtmp_open_connections", ()) in got  # the server's own families are still there


def test_handler_fields_in_api_and_stat(plugin):
    f, a, _ = make_two_sites()
    pub, _ = live_stream(f)
    streams = json.loads(body(get(a, "/api/v1/streams")))["streams"]
    (cam,) = [s for s in streams if s["name"] == "cam"]
    assert cam["extra"] == {"acme_publishes": 1}
    clients = json.loads(body(get(a, "/api/v1/clients")))["clients"]
    assert [c["extra"] for c in clients] == [{"acme_seen": True}]
    stat = ET.fromstring(body(get(a, "/stat")))
    assert stat.find(".//stream/extra/acme_publishes").text == "1"


def test_annotation_that_raises_is_skipped(plugin):
    f, a, _ = make_two_sites()
    live_stream(f)

    def broken(app, name):
        raise RuntimeError("boom")

    f.metrics.annotate_stream(broken)
    streams = json.loads(body(get(a, "/api/v1/streams")))["streams"]
    assert streams[0]["extra"] == {"acme_publishes": 1}


def test_register_refuses_the_servers_names_and_duplicates():
    metrics = ServerMetrics()
    with pytest.raises(ValueError, match="rtmp_"):
        metrics.register(Counter("rtmp_mine", "x", registry=None))
    c = Counter("mine", "x", registry=None)
    assert metrics.register(c) is c
    assert metrics.register(c) is c  # the same object again: no-op
    with pytest.raises(ValueError):
        metrics.register(Counter("mine", "y", registry=None))


def test_shared_builds_once_per_owner_and_server():
    owner = object()
    made = []

    def make():
        made.append(1)
        return Counter(f"shared_{len(made)}", "x", registry=None)

    one, two = ServerMetrics(), ServerMetrics()
    assert one.shared(owner, make) is one.shared(owner, make)
    two.shared(owner, make)
    assert len(made) == 2


def test_annotations_are_scoped_to_the_app():
    metrics = ServerMetrics()
    metrics.annotate_stream(lambda app, name: {"n": name}, app="live")
    snap = {"apps": {"live": [{"name": "a"}], "other": [{"name": "b"}]}, "clients": []}
    metrics.annotate_snapshot(snap)
    assert snap["apps"]["live"][0]["extra"] == {"n": "a"}
    assert "extra" not in snap["apps"]["other"][0]


def test_server_metrics_provides_the_interface():
    from zope.interface.verify import verifyObject

    from rtmpserver.interfaces import IServerMetrics

    assert verifyObject(IServerMetrics, ServerMetrics())
