"""An in-memory endpoint: each connect() joins a relay client to a server factory through iosim pumps."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.test import iosim


class LoopEndpoint:
    def __init__(self, server_factory, clock):
        self.server_factory = server_factory
        self.clock = clock
        self.pumps: list[iosim.IOPump] = []
        self.fail_with: Exception | None = None
        self.hang = False  # connect() never completes (for connect timeouts)
        self.attempts = 0
        self._port = 40000

    def connect(self, factory):
        self.attempts += 1
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        if self.hang:
            return defer.Deferred()
        self._port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._port)
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1935))
        server = self.server_factory.buildProtocol(peer)
        st = iosim.FakeTransport(server, True, peerAddress=peer)
        ct = iosim.FakeTransport(client, False)
        self.pumps.append(iosim.connect(server, st, client, ct, greet=False, clock=self.clock))
        return defer.succeed(client)

    def flush(self):
        for _ in range(50):
            moved = False
            for p in list(self.pumps):
                moved |= p.flush(advanceClock=False)
            if not moved:
                break
