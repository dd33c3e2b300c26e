"""The HTTP site of one ``[http:NAME]`` section: routing, token check, CORS.

| path | what |
|---|---|
| ``/<app>/<stream>.flv`` | HTTP-FLV (``flv = yes``); WebSocket-FLV when it asks to upgrade (``ws = yes``) |
| ``/hls/<app>/<stream>.m3u8``, ``/hls/<app>/<stream>-<n>.ts?vt=<token>`` | HLS (``hls = yes``, app with the hls handler) |
| ``/``, ``/static/...`` | the dashboard page (``dashboard = yes`` and ``api = yes``) |
| ``/stat`` | nginx-rtmp stat XML (``stat = yes``) |
| ``/api/v1/streams``, ``/api/v1/clients`` | JSON (``api = yes``) |
| ``/metrics`` | Prometheus text format (``metrics = yes``) |
| ``/control/...`` | nginx-rtmp compatible control (``control = yes``) |
| ``POST /open/1``, ``/send|idle|close/<id>/<seq>``, ``/fcs/ident2`` | RTMPT (``rtmpt = yes``) |

Monitoring and control need the section's ``token`` when one is set (``Authorization: Bearer``
or ``?token=``); config refuses them on a non-loopback listener without one, and control without
one anywhere.  On a loopback address they also need a loopback ``Host`` header (DNS rebinding).  HTTP-FLV and HLS
viewers are decided by the application's handler chain like RTMP players
(``rtmpserver.http.viewers``).  Only media responses carry the CORS header.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from zope.interface import provider

from rtmpserver.http import control as control_mod
from rtmpserver.http import monitor
from rtmpserver.http.dashboard import StaticFiles
from rtmpserver.http.flv import serve_flv
from rtmpserver.http.rtmpt import RTMPTSessions, is_rtmpt_path
from rtmpserver.http.viewers import HLSViewers
from rtmpserver.http.ws import is_upgrade, serve_ws_flv
from rtmpserver.protocol import Refused

__all__ = ["RootResource", "HTTPSite", "build_site", "access_log_line", "loopback_host_ok"]

# The largest request body accepted at all: /control takes its parameters from the query string,
# a small form body is tolerated (and ignored); every other resource is GET-only.
MAX_BODY = 4096

# A Host header naming the loopback address: what a local tool sends.  A browser page that
# reaches a loopback listener through DNS rebinding sends its own (attacker's) host name instead.
_LOOPBACK_HOST = re.compile(rb"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)


def loopback_host_ok(request) -> bool:
    """False when a request that arrived on a loopback address names another host (DNS rebinding)."""
    local = request.getHost()
    if not isinstance(local, (IPv4Address, IPv6Address)):
        return True
    try:
        if not ipaddress.ip_address(local.host.split("%", 1)[0]).is_loopback:
            return True
    except ValueError:
        return True
    host = request.getHeader(b"host")
    return host is None or _LOOPBACK_HOST.fullmatch(host.strip()) is not None


def _escape(value: bytes) -> str:
    return value.decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"')


@provider(IAccessLogFormatter)
def access_log_line(timestamp, request) -> str:
    """The combined log format without query strings: they carry keys, signatures and tokens."""
    addr = request.getClientAddress()
    ip = addr.host if isinstance(addr, (IPv4Address, IPv6Address)) else "-"
    uri = request.uri.split(b"?", 1)[0]
    referrer = (request.getHeader(b"referer") or b"-").split(b"?", 1)[0]
    agent = request.getHeader(b"user-agent") or b"-"
    return (
        f'"{_escape(ip.encode())}" - - {timestamp} "{_escape(request.method)} {_escape(uri)} '
        f'{_escape(request.clientproto)}" {request.code} {request.sentLength or "-"} '
        f'"{_escape(referrer)}" "{_escape(agent)}"'
    )

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~@+=")


def _clean(segment: bytes) -> str | None:
    """A URL path segment usable as an app or stream name, or None (no traversal, no oddities)."""
    try:
        text = segment.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or text in (".", "..") or not set(text) <= _NAME_OK:
        return None
    return text


class RootResource(Resource):
    isLeaf = True
    _log = Logger()

    def __init__(self, factory, http_config, hls_registry=None) -> None:
        super().__init__()
        self.factory = factory
        self.conf = http_config
        self.flv_clients: set = set()
        self.hls = hls_registry
        self.hls_viewers = HLSViewers(factory, hls_registry, factory.clock, http_config.hls_viewer_timeout,
                                      http_config.max_hls_viewers)
        self._metrics_registry = None
        self.rtmpt = RTMPTSessions(factory, http_config)
        self.static = StaticFiles() if http_config.dashboard and http_config.api else None
        # Set by rtmpserver.workers in a worker of ``[server] workers`` > 1; None in one process.
        self.gather = None  # "snapshot" | "metrics" -> Deferred of every worker's, merged
        self.control_elsewhere = None  # (path, args) -> Deferred of (code, body), all workers
        self.hls_forward = None  # (request, section, app, name) -> NOT_DONE_YET when forwarded

    # -- helpers ----------------------------------------------------------------------------

    def _reply(self, request, code: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", ctype)
        return body

    def _unauthorized(self, request) -> bytes:
        # RFC 7235 3.1: a 401 names the scheme the client should use.
        request.setHeader(b"www-authenticate", b'Bearer realm="rtmpserver"')
        return self._reply(request, 401, b"token required\n")

    def _authorized(self, request) -> bool:
        token = self.conf.token
        if not token:
            return True
        given = b""
        auth = request.getHeader(b"authorization") or b""
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        elif b"token" in request.args:
            given = request.args[b"token"][0]
        return hmac.compare_digest(given, token.encode())

    # -- dispatch -----------------------------------------------------------------------------

    def render_HEAD(self, request):
        return self.render_GET(request)

    def render_POST(self, request):
        # Only /control takes POST (nginx-rtmp's control answers both); its parameters are in
        # the query string, a body is not read.  RTMPT is all POSTs (rtmpserver.http.rtmpt).
        path = [p for p in request.postpath if p]
        if path and path[0] == b"control" and self.conf.control:
            return self._control(request, path)
        if self.conf.rtmpt and is_rtmpt_path(b"/" + b"/".join(path) + b"/"):
            return self.rtmpt.render(request, path)
        request.setHeader(b"allow", b"GET, HEAD")
        return self._reply(request, 405, b"method not allowed\n")

    def _control(self, request, path):
        if not loopback_host_ok(request):
            return self._reply(request, 403, b"Host must name the loopback address on this listener\n")
        if not self._authorized(request):
            return self._unauthorized(request)
        request.postpath = path[1:]
        if self.control_elsewhere is not None:
            args = {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace") for k, v in request.args.items() if v}
            d = self.control_elsewhere([p.decode("utf-8", "replace") for p in request.postpath], args)
            return self._later(request, d.addCallback(lambda r: (r[0], r[1], b"text/plain; charset=utf-8")))
        code, body = control_mod.control(request, self.factory)
        return self._reply(request, code, body)

    def _cors(self, request) -> None:
        # Media only: the admin endpoints must not be readable by other origins' scripts.
        request.setHeader(b"access-control-allow-origin", self.conf.cors.encode())

    def render_GET(self, request):
        path = [p for p in request.postpath]
        if path and path[-1] == b"":
            path = path[:-1]
        conf = self.conf
        if conf.dashboard and conf.api and (not path or path[0] == b"static"):
            # The page and its files: no data, no secret, so no token (rtmpserver.http.dashboard).
            if not path:
                return self.static.render(request, "index.html")
            name = b"/".join(path[1:]).decode("ascii", "replace")
            return self.static.render(request, name)
        if path == [b"stat"] and conf.stat:
            return self._admin(request, lambda snap: (monitor.stat_xml(snap), b"text/xml; charset=utf-8"), "snapshot")
        if len(path) == 3 and path[:2] == [b"api", b"v1"] and conf.api:
            if path[2] == b"streams":
                return self._admin(request, lambda snap: (json.dumps(monitor.streams_json(snap), indent=1).encode(), b"application/json"), "snapshot")
            if path[2] == b"clients":
                return self._admin(request, lambda snap: (json.dumps(monitor.clients_json(snap), indent=1).encode(), b"application/json"), "snapshot")
            if path[2] in (b"relays", b"processes"):
                kind = "relay" if path[2] == b"relays" else "process"
                return self._admin(request, lambda snap: (json.dumps(monitor.handler_rows_json(snap, kind), indent=1).encode(), b"application/json"), "snapshot")
        if path == [b"metrics"] and conf.metrics:
            return self._admin(request, self._metrics, "metrics")
        if path and path[0] == b"control" and conf.control:
            return self._control(request, path)
        if len(path) == 3 and path[0] == b"hls" and conf.hls and self.hls is not None:
            app = _clean(path[1])
            name = _clean(path[2])
            if app is None or name is None:
                return self._reply(request, 404, b"not found\n")
            self._cors(request)
            if self.hls_forward is not None:
                forwarded = self.hls_forward(request, conf.name, app, name)
                if forwarded is not None:
                    return forwarded
            return self.hls_viewers.render(request, app, name)
        if len(path) == 2 and path[1].endswith(b".flv") and (conf.flv or conf.ws):
            app = _clean(path[0])
            name = _clean(path[1][:-4])
            if app is None or name is None:
                return self._reply(request, 404, b"not found\n")
            if is_upgrade(request):
                if conf.ws:
                    return serve_ws_flv(request, self.factory, conf, self.flv_clients, app, name)
            elif conf.flv:
                self._cors(request)
                return serve_flv(request, self.factory, conf, self.flv_clients, app, name)
        return self._reply(request, 404, b"not found\n")

    def _admin(self, request, produce, what: str):
        """``produce(snapshot)`` (``what`` = "snapshot") or ``produce(merged_metrics_or_None)``
        gives (body, content type); with workers the snapshot is every worker's, merged."""
        if not loopback_host_ok(request):
            return self._reply(request, 403, b"Host must name the loopback address on this listener\n")
        if not self._authorized(request):
            return self._unauthorized(request)
        if self.gather is None:
            body, ctype = produce(self._snap() if what == "snapshot" else None)
            return self._reply(request, 200, body, ctype)
        return self._later(request, self.gather(what).addCallback(lambda merged: (200, *produce(merged))))

    def _later(self, request, d):
        """Answer with what ``d`` gives, (code, body, content type), when it fires."""
        finished = request.notifyFinish()
        finished.addErrback(lambda _: None)

        def done(result) -> None:
            code, body, ctype = result
            if not finished.called:
                request.write(self._reply(request, code, body, ctype))
                request.finish()

        def failed(f) -> None:
            self._log.failure("asking the other workers failed", f)
            if not finished.called:
                request.write(self._reply(request, 503, b"workers did not answer\n"))
                request.finish()

        d.addCallback(done).addErrback(failed)
        return server.NOT_DONE_YET

    def _snap(self) -> dict:
        snap = monitor.snapshot(self.factory, self.flv_clients)
        self.factory.metrics.annotate_snapshot(snap)  # handlers' fields (IServerMetrics)
        return snap

    def _metrics(self, merged: bytes | None = None):
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        if merged is not None:
            return merged, CONTENT_TYPE_LATEST.encode()

        if self._metrics_registry is None:
            self._metrics_registry = CollectorRegistry(auto_describe=False)
            self._metrics_registry.register(monitor.MetricsCollector(self.factory, self.flv_clients))
            # Handlers' collectors live in the server's one registry, shared by every site.
            self._metrics_registry.register(self.factory.metrics)
        return generate_latest(self._metrics_registry), CONTENT_TYPE_LATEST.encode()


class _Channel(http.HTTPChannel):
    """An HTTP connection with a deadline for each request's headers and no unwanted bodies.

    The idle timeout of twisted.web restarts with every byte, so a client trickling one header
    line every few seconds would hold its connection (and a file descriptor) forever; here the
    request line and headers must all arrive within ``header_timeout`` of the connection (or of
    the previous response's end, on a kept-alive connection).  A body on anything but a small
    POST to /control is refused (405/413) before it is read, instead of being spooled to a
    temporary file.
    """

    _deadline = None
    _refused = False
    _counted = False

    def connectionMade(self):
        super().connectionMade()
        self.site.connection_made(self)
        self._counted = True
        self._arm()

    def connectionLost(self, reason):
        self._disarm()
        if self._counted:
            self._counted = False
            self.site.connection_lost(self)
        super().connectionLost(reason)

    def _arm(self):
        self._disarm()
        self._deadline = self.callLater(self.site.conf.header_timeout, self._too_slow)

    def _disarm(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self):
        self._deadline = None
        self.site._log.info("{peer}: request headers not received within {t} s; closing",
                            peer=_peer_text(self.transport.getPeer()), t=self.site.conf.header_timeout)
        self._refuse(408, b"Request Timeout")

    def _refuse(self, code: int, phrase: bytes, extra: bytes = b"") -> None:
        self._refused = True
        text = phrase + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n%s\r\n%s" % (code, phrase, len(text), extra, text)
        )
        self.transport.loseConnection()

    def dataReceived(self, data):
        if not self._refused:
            super().dataReceived(data)

    def allHeadersReceived(self):
        self._disarm()
        if self.length != 0:  # Content-Length > 0, or chunked (None)
            path = self._path.split(b"?", 1)[0]
            if self._command == b"POST" and self.site.conf.rtmpt and is_rtmpt_path(path):
                # RTMPT carries RTMP in request bodies: bounded, and never chunked (its clients
                # send Content-Length).
                if self.length is None or self.length > self.site.conf.rtmpt_max_body:
                    self._refuse(413, b"Payload Too Large")
                    return
                super().allHeadersReceived()
                return
            if self._command != b"POST" or not path.startswith(b"/control/"):
                self._refuse(405, b"Method Not Allowed", b"Allow: GET, HEAD\r\n")
                return
            if self.length is None or self.length > MAX_BODY:
                self._refuse(413, b"Payload Too Large")
                return
        super().allHeadersReceived()

    def allContentReceived(self):
        if not self._refused:
            super().allContentReceived()

    def hand_over(self):
        """This connection becomes another protocol's (a WebSocket, ``rtmpserver.http.ws``).

        Its timers stop and it stops being the transport's producer; it keeps counting against the
        section's connection limits until the returned callable is called (when that protocol's
        connection is lost: this channel never hears of it).
        """
        self._disarm()
        self.setTimeout(None)
        self.transport.unregisterProducer()
        site, host = self.site, self.site._host(self)
        self._counted = False
        return lambda: site.connection_lost(self, host)

    def requestDone(self, request):
        # The next request's headers have the same deadline.  Armed before the parent replays
        # pipelined data, so a next request already complete disarms it again.
        if self.persistent and not self._refused:
            self._arm()
        super().requestDone(request)


def _peer_text(addr) -> str:
    return f"{addr.host}:{addr.port}" if isinstance(addr, (IPv4Address, IPv6Address)) else str(addr)


class HTTPSite(server.Site):
    """The Site of one ``[http:NAME]`` section, with its own connection limits (total, per IP).

    RTMP's ``[limits] max_connections`` does not count these: each section has its own
    ``max_connections`` and ``max_connections_per_ip``.  A connection over a limit is closed at
    once, before anything is read from it.
    """

    _log = Logger()
    protocol = _Channel

    def __init__(self, root, conf, reactor=None) -> None:
        super().__init__(root, logFormatter=access_log_line, reactor=reactor)
        self.conf = conf
        self.displayTracebacks = False
        self.connections: set = set()
        self.per_ip: dict[str, int] = {}

    def stopFactory(self) -> None:
        # The last listener of the section stops: HLS viewer sessions end (handlers hear it).
        self.resource.hls_viewers.shutdown()
        self.resource.rtmpt.shutdown()
        super().stopFactory()

    def buildProtocol(self, addr):
        host = addr.host if isinstance(addr, (IPv4Address, IPv6Address)) else "?"
        if len(self.connections) >= self.conf.max_connections:
            self._log.warn("http {name}: refusing {host}: {n} connections (max_connections)",
                           name=self.conf.name, host=host, n=len(self.connections))
            return Refused()  # not None: Twisted's TLS wrapper would keep the socket open
        if self.per_ip.get(host, 0) >= self.conf.max_connections_per_ip:
            self._log.warn("http {name}: refusing {host}: max_connections_per_ip ({n}) reached",
                           name=self.conf.name, host=host, n=self.conf.max_connections_per_ip)
            return Refused()
        return super().buildProtocol(addr)

    def _host(self, channel) -> str:
        addr = channel.transport.getPeer()
        return addr.host if isinstance(addr, (IPv4Address, IPv6Address)) else "?"

    def connection_made(self, channel) -> None:
        self.connections.add(channel)
        host = self._host(channel)
        self.per_ip[host] = self.per_ip.get(host, 0) + 1

    def connection_lost(self, channel, host: str | None = None) -> None:
        self.connections.discard(channel)
        if host is None:
            host = self._host(channel)
        n = self.per_ip.get(host, 0) - 1
        if n > 0:
            self.per_ip[host] = n
        else:
            self.per_ip.pop(host, None)


def build_site(factory, http_config, hls_registry=None) -> server.Site:
    root = RootResource(factory, http_config, hls_registry)
    return HTTPSite(root, http_config, reactor=factory.clock)
