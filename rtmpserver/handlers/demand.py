"""On-demand sources: started when a player asks for a stream nobody publishes, stopped after the last one leaves.

Shared by ``relay.pull`` (the source is a pull relay) and ``exec.pull`` (a process that publishes
the stream).  The owner calls ``joined`` once a play was admitted (the chain proceeded) and
``left`` from ``close_stream``; ``linger`` seconds after the last player left the source is
closed, so a player that reconnects at once finds it still running.  ``limit`` bounds how many
sources one application runs at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from twisted.internet import task
from twisted.logger import Logger

__all__ = ["Demand", "OnDemand"]


class Demand:
    """One stream being sourced on demand: its source and who is watching."""

    __slots__ = ("name", "source", "players", "timer")

    def __init__(self, name: str, source) -> None:
        self.name = name
        self.source = source  # has close() and describe(now)
        self.players: Counter = Counter()  # client id -> plays of this stream on that client
        self.timer = None


class OnDemand:
    """The on-demand sources of one application's handler.

    ``start(name, args)`` makes and starts a source (anything with ``close()``); it may raise to
    refuse (the error is logged, the player just waits like for any unpublished stream).
    """

    _log = Logger()

    def __init__(self, clock, linger: float, start: Callable[[str, dict], object], limit: int, label: str) -> None:
        self.clock = clock
        self.linger = linger
        self.start = start
        self.limit = limit
        self.label = label
        self.demands: dict[str, Demand] = {}

    def wanted(self, name: str) -> bool:
        return name in self.demands

    def joined(self, name: str, client_id, args: dict) -> Demand | None:
        """A player of ``name`` was admitted: start its source if none runs (the caller decides
        whether the stream needs one); returns the Demand, or None when at the limit or refused."""
        d = self.demands.get(name)
        if d is None:
            if len(self.demands) >= self.limit:
                self._log.warn("{label}: {n} on-demand sources already run (the limit); {name} is not started",
                               label=self.label, n=len(self.demands), name=name)
                return None
            try:
                source = self.start(name, args)
            except Exception as e:
                self._log.warn("{label}: cannot start a source for {name}: {error}", label=self.label, name=name, error=e)
                return None
            d = self.demands[name] = Demand(name, source)
        self._cancel(d)
        d.players[client_id] += 1
        return d

    def left(self, name: str, client_id) -> None:
        """A player of ``name`` went away (``close_stream``); the last one arms the linger timer."""
        d = self.demands.get(name)
        if d is None or d.players[client_id] <= 0:
            return
        d.players[client_id] -= 1
        if d.players[client_id] == 0:
            del d.players[client_id]
        if not d.players:
            self._cancel(d)
            d.timer = self.clock.callLater(self.linger, self._expire, d)

    def proceed_when_live(self, request, proceed, is_live: Callable[[], bool], wait: float, admitted):
        """For a viewer that is only served a stream already live when decided (HTTP-FLV): start
        the source for it, let the decision wait until ``is_live()`` (polled every 0.1 s, at most
        ``wait`` seconds, or until the viewer left), then ``proceed``; ``admitted(result,
        request)`` runs if the chain let it through (it should call ``joined``)."""
        hold = object()  # the viewer while it waits, so that the linger does not run
        name = request.name
        if self.joined(name, hold, dict(request.args)) is None:
            d = proceed(request)
            d.addCallback(admitted, request)
            return d
        deadline = self.clock.seconds() + wait

        def release(result):
            self.left(name, hold)
            return result

        def poll(_=None):
            if is_live() or self.clock.seconds() >= deadline or request.session.closed:
                d = proceed(request)
                d.addCallback(admitted, request)
                d.addBoth(release)
                return d
            return task.deferLater(self.clock, 0.1, lambda: None).addCallback(poll)

        return poll()

    def _expire(self, d: Demand) -> None:
        d.timer = None
        if self.demands.get(d.name) is d and not d.players:
            self._log.info("{label}: no player of {name} for {linger:g} s; stopping its source",
                           label=self.label, name=d.name, linger=self.linger)
            self._close(d)

    def _cancel(self, d: Demand) -> None:
        t, d.timer = d.timer, None
        if t is not None and t.active():
            t.cancel()

    def _close(self, d: Demand):
        self._cancel(d)
        if self.demands.get(d.name) is d:
            del self.demands[d.name]
        return d.source.close()

    def close_all(self) -> list:
        """Close every source (server shutdown); what each ``close()`` returned, in order."""
        return [self._close(d) for d in list(self.demands.values())]
