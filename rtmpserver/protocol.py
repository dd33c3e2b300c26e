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

from rtmpserver._directwrite import writer_for
from rtmpserver.config import ServerConfig
from rtmpserver.errors import RemoteProtocolError
from rtmpserver.hub import Hub, MediaBatch
from rtmpserver.interfaces import ITunnelTransport
from rtmpserver.session import Session

__all__ = ["RTMPServerProtocol", "RTMPServerFactory", "WriteMerger", "MediaBatch", "Refused"]

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


class Refused(protocol.Protocol):
    """What ``buildProtocol`` returns for a connection over a limit: aborted as soon as it is made.

    Returning None closes a plain TCP connection, but Twisted's TLS wrapper (``TLSMemoryBIOFactory``,
    every ``ssl:`` listener) does not handle None: the socket stayed open, uncounted and without a
    timeout.  A protocol that aborts its transport in ``connectionMade`` works under any wrapper.
    """

    def connectionMade(self) -> None:
        self.transport.abortConnection()


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
        self._held: list[bytes] = []  # output held until the end of a publisher's read or the merger's tick
        self._merge_delay = 0.0
        self.writer = None  # rtmpserver._directwrite: how output reaches the transport
        self.full_since: float | None = None  # when the transport became full (send_timeout)
        # The PlayerCohort sending this connection's media, if any (rtmpserver.session.cohort).
        self.cohort = None

    @property
    def bytes_in(self) -> int:
        return self.session.stats.bytes_in if self.session is not None else 0

    # -- Link (what the session uses) -------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.cohort is not None:
            self.cohort.before_write(self)
        held = self._held
        if held:
            # After the media already held for this connection, in the same write.
            held.append(data)
            if self._merge_delay or not self.factory.batch.depth:
                self.flush_merged()
            return
        self.writer.write_sequence([data])

    def write_sequence(self, parts: list) -> None:
        if self.cohort is not None:
            self.cohort.before_write(self)
        held = self._held
        if held:
            held += parts
            return
        if self._merge_delay:
            self.factory.merger.add(self, self._merge_delay)
            self._held = list(parts)
            return
        batch = self.factory.batch
        if batch.depth:
            # A publisher's read is being handled: this player's share goes out once it ends.
            batch.dirty.append(self)
            self._held = list(parts)
            return
        self.writer.write_sequence(parts)

    def merge_writes(self, delay: float) -> None:
        self._merge_delay = delay

    def flush_merged(self) -> None:
        held = self._held
        if held:
            self._held = []
            if not self._lost:
                self.writer.write_sequence(held)

    def close(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            if self.session is not None and not self.session.close_reason:
                self.session.close_reason = reason
            if self._held:
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
        if ITunnelTransport.providedBy(self.transport):
            scheme = ITunnelTransport(self.transport).scheme  # RTMPT (rtmpserver.http.rtmpt)
        else:
            scheme = "rtmps" if ISSLTransport.providedBy(self.transport) else "rtmp"
        self.writer = writer_for(self.transport, f.direct_writes)
        self.session = Session(self, f.config, f.hub, f.clock, peer=self.peer, host=self.host, chains=f.chains,
                               protocol=scheme)
        self.transport.registerProducer(self, True)
        f.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        f = self.factory
        self.last_received = f.clock.seconds()
        batch = f.batch
        batch.depth += 1
        try:
            self.session.data_received(data)
        except RemoteProtocolError as e:
            self._log.info("closing {peer}: {error}", peer=self.peer, error=e)
            self.factory.stats["protocol_errors"] += 1
            if not self.session.handshake_complete:
                self.factory.stats["handshake_failures"] += 1
            self.session.close_reason = f"protocol error: {e}"
            self._closing = True
            self.transport.abortConnection()
        finally:
            batch.end()
        if self._held and not self._merge_delay and not self._closing:
            self.flush_merged()

    def connectionLost(self, reason) -> None:
        s = self.session
        if s is None:
            return
        self._lost = True
        self._held = []
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
            app = s.app or "-"
            streams = ",".join(sorted(stats.stream_names)) or "-"
            bytes_out = s.bytes_out
            duration = f.clock.seconds() - self.connected_at
            # The line is formatted here: Twisted's formatter (a str.Formatter walk over eleven
            # fields) cost more than the rest of a short session's teardown (docs/performance.md,
            # "Connection setup"). The fields stay in the event for structured observers.
            _access_log.info(
                "{access}",
                access=f"{self.peer} app={app} streams={streams} role={stats.role} bytes_in={stats.bytes_in} "
                       f"bytes_out={bytes_out} duration={duration:.1f}s dropped={stats.dropped} "
                       f"resyncs={stats.resyncs} reason={s.close_reason!r}",
                peer=self.peer,
                app=app,
                streams=streams,
                role=stats.role,
                bytes_in=stats.bytes_in,
                bytes_out=bytes_out,
                duration=duration,
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
        if not self.paused:
            self.paused = True
            self.full_since = self.factory.clock.seconds()

    def resumeProducing(self) -> None:
        self.paused = False
        self.full_since = None
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
                self.factory.stats["handshake_timeouts"] += 1
                self._timeout("handshake not completed in time")
            return
        if self.full_since is not None and now - self.full_since >= limits.send_timeout:
            # The peer took nothing while media kept coming (the transport stayed full).
            self.factory.stats["send_timeouts"] += 1
            self._timeout(f"nothing could be sent for {now - self.full_since:.0f} s (send_timeout)")
            return
        idle = now - self.last_received
        if idle >= limits.idle_timeout:
            self.factory.stats["idle_timeouts"] += 1
            self._timeout(f"nothing received for {idle:.0f} s")
            return
        if limits.ping_interval:
            if s.last_ping_sent > self.last_received:
                # A PingRequest is unanswered: any byte (the PingResponse, an acknowledgement) counts.
                if now - s.last_ping_sent >= limits.ping_timeout:
                    self.factory.stats["idle_timeouts"] += 1
                    self._timeout(f"no answer to a ping within {limits.ping_timeout:g} s")
            elif idle >= limits.ping_interval:
                s.ping()

    def _timeout(self, why: str) -> None:
        self._log.info("closing {peer}: {why}", peer=self.peer, why=why)
        if self.session is not None:
            self.session.close_reason = why
        self._closing = True
        self.transport.abortConnection()

    def handshaking(self) -> bool:
        """Not yet through the RTMP handshake (and not already being closed)."""
        return not self._closing and (self.session is None or not self.session.handshake_complete)


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
        self.batch: MediaBatch = self.hub.batch  # shared by every listener of the hub
        # Straight-to-socket writes on plain TCP (rtmpserver._directwrite); False: Twisted's path only.
        self.direct_writes = True
        self.connections: set[RTMPServerProtocol] = set()
        self.per_ip: dict[str, int] = {}
        # Per address: connections still in the RTMP handshake, oldest first (max_pending_per_ip).
        self.pending: dict[str, dict[RTMPServerProtocol, None]] = {}
        self.stats = {"connections_total": 0, "refused": 0, "protocol_errors": 0, "handshake_failures": 0,
                      "handshake_timeouts": 0, "idle_timeouts": 0, "send_timeouts": 0, "pending_evicted": 0}
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
            return Refused()
        if len(self.connections) >= limits.max_connections:
            self.stats["refused"] += 1
            self._log.warn("refusing {host}: {n} connections (max_connections)", host=host, n=len(self.connections))
            return Refused()
        if self.per_ip.get(host, 0) >= limits.max_connections_per_ip:
            self.stats["refused"] += 1
            self._log.warn("refusing {host}: max_connections_per_ip ({n}) reached", host=host, n=limits.max_connections_per_ip)
            return Refused()
        self._bound_pending(host, limits.max_pending_per_ip)
        p = super().buildProtocol(addr)
        # Counted here, not in connectionMade, so a burst of accepts cannot overshoot the limits.
        self.per_ip[host] = self.per_ip.get(host, 0) + 1
        p._counted_host = host
        self.pending.setdefault(host, {})[p] = None
        return p

    def _bound_pending(self, host: str, limit: int) -> None:
        """Make room for one more handshaking connection from ``host``: the oldest goes.

        A half-open flood from one address then costs at most ``limit`` slots, and a real client
        from the same address (its handshake takes one round trip) is never the oldest for long.
        """
        pending = self.pending.get(host)
        if not pending:
            return
        for q in [q for q in pending if not q.handshaking()]:
            del pending[q]
        while len(pending) >= limit:
            oldest = next(iter(pending))
            del pending[oldest]
            self.stats["pending_evicted"] += 1
            oldest._timeout(f"more than {limit} connections from {host} in the handshake; closing the oldest")

    def connection_made(self, p: RTMPServerProtocol) -> None:
        self.connections.add(p)
        self.stats["connections_total"] += 1

    def connection_lost(self, p: RTMPServerProtocol) -> None:
        self.connections.discard(p)
        host = getattr(p, "_counted_host", None)
        pending = self.pending.get(host)
        if pending is not None:
            pending.pop(p, None)
            if not pending:
                del self.pending[host]
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
