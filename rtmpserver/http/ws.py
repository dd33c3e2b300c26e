"""WebSocket-FLV: ``ws(s)://host/<app>/<stream>.flv`` carries the HTTP-FLV stream over a WebSocket.

The URL is the HTTP-FLV one; a GET with ``Upgrade: websocket`` (RFC 6455 4.1) on the same HTTP
listener becomes a WebSocket instead of a chunked response, which is what flv.js and mpegts.js
open for ``ws://`` URLs.  The first binary message is the FLV header with PreviousTagSize0 (FLV
spec, "The FLV header"); every later message is one FLV tag with its PreviousTagSize, so a
message boundary is always a tag boundary.

Everything else is HTTP-FLV's (``rtmpserver.http.flv``): the application's handler chain decides
first (``PlayRequest`` with session protocol ``ws-flv``; a refusal is the HTTP 403/404 of the
upgrade request, before any WebSocket exists), the viewer is a ``LiveSink`` with the app's
backlog bounds (a viewer that cannot keep up is dropped to the next keyframe and counted), and it
counts against the same ``max_flv_clients`` / ``max_flv_clients_per_ip``.  The connection is the
transport's push producer, so a full socket pauses delivery into the backlog.

The WebSocket framing, masking checks and close handshake are autobahn's (pyproject.toml says
why); what a viewer may send is bounded by ``MAX_INCOMING`` (a player sends nothing but control
frames), and a viewer that does not answer the close handshake is dropped after
``CLOSE_TIMEOUT``.
"""

from __future__ import annotations

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.errors import Rejected
from rtmpserver.http.flv import serve_live_viewer
from rtmpserver.hub import Frame
from rtmpserver.interfaces import IMonitoredClient
from rtmpserver.media.flv import file_header, previous_tag_size, tag_header
from rtmpserver.sinks import LiveSink

__all__ = ["WSFLVClient", "is_upgrade", "serve_ws_flv"]

# A player sends no data messages; pings and closes are a few bytes (RFC 6455 5.5: control frame
# payloads are at most 125 bytes).  A larger frame is refused by autobahn with close code 1009, a
# larger message made of small frames by _WSFLVProtocol.
MAX_INCOMING = 4096
OPEN_TIMEOUT = 10.0  # seconds for the replayed upgrade request to be answered (it is at once)
CLOSE_TIMEOUT = 5.0  # seconds a peer has to answer our Close before the TCP connection is dropped


def is_upgrade(request) -> bool:
    """A WebSocket opening handshake (RFC 6455 4.2.1): ``Upgrade: websocket`` on a GET."""
    upgrade = (request.getHeader(b"upgrade") or b"").strip().lower()
    return request.method == b"GET" and upgrade == b"websocket"


@implementer(IPushProducer, IMonitoredClient)
class WSFLVClient(LiveSink):
    """One WebSocket-FLV viewer: a LiveSink whose writes are binary messages."""

    _log = Logger()

    def __init__(self, proto: _WSFLVProtocol, live, app_config, registry: set, host: str, port, on_end) -> None:
        super().__init__(live, live.name, app_config.player_backlog_bytes, app_config.player_backlog_time,
                         f"ws:{host}:{port}")
        self.proto = proto
        self.host = host  # the address alone, as /stat shows it (and the per-IP cap counts)
        self.registry = registry
        self.bytes_out = 0
        self.started = 0.0
        self._full = False
        self._done = False
        self._on_end = on_end

    # LiveSink
    def transport_full(self) -> bool:
        return self._full

    def write_frame(self, frame: Frame, ts: int) -> None:
        n = len(frame.payload)
        data = b"".join((tag_header(frame.type_id, ts, n), frame.payload, previous_tag_size(n)))
        self.bytes_out += len(data)
        self.proto.sendMessage(data, isBinary=True)

    def on_stopped(self) -> None:
        # Like HTTP-FLV: the stream ends with its publisher (1000, normal closure); players reconnect.
        self.finish("unpublished")

    # IMonitoredClient
    def describe(self, now: float) -> dict:
        return {
            "id": -id(self) & 0xFFFFFFFF, "address": self.host, "port": 0, "protocol": "ws-flv",
            "app": self.live.app, "streams": [self.name], "role": "player", "time": now - self.started,
            "flashver": "", "swfurl": "", "pageurl": "", "tcurl": "", "bytes_in": 0,
            "bytes_out": self.bytes_out, "dropped": self.dropped, "timestamp": self.last_ts,
        }

    # IPushProducer (registered on the TCP/TLS transport)
    def pauseProducing(self) -> None:
        self._full = True

    def resumeProducing(self) -> None:
        self._full = False
        if self.backlog and not self._done:
            self.flush()

    def stopProducing(self) -> None:
        self._full = True

    def start(self, now: float) -> None:
        self.started = now
        self.registry.add(self)
        # Both tracks announced, as HTTP-FLV does (flv.js/mpegts.js trust the flags).
        header = file_header(has_audio=True, has_video=True)
        self.bytes_out += len(header)
        self.proto.sendMessage(header, isBinary=True)
        self.live.add_sink(self)

    def end(self, reason: str) -> None:
        """The connection is gone (or going): leave the stream and tell the chain, once."""
        if self._done:
            return
        self._done = True
        self.registry.discard(self)
        self.detach()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(reason)

    def finish(self, reason: str) -> None:
        if not self._done:
            self.end(reason)
            self.proto.sendClose(code=1000, reason=reason[:100])


class _WSFLVProtocol(WebSocketServerProtocol):
    """The connection after the upgrade; ``start`` is what the chain's decision left to do."""

    _log = Logger()
    start = None  # set by serve_ws_flv: callable(proto) -> WSFLVClient
    release = None  # set by serve_ws_flv: gives the HTTP site its connection count back
    client: WSFLVClient | None = None

    def onConnect(self, request):
        return None  # no subprotocol, no extra headers (RFC 6455 4.2.2)

    def onOpen(self):
        start, self.start = self.start, None
        if start is not None:
            self.client = start(self)
            self.transport.registerProducer(self.client, True)

    def onMessageFrameBegin(self, length):
        # autobahn bounds each incoming frame (maxFramePayloadSize); its message bound would also
        # apply to what we send, so a message fragmented into many small frames is bounded here.
        super().onMessageFrameBegin(length)
        if self.message_data_total_length > MAX_INCOMING:
            self._log.info("{peer}: WebSocket message over {n} bytes from a viewer; closing",
                           peer=self.peer, n=MAX_INCOMING)
            self.dropConnection(abort=True)

    def onMessage(self, payload, isBinary):
        pass  # a viewer has nothing to say

    def onClose(self, wasClean, code, reason):
        if self.client is not None:
            self.client.end("connection closed" if wasClean else "connection lost")

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.client is not None:
            self.client.end("connection lost")
        release, self.release = self.release, None
        if release is not None:
            release()


def _factory() -> WebSocketServerFactory:
    f = WebSocketServerFactory(server="rtmpserver")
    f.protocol = _WSFLVProtocol
    f.setProtocolOptions(
        maxFramePayloadSize=MAX_INCOMING,
        openHandshakeTimeout=OPEN_TIMEOUT, closeHandshakeTimeout=CLOSE_TIMEOUT,
        # Media is already compressed; deflate would only cost CPU per viewer.
        perMessageCompressionAccept=lambda offers: None,
    )
    f.noisy = False
    return f


def serve_ws_flv(request, factory, http_config, registry: set, app: str, name: str):
    """Render a WebSocket-FLV upgrade request (called by the site's router); the chain decides first."""
    address = request.getClientAddress()
    host = str(getattr(address, "host", "?"))
    port = getattr(address, "port", "")

    def attach(req, live, app_config, ended):
        def start(proto) -> WSFLVClient:
            client = WSFLVClient(proto, live, app_config, registry, host, port, ended)
            client.start(factory.clock.seconds())
            return client

        if request.channel.transport is None:
            raise Rejected("NetStream.Play.Failed", "the connection went away before the upgrade")
        wsf = _factory()
        original = wsf.buildProtocol

        def build(addr):
            p = original(addr)
            p.start = start
            # The HTTP channel gives its transport away; the WebSocket returns its connection
            # count to the site when it ends.
            p.release = request.channel.hand_over()
            return p

        wsf.buildProtocol = build
        WebSocketResource(wsf).render(request)
        return None

    return serve_live_viewer(request, factory, http_config, registry, "ws-flv", app, name, attach)
