"""HTTP-FLV: ``GET /<app>/<stream>.flv`` streams the live stream as an FLV file over chunked HTTP.

Each client is a ``LiveSink`` like an RTMP player: FLV header, onMetaData, sequence headers, the
GOP cache, then live tags with rebased timestamps; a client that cannot keep up is dropped to the
next keyframe, bounded by the app's player backlog settings.  The request is the producer's
consumer, so Twisted's write buffer tells us when the client is full.

Tags go out like RTMP chunks (rtmpserver._directwrite): a per-viewer tag header (the rebased
timestamp) and the publisher's payload bytes, shared by every viewer and never copied per viewer,
in one scatter-gather write; what a viewer gets during one read of the publisher is flushed once at
its end (``MediaBatch``).  The HTTP/1.1 chunk framing (RFC 9112 section 7.1) is put around them
here, since they bypass ``Request.write``; requests that are not Twisted's HTTP/1.x (tests' dummy
requests) keep ``Request.write``.

The request goes through the application's handler chain first, like an RTMP ``play``
(``rtmpserver.http.viewers``); when the response ends the chain hears ``close_stream``.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import http
from zope.interface import implementer

from rtmpserver._directwrite import writer_for
from rtmpserver.errors import Rejected
from rtmpserver.http.viewers import decide_play
from rtmpserver.hub import Frame
from rtmpserver.interfaces import IMonitoredClient
from rtmpserver.media.flv import file_header, previous_tag_size, tag_header
from rtmpserver.requests import StreamClosed
from rtmpserver.sinks import LiveSink

__all__ = ["FLVClient", "serve_flv"]


class _Flow:
    """``paused``: the viewer's transport is full (``LiveSink.flow``)."""

    __slots__ = ("paused",)

    def __init__(self) -> None:
        self.paused = False


def _direct_output(request):
    """The writer for the viewer's connection, or None when ``request`` is not Twisted's HTTP/1.x."""
    channel = getattr(request, "channel", None)
    if not isinstance(request, http.Request) or not isinstance(channel, http.HTTPChannel) or channel.transport is None:
        return None
    if request.method == b"HEAD" or not request.startedWriting:
        return None  # no body to write, or the response head is not out yet
    return writer_for(channel.transport)


@implementer(IPushProducer, IMonitoredClient)
class FLVClient(LiveSink):
    _log = Logger()

    def __init__(self, request, live, app_config, registry: set, on_end=None, batch=None, *, clock=None,
                 send_timeout: float = 0.0, on_stalled=None) -> None:
        peer = request.getClientAddress()
        super().__init__(live, live.name, app_config.player_backlog_bytes, app_config.player_backlog_time,
                         f"http:{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '')}")
        self.request = request
        self.host = str(getattr(peer, "host", "?"))  # the address alone, as /stat shows it
        self.registry = registry
        self.bytes_out = 0
        self.started = 0.0
        self.flow = _Flow()
        self._done = False
        self._batch = batch  # rtmpserver.protocol.MediaBatch of the RTMP side, or None
        self._writer = None  # set in start() when the direct path applies
        self._chunked = False
        self._held: list[bytes] = []
        self._on_end = on_end  # called once with the reason when the response ends
        # send_timeout: a viewer whose connection stays full this long is closed (on_stalled counts it).
        self.clock = clock
        self.send_timeout = send_timeout
        self._on_stalled = on_stalled
        self._stall_call = None

    # LiveSink
    def transport_full(self) -> bool:
        return self.flow.paused

    def write_frame(self, frame: Frame, ts: int) -> None:
        payload = frame.payload
        n = len(payload)
        head = tag_header(frame.type_id, ts, n)
        tail = previous_tag_size(n)
        self.bytes_out += n + 15
        if self._writer is None:
            self.request.write(b"".join((head, payload, tail)))
            return
        self.request.sentLength += n + 15
        if self._chunked:
            head = b"%x\r\n%s" % (n + 15, head)
            tail += b"\r\n"
        held = self._held
        if held:
            held += (head, payload, tail)
            return
        batch = self._batch
        if batch is not None and batch.depth:
            batch.dirty.append(self)
            self._held = [head, payload, tail]
            return
        self._writer.write_sequence([head, payload, tail])

    def flush_merged(self) -> None:
        """Send what was held during a publisher's read (``MediaBatch``)."""
        held = self._held
        if held:
            self._held = []
            if not self._done and not self.request._disconnected:
                self._writer.write_sequence(held)

    def on_stopped(self) -> None:
        # The FLV "file" ends with its publisher; players reconnect for the next one.
        self.finish()

    # IMonitoredClient
    def describe(self, now: float) -> dict:
        return {
            "id": -id(self) & 0xFFFFFFFF, "address": self.host, "port": 0, "protocol": "http-flv",
            "app": self.live.app, "streams": [self.name], "role": "player", "time": now - self.started,
            "flashver": "", "swfurl": "", "pageurl": "", "tcurl": "", "bytes_in": 0,
            "bytes_out": self.bytes_out, "dropped": self.dropped, "timestamp": self.last_ts,
        }

    # IPushProducer
    def pauseProducing(self) -> None:
        self.flow.paused = True
        if self._stall_call is None and self.send_timeout and self.clock is not None and not self._done:
            self._stall_call = self.clock.callLater(self.send_timeout, self._stalled)

    def resumeProducing(self) -> None:
        self.flow.paused = False
        self._cancel_stall()
        if self.backlog:
            self.flush()

    def stopProducing(self) -> None:
        self.flow.paused = True
        self._cancel_stall()

    def _cancel_stall(self) -> None:
        if self._stall_call is not None:
            if self._stall_call.active():
                self._stall_call.cancel()
            self._stall_call = None

    def _stalled(self) -> None:
        """The viewer took no bytes for send_timeout: its frames were all being dropped. Close it."""
        self._stall_call = None
        if self._done:
            return
        self._log.info("{peer}: HTTP-FLV viewer of {app}/{name} took nothing for {t:g} s; closing",
                       peer=self.peer, app=self.live.app, name=self.name, t=self.send_timeout)
        if self._on_stalled is not None:
            self._on_stalled()
        self._end(f"nothing could be sent for {self.send_timeout:g} s")
        self.request.unregisterProducer()
        # Not finish(): the closing chunk would wait behind everything the peer does not read.
        self.request.transport.abortConnection()

    def start(self, now: float) -> None:
        self.started = now
        self.registry.add(self)
        self.request.registerProducer(self, True)
        live = self.live
        # Both tracks are announced, as SRS does: a viewer joining before the video sequence
        # header would otherwise be told "audio only", and flv.js/mpegts.js trust the flags.
        self.request.write(file_header(has_audio=True, has_video=True))
        # The response head is out (the first write sent it): tags may now bypass Request.write.
        self._writer = _direct_output(self.request)
        self._chunked = bool(getattr(self.request, "chunked", False))
        self.request.notifyFinish().addBoth(self._gone)
        live.add_sink(self)

    def _gone(self, _):
        if not self._done:
            self._end("connection lost")

    def _end(self, reason: str) -> None:
        self._done = True
        self._cancel_stall()
        self.registry.discard(self)
        self.detach()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(reason)

    def finish(self, reason: str = "unpublished") -> None:
        if self._held:
            self.flush_merged()  # before the last chunk Request.finish writes
        if not self._done:
            self._end(reason)
            self.request.unregisterProducer()
            self.request.finish()


def _text(request, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body


def serve_live_viewer(request, factory, http_config, registry: set, protocol: str, app: str, name: str, attach):
    """What HTTP-FLV and WebSocket-FLV share: the viewer limits, the chain's decision
    (``protocol`` as the handlers see it), the live stream found (through the inter-worker relay
    when ``[server] workers`` > 1), then ``attach(req, live, app_config, ended)`` starts delivery
    (``ended(reason)`` reports the viewer's end to the chain)."""
    app_config = factory.config.apps.get(app)
    if app_config is None:
        return _text(request, 404, f"no live stream {app}/{name}\n".encode())
    if len(registry) >= http_config.max_flv_clients:
        return _text(request, 503, b"too many HTTP-FLV clients\n")
    host = str(getattr(request.getClientAddress(), "host", "?"))
    if sum(1 for c in registry if c.host == host) >= http_config.max_flv_clients_per_ip:
        return _text(request, 503, b"too many HTTP-FLV clients from your address\n")

    def final(req, view, fetched: bool = False):
        live = factory.hub.get(app, req.name)
        if (live is None or not live.active) and not fetched and factory.hub.fetch is not None:
            # [server] workers: published by another worker, served here through a relay.
            waiting = factory.hub.fetch(app, req.name)
            if waiting is not None:
                return waiting.addCallback(lambda _: final(req, view, True))
        if view.closed:
            raise Rejected("NetStream.Play.Failed", "the client left before the decision")
        if live is None or not live.active:
            raise Rejected("NetStream.Play.StreamNotFound", f"no live stream {app}/{req.name}")
        chain = factory.chains[app]

        def ended(reason: str) -> None:
            view.closed = True
            chain.close_stream(StreamClosed(app=app, name=req.name, role="player", reason=reason, session=view))

        return attach(req, live, app_config, ended)

    return decide_play(factory, request, protocol, app, name, final)[1]


def serve_flv(request, factory, http_config, registry: set, app: str, name: str):
    """Render an HTTP-FLV request (called by the site's router): the app's chain decides first."""

    def attach(req, live, app_config, ended):
        request.setHeader(b"content-type", b"video/x-flv")
        request.setHeader(b"cache-control", b"no-cache")

        def stalled() -> None:
            factory.stats["send_timeouts"] += 1

        FLVClient(request, live, app_config, registry, ended, factory.batch, clock=factory.clock,
                  send_timeout=factory.config.limits.send_timeout, on_stalled=stalled).start(factory.clock.seconds())
        return None

    return serve_live_viewer(request, factory, http_config, registry, "http-flv", app, name, attach)
