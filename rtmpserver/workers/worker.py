"""One worker process: ``python -m rtmpserver.workers.worker`` (started by the supervisor only).

It composes the server exactly as one process would (rtmpserver.service), on listening sockets
inherited from the supervisor, and adds what makes N processes one server:

- the hub's stream directory is the supervisor's (``RemoteStreamDirectory`` over AMP);
- ``w<N>.rtmp``, a Unix-socket RTMP listener in the supervisor's private runtime directory, from
  which other workers relay this worker's streams (no handler chain: the client's own worker ran
  it), and ``w<N>.http.<section>``, a Unix-socket HTTP listener HLS requests are forwarded to;
- ``WorkerRelays``: players here of a stream published elsewhere get it over one relay;
- answers for /stat, /api/v1, /metrics and /control asked by whichever worker got the request.

Client ids are ``index * 10**12 + n``, so /control finds a client's worker from its id.  When the
AMP connection to the supervisor goes away (the supervisor died), the worker stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.protocols import amp

from rtmpserver.workers import directory as d

__all__ = ["AdoptedPort", "Worker", "CLIENT_ID_SPAN", "main"]

_log = Logger(namespace="rtmpserver.workers")

# Client ids of worker N start at N * CLIENT_ID_SPAN + 1.
CLIENT_ID_SPAN = 10**12


class AdoptedPort(service.Service):
    """A listening socket inherited from the supervisor (``IReactorSocket.adoptStreamPort``)."""

    def __init__(self, reactor, fd: int, description: str, factory) -> None:
        self.reactor = reactor
        self.fd = fd
        self.description = description
        self.factory = factory
        self.port = None

    def startService(self) -> None:
        super().startService()
        probe = socket.socket(fileno=os.dup(self.fd))
        family = probe.family
        probe.close()
        factory = self.factory
        if self.description.split(":", 1)[0].strip().lower() == "ssl":
            from twisted.protocols.tls import TLSMemoryBIOFactory

            from rtmpserver import tls

            factory = TLSMemoryBIOFactory(tls.context_factory(self.description), False, factory)
        # The reactor listens on its own duplicate; ours stays open for a restart of the service.
        self.port = self.reactor.adoptStreamPort(self.fd, family, factory)

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else None


PEER_HEADER = b"x-rtmpserver-peer"


def _forwarded_request_class():
    from twisted.internet.address import IPv4Address, IPv6Address
    from twisted.web import server

    class ForwardedRequest(server.Request):
        """A request another worker forwarded over this worker's private Unix socket: the
        client's address comes from the forwarding worker (the socket's directory is 0700)."""

        def getClientAddress(self):
            peer = (self.getHeader(PEER_HEADER) or b"").decode("ascii", "replace").split(" ")
            if len(peer) == 2 and peer[1].isdigit():
                cls = IPv6Address if ":" in peer[0] else IPv4Address
                return cls("TCP", peer[0], int(peer[1]))
            return super().getClientAddress()

    return ForwardedRequest


ForwardedRequest = _forwarded_request_class()


class _Request:
    """What rtmpserver.http.control reads of a request: ``postpath`` and ``args``."""

    def __init__(self, postpath: list[bytes], args: dict[bytes, list[bytes]]) -> None:
        self.postpath = postpath
        self.args = args


class _SupervisorAMP(amp.AMP):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def connectionMade(self) -> None:
        super().connectionMade()
        self.worker.directory.protocol = self

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.worker.directory.protocol = None
        self.worker.supervisor_lost()

    @d.Owners.responder
    def owners(self, changes):
        self.worker.directory.apply(changes)
        return {}

    @d.YieldStream.responder
    def yield_stream(self, app, name, policy, stale_timeout):
        return {"yielded": self.worker.yield_stream(app, name, policy, stale_timeout)}

    @d.Report.responder
    def report(self, what):
        return {"data": self.worker.report(what)}

    @d.RunControl.responder
    def run_control(self, query):
        code, body = self.worker.run_control(query)
        return {"code": code, "body": body}


def give_up(hub, clock, is_relay, app: str, name: str, policy: str, stale_timeout: float) -> bool:
    """Another worker's publisher claims ``app/name``, held here: the app's ``publisher_clash``
    policy, decided where the current publisher is (True: it was evicted, or there was none)."""
    live = hub.get(app, name)
    pub = live.publisher if live is not None else None
    if pub is None or is_relay(pub):
        return True
    idle = clock.seconds() - pub.last_media_time
    if policy == "takeover" or (policy == "auto" and (pub.closing or idle >= stale_timeout)):
        _log.info("publish {app}/{name} taken over by a publisher on another worker", app=app, name=name)
        live.stop()
        pub.evict("taken over by a new publisher")
        return True
    return False


class Worker:
    """The parts of one worker process beyond what ``service.makeService`` builds."""

    _log = Logger(namespace="rtmpserver.workers")

    def __init__(self, config, reactor, index: int, count: int, runtime: str, fds: dict[str, int]) -> None:
        from rtmpserver import service as service_mod
        from rtmpserver.protocol import RTMPServerFactory
        from rtmpserver.workers.relays import WorkerRelays

        self.config = config
        self.reactor = reactor
        self.index = index
        self.count = count
        self.runtime = runtime
        self.fds = fds
        self.components = service_mod.compose(config, reactor)
        self.factory = self.components.factory
        self.hub = self.components.hub
        self.directory = d.RemoteStreamDirectory(index)
        self.hub.directory = self.directory
        self.hub.worker = index
        # Other workers' relays play from here: the client's own worker ran its handler chain.
        # Every relay comes from the same (Unix) peer: one per relayed stream and worker, so the
        # per-address connection limit meant for clients does not apply to them.
        relay_config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_connections_per_ip=config.limits.max_connections))
        self.relay_factory = RTMPServerFactory(relay_config, reactor, chains={}, hub=self.hub, metrics=self.factory.metrics)
        self.relays = WorkerRelays(self.hub, self.directory, index, reactor, config, self.rtmp_socket)
        from zope.interface.verify import verifyObject

        from rtmpserver.interfaces import IHubObserver, IStreamDirectory

        verifyObject(IStreamDirectory, self.directory)
        verifyObject(IHubObserver, self.relays)
        self.hub.observers.append(self.relays)
        self.hub.fetch = self.relays.fetch
        self.root = service_mod.makeService(config, reactor, components=self.components, listener=self._listener)
        self.sites = [s.factory for s in self.root if isinstance(s, AdoptedPort) and s.name.startswith("http:")]
        self._unix_listeners()
        from rtmpserver.workers.aggregate import install

        install(self)
        self._stopping = False

    # -- listeners ----------------------------------------------------------------------------------

    def _listener(self, reactor, description: str, factory) -> AdoptedPort:
        return AdoptedPort(reactor, self.fds[description], description, factory)

    def rtmp_socket(self, index: int) -> str:
        return os.path.join(self.runtime, f"w{index}.rtmp")

    def http_socket(self, index: int, section: str) -> str:
        return os.path.join(self.runtime, f"w{index}.http.{section}")

    def _unix(self, path: str, factory, name: str) -> None:
        if os.path.exists(path):
            os.unlink(path)  # left by this worker's previous life
        ep = endpoints.UNIXServerEndpoint(self.reactor, path, mode=0o600)
        from twisted.application.internet import StreamServerEndpointService

        svc = StreamServerEndpointService(ep, factory)
        svc._raiseSynchronously = True
        svc.setName(name)
        svc.setServiceParent(self.root)

    def _unix_listeners(self) -> None:
        from twisted.web import server

        self._unix(self.rtmp_socket(self.index), self.relay_factory, "workers:rtmp")
        # HLS requests forwarded by other workers reach the same resource (the same viewer
        # tokens) as requests that land here directly, with the client's own address.
        self.hls_sites = {}
        for svc in list(self.root):
            if isinstance(svc, AdoptedPort) and svc.name.startswith("http:"):
                section = svc.name.split(":", 2)[1]
                if section in self.hls_sites:
                    continue
                site = server.Site(svc.factory.resource, requestFactory=ForwardedRequest)
                self.hls_sites[section] = site
                self._unix(self.http_socket(self.index, section), site, f"workers:http:{section}")

    # -- what the supervisor asks -------------------------------------------------------------------

    def yield_stream(self, app: str, name: str, policy: str, stale_timeout: float) -> bool:
        return give_up(self.hub, self.reactor, self.relays.is_relay, app, name, policy, stale_timeout)

    def report(self, what: str) -> str:
        from rtmpserver.workers import aggregate

        if what == "snapshot":
            return json.dumps(aggregate.local_snapshot(self), default=str)
        if what == "metrics":
            return aggregate.local_metrics(self)
        return "null"

    def run_control(self, query: str) -> tuple[int, str]:
        from rtmpserver.http import control

        q = json.loads(query)
        request = _Request([p.encode() for p in q["path"]], {k.encode(): [v.encode()] for k, v in q["args"].items()})
        code, body = control.control(request, self.factory)
        return code, body.decode("utf-8", "replace")

    # -- life cycle ---------------------------------------------------------------------------------

    def connect(self, amp_fd: int) -> None:
        from rtmpserver.workers.supervisor import _Once

        self.reactor.adoptStreamConnection(amp_fd, socket.AF_UNIX, _Once(_SupervisorAMP(self)))
        os.close(amp_fd)

    def shutting_down(self) -> None:
        self._stopping = True

    def supervisor_lost(self) -> None:
        if not self._stopping:
            self._log.warn("worker {index}: the supervisor is gone; stopping", index=self.index)
            self._stopping = True
            if self.reactor.running:
                self.reactor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtmpserver.workers.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--amp", type=int, required=True)
    parser.add_argument("--fds", required=True)
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import FileLogObserver, eventAsText, globalLogBeginner

    from rtmpserver import config as config_mod
    from rtmpserver import requests

    # The supervisor logs each line with its own time and "worker N: " in front.
    observer = FileLogObserver(sys.stdout, lambda event: eventAsText(event, includeTimestamp=False) + "\n")
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    # Client ids unique across workers (range_iterator.__setstate__ moves the shared counter).
    requests.client_ids.__setstate__(args.index * CLIENT_ID_SPAN)
    config = config_mod.load(args.config)
    worker = Worker(config, reactor, args.index, args.count, args.runtime, json.loads(args.fds))
    worker.connect(args.amp)
    worker.root.startService()
    reactor.addSystemEventTrigger("before", "shutdown", worker.shutting_down)
    reactor.addSystemEventTrigger("before", "shutdown", worker.root.stopService)
    worker_ref: Any = worker  # kept alive for the reactor's lifetime
    reactor.run()
    del worker_ref
    return 0


if __name__ == "__main__":
    sys.exit(main())
