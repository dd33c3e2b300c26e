"""/stat, /api/v1, /metrics and /control of all workers, whichever worker gets the request.

The answering worker asks the supervisor (AMP ``Gather``), which asks every worker for its
report (``Report``: the monitoring snapshot of rtmpserver.http.monitor, or its /metrics text);
the snapshots are merged into one and rendered by the same functions a single process uses.
Each client row gets a ``worker`` field.  A stream relayed between workers is one stream: its
publisher and byte counts are the owner's, its players those of every worker, and the relay
connections themselves are not shown as players.
"""

from __future__ import annotations

import json
import os

from twisted.internet import defer

from rtmpserver.workers import directory as d

# An HLS request forwarded to the publishing worker gets this long for its whole answer.
FORWARD_TIMEOUT = 10.0

__all__ = ["install", "local_snapshot", "local_metrics", "merge_snapshots", "merge_metrics"]


def install(worker) -> None:
    """Make the worker's HTTP sites answer monitoring and control for all workers."""

    def gather(what: str) -> defer.Deferred:
        proto = worker.directory.protocol
        if proto is None:
            return defer.fail(RuntimeError("no supervisor"))
        dd = proto.callRemote(d.Gather, what=what)

        def merged(r):
            reports = [json.loads(text) if what == "snapshot" else text
                       for _, text in json.loads(r["reports"]) if text is not None]
            return merge_snapshots(reports) if what == "snapshot" else merge_metrics(reports)

        return dd.addCallback(merged)

    def control(path: list[str], args: dict[str, str]) -> defer.Deferred:
        proto = worker.directory.protocol
        if proto is None:
            return defer.fail(RuntimeError("no supervisor"))
        query = json.dumps({"path": path, "args": args})
        action = path[0] if path else ""
        if action == "record":
            targets = [worker.directory.owners.get((args.get("app", ""), args.get("name", "")), worker.index)]
        elif args.get("clientid", "").isdigit():
            from rtmpserver.workers.worker import CLIENT_ID_SPAN

            targets = [int(args["clientid"]) // CLIENT_ID_SPAN]
        else:
            targets = list(range(worker.count))
        calls = [proto.callRemote(d.Control, worker=t, query=query) for t in targets]

        def combined(results):
            answers = [r for ok, r in results if ok]
            if not answers:
                return 502, b"no worker answered\n"
            if action in ("drop", "redirect") and all(a["code"] == 200 for a in answers):
                return 200, str(sum(int(a["body"] or 0) for a in answers)).encode()
            best = next((a for a in answers if a["code"] == 200), answers[0])
            return best["code"], best["body"].encode()

        return defer.DeferredList(calls, consumeErrors=True).addCallback(combined)

    forward = _hls_forward(worker)
    for site in worker.sites:
        site.resource.gather = gather
        site.resource.control_elsewhere = control
        site.resource.hls_forward = forward
    # Forwarded requests reach the owner's own resource (worker.hls_sites); there the owner is
    # this worker, so they are answered, not forwarded again.


def _hls_forward(worker):
    """HLS requests for a stream another worker publishes go to that worker's HTTP socket.

    HLS is segmented once, in the publishing worker; the playlist decision (its handler chain
    and viewer token) and the segments are both answered there.
    """
    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers
    from twisted.web.server import NOT_DONE_YET

    class _ToSocket:
        def __init__(self, path: str) -> None:
            self.path = path

        def endpointForURI(self, uri):
            from twisted.internet.endpoints import UNIXClientEndpoint

            return UNIXClientEndpoint(worker.reactor, self.path, timeout=5)

    def forward(request, section: str, app: str, filename: str):
        # /hls/<app>/<name>.m3u8 or /hls/<app>/<name>-<n>.ts (rtmpserver.http.viewers)
        if filename.endswith(".m3u8"):
            name = filename[:-5]
        elif filename.endswith(".ts"):
            name = filename[:-3].rpartition("-")[0]
        else:
            return None
        owner = worker.directory.owners.get((app, name))
        if owner is None or owner == worker.index:
            return None
        agent = Agent.usingEndpointFactory(worker.reactor, _ToSocket(worker.http_socket(owner, section)))
        from rtmpserver.workers.worker import PEER_HEADER

        addr = request.getClientAddress()
        peer = f"{getattr(addr, 'host', '?')} {getattr(addr, 'port', 0)}".encode()
        headers = Headers({b"user-agent": [b"rtmpserver-worker"], PEER_HEADER: [peer]})
        dd = agent.request(b"GET", b"http://worker" + request.uri, headers)
        dd.addTimeout(FORWARD_TIMEOUT, worker.reactor)
        finished = request.notifyFinish()
        finished.addErrback(lambda _: dd.cancel())

        def got(response):
            request.setResponseCode(response.code)
            for header in (b"content-type", b"cache-control"):
                values = response.headers.getRawHeaders(header)
                if values:
                    request.setHeader(header, values[0])
            return readBody(response)

        def write(body: bytes) -> None:
            if not finished.called:
                request.write(body)
                request.finish()

        def failed(f) -> None:
            if not finished.called:
                request.setResponseCode(502)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                request.write(b"the publishing worker did not answer\n")
                request.finish()

        dd.addCallback(got).addCallbacks(write, failed)
        return NOT_DONE_YET

    return forward


def _flv_clients(worker) -> list:
    out: list = []
    for resource in {id(site.resource): site.resource for site in worker.sites}.values():
        out.extend(resource.flv_clients)
    return out


def local_snapshot(worker) -> dict:
    from rtmpserver.http import monitor

    snap = monitor.snapshot(worker.factory, _flv_clients(worker))
    worker.factory.metrics.annotate_snapshot(snap)
    relay_ids = {p.session.id for p in worker.relay_factory.connections if p.session is not None}
    # /stat's <pid> names the server, not the worker that happened to answer: the supervisor,
    # the worker's parent and the process the operator started.
    snap["pid"] = os.getppid()
    for c in snap["clients"]:
        c["worker"] = worker.index
    for streams in snap["apps"].values():
        for st in streams:
            st["players"] = [p for p in st["players"] if p.get("id") not in relay_ids]
            for p in st["players"]:
                p["worker"] = worker.index
            st["bytes_out"] = sum(p.get("bytes_out", 0) for p in st["players"])
            st["relayed"] = worker.relays.is_relay(worker.hub.get(st["app"], st["name"]).publisher) if st["active"] else False
    return snap


def local_metrics(worker) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from rtmpserver.http import monitor

    class WorkerCollector(monitor.MetricsCollector):
        """The server's families, with a relayed stream counted once (by its owner) and the
        relay connections between workers not counted as players."""

        def collect(self):
            from prometheus_client.core import GaugeMetricFamily

            snap = local_snapshot(worker)
            for family in super().collect():
                if family.name in ("rtmp_streams", "rtmp_players"):
                    fixed = GaugeMetricFamily(family.name, family.documentation, labels=["app"])
                    for app, streams in snap["apps"].items():
                        if family.name == "rtmp_streams":
                            fixed.add_metric([app], sum(1 for st in streams if st["active"] and not st["relayed"]))
                        else:
                            fixed.add_metric([app], sum(len(st["players"]) for st in streams))
                    family = fixed
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker.factory, _flv_clients(worker)))
    registry.register(worker.factory.metrics)
    return generate_latest(registry).decode("utf-8")


def _add(into: dict, other: dict) -> None:
    for k, v in other.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v


def merge_snapshots(snaps: list[dict]) -> dict:
    """One snapshot (rtmpserver.http.monitor.snapshot's shape) from every worker's."""
    if not snaps:
        return {"now": 0, "uptime": 0, "accepted": 0, "connections": 0, "clients": [], "apps": {},
                "totals": {"bytes_in": 0, "bytes_out": 0}, "stats": {}, "app_totals": {}}
    out = {
        "now": max(s["now"] for s in snaps),
        "uptime": max(s["uptime"] for s in snaps),
        "accepted": sum(s["accepted"] for s in snaps),
        "connections": sum(s["connections"] for s in snaps),
        "clients": [c for s in snaps for c in s["clients"]],
        "pid": next((s["pid"] for s in snaps if "pid" in s), os.getpid()),
        "totals": {"bytes_in": 0, "bytes_out": 0},
        "stats": {},
        "app_totals": {},
        "apps": {},
    }
    for s in snaps:
        _add(out["totals"], s["totals"])
        _add(out["stats"], s["stats"])
        for app, t in s["app_totals"].items():
            _add(out["app_totals"].setdefault(app, {}), t)
    for s in snaps:
        for app, streams in s["apps"].items():
            merged = out["apps"].setdefault(app, [])
            for st in streams:
                same = next((m for m in merged if m["name"] == st["name"]), None)
                if same is None:
                    merged.append(dict(st, players=list(st["players"])))
                    continue
                players = same["players"] + st["players"]
                # The owner's row (a real publisher, not a relay) carries the stream's facts.
                if st["active"] and not st.get("relayed") and (not same["active"] or same.get("relayed")):
                    same.clear()
                    same.update(st)
                same["players"] = players
                same["bytes_out"] = sum(p.get("bytes_out", 0) for p in players)
    for streams in out["apps"].values():
        for st in streams:
            st.pop("relayed", None)
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def merge_metrics(texts: list[str]) -> bytes:
    """Prometheus text of every worker as one: samples with the same name and labels summed
    (uptime: the largest); ``*_created`` samples left out."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, tuple[str, str, dict]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            _, _, samples = families.setdefault(fam.name, (fam.type, fam.documentation, {}))
            for sample in fam.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if sample.name.endswith("uptime_seconds"):
                    samples[key] = max(samples.get(key, 0.0), sample.value)
                else:
                    samples[key] = samples.get(key, 0.0) + sample.value
    lines = []
    for name, (kind, doc, samples) in families.items():
        lines.append(f"# HELP {name} {_escape(doc)}")
        lines.append(f"# TYPE {name} {kind}")
        for (sname, labels), value in samples.items():
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{sname}{{{label_text}}} {value!r}" if labels else f"{sname} {value!r}")
    return ("\n".join(lines) + "\n").encode("utf-8")
