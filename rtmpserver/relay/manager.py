"""``Relay``: keeps one upstream RTMP connection alive for as long as it is wanted.

States::

    idle --start()--> connecting --TCP/TLS up--> handshaking --*.Start--> playing | publishing
                          |                          |                          |
                          +------ failure -----------+------ connection lost ---+--> backoff --> connecting
    any --stop()--> stopped (start() again is allowed)

Every phase is bounded: ``connect_timeout`` for the TCP/TLS connection, ``start_timeout`` from
connected to NetStream.*.Start, ``idle_timeout`` without a byte from the origin while playing.
After a failure the next attempt waits a random time in [0, min(backoff_max, backoff_initial *
backoff_multiplier ** (failures - 1))] ("full jitter", so many relays that lost the same origin do
not come back in lockstep); a connection that reached playing/publishing resets the count.

The clock, the randomness and the endpoint (``endpoint_for(url)``) are injected.  A state change is
logged once; repeated failures with the same error are not logged again until something changes.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

from rtmpserver.errors import LocalProtocolError
from rtmpserver.interfaces import IRelayFeeder
from rtmpserver.relay import client
from rtmpserver.relay.client import (
    PLAY,
    PUBLISH,
    ClientSettings,
    RelayClientFactory,
    RelaySession,
)
from rtmpserver.relay.url import RelayURL

__all__ = ["Relay", "RelaySettings", "IDLE", "CONNECTING", "HANDSHAKING", "PLAYING", "PUBLISHING", "BACKOFF", "STOPPED"]

IDLE = "idle"
CONNECTING = "connecting"
HANDSHAKING = "handshaking"
PLAYING = "playing"
PUBLISHING = "publishing"
BACKOFF = "backoff"
STOPPED = "stopped"


class RelaySettings:
    """Timeouts and backoff of a relay (seconds)."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        start_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_multiplier: float = 2.0,
        client: ClientSettings | None = None,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial or backoff_multiplier < 1:
            raise ValueError("relay backoff needs 0 < initial <= max and multiplier >= 1")
        self.connect_timeout = connect_timeout
        self.start_timeout = start_timeout
        self.idle_timeout = idle_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_multiplier = backoff_multiplier
        self.client = client or ClientSettings()


class Relay:
    """One relay to or from ``url``: ``mode`` is ``"play"`` (pull, media to ``consumer``) or ``"publish"`` (push).

    Push side: a feeder (``IRelayFeeder``, set with ``feed(feeder)``) is told when the upstream
    accepted the publish and when a full connection drained; it sends with ``send_frame`` etc. while
    ``ready`` and checks ``full`` first.
    """

    _log = Logger()

    def __init__(
        self,
        url: RelayURL,
        mode: str,
        *,
        clock,
        endpoint_for: Callable[[RelayURL], object],
        consumer=None,
        settings: RelaySettings | None = None,
        random: Callable[[], float] = _random.random,
        random_bytes=None,
        label: str = "",
    ) -> None:
        if mode not in (PLAY, PUBLISH):
            raise LocalProtocolError(f"relay mode must be {PLAY!r} or {PUBLISH!r}, not {mode!r}")
        self.url = url
        self.mode = mode
        self.clock = clock
        self.endpoint_for = endpoint_for
        self.consumer = consumer
        self.settings = settings or RelaySettings()
        self.random = random
        self.random_bytes = random_bytes
        self.label = label or f"{mode} {url.public}"
        self.feeder = None
        self.state = IDLE
        self.since = clock.seconds()
        self.wanted = False
        self.protocol: client.RelayProtocol | None = None
        self.failures = 0  # consecutive failed attempts (reset when a connection got going)
        self.reconnects = 0
        self.connections = 0  # connections that reached playing/publishing
        self.last_error = ""
        self._logged_error = ""
        self._bytes_in = 0  # of connections that have ended
        self._bytes_out = 0
        self._connecting: defer.Deferred | None = None
        self._timer = None  # connect / start / idle / backoff: one at a time
        self._last_bytes_in = 0
        self.next_delay = 0.0
        self._timed_out = False

    # -- control ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin (or keep) relaying. No-op while already running."""
        if self.wanted:
            return
        self.wanted = True
        self.failures = 0
        self._connect()

    def stop(self) -> None:
        """Stop relaying: cancel whatever is pending and close the connection politely."""
        self.wanted = False
        self._cancel_timer()
        d, self._connecting = self._connecting, None
        if d is not None:
            d.cancel()
        p, self.protocol = self.protocol, None
        if p is not None:
            # Its connection_lost comes later and only adds its byte counts: a start() in between
            # must not see this connection's end as its own failure.
            if self.state == PUBLISHING and self.feeder is not None:
                self.feeder.relay_down("relay stopped")
            p.close("relay stopped")
        self._set_state(STOPPED)

    def feed(self, feeder) -> None:
        """Set the ``IRelayFeeder`` of a push relay."""
        if not IRelayFeeder.providedBy(feeder):
            raise LocalProtocolError(f"{feeder!r} does not provide IRelayFeeder")
        self.feeder = feeder

    # -- numbers ----------------------------------------------------------------------------------

    @property
    def bytes_in(self) -> int:
        p = self.protocol
        return self._bytes_in + (p.bytes_in if p is not None else 0)

    @property
    def bytes_out(self) -> int:
        p = self.protocol
        return self._bytes_out + (p.bytes_out if p is not None else 0)

    def describe(self) -> dict:
        """The row /stat and /api show: no credentials, no query string."""
        return {
            "url": self.url.public,
            "mode": self.mode,
            "state": self.state,
            "since": self.since,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "reconnects": self.reconnects,
            "connections": self.connections,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    # -- publish side -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The upstream accepted the publish: media may be sent."""
        return self.state == PUBLISHING and self.protocol is not None

    @property
    def full(self) -> bool:
        """Not ready, or the connection's buffer is full (the feeder queues or drops to a keyframe)."""
        p = self.protocol
        return self.state != PUBLISHING or p is None or p.paused

    def send_frame(self, frame, timestamp: int) -> None:
        self._session().send_frame(frame, timestamp)
        self.protocol.flush()

    def send_metadata(self, payload: bytes, timestamp: int = 0) -> None:
        self._session().send_metadata(payload, timestamp)
        self.protocol.flush()

    def send_video(self, timestamp: int, payload: bytes) -> None:
        self._session().send_video(timestamp, payload)
        self.protocol.flush()

    def send_audio(self, timestamp: int, payload: bytes) -> None:
        self._session().send_audio(timestamp, payload)
        self.protocol.flush()

    def _session(self) -> RelaySession:
        if not self.ready:
            raise LocalProtocolError(f"relay {self.label} is {self.state}, not publishing")
        return self.protocol.session

    # -- connection lifecycle -----------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        old, self.state = self.state, state
        self.since = self.clock.seconds()
        if state in (PLAYING, PUBLISHING):
            self._log.info("relay {label}: {state}", label=self.label, state=state)
        elif state == STOPPED and old != IDLE:
            self._log.info("relay {label}: stopped", label=self.label)
        else:
            self._log.debug("relay {label}: {old} -> {state}", label=self.label, old=old, state=state)

    def _cancel_timer(self) -> None:
        t, self._timer = self._timer, None
        if t is not None and t.active():
            t.cancel()

    def _make_session(self) -> RelaySession:
        kw = {} if self.random_bytes is None else {"random_bytes": self.random_bytes}
        clock = self.clock
        return RelaySession(
            self.url, self.mode, consumer=self.consumer, settings=self.settings.client,
            uptime_ms=lambda: int(clock.seconds() * 1000) & 0x7FFFFFFF, **kw,
        )

    def _connect(self) -> None:
        self._cancel_timer()
        self._set_state(CONNECTING)
        try:
            endpoint = self.endpoint_for(self.url)
            d = endpoint.connect(RelayClientFactory(self._make_session, self))
        except Exception as e:  # a bad CA file, an unusable socket path...
            self._attempt_failed(f"cannot connect: {e}")
            return
        self._connecting = d
        self._timed_out = False
        self._timer = self.clock.callLater(self.settings.connect_timeout, self._connect_timed_out, d)
        d.addCallbacks(self._connected, self._connect_failed, errbackArgs=(d,))

    def _connect_timed_out(self, d) -> None:
        self._timer = None
        self._timed_out = True
        d.cancel()

    def _connected(self, p) -> None:
        self._connecting = None
        self._cancel_timer()
        if not self.wanted:
            p.close("relay stopped")
            return
        self.protocol = p
        self._set_state(HANDSHAKING)
        self._timer = self.clock.callLater(self.settings.start_timeout, self._start_timed_out, p)

    def _connect_failed(self, failure, d) -> None:
        if self._connecting is d:
            self._connecting = None
        self._cancel_timer()
        if not self.wanted:
            return None
        if self._timed_out:
            reason = f"connect timed out after {self.settings.connect_timeout:g} s"
        else:
            reason = f"cannot connect: {failure.getErrorMessage()}"
        self._attempt_failed(reason)
        return None

    def _start_timed_out(self, p) -> None:
        self._timer = None
        p.abort(f"not {PLAYING if self.mode == PLAY else PUBLISHING} within {self.settings.start_timeout:g} s")

    def _idle_check(self, p) -> None:
        self._timer = None
        if p is not self.protocol:
            return
        if p.bytes_in == self._last_bytes_in:
            p.abort(f"nothing received for {self.settings.idle_timeout:g} s")
            return
        self._last_bytes_in = p.bytes_in
        self._timer = self.clock.callLater(self.settings.idle_timeout, self._idle_check, p)

    # Called by RelayProtocol --------------------------------------------------------------------

    def phase_changed(self, p, phase: str) -> None:
        if p is not self.protocol:
            return
        if phase == client.PLAYING or phase == client.PUBLISHING:
            self._cancel_timer()
            if self.failures:
                self._log.info("relay {label}: up again after {n} failed attempts", label=self.label, n=self.failures)
            self.failures = 0
            self._logged_error = ""
            self.connections += 1
            self._set_state(PLAYING if phase == client.PLAYING else PUBLISHING)
            if self.mode == PLAY:
                self._last_bytes_in = p.bytes_in
                self._timer = self.clock.callLater(self.settings.idle_timeout, self._idle_check, p)
            elif self.feeder is not None:
                self.feeder.relay_ready()

    def writable(self, p) -> None:
        if p is self.protocol and self.state == PUBLISHING and self.feeder is not None:
            self.feeder.relay_writable()

    def connection_lost(self, p, reason: str) -> None:
        self._bytes_in += p.bytes_in
        self._bytes_out += p.bytes_out
        if p is not self.protocol:
            return  # a connection we already let go of (stop())
        self.protocol = None
        self._cancel_timer()
        was_publishing = self.state == PUBLISHING
        if was_publishing and self.feeder is not None:
            self.feeder.relay_down(reason)
        if not self.wanted:
            self._set_state(STOPPED)
            return
        self._attempt_failed(reason)

    def _attempt_failed(self, reason: str) -> None:
        self.last_error = self._scrub(reason)
        self.failures += 1
        s = self.settings
        cap = min(s.backoff_max, s.backoff_initial * s.backoff_multiplier ** min(self.failures - 1, 64))
        self.next_delay = delay = self.random() * cap
        if self.last_error != self._logged_error:
            self._logged_error = self.last_error
            self._log.warn(
                "relay {label}: {error}; retrying (attempt {n}, next in {delay:.1f} s; "
                "further failures with the same error are not logged)",
                label=self.label, error=self.last_error, n=self.failures, delay=delay,
            )
        self._set_state(BACKOFF)
        self._timer = self.clock.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if not self.wanted:
            return
        self.reconnects += 1
        self._connect()

    def _scrub(self, text: str) -> str:
        """Errors may echo what we sent (the name with its query string): keep secrets out."""
        q = self.url.query
        return text.replace(q, "…") if q else text
