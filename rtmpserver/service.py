"""The composition root: config -> hub -> handler chains -> factories -> listeners, built once.

``compose`` builds the parts (``twistd rtmp`` does it while parsing options, so a bad handler
setting stops startup before any port opens) and ``makeService`` puts them in one MultiService
holding a listener per configured endpoint.  Listening is configuration (docs/architecture.md,
"Rules we keep"): each ``[server] listen`` line becomes a ``tls.listener`` child (ssl: lines get
our TLS context, see rtmpserver/tls.py), so tcp:, tcp6: and ssl: are the same code path and tests
can pass a MemoryReactor.  Stopping is ordered: players are told the stream ended while their
connections are still up; then handlers that provide ``IHandlerService`` release what they hold
(notify's HTTP pool, record's open files), and only then do the listeners go away.  twistd waits
for the Deferred that ``stopService`` returns, so SIGTERM ends every session cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from rtmpserver import tls
from rtmpserver.config import ServerConfig
from rtmpserver.interfaces import IHandlerService

__all__ = ["Components", "RTMPService", "SHUTDOWN_TIMEOUT", "compose", "makeService"]

# Bounded so that one stuck peer (a full socket buffer, a handler that never answers) cannot keep
# the process alive past what an init system's stop timeout allows (systemd: 90 s, Docker: 10 s).
SHUTDOWN_TIMEOUT = 5.0


@dataclass
class Components:
    """What one server is made of, built once by ``compose``."""

    config: ServerConfig
    factory: Any  # rtmpserver.protocol.RTMPServerFactory
    hub: Any = None  # rtmpserver.hub.Hub; None when a factory was supplied from outside
    chains: dict = field(default_factory=dict)  # app name -> rtmpserver.chain.Chain

    def handler_services(self) -> list[Any]:
        """Every handler of every chain that provides IHandlerService, in config order."""
        return [h for chain in self.chains.values() for _, h in chain.handlers if IHandlerService.providedBy(h)]


def compose(config: ServerConfig, reactor: Any) -> Components:
    """Hub, handler chains (handlers get the reactor as their clock and for network calls) and
    the RTMP factory.  A ConfigError from a handler's settings propagates."""
    from rtmpserver.apps import build_chains
    from rtmpserver.hub import Hub
    from rtmpserver.metrics import ServerMetrics
    from rtmpserver.protocol import RTMPServerFactory

    hub = Hub()
    metrics = ServerMetrics()
    chains = build_chains(config, hub, reactor, reactor=reactor, metrics=metrics)
    factory = RTMPServerFactory(config, reactor, chains=chains, hub=hub, metrics=metrics)
    return Components(config, factory, hub, chains)


class RTMPService(service.MultiService):
    """The listeners of one server plus the ordered shutdown of its factory and handlers."""

    _log = Logger()

    def __init__(self, config: ServerConfig, factory: Any, reactor: Any,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT, handler_services: list[Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.factory = factory
        self._reactor = reactor
        self._shutdown_timeout = shutdown_timeout
        self.handler_services = list(handler_services or [])

    def startService(self) -> None:
        self._log.info(
            "{name} starting: config {path}, listening on {listeners}",
            name=self.config.name, path=self.config.path, listeners=", ".join(self.config.listen),
        )
        for app in self.config.apps.values():
            self._log.info(
                "application {app}: handlers {handlers}, gop_cache {gop_cache}, "
                "publisher_clash {publisher_clash}",
                app=app.name, handlers=", ".join(app.handlers), gop_cache=app.gop_cache,
                publisher_clash=app.publisher_clash,
            )
        for handler in self.handler_services:
            d = defer.maybeDeferred(handler.start_service)
            d.addErrback(lambda f, h=handler: self._log.failure("handler {handler!r} failed to start", f, handler=h))
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        d = defer.maybeDeferred(self.factory.shutdown)
        d.addTimeout(self._shutdown_timeout, self._reactor)
        d.addErrback(self._shutdown_failed)
        d.addCallback(lambda _: self._stop_handlers())
        d.addCallback(lambda _: super(RTMPService, self).stopService())
        return d

    def _stop_handlers(self) -> defer.Deferred:
        """Every IHandlerService's stop_service, together, bounded by the shutdown timeout."""
        waiting = []
        for handler in self.handler_services:
            d = defer.maybeDeferred(handler.stop_service)
            d.addTimeout(self._shutdown_timeout, self._reactor)
            d.addErrback(lambda f, h=handler: self._log.failure("handler {handler!r} failed to stop", f, handler=h))
            waiting.append(d)
        return defer.gatherResults(waiting)

    def _shutdown_failed(self, failure: Any) -> None:
        if failure.check(defer.TimeoutError):
            self._log.warn(
                "sessions did not close within {timeout} s; stopping listeners anyway",
                timeout=self._shutdown_timeout,
            )
        else:
            self._log.failure("factory shutdown failed; stopping listeners anyway", failure)


def makeService(config: ServerConfig, reactor: Any = None, factory: Any = None,
                components: Components | None = None, listener: Any = None) -> service.MultiService:
    """Build (not start) the service tree for ``config``.

    ``components`` are the parts ``compose`` built (``twistd rtmp`` passes those it built while
    parsing options); without them they are composed here.  A bare ``factory`` (tests) serves
    RTMP only: no handlers, no HTTP.  With ``[server] workers`` > 1 this is the supervisor of
    the worker processes (rtmpserver.workers); a worker passes ``listener(reactor, endpoint,
    factory)``, which makes the service for a listening socket it inherited.
    """
    if reactor is None:
        from twisted.internet import reactor as installed_reactor

        reactor = installed_reactor
    if config.workers > 1 and listener is None and factory is None:
        from rtmpserver.workers.supervisor import Supervisor

        top = service.MultiService()
        Supervisor(config, reactor).setServiceParent(top)
        return top
    listener = listener or tls.listener
    if components is None:
        components = Components(config, factory) if factory is not None else compose(config, reactor)
    factory = components.factory
    root = RTMPService(config, factory, reactor, handler_services=components.handler_services())
    for endpoint in config.listen:
        rtmp_listener = listener(reactor, endpoint, factory)
        rtmp_listener.setName(endpoint)
        rtmp_listener.setServiceParent(root)
    if config.http and components.hub is not None:
        # HTTP shares the reactor and the hub with RTMP: one process serves both.
        from rtmpserver.http.hls import hls_routes
        from rtmpserver.http.site import build_site

        hls = hls_routes(components.chains)
        for http in config.http.values():
            site = build_site(factory, http, hls)
            for endpoint in http.listen:
                http_listener = listener(reactor, endpoint, site)
                http_listener.setName(f"http:{http.name}:{endpoint}")
                http_listener.setServiceParent(root)
    return root
