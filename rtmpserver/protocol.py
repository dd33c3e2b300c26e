"""Twisted glue: the only code that touches a transport.

``RTMPServerProtocol`` feeds bytes to a ``Session`` and writes what it produces; it is also the
transport's push producer, so a full socket buffer pauses the session's players (they queue in
their bounded backlogs) instead of growing Twisted's buffer without bound.  The factory holds the
hub, enforces connection limits, and runs one timer for handshake, idle and ping deadlines.
Merged writes (``write_merge_ms``) are a transport matter too: the protocol holds a player
connection's media and the factory's ``WriteMerger`` flushes it once per tick.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.config import ServerConfig
from rtmpserver.errors import RemoteProtocolError
from rtmpserver.hub import Hub
from rtmpserver.session import Session

__all__ = ["RTMPServerProtocol", "RTMPServerFactory", "WriteMerger"]

# One event per session when it ends (peer, app, streams, role, bytes, duration, reason).
_access_log = Logger(namespace="rtmpserver.access")


class WriteMerger:
    """Merged writes (SRS's mw_latency): one flush per connection per tick instead of one per message.

    Each ``transport.write`` on an idle connection costs an epoll registration and a send call;
    with many players that per-message cost dominates. Connections that hold media register
    here; one timer per distinct delay flushes all of them, so the timer count does not grow with
    the number of players.
    """

    def __init__(self, clock) -> None:
        self.clock = clock
        self._pending: dict[float, dict] = {}  # delay (s) -> connections to flush (insertion-ordered)
        self._calls: dict[float, Any] = {}

    def add(self, conn: RTMPServerProtocol, delay: float) -> None:
        dirty = self._pending.get(delay)
        if dirty is None:
            dirty = self._pending[delay] = {}
        dirty[conn] = None
        if delay not in self._calls:
            self._calls[delay] = self.clock.callLater(delay, self._flush, delay)

    def _flush(self, delay: float) -> None:
        del self._calls[delay]
        dirty = self._pending.pop(delay, {})
        for conn in dirty:
            conn.flush_merged()

    def cancel(self) -> None:
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        for dirty in self._pending.values():
            for conn in dirty:
                conn.flush_merged()
        self._pending.clear()


@implementer(IPushProducer)
class RTMPServerProtocol(protocol.Protocol):
    _log = Logger()

    def __init__(self) -> None:
        self.session: Session | None = None
        self.paused = False
        self.peer = "?"
        self.host = ""
        self.last_received = 0.0
        self.connected_at = 0.0
        self._closing = False
        self._lost = False
        self._merged: list[bytes] = []  # media held until the merger's tick
        self._merge_delay = 0.0

    @property
    def bytes_in(self) -> int:
        return self.session.stats.bytes_in if self.session is not None else 0

    # -- Link (what the session uses) -------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._merged:
            self.flush_merged()
        self.transport.write(data)

    def write_sequence(self, parts: list) -> None:
        if self._merge_delay:
            if not self._merged:
                self.factory.merger.add(self, self._merge_delay)
            self._merged += parts
            return
        self.transport.writeSequence(parts)

    def merge_writes(self, delay: float) -> None:
        self._merge_delay = delay

    def flush_merged(self) -> None:
        merged = self._merged
        if merged:
            self._merged = []
            if not self._lost:
                self.transport.writeSequence(merged)

    def close(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            if self.session is not None and not self.session.close_reason:
                self.session.close_reason = reason
            if self._merged:
                self.flush_merged()
            self.transport.loseConnection()

    def peer_host(self) -> str:
        return self.host

    # -- Protocol ---------------------------------------------------------------------------

    def connectionMade(self) -> None:
        f = self.factory
        addr = self.transport.getPeer()
        self.host = getattr(addr, "host", "?")
        port = getattr(addr, "port", "")
        self.peer = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        self.connected_at = self.last_received = f.clock.seconds()
        self.session = Session(self, f.config, f.hub, f.clock, peer=self.peer, host=self.host, chains=f.chains,
                               protocol="rtmps" if ISSLTransport.providedBy(self.transport) else "rtmp")
        self.transport.registerProducer(self, True)
        f.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.last_received = self.factory.clock.seconds()
        try:
            self.session.data_received(data)
            if self._merged:
                self.flush_merged()
        except RemoteProtocolError as e:
            self._log.info("closing {peer}: {error}", peer=self.peer, error=e)
            self.factory.stats["protocol_errors"] += 1
            if not self.session.handshake_complete:
                self.factory.stats["handshake_failures"] += 1
            self.session.close_reason = f"protocol error: {e}"
            self._closing = True
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        s = self.session
        if s is None:
            return
        self._lost = True
        self._merged = []
        s.connection_lost(reason.getErrorMessage() if reason is not None else "closed")
        f = self.factory
        f.connection_lost(self)
        stats = s.stats
        totals = f.app_totals.setdefault(s.app or "-", {})
        for key, value in (
            ("bytes_in", stats.bytes_in),
            ("bytes_out", s.bytes_out),
            ("dropped", stats.dropped),
            ("resyncs", stats.resyncs),
            ("sessions", 1),
        ):
            totals[key] = totals.get(key, 0) + value
        for hook, n in stats.rejections.items():
            totals[f"rejected_{hook}"] = totals.get(f"rejected_{hook}", 0) + n
        if f.config.access_log:
            _access_log.info(
                "{peer} app={app} streams={streams} role={role} bytes_in={bytes_in} bytes_out={bytes_out} "
                "duration={duration:.1f}s dropped={dropped} resyncs={resyncs} reason={reason!r}",
                peer=self.peer,
                app=s.app or "-",
                streams=",".join(sorted(stats.stream_names)) or "-",
                role=stats.role,
                bytes_in=stats.bytes_in,
                bytes_out=s.bytes_out,
                duration=f.clock.seconds() - self.connected_at,
                dropped=stats.dropped,
                resyncs=stats.resyncs,
                reason=s.close_reason,
            )
        # Session.link is this protocol: drop our side of the cycle so the ended session, its
        # codec state and stats are freed by reference counting now, not at the next full
        # collection of the cyclic GC (docs/performance.md, "Memory under churn").
        self.session = None

    # -- IPushProducer (flow control from the transport) ------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.session is not None and not self.session.closed:
            self.session.transport_resumed()

    def stopProducing(self) -> None:
        self.paused = True

    # -- timers (called by the factory once a second) ---------------------------------------

    def tick(self, now: float) -> None:
        s = self.session
        limits = self.factory.config.limits
        if self._closing:
            return
        if not s.handshake_complete:
            if now - self.connected_at >= limits.handshake_timeout:
                self._timeout("handshake not completed in time")
            return
        idle = now - self.last_received
        if idle >= limits.idle_timeout:
            self._timeout(f"nothing received for {idle:.0f} s")
            return
        if limits.ping_interval and idle >= limits.ping_interval and now - s.last_ping_sent >= limits.ping_interval:
            s.ping()

    def _timeout(self, why: str) -> None:
        self._log.info("closing {peer}: {why}", peer=self.peer, why=why)
        self.session.close_reason = why
        self._closing = True
        self.transport.abortConnection()


class RTMPServerFactory(protocol.Factory):
    """Shared state of every RTMP listener: config, hub, connection table and counters."""

    protocol = RTMPServerProtocol
    _log = Logger()

    def __init__(self, config: ServerConfig, clock, chains=None, hub: Hub | None = None, metrics=None) -> None:
        # rtmpserver.service.compose builds hub and chains and passes them in; the defaults
        # (a fresh hub, chains built without a reactor) are for tests and tools.
        self.config = config
        self.clock = clock
        self.hub = hub if hub is not None else Hub()
        from rtmpserver.metrics import ServerMetrics

        # The handlers' metrics and /api annotations: one per server, read by every HTTP site.
        self.metrics = metrics if metrics is not None else ServerMetrics()
        if chains is None:
            from rtmpserver.apps import build_chains

            chains = build_chains(config, self.hub, clock, metrics=self.metrics)
        self.chains = chains
        self.merger = WriteMerger(clock)
        self.connections: set[RTMPServerProtocol] = set()
        self.per_ip: dict[str, int] = {}
        self.stats = {"connections_total": 0, "refused": 0, "protocol_errors": 0, "handshake_failures": 0}
        # Per-app totals of sessions that have ended (live sessions are added at read time).
        self.app_totals: dict[str, dict[str, int]] = {}
        self.started = clock.seconds()
        self._timer: LoopingCall | None = None
        self._all_closed: list[defer.Deferred] = []
        self._users = 0
        self.shutting_down = False

    def startFactory(self) -> None:
        # One factory may serve several listeners: start the timer once.
        self._users += 1
        if self._timer is None:
            self._timer = LoopingCall(self._tick)
            self._timer.clock = self.clock
            self._timer.start(1.0, now=False)

    def stopFactory(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._timer is not None and self._timer.running:
            self._timer.stop()
            self._timer = None
            self.merger.cancel()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", "?")
        limits = self.config.limits
        if self.shutting_down:
            return None
        if len(self.connections) >= limits.max_connections:
            self.stats["refused"] += 1
            self._log.warn("refusing {host}: {n} connections (max_connections)", host=host, n=len(self.connections))
            return None
        if self.per_ip.get(host, 0) >= limits.max_connections_per_ip:
            self.stats["refused"] += 1
            self._log.warn("refusing {host}: max_connections_per_ip ({n}) reached", host=host, n=limits.max_connections_per_ip)
            return None
        p = super().buildProtocol(addr)
        # Counted here, not in connectionMade, so a burst of accepts cannot overshoot the limits.
        self.per_ip[host] = self.per_ip.get(host, 0) + 1
        p._counted_host = host
        return p

    def connection_made(self, p: RTMPServerProtocol) -> None:
        self.connections.add(p)
        self.stats["connections_total"] += 1

    def connection_lost(self, p: RTMPServerProtocol) -> None:
        self.connections.discard(p)
        host = getattr(p, "_counted_host", None)
        if host is not None:
            n = self.per_ip.get(host, 0) - 1
            if n > 0:
                self.per_ip[host] = n
            else:
                self.per_ip.pop(host, None)
        if not self.connections and self._all_closed:
            waiting, self._all_closed = self._all_closed, []
            for d in waiting:
                d.callback(None)

    def _tick(self) -> None:
        now = self.clock.seconds()
        for p in list(self.connections):
            p.tick(now)

    def shutdown(self) -> defer.Deferred:
        """Tell players the streams end, close every connection; fires when all are gone."""
        self.shutting_down = True  # listeners stop only after this; refuse what they still accept
        d = defer.Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._all_closed.append(d)
        self._log.info("shutting down {n} connections", n=len(self.connections))
        for p in list(self.connections):
            if p.session is not None and p.session.handshake_complete:
                p.session.shutdown()
            else:
                p.close("server shutdown")
        return d
