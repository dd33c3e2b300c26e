"""How a connection's output reaches the network: the one place that knows Twisted's transport internals.

Twisted's ``FileDescriptor.write`` never sends at once: it queues the bytes, registers the socket
for writability (an ``epoll_ctl``), and on the next reactor iteration joins the queue (a copy),
sends it and unregisters (``epoll_ctl`` again) -- per connection, per write.  With many players
that per-write reactor work is most of the server's CPU (docs/performance.md).  ``DirectWriter``
does what CPython's asyncio does instead ("try to send now"): when nothing is queued in the
transport, the parts go straight to the socket with one scatter-gather ``sendmsg`` (chunk header
and the body shared by every player, no join); whatever the kernel does not take is handed to
``transport.writeSequence``, so from then on Twisted's own queue, writability registration and
producer pause/resume (bounded backlogs, docs/architecture.md) work exactly as before.

This relies on attributes of ``twisted.internet.abstract.FileDescriptor`` that are not public API
(``dataBuffer``, ``offset``, ``_tempDataLen``, ``connected``, ``disconnecting``,
``_writeDisconnected``, ``socket``).  ``writer_for`` checks them when a connection starts and uses
the plain Twisted path when any is missing; tests/test_directwrite.py fails loudly if a Twisted
release changes them, and pyproject.toml pins the range of Twisted versions we tested.

TLS transports (pyOpenSSL under ``TLSMemoryBIOProtocol``) get ``TLSWriter``: what a player is sent
during one read of the publisher becomes one TLS write (one record series, one BIO flush) instead
of one per message.  Transports without a socket (tests' ``StringTransport``, tunnels) get
``TwistedWriter``, the plain Twisted path.
"""

from __future__ import annotations

import socket as _socket

from twisted.internet.interfaces import ISSLTransport

try:  # Twisted >= 22.8: TLS writes aggregated per reactor iteration (see TLSWriter)
    from twisted.protocols.tls import BufferingTLSTransport as _BufferingTLS
    from twisted.protocols.tls import TLSMemoryBIOProtocol as _TLSMemoryBIO
except ImportError:  # pragma: no cover - older Twisted: plain transport.write
    _BufferingTLS = _TLSMemoryBIO = None

__all__ = ["TwistedWriter", "DirectWriter", "TLSWriter", "writer_for", "direct_write_supported"]

# At most this many buffers per sendmsg (Linux IOV_MAX is 1024).
_IOV_MAX = 512

# What a FileDescriptor must have for us to look at its queue; checked per connection.
_REQUIRED = ("dataBuffer", "offset", "_tempDataLen", "_tempDataBuffer", "connected", "disconnecting",
             "_writeDisconnected", "writeSequence")


class TwistedWriter:
    """The plain Twisted path: ``transport.writeSequence``."""

    __slots__ = ("transport",)
    direct = False

    def __init__(self, transport) -> None:
        self.transport = transport

    def write_sequence(self, parts: list, total: int | None = None) -> None:
        """Send ``parts`` in order (``total``: their summed length, when the caller knows it)."""
        self.transport.writeSequence(parts)

    def queued(self) -> int:
        """Bytes the transport holds that the peer has not taken (0 when unknown)."""
        return 0


class TLSWriter(TwistedWriter):
    """TLS: everything of one flush becomes one TLS write (pyOpenSSL's cost is per write).

    Twisted's ``BufferingTLSTransport`` copies each write into a list and schedules a
    ``callLater(0)`` to encrypt the joined list on the next reactor iteration; our writes are
    already one per player per publisher read, so for it we call the encrypting
    ``TLSMemoryBIOProtocol.write`` directly: no copy, no delayed call per player, no extra
    iteration of latency.  Flow control is unchanged (the TCP transport under TLS pauses the
    producer through Twisted's membrane, as before).
    """

    __slots__ = ("_write",)

    def __init__(self, transport) -> None:
        self.transport = transport
        self._write = None
        if _BufferingTLS is not None and isinstance(transport, _BufferingTLS) and hasattr(transport, "_aggregator"):
            self._write = _TLSMemoryBIO.write

    def write_sequence(self, parts: list, total: int | None = None) -> None:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        t = self.transport
        if self._write is not None and not t.disconnecting:
            # Anything still in Twisted's aggregation buffer goes first (order), then ours.
            t._aggregator.flush()
            self._write(t, data)
        else:
            t.write(data)


class DirectWriter:
    """Plain TCP: ``sendmsg`` straight to the socket while Twisted's queue is empty."""

    __slots__ = ("transport", "sendmsg", "sent")
    direct = True

    def __init__(self, transport) -> None:
        self.transport = transport
        self.sendmsg = transport.socket.sendmsg
        self.sent = 0  # bytes the kernel accepted from sendmsg (Twisted's own sends are not counted)

    def queued(self) -> int:
        t = self.transport
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def write_sequence(self, parts: list, total: int | None = None) -> None:
        t = self.transport
        # Anything queued (or a half-closed / closing transport): keep order, let Twisted do it.
        if t._tempDataLen or t.dataBuffer or not t.connected or t.disconnecting or t._writeDisconnected:
            t.writeSequence(parts)
            return
        if len(parts) > _IOV_MAX:
            head, rest = parts[:_IOV_MAX], parts[_IOV_MAX:]
        else:
            head, rest = parts, None
        try:
            n = self.sendmsg(head)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            # The connection is broken: Twisted finds out on its own write and reports it.
            t.writeSequence(parts)
            return
        self.sent += n
        if rest is None:
            if n == (total if total is not None else sum(map(len, head))):  # the common case: all taken
                return
            for i, part in enumerate(head):
                size = len(part)
                if n < size:
                    t.writeSequence([memoryview(part)[n:].tobytes(), *head[i + 1:]] if n else head[i:])
                    return
                n -= size
            return
        for i, part in enumerate(head):
            size = len(part)
            if n < size:
                t.writeSequence([memoryview(part)[n:].tobytes(), *head[i + 1:], *rest] if n else [*head[i:], *rest])
                return
            n -= size
        self.write_sequence(rest)


def direct_write_supported(transport) -> bool:
    """Whether ``transport`` is a Twisted TCP transport with the internals ``DirectWriter`` reads."""
    if ISSLTransport.providedBy(transport):
        return False
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, _socket.socket) or sock.type != _socket.SOCK_STREAM:
        return False
    if not hasattr(sock, "sendmsg"):
        return False
    return all(hasattr(transport, name) for name in _REQUIRED)


def writer_for(transport, direct: bool = True):
    """The writer for a connection's transport (``direct`` False: never bypass Twisted)."""
    if ISSLTransport.providedBy(transport):
        return TLSWriter(transport)
    if direct and direct_write_supported(transport):
        return DirectWriter(transport)
    return TwistedWriter(transport)
