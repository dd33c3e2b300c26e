"""Monitoring: ``/stat`` (nginx-rtmp's XML), ``/api/v1/streams|clients`` (JSON), ``/metrics``.

All three read one snapshot of server state taken at request time; nothing on the media path
counts anything for them beyond the per-stream and per-session byte counters it already keeps.
The /stat element names and nesting follow nginx-rtmp's stat module so that XSL pages and
dashboards written for it keep working.
"""

from __future__ import annotations

import os
import platform
import re
from xml.sax.saxutils import escape

from twisted.logger import Logger

from rtmpserver.codec import amf0
from rtmpserver.errors import RemoteProtocolError
from rtmpserver.interfaces import (
    IMonitoredClient,
    IMonitoredHandler,
    IRecording,
    IRelayConsumer,
    IRelayFeeder,
)
from rtmpserver.media import codecs, flv
from rtmpserver.sinks import LiveSink

__all__ = ["snapshot", "stat_xml", "streams_json", "clients_json", "handler_rows_json", "MetricsCollector"]

_VERSION = "0.1.0"
_log = Logger()


# nginx-rtmp prints the H.264 profile by name (ngx_rtmp_stat_get_avc_profile).
_AVC_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10", 122: "High 4:2:2", 144: "High 4:4:4", 244: "High 4:4:4"}


def _meta(live) -> dict:
    """Video/audio facts for /stat <meta> and the API, from sequence headers and onMetaData."""
    out: dict = {"video": {}, "audio": {}}
    if live.metadata is not None:
        try:
            values = amf0.decode(live.metadata.payload)
            md = values[1] if len(values) > 1 and isinstance(values[1], dict) else {}
        except RemoteProtocolError:
            md = {}
        for key in ("width", "height", "framerate"):
            if isinstance(md.get(key), (int, float)):
                out["video"]["frame_rate" if key == "framerate" else key] = md[key]
        if isinstance(md.get("audiosamplerate"), (int, float)):
            out["audio"]["sample_rate"] = md["audiosamplerate"]
    vh = live.video_header
    if vh is not None:
        try:
            info = flv.video_info(vh.payload)
            out["video"]["codec"] = {"avc1": "H264", "hvc1": "HEVC", "av01": "AV1", "vp09": "VP9"}.get(str(info.codec), str(info.codec))
            if info.codec == "avc1":
                cfg = codecs.parse_avc_decoder_config(vh.payload[info.header_size:])
                out["video"]["profile"] = _AVC_PROFILES.get(cfg.profile, str(cfg.profile))
                out["video"]["compat"] = cfg.compatibility
                out["video"]["level"] = cfg.level / 10
                if cfg.sps:
                    w, h = codecs.parse_sps_dimensions(cfg.sps[0])
                    out["video"].setdefault("width", w)
                    out["video"].setdefault("height", h)
        except RemoteProtocolError:
            pass
    ah = live.audio_header
    if ah is not None:
        try:
            info = flv.audio_info(ah.payload)
            out["audio"]["codec"] = "AAC" if info.sound_format == 10 else str(info.codec)
            if info.sound_format == 10:
                cfg = codecs.parse_audio_specific_config(ah.payload[info.header_size:])
                out["audio"]["profile"] = {1: "Main", 2: "LC", 3: "SSR", 5: "HE", 29: "HEv2"}.get(cfg.object_type, str(cfg.object_type))
                out["audio"]["channels"] = cfg.channel_config
                out["audio"]["sample_rate"] = cfg.sample_rate
        except RemoteProtocolError:
            pass
    return out


def _monitored(obj):
    return IMonitoredClient(obj, None) if obj is not None else None


def _sink_counts(live) -> dict:
    """Per stream: messages its players dropped and their resyncs, recordings, push relays, pulled or not."""
    players = [s for s in live.sinks if isinstance(s, LiveSink)]
    return {
        "dropped": sum(s.dropped for s in players),
        "resyncs": sum(s.resyncs for s in players),
        "recordings": [list(IRecording(s).paths) for s in live.sinks if IRecording.providedBy(s)],
        "relays_out": sum(1 for s in live.sinks if IRelayFeeder.providedBy(s)),
        "relayed_in": IRelayConsumer.providedBy(live.publisher),
    }


def snapshot(factory, flv_clients=()) -> dict:
    """Everything the monitoring endpoints show, as plain data."""
    now = factory.clock.seconds()
    sessions = [p.session for p in factory.connections if p.session is not None]
    clients = [IMonitoredClient(c).describe(now) for c in (*sessions, *flv_clients)]
    apps: dict[str, list] = {name: [] for name in factory.config.apps}
    for live in list(factory.hub.streams.values()):
        # Players (RTMP NetStreams, HTTP-FLV viewers) describe themselves; recorders and HLS
        # writers are sinks too but not clients, so they do not provide IMonitoredClient.
        players = [c.describe(now) for c in map(_monitored, live.sinks) if c is not None]
        pub = _monitored(live.publisher)
        publisher = pub.describe(now) if pub is not None else None
        apps.setdefault(live.app, []).append({
            "app": live.app,
            "name": live.name,
            "time": (now - live.started_at) if live.active else 0,
            "active": live.active,
            "bytes_in": live.bytes_in,
            "bw_in": live.bandwidth(now),
            "bytes_out": sum(p.get("bytes_out", 0) for p in players),
            "publisher": publisher,
            "players": players,
            "meta": _meta(live) if live.active else {"video": {}, "audio": {}},
            **_sink_counts(live),
        })
    totals = {"bytes_in": 0, "bytes_out": 0}
    for t in factory.app_totals.values():
        totals["bytes_in"] += t.get("bytes_in", 0)
        totals["bytes_out"] += t.get("bytes_out", 0)
    for c in clients:
        totals["bytes_in"] += c["bytes_in"]
        totals["bytes_out"] += c["bytes_out"]
    return {
        "now": now,
        "handler_rows": _handler_rows(factory, now),
        "uptime": now - factory.started,
        "accepted": factory.stats["connections_total"],
        "connections": len(sessions),
        "clients": clients,
        "apps": apps,
        "totals": totals,
        "stats": dict(factory.stats),
        "app_totals": {k: dict(v) for k, v in factory.app_totals.items()},
    }


def _handler_rows(factory, now: float) -> list[dict]:
    """Rows of handlers that provide IMonitoredHandler (relays, processes); one that fails is skipped."""
    rows: list[dict] = []
    for app, chain in (getattr(factory, "chains", None) or {}).items():
        for _, h in chain.handlers:
            if IMonitoredHandler.providedBy(h):
                try:
                    rows.extend(dict(r, app=r.get("app", app)) for r in h.monitor_rows(now))
                except Exception:
                    _log.failure("monitor rows of handler {handler!r} failed", handler=h)
    return rows


_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


# Characters XML 1.0 forbids (its "Char" production): C0 controls but tab/LF/CR, surrogates,
# U+FFFE and U+FFFF.  Clients choose flashVer, pageUrl and stream names, so they are replaced.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value) -> str:
    """``value`` as XML character data: escaped, and characters XML cannot hold replaced by U+FFFD."""
    return escape(_XML_FORBIDDEN.sub("\ufffd", str(value)))


def _el(name: str, value) -> str:
    if isinstance(value, float):
        value = int(value) if value.is_integer() else round(value, 3)
    return f"<{name}>{xml_text(value)}</{name}>"


def stat_xml(snap: dict) -> bytes:
    """nginx-rtmp's /stat document (ngx_rtmp_stat_module): same elements, same nesting."""
    out = ['<?xml version="1.0" encoding="utf-8" ?>\n<rtmp>']
    out.append(_el("nginx_version", "rtmpserver/" + _VERSION))
    out.append(_el("nginx_rtmp_version", _VERSION))
    out.append(_el("compiler", "CPython " + platform.python_version()))
    out.append(_el("built", "-"))
    out.append(_el("pid", snap.get("pid", os.getpid())))  # workers: the supervisor's (workers/aggregate.py)
    out.append(_el("uptime", int(snap["uptime"])))
    out.append(_el("naccepted", snap["accepted"]))
    out.append(_el("bw_in", 0) + _el("bytes_in", snap["totals"]["bytes_in"]))
    out.append(_el("bw_out", 0) + _el("bytes_out", snap["totals"]["bytes_out"]))
    out.append("<server>")
    for app, streams in snap["apps"].items():
        out.append("<application>" + _el("name", app) + "<live>")
        nclients = 0
        for st in streams:
            out.append("<stream>" + _el("name", st["name"]) + _el("time", int(st["time"] * 1000)))
            out.append(_el("bw_in", int(st["bw_in"] * 8)) + _el("bytes_in", st["bytes_in"]))
            out.append(_el("bw_out", 0) + _el("bytes_out", st["bytes_out"]))
            out.append(_el("bw_audio", 0) + _el("bw_video", 0))
            members = ([(st["publisher"], True)] if st["publisher"] else []) + [(p, False) for p in st["players"]]
            for c, publishing in members:
                out.append("<client>" + _el("id", c["id"]) + _el("address", c["address"]))
                out.append(_el("time", int(c["time"] * 1000)) + _el("flashver", c.get("flashver", "")))
                if c.get("pageurl"):
                    out.append(_el("pageurl", c["pageurl"]))
                if c.get("swfurl"):
                    out.append(_el("swfurl", c["swfurl"]))
                out.append(_el("dropped", c.get("dropped", 0)) + _el("avsync", 0) + _el("timestamp", c.get("timestamp", 0)))
                if publishing:
                    out.append("<publishing/>")
                if st["active"]:
                    out.append("<active/>")
                out.append("</client>")
            meta = st["meta"]
            if st["active"] and (meta["video"] or meta["audio"]):
                out.append("<meta>")
                v = meta["video"]
                if v:
                    out.append("<video>")
                    for k in ("width", "height", "frame_rate", "codec", "profile", "compat", "level"):
                        if k in v:
                            out.append(_el(k, v[k]))
                    out.append("</video>")
                a = meta["audio"]
                if a:
                    out.append("<audio>")
                    for k in ("codec", "profile", "channels", "sample_rate"):
                        if k in a:
                            out.append(_el(k, a[k]))
                    out.append("</audio>")
                out.append("</meta>")
            n = len(members)
            nclients += n
            out.append(_el("nclients", n))
            if st["publisher"]:
                out.append("<publishing/>")
            if st["active"]:
                out.append("<active/>")
            if st.get("extra"):  # handlers' fields (IServerMetrics.annotate_stream); XML-name keys only
                out.append("<extra>" + "".join(_el(k, v) for k, v in st["extra"].items() if _XML_NAME.fullmatch(k)) + "</extra>")
            out.append("</stream>")
        out.append(_el("nclients", nclients) + "</live>")
        # Relays and supervised processes of the app (not in nginx-rtmp's document: extra elements
        # after <live>, which its XSL pages ignore).
        for row in snap.get("handler_rows", ()):
            if row.get("app") == app and _XML_NAME.fullmatch(str(row.get("kind", ""))):
                out.append(f"<{row['kind']}>" + "".join(
                    _el(k, v) for k, v in row.items() if k not in ("kind", "app") and _XML_NAME.fullmatch(k) and v is not None
                ) + f"</{row['kind']}>")
        out.append("</application>")
    out.append("</server></rtmp>\n")
    return "".join(out).encode("utf-8")


def streams_json(snap: dict) -> dict:
    streams = []
    for app_streams in snap["apps"].values():
        for st in app_streams:
            streams.append({
                "app": st["app"], "name": st["name"], "active": st["active"], "uptime": st["time"],
                "bytes_in": st["bytes_in"], "bw_in": st["bw_in"] * 8, "bytes_out": st["bytes_out"],
                "publisher": st["publisher"], "players": len(st["players"]), "meta": st["meta"],
                "dropped": st["dropped"], "resyncs": st["resyncs"], "recordings": st["recordings"],
                "relays_out": st["relays_out"], "relayed_in": st["relayed_in"],
                **({"extra": st["extra"]} if "extra" in st else {}),
            })
    return {"streams": streams}


def handler_rows_json(snap: dict, kind: str) -> dict:
    """``/api/v1/relays`` and ``/api/v1/processes``: the rows of that kind (IMonitoredHandler)."""
    return {{"relay": "relays", "process": "processes"}.get(kind, kind): [r for r in snap.get("handler_rows", ()) if r.get("kind") == kind]}


def clients_json(snap: dict) -> dict:
    return {"clients": snap["clients"]}


class MetricsCollector:
    """A prometheus_client collector that reads the server state at scrape time."""

    def __init__(self, factory, flv_clients) -> None:
        self.factory = factory
        self.flv_clients = flv_clients

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = snapshot(self.factory, self.flv_clients)
        stats = snap["stats"]
        yield GaugeMetricFamily("rtmp_open_connections", "Open RTMP connections", value=snap["connections"])
        yield CounterMetricFamily("rtmp_connections", "RTMP connections accepted", value=stats["connections_total"])
        yield CounterMetricFamily("rtmp_connections_refused", "Connections refused by limits", value=stats["refused"])
        yield CounterMetricFamily("rtmp_handshake_failures", "Connections closed for a bad handshake", value=stats["handshake_failures"])
        yield CounterMetricFamily("rtmp_protocol_errors", "Connections closed for malformed input", value=stats["protocol_errors"])
        yield CounterMetricFamily("rtmp_handshake_timeouts", "Connections closed for not finishing the handshake in time", value=stats["handshake_timeouts"])
        yield CounterMetricFamily("rtmp_idle_timeouts", "Connections closed for silence (idle_timeout, unanswered pings)", value=stats["idle_timeouts"])
        yield CounterMetricFamily("rtmp_send_timeouts", "Players closed for taking no bytes for send_timeout (RTMP and HTTP-FLV)", value=stats["send_timeouts"])
        yield CounterMetricFamily("rtmp_pending_evicted", "Handshaking connections closed by max_pending_per_ip", value=stats["pending_evicted"])
        yield GaugeMetricFamily("rtmp_uptime_seconds", "Seconds since the server started", value=snap["uptime"])
        streams = GaugeMetricFamily("rtmp_streams", "Live streams with a publisher", labels=["app"])
        players = GaugeMetricFamily("rtmp_players", "Players attached to live streams (RTMP and HTTP-FLV)", labels=["app"])
        b_in = CounterMetricFamily("rtmp_bytes_in", "Bytes received", labels=["app"])
        b_out = CounterMetricFamily("rtmp_bytes_out", "Bytes sent", labels=["app"])
        drops = CounterMetricFamily("rtmp_dropped_messages", "Media messages dropped", labels=["app", "reason"])
        rejected = CounterMetricFamily("rtmp_rejections", "Requests refused by the handler chain (auth, access, notify...)", labels=["app", "hook"])
        per_app: dict[str, dict] = {}
        for app, t in snap["app_totals"].items():
            d = per_app.setdefault(app, {"in": 0, "out": 0, "drop": 0, "rej": {}})
            d["in"] += t.get("bytes_in", 0)
            d["out"] += t.get("bytes_out", 0)
            d["drop"] += t.get("dropped", 0)
            for k, v in t.items():
                if k.startswith("rejected_"):
                    d["rej"][k[len("rejected_"):]] = d["rej"].get(k[len("rejected_"):], 0) + v
        for c in snap["clients"]:
            d = per_app.setdefault(c["app"] or "-", {"in": 0, "out": 0, "drop": 0, "rej": {}})
            d["in"] += c["bytes_in"]
            d["out"] += c["bytes_out"]
            d["drop"] += c["dropped"]
        for p in self.factory.connections:
            s = p.session
            if s is not None:
                d = per_app.setdefault(s.app or "-", {"in": 0, "out": 0, "drop": 0, "rej": {}})
                for k, v in s.stats.rejections.items():
                    d["rej"][k] = d["rej"].get(k, 0) + v
        for app, sts in snap["apps"].items():
            streams.add_metric([app], sum(1 for st in sts if st["active"]))
            players.add_metric([app], sum(len(st["players"]) for st in sts))
        for app, d in per_app.items():
            b_in.add_metric([app], d["in"])
            b_out.add_metric([app], d["out"])
            drops.add_metric([app, "slow_player"], d["drop"])
            for hook, n in d["rej"].items():
                rejected.add_metric([app, hook], n)
        yield from (streams, players, b_in, b_out, drops, rejected)
