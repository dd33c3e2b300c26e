"""One MultiService holding a listener service per configured endpoint.

Listening is configuration (house rule 5): each ``[server] listen`` line becomes a
``tls.listener`` child (ssl: lines get our TLS context, see rtmpserver/tls.py), so tcp:, tcp6: and
ssl: are the same code path and tests can pass a MemoryReactor. Stopping is ordered: players are told the stream ended (StreamEOF/UnpublishNotify)
while their connections are still up, and only then do the listeners go away. twistd waits for
the Deferred that ``stopService`` returns, so SIGTERM ends every session cleanly.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from rtmpserver import tls
from rtmpserver.config import ServerConfig

__all__ = ["RTMPService", "SHUTDOWN_TIMEOUT", "makeService"]

# Bounded so that one stuck peer (a full socket buffer, a handler that never answers) cannot keep
# the process alive past what an init system's stop timeout allows (systemd: 90 s, Docker: 10 s).
SHUTDOWN_TIMEOUT = 5.0


class RTMPService(service.MultiService):
    """The listeners of one server plus the ordered shutdown of its factory."""

    _log = Logger()

    def __init__(self, config: ServerConfig, factory: Any, reactor: Any,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
        super().__init__()
        self.config = config
        self.factory = factory
        self._reactor = reactor
        self._shutdown_timeout = shutdown_timeout

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
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        d = defer.maybeDeferred(self.factory.shutdown)
        d.addTimeout(self._shutdown_timeout, self._reactor)
        d.addErrback(self._shutdown_failed)
        d.addCallback(lambda _: super(RTMPService, self).stopService())
        return d

    def _shutdown_failed(self, failure: Any) -> None:
        if failure.check(defer.TimeoutError):
            self._log.warn(
                "sessions did not close within {timeout} s; stopping listeners anyway",
                timeout=self._shutdown_timeout,
            )
        else:
            self._log.failure("factory shutdown failed; stopping listeners anyway", failure)


def makeService(config: ServerConfig, reactor: Any = None, factory: Any = None) -> RTMPService:
    """Build (not start) the service tree for ``config``."""
    if reactor is None:
        from twisted.internet import reactor as installed_reactor

        reactor = installed_reactor
    if factory is None:
        from rtmpserver.protocol import RTMPServerFactory

        factory = RTMPServerFactory(config, reactor)
    root = RTMPService(config, factory, reactor)
    for endpoint in config.listen:
        listener = tls.listener(reactor, endpoint, factory)
        listener.setName(endpoint)
        listener.setServiceParent(root)
    if config.http and hasattr(factory, "hub"):
        # HTTP shares the reactor and the hub with RTMP: one process serves both.
        from rtmpserver.http.site import build_site

        for http in config.http.values():
            site = build_site(factory, http, factory.hub.services.get("hls"))
            for endpoint in http.listen:
                listener = tls.listener(reactor, endpoint, site)
                listener.setName(f"http:{http.name}:{endpoint}")
                listener.setServiceParent(root)
    return root
