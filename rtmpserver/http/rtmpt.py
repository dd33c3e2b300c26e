"""RTMPT: RTMP tunnelled over HTTP POST requests, on an HTTP listener with ``rtmpt = yes``.

The path through proxies that allow only HTTP.  The client opens a session and then carries the
RTMP byte stream in request bodies and the server's in response bodies; every exchange is a
``POST`` with ``Content-Type: application/x-fcs`` (the scheme of Flash Media Server, as clients
implement it: librtmp's ``rtmp.c`` HTTP_Post/HTTP_read, FFmpeg's ``rtmphttp.c``):

| request | answer |
|---|---|
| ``/fcs/ident2`` | 404 (a Flash Player probe; servers without an identity answer it so) |
| ``/open/1`` | the new session id and ``\\n`` |
| ``/send/<id>/<seq>`` | body: RTMP bytes from the client; answer: polling interval byte + RTMP bytes queued for it |
| ``/idle/<id>/<seq>`` | polling interval byte + queued RTMP bytes (held up to ``POLL_HOLD`` while none are queued) |
| ``/close/<id>/<seq>`` | polling interval byte; the session ends |

The first byte of every answer but ``open``'s is the polling interval the client should wait
before its next idle request when it has nothing to send: 1 while data flows, growing (3, 5, 9,
17, 33) over empty answers, as Flash Media Server does.  Clients that poll without waiting (librtmp
asks again at once) are held instead: an idle request with nothing queued is answered as soon as
data is queued, or empty after ``POLL_HOLD``, so a player sees media without a polling delay and
the request rate stays low.

Each session is an ordinary ``RTMPServerProtocol`` of the server's RTMP factory, built with the
HTTP client's address, so RTMP's connection limits (``max_connections``,
``max_connections_per_ip``), timers and handler chains apply unchanged; its transport is a
``TunnelTransport`` that queues what it writes until the next request collects it.  Session ids
are 128 random bits (``secrets``); what is queued for a client is bounded (``rtmpt_max_queue``:
past a quarter of it the session's players fall back to their bounded backlogs, past all of it
the session is closed); a request body is bounded by ``rtmpt_max_body``; a session without a
request for ``rtmpt_idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import secrets

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from zope.interface import implementer

from rtmpserver.interfaces import ITunnelTransport
from rtmpserver.protocol import Refused

__all__ = ["RTMPTSessions", "TunnelTransport", "POLL_HOLD", "is_rtmpt_path"]

CONTENT_TYPE = b"application/x-fcs"
POLL_HOLD = 0.2  # seconds an idle request with nothing to answer is held
CLOSE_GRACE = 2.0  # seconds a closing session waits for the client to collect its last bytes
_COMMANDS = (b"send", b"idle", b"close")
_MAX_INTERVAL = 33


def is_rtmpt_path(path: bytes) -> bool:
    """Whether a request path (without query) is one of RTMPT's, so it may carry a body."""
    return path.startswith((b"/open/", b"/send/", b"/idle/", b"/close/", b"/fcs/"))


@implementer(ITransport, IConsumer, ITunnelTransport)
class TunnelTransport:
    """The transport of an RTMP session carried by RTMPT: writes queue for the next answer.

    It has no socket: anything that would write to one must use ``write``/``writeSequence``.
    Flow control is the producer protocol of any transport: the RTMP protocol registers as a push
    producer and is paused while more than ``high`` bytes wait for the client.
    """

    disconnecting = False
    aborted = False

    def __init__(self, session: _Session, peer, host, max_queue: int, secure: bool = False) -> None:
        self.session = session
        self.scheme = "rtmpts" if secure else "rtmpt"
        self.peer = peer
        self.host = host
        self.max_queue = max_queue
        self.high = max_queue // 4
        self.queue: list[bytes] = []
        self.queued = 0
        self.producer = None
        self.paused = False

    # ITransport
    def write(self, data: bytes) -> None:
        if self.session.ended or self.aborted or not data:
            return
        self.queue.append(bytes(data))
        self.queued += len(data)
        if self.queued > self.max_queue:
            self.session.log.info("RTMPT session {peer}: {n} bytes queued for a client that does not collect them; closing",
                                  peer=self.session.peer_text, n=self.queued)
            self.abortConnection()
            return
        if self.queued > self.high and self.producer is not None and not self.paused:
            self.paused = True
            self.producer.pauseProducing()
        self.session.data_queued()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    # Like a TCP transport, the connection is lost on a later reactor turn, never inside the
    # protocol's own call to loseConnection/abortConnection.
    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.session.owner.clock.callLater(0, self.session.closing)

    def abortConnection(self) -> None:
        if not self.aborted:
            self.aborted = self.disconnecting = True
            self.session.owner.clock.callLater(0, self.session.end, ConnectionLost("RTMPT session aborted"))

    def getPeer(self):
        return self.peer

    def getHost(self):
        return self.host

    # IConsumer
    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def take(self) -> bytes:
        """Everything queued, for an answer; resumes a producer paused by the queue."""
        data = b"".join(self.queue)
        self.queue = []
        self.queued = 0
        if self.paused and self.producer is not None and not self.session.ended:
            self.paused = False
            self.producer.resumeProducing()
        return data


class _Session:
    log = Logger()

    def __init__(self, owner: RTMPTSessions, sid: str, request) -> None:
        self.owner = owner
        self.id = sid
        addr = request.getClientAddress()
        self.peer_text = f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '')}"
        self.transport = TunnelTransport(self, addr, request.getHost(), owner.conf.rtmpt_max_queue, request.isSecure())
        self.protocol = None
        self.ended = False
        self.is_closing = False
        self.interval = 1
        self.held = None  # (request, timer) of an idle request waiting for data
        self.last_seen = owner.clock.seconds()
        self.timer = owner.clock.callLater(owner.conf.rtmpt_idle_timeout, self._idle_check)
        self.grace = None
        self.soon = None  # the call answering a held poll with data just queued

    # -- the transport's events -------------------------------------------------------------

    def data_queued(self) -> None:
        # Answered on the next reactor turn, not at the first write: a session writes several
        # messages in one go (a play's statuses, metadata, sequence headers and cached GOP), and
        # they should leave in one answer.
        if self.held is not None and self.soon is None:
            self.soon = self.owner.clock.callLater(0, self._answer_held)

    def closing(self) -> None:
        """The RTMP side closed: answer what is held, give the client a moment to collect the rest."""
        if self.ended:
            return
        self.is_closing = True
        if self.held is not None:
            self._answer_held()
        if not self.transport.queue:
            self.end(ConnectionDone("RTMPT session closed"))
        elif self.grace is None and not self.ended:
            self.grace = self.owner.clock.callLater(CLOSE_GRACE, self.end, ConnectionDone("RTMPT session closed"))

    def end(self, why: Exception) -> None:
        if self.ended:
            return
        self.ended = True
        self.owner.sessions.pop(self.id, None)
        for call in (self.timer, self.grace):
            if call is not None and call.active():
                call.cancel()
        if self.held is not None:
            self._answer_held()
        if self.protocol is not None:
            self.protocol.connectionLost(Failure(why))

    # -- requests -----------------------------------------------------------------------------

    def touch(self) -> None:
        self.last_seen = self.owner.clock.seconds()

    def _idle_check(self) -> None:
        self.timer = None
        idle = self.owner.clock.seconds() - self.last_seen
        limit = self.owner.conf.rtmpt_idle_timeout
        if self.held is None and idle >= limit:
            self.log.info("RTMPT session {peer}: no request for {t:.0f} s; closing", peer=self.peer_text, t=idle)
            self.end(ConnectionLost("RTMPT session idle"))
        else:
            self.timer = self.owner.clock.callLater(max(limit - idle, 1.0), self._idle_check)

    def body(self) -> bytes:
        """The answer to a send/idle/close: polling interval byte, then what is queued."""
        data = self.transport.take()
        if data:
            self.interval = 1
        else:
            self.interval = min(self.interval * 2 - 1 if self.interval > 1 else 3, _MAX_INTERVAL)
        if self.is_closing and not self.transport.queue and not self.ended:
            self.owner.clock.callLater(0, self.end, ConnectionDone("RTMPT session closed"))
        return bytes((self.interval,)) + data

    def hold(self, request) -> None:
        if self.held is not None:  # one poll at a time: the older one is answered now
            self._answer_held()
        timer = self.owner.clock.callLater(POLL_HOLD, self._answer_held)
        self.held = (request, timer)

        def gone(_):
            if self.held is not None and self.held[0] is request:
                if self.held[1].active():
                    self.held[1].cancel()
                self.held = None

        request.notifyFinish().addErrback(gone)

    def _answer_held(self) -> None:
        if self.soon is not None:
            if self.soon.active():
                self.soon.cancel()
            self.soon = None
        if self.held is None:
            return
        request, timer = self.held
        self.held = None
        if timer.active():
            timer.cancel()
        self.touch()
        _reply(request, self.body())


def _reply(request, body: bytes) -> None:
    # librtmp finds the body by Content-Length (HTTP_read), so the answer is never chunked.
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


class RTMPTSessions:
    """The RTMPT sessions of one HTTP site; ``render`` answers its POSTs."""

    _log = Logger()

    def __init__(self, factory, conf) -> None:
        self.factory = factory  # the RTMP factory: sessions are its connections
        self.conf = conf
        self.clock = factory.clock
        self.sessions: dict[str, _Session] = {}

    def render(self, request, path: list[bytes]):
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-cache")
        if path == [b"fcs", b"ident2"]:
            request.setResponseCode(404)
            return b""
        if len(path) == 2 and path[0] == b"open":
            return self._open(request)
        if len(path) == 3 and path[0] in _COMMANDS and path[2].isdigit() and len(path[2]) <= 20:
            session = self.sessions.get(path[1].decode("ascii", "replace"))
            if session is None or session.ended:
                request.setResponseCode(404)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"no such RTMPT session\n"
            session.touch()
            command = path[0]
            if command == b"close":
                session.transport.disconnecting = True
                session.end(ConnectionDone("RTMPT session closed by the client"))
                return bytes((session.interval,))
            if command == b"send":
                data = request.content.read()
                if data and session.protocol is not None and not session.is_closing:
                    session.protocol.dataReceived(data)
                return session.body()
            if not session.transport.queue and not session.is_closing:
                session.hold(request)
                return server.NOT_DONE_YET
            return session.body()
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"not found\n"

    def _open(self, request):
        addr = request.getClientAddress()
        protocol = self.factory.buildProtocol(addr)  # RTMP's limits: Refused when over them
        if isinstance(protocol, Refused):
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"too many connections\n"
        sid = secrets.token_hex(16)
        session = _Session(self, sid, request)
        session.protocol = protocol
        self.sessions[sid] = session
        protocol.makeConnection(session.transport)
        self._log.info("RTMPT session opened for {peer}", peer=session.peer_text)
        return sid.encode() + b"\n"

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            session.end(ConnectionLost("server shutdown"))
