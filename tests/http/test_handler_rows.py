"""Relays and processes of handlers (IMonitoredHandler) in /stat and /api/v1/relays|processes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from twisted.internet.task import Clock
from zope.interface import implementer

from rtmpserver import config as configmod
from rtmpserver.http.site import RootResource
from rtmpserver.interfaces import IAppHandler, IMonitoredHandler
from rtmpserver.protocol import RTMPServerFactory
from tests.http.test_site import body, get


@implementer(IAppHandler, IMonitoredHandler)
class Rows:
    def __init__(self, rows, fail=False):
        self.rows = rows
        self.fail = fail

    def connect(self, request, proceed):
        return proceed(request)

    publish = play = connect

    def close_stream(self, event):
        return None

    def monitor_rows(self, now):
        if self.fail:
            raise RuntimeError("broken")
        return [dict(r, age=now) for r in self.rows]


def make():
    cfg = configmod.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\n[app:other]\n"
        "[http:main]\nlisten = tcp:0:interface=127.0.0.1\n",
        "t.ini",
    )
    clock = Clock()
    clock.advance(100)
    f = RTMPServerFactory(cfg, clock)
    f.chains["live"].handlers.insert(0, ("rows", Rows([
        {"kind": "relay", "name": "cam", "url": "rtmp://o/live/cam", "state": "playing", "reconnects": 2},
        {"kind": "process", "name": "cam", "program": "ffmpeg", "pid": 42, "restarts": 0, "bad key!": 1},
    ])))
    f.chains["other"].handlers.insert(0, ("broken", Rows([], fail=True)))
    return f, RootResource(f, cfg.http["main"])


def test_api_lists_rows_by_kind_with_their_app():
    f, root = make()
    relays = json.loads(body(get(root, "api/v1/relays")))["relays"]
    assert relays == [{"kind": "relay", "name": "cam", "url": "rtmp://o/live/cam", "state": "playing", "reconnects": 2,
                       "age": 100.0, "app": "live"}]
    procs = json.loads(body(get(root, "api/v1/processes")))["processes"]
    assert [(p["app"], p["program"], p["pid"]) for p in procs] == [("live", "ffmpeg", 42)]


def test_stat_has_them_under_their_application():
    f, root = make()
    doc = ET.fromstring(body(get(root, "stat")))
    apps = {a.findtext("name"): a for a in doc.iter("application")}
    relay = apps["live"].find("relay")
    assert relay.findtext("url") == "rtmp://o/live/cam" and relay.findtext("reconnects") == "2"
    proc = apps["live"].find("process")
    assert proc.findtext("pid") == "42" and proc.find("app") is None
    assert "bad key" not in body(get(root, "stat")).decode()  # not an XML name: left out
    assert apps["other"].find("relay") is None  # a handler whose rows fail is skipped, the page still renders
