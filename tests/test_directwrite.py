"""rtmpserver._directwrite against real Twisted TCP transports on a local socket pair.

These tests read the same Twisted internals the writer does: if a Twisted release renames or
changes them, they fail here (not silently in production), and pyproject.toml's pin is the range
these tests passed on.
"""

from __future__ import annotations

import socket

import pytest
from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from zope.interface import implementer

from rtmpserver._directwrite import (
    DirectWriter,
    TLSWriter,
    TwistedWriter,
    direct_write_supported,
    writer_for,
)


@implementer(IPushProducer)
class Producer:
    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")

    def stopProducing(self):
        self.events.append("stop")


@pytest.fixture
def pair():
    """A Twisted TCP transport (on a MemoryReactor: nothing runs unless the test says) and its peer socket."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # AF_UNIX socketpair is SOCK_STREAM like TCP; its send buffer is small and fixed, which is
    # what the partial-send tests need.
    reactor = MemoryReactor()
    t = tcp.Connection(a, Protocol(), reactor)
    t.connected = 1
    b.setblocking(False)
    yield t, b, reactor
    a.close()
    b.close()


def drain(b, limit=1 << 26):
    out = bytearray()
    while len(out) < limit:
        try:
            data = b.recv(1 << 20)
        except BlockingIOError:
            break
        if not data:
            break
        out += data
    return bytes(out)


def test_twisted_internals_we_rely_on_are_there(pair):
    t, _, _ = pair
    # FileDescriptor's queue: a byte string with an offset and a list with its length.
    assert t.dataBuffer == b"" and t.offset == 0
    assert t._tempDataBuffer == [] and t._tempDataLen == 0
    assert t.connected and not t.disconnecting and not t._writeDisconnected
    assert isinstance(t.socket, socket.socket)
    assert t.bufferSize > 0
    assert direct_write_supported(t)
    t.writeSequence([b"ab", b"cd"])
    assert t._tempDataBuffer == [b"ab", b"cd"] and t._tempDataLen == 4
    assert DirectWriter(t).queued() == 4


def test_empty_queue_goes_straight_to_the_socket(pair):
    t, b, reactor = pair
    w = writer_for(t)
    assert type(w) is DirectWriter
    body = b"x" * 1000
    w.write_sequence([b"h1", body, b"h2", body])
    assert drain(b) == b"h1" + body + b"h2" + body
    # Twisted was not involved: nothing queued, not registered for writing.
    assert t._tempDataLen == 0 and t.dataBuffer == b""
    assert t not in reactor.getWriters()
    assert w.sent == 2004


def test_partial_send_queues_the_rest_in_order_and_pauses_the_producer(pair):
    t, b, reactor = pair
    producer = Producer()
    t.registerProducer(producer, True)
    w = writer_for(t)
    chunks = [bytes([i]) * 50_000 for i in range(40)]  # 2 MB: more than any socket buffer takes
    for c in chunks:
        w.write_sequence([c[:7], c[7:]])
    assert w.sent < 2_000_000
    assert w.queued() > 0  # the kernel took part; Twisted holds the rest
    # Over bufferSize: Twisted pauses the producer (on each further write; the protocol ignores
    # repeats), so the players' bounded backlogs take over upstream.
    assert producer.events and set(producer.events) == {"pause"}
    assert t in reactor.getWriters()  # Twisted waits for writability for the rest
    # Once something is queued, later writes go to Twisted's queue, behind it.
    got = bytearray(drain(b))
    while t.dataBuffer or t._tempDataLen:
        t.doWrite()
        got += drain(b)
    assert bytes(got) == b"".join(chunks)
    assert producer.events[-1] == "resume" and producer.events.count("resume") == 1
    # Empty again: direct once more.
    sent = w.sent
    w.write_sequence([b"after"])
    assert w.sent == sent + 5 and drain(b) == b"after"


def test_many_parts_are_split_below_iov_max(pair):
    t, b, _ = pair
    w = writer_for(t)
    parts = [bytes([i % 251]) for i in range(3000)]
    w.write_sequence(parts)
    got = bytearray(drain(b))
    while t.dataBuffer or t._tempDataLen:
        t.doWrite()
        got += drain(b)
    assert bytes(got) == b"".join(parts)


def test_closing_transport_uses_twisted(pair):
    t, b, _ = pair
    w = writer_for(t)
    t.disconnecting = True
    w.write_sequence([b"late"])
    assert drain(b) == b"" and t._tempDataLen == 4


def test_broken_socket_is_left_to_twisted(pair):
    t, b, _ = pair
    w = writer_for(t)
    b.close()
    w.write_sequence([b"x" * 10])  # EPIPE from sendmsg: Twisted's own write reports the loss
    assert t._tempDataLen == 10


def test_transports_without_a_socket_use_twisted():
    st = StringTransport()
    w = writer_for(st)
    assert type(w) is TwistedWriter and not direct_write_supported(st)
    w.write_sequence([b"a", b"b"])
    assert st.value() == b"ab"


def test_direct_off_uses_twisted(pair):
    t, b, _ = pair
    assert type(writer_for(t, direct=False)) is TwistedWriter


def test_tls_transports_get_one_write_per_flush():
    from twisted.internet.interfaces import ISSLTransport
    from zope.interface import directlyProvides

    st = StringTransport()
    directlyProvides(st, ISSLTransport)
    writes = []
    st.write = writes.append
    w = writer_for(st)
    assert type(w) is TLSWriter
    w.write_sequence([b"h", b"body", b"h2", b"body2"])
    assert writes == [b"hbodyh2body2"]


def test_tls_writer_encrypts_at_once_through_twisted_tls(tmp_path):
    """A real TLSMemoryBIOProtocol (Twisted's BufferingTLSTransport) with a memory client: our
    writes are encrypted at once (no aggregation buffer, no delayed call) and arrive in order."""
    from OpenSSL import SSL
    from twisted.internet.protocol import Factory
    from twisted.internet.task import Clock
    from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory

    from rtmpserver import tls
    from tests.test_tls import make_cert

    key, cert = make_cert(tmp_path, "ecdsa")
    clock = Clock()
    factory = TLSMemoryBIOFactory(tls._ContextFactory(tls.server_context({"privateKey": key, "certKey": cert})),
                                  False, Factory.forProtocol(Protocol), clock)
    server = factory.buildProtocol(None)
    assert isinstance(server, BufferingTLSTransport) and hasattr(server, "_aggregator")
    wire = StringTransport()
    server.makeConnection(wire)
    client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    client.set_connect_state()

    def pump():
        got = b""
        for _ in range(10):
            try:
                client.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                out = client.bio_read(65536)
            except SSL.WantReadError:
                out = b""
            if out:
                server.dataReceived(out)
            back = wire.value()
            wire.clear()
            if back:
                client.bio_write(back)
            try:
                while True:
                    got += client.recv(65536)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            if not out and not back:
                break
        return got

    pump()
    w = writer_for(server)
    assert type(w) is TLSWriter and w._write is not None
    server.write(b"<twisted-aggregated>")  # a write through Twisted's own path, still buffered
    w.write_sequence([b"header", b"body" * 1000])
    assert wire.value()  # encrypted at once, not on the next reactor iteration
    assert pump() == b"<twisted-aggregated>" + b"header" + b"body" * 1000
