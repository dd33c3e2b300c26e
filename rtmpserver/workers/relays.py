"""On-demand relays between workers: players here, the publisher on another worker.

When a sink (an RTMP player, an HTTP-FLV viewer) joins a stream that has no publisher in this
worker and the directory says another worker publishes it, this worker opens one RTMP relay
(``rtmpserver.relay``: a playing ``Relay`` feeding a ``PullSource``) to that worker's Unix-socket
listener.  The relay publishes into the local hub, so every local player of the stream is served
from that one connection, with the same metadata, sequence headers and GOP cache as the owner's
players.  When the last local sink leaves, the relay closes after ``linger`` seconds.

Restarts follow the directory, not the relay connection: when the owner's publisher stops (or the
owner dies) the name is released and the relay is closed, so local players see the stream end
(``LiveStream.stop``: NetStream.Play.UnpublishNotify, or whatever the player sink sends); when a
publisher claims the name again, on any worker, a new relay starts and they see it begin again.
So the relay path does not depend on which status or user control event the owner sends its
players at an unpublish.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.interfaces import IHubObserver
from rtmpserver.relay.client import PLAY, ClientSettings
from rtmpserver.relay.manager import Relay, RelaySettings
from rtmpserver.relay.pull import PullSource
from rtmpserver.relay.url import RelayURL, client_endpoint

__all__ = ["WorkerRelays", "LINGER"]

# Seconds an HTTP-FLV request waits for a relay to bring a stream published elsewhere.
FETCH_TIMEOUT = 5.0

# Seconds a relay stays open after its last local sink left (a player that reconnects, or the
# next viewer, gets the stream without a new relay).
LINGER = 10.0


@implementer(IHubObserver)
class WorkerRelays:
    _log = Logger(namespace="rtmpserver.workers.relays")

    def __init__(self, hub, directory, me: int, reactor, config, socket_for, linger: float = LINGER) -> None:
        self.hub = hub
        self.me = me
        self.reactor = reactor
        self.config = config
        self.socket_for = socket_for  # worker index -> path of its RTMP Unix socket
        self.linger = linger
        self.owners: dict[tuple[str, str], int] = {}
        self.relays: dict[tuple[str, str], tuple[int, PullSource, Relay]] = {}
        self._linger: dict[tuple[str, str], object] = {}
        self._waiting: dict[tuple[str, str], list] = {}
        self.opened = 0
        directory.watch(self.owner_changed)

    def fetch(self, app: str, name: str):
        """``Hub.fetch``: for a viewer that needs the stream live at once (HTTP-FLV), start the
        relay without a sink yet; fires (None) when it is live here or after FETCH_TIMEOUT."""
        key = (app, name)
        owner = self.owners.get(key)
        if owner is None or owner == self.me:
            return None
        d: defer.Deferred = defer.Deferred()
        self._waiting.setdefault(key, []).append(d)
        if key not in self.relays:
            self._open(key, owner)
        live = self.hub.get(app, name)
        if (live is None or not live.sinks) and key not in self._linger:
            # Closed again unless a sink arrives.
            self._linger[key] = self.reactor.callLater(self.linger, self._lingered, key)
        d.addTimeout(FETCH_TIMEOUT, self.reactor, onTimeoutCancel=lambda *_: None)
        d.addBoth(self._not_waiting, key, d)
        return d

    def _not_waiting(self, result, key, d):
        waiting = self._waiting.get(key, [])
        if d in waiting:
            waiting.remove(d)
        if not waiting:
            self._waiting.pop(key, None)
        return None

    def is_relay(self, publisher) -> bool:
        return any(publisher is source for _, source, _ in self.relays.values())

    # -- directory ----------------------------------------------------------------------------------

    def owner_changed(self, app: str, name: str, owner: int | None) -> None:
        key = (app, name)
        if owner is None:
            self.owners.pop(key, None)
        else:
            self.owners[key] = owner
        current = self.relays.get(key)
        if current is not None and current[0] != owner:
            self._close(key, f"owner is now {'nobody' if owner is None else f'worker {owner}'}")
        if owner is not None and owner != self.me and key not in self.relays:
            live = self.hub.get(app, name)
            if live is not None and live.sinks and live.publisher is None:
                self._open(key, owner)

    # -- IHubObserver ---------------------------------------------------------------------------------

    def sink_added(self, stream, sink) -> None:
        key = stream.key
        timer = self._linger.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        if key in self.relays or stream.publisher is not None:
            return
        owner = self.owners.get(key)
        if owner is not None and owner != self.me:
            self._open(key, owner)

    def sink_removed(self, stream, sink) -> None:
        key = stream.key
        if key in self.relays and not stream.sinks and key not in self._linger:
            self._linger[key] = self.reactor.callLater(self.linger, self._lingered, key)

    def stream_published(self, stream, publisher) -> None:
        relay = self.relays.get(stream.key)
        if relay is not None and publisher is not relay[1]:
            self._close(stream.key, "published in this worker")
        for d in list(self._waiting.get(stream.key, ())):
            d.callback(None)

    def stream_unpublished(self, stream, publisher) -> None:
        if self.is_relay(publisher):
            return
        # A local takeover stops and starts in one go: release only if nobody publishes here now.
        self.reactor.callLater(0, self._maybe_release, stream.app, stream.name)

    def _maybe_release(self, app: str, name: str) -> None:
        live = self.hub.get(app, name)
        if (live is None or live.publisher is None) and self.owners.get((app, name)) == self.me:
            self.hub.directory.release(app, name, self.me)

    # -- relays ---------------------------------------------------------------------------------------

    def _lingered(self, key) -> None:
        self._linger.pop(key, None)
        live = self.hub.get(*key)
        if live is None or not live.sinks:
            self._close(key, "no players left")

    def _open(self, key, owner: int) -> None:
        app, name = key
        ac = self.config.apps.get(app)
        if ac is None:
            return
        source = PullSource(self.hub, app, name, self.reactor, gop_cache=ac.gop_cache,
                            gop_max_frames=ac.gop_cache_max_frames, gop_max_bytes=ac.gop_cache_max_bytes)
        url = RelayURL("rtmp+unix", self.socket_for(owner), 0, app, name)
        settings = RelaySettings(connect_timeout=5.0, start_timeout=5.0, backoff_initial=0.2, backoff_max=2.0,
                                 client=ClientSettings())
        relay = Relay(url, PLAY, clock=self.reactor, consumer=source, settings=settings,
                      endpoint_for=lambda u: client_endpoint(self.reactor, u), label=f"worker {owner} -> {self.me} {app}/{name}")
        source.attach(relay)
        self.relays[key] = (owner, source, relay)
        self.opened += 1
        self._log.info("relaying {app}/{name} from worker {owner}", app=app, name=name, owner=owner)
        relay.start()

    def _close(self, key, reason: str) -> None:
        timer = self._linger.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        entry = self.relays.pop(key, None)
        if entry is None:
            return
        owner, source, _ = entry
        self._log.info("relay of {app}/{name} from worker {owner} closed: {reason}", app=key[0], name=key[1], owner=owner, reason=reason)
        source.close()
