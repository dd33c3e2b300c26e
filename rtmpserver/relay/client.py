"""The RTMP client side of a relay: a sans-IO ``RelaySession`` and the thin Twisted ``RelayProtocol``.

``RelaySession`` is bytes in, bytes and events out (no sockets, no reactor): it runs the client
handshake and the command sequence FFmpeg and OBS use, then either plays (media goes to an
``IRelayConsumer``) or publishes (``send_*`` methods).  Sequence::

    C0+C1 ... S0+S1+S2, C2
    connect(app, tcUrl, flashVer, capabilities, codecs, fourCcList)  -> _result (Connect.Success)
    Set Chunk Size 4096, Window Acknowledgement Size
    play:    createStream -> _result(sid); play(name, -1000) on sid; SetBufferLength(sid)
    publish: releaseStream(name), FCPublish(name), createStream -> _result(sid); publish(name, "live")
    onStatus NetStream.Play.Start / NetStream.Publish.Start  -> "playing" / "publishing"

Acknowledgements are sent by the codec; Ping Requests are answered here.  Anything the peer sends
that cannot be parsed raises RemoteProtocolError (the protocol closes); a refusal (``_error``, an
error-level onStatus, Play.StreamNotFound, Publish.BadName) ends the session with that reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.codec import amf0
from rtmpserver.codec import messages as m
from rtmpserver.codec.chunk import MAX_MESSAGE_LENGTH, continuation
from rtmpserver.codec.connection import RTMPConnection
from rtmpserver.errors import LocalProtocolError, RemoteProtocolError
from rtmpserver.interfaces import IRelayConsumer
from rtmpserver.relay.url import RelayURL

__all__ = ["PLAY", "PUBLISH", "RelaySession", "RelayProtocol", "RelayClientFactory", "ClientSettings"]

PLAY = "play"
PUBLISH = "publish"

# Session phases (what ``phase_changed`` reports).
HANDSHAKING = "handshaking"
CONNECTING = "connecting"  # connect sent, waiting for _result
STARTING = "starting"  # createStream/play/publish sent, waiting for the *.Start status
PLAYING = "playing"
PUBLISHING = "publishing"
CLOSED = "closed"

_SET_DATA_FRAME = amf0.encode("@setDataFrame")
_VIDEO = m.VideoMessage
_AUDIO = m.AudioMessage

# Enhanced RTMP (v1/v2): the codecs we accept when playing and can forward when publishing.
FOURCC_LIST = ["av01", "vp09", "hvc1", "avc1", "Opus", "mp4a", "ac-3", "ec-3", "fLaC", ".mp3"]


class ClientSettings:
    """Per-connection knobs of a relay client (defaults are what FFmpeg/OBS send)."""

    def __init__(
        self,
        *,
        flash_ver: str = "FMLE/3.0 (compatible; rtmpserver relay)",
        chunk_size: int = 4096,
        window_ack_size: int = 2_500_000,
        buffer_ms: int = 1000,
        max_message_size: int = MAX_MESSAGE_LENGTH,
        max_amf_depth: int = 32,
    ) -> None:
        self.flash_ver = flash_ver
        self.chunk_size = chunk_size
        self.window_ack_size = window_ack_size
        self.buffer_ms = buffer_ms
        self.max_message_size = max_message_size
        self.max_amf_depth = max_amf_depth


class RelaySession:
    """One relay connection's RTMP client state machine (sans-IO).

    ``phase_changed(phase)`` is called on every phase change, ``failed(reason)`` once when the
    session gives up (the owner closes the connection).  ``consumer`` (play mode) gets the media.
    """

    _log = Logger()

    def __init__(
        self,
        url: RelayURL,
        mode: str,
        *,
        consumer=None,
        settings: ClientSettings | None = None,
        phase_changed: Callable[[str], None] = lambda phase: None,
        failed: Callable[[str], None] = lambda reason: None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        uptime_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        if mode not in (PLAY, PUBLISH):
            raise LocalProtocolError(f"relay mode must be {PLAY!r} or {PUBLISH!r}, not {mode!r}")
        if mode == PLAY and not IRelayConsumer.providedBy(consumer):
            raise LocalProtocolError("a playing relay needs an IRelayConsumer")
        self.url = url
        self.mode = mode
        self.consumer = consumer
        self.settings = s = settings or ClientSettings()
        self.conn = RTMPConnection(
            server=False, max_message_size=s.max_message_size, max_amf_depth=s.max_amf_depth,
            random_bytes=random_bytes, uptime_ms=uptime_ms,
        )
        self._phase_changed = phase_changed
        self._failed = failed
        self.phase = HANDSHAKING
        self.stream_id = 0
        self.media_active = False  # play: the origin is sending the stream now
        self.failure: str | None = None
        self.statuses: list[str] = []  # onStatus codes seen, in order (bounded: last 32)
        self.media_messages = 0
        self._tids = itertools.count(1)
        self._calls: dict[float, str] = {}

    # -- bytes in / out ------------------------------------------------------------------------

    def start(self) -> None:
        """Queue C0+C1."""
        self.conn.initiate()

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    @property
    def bytes_sent(self) -> int:
        return self.conn.bytes_sent

    def receive_data(self, data: bytes) -> None:
        """Feed received bytes. Raises RemoteProtocolError on garbage (the caller closes)."""
        if self.phase == CLOSED:
            return
        msgs = self.conn.receive_data(data)
        if self.phase == HANDSHAKING and self.conn.handshake_complete:
            self._send_connect()
        consumer = self.consumer
        for msg in msgs:
            t = type(msg)
            if t is _VIDEO:
                if self.media_active:
                    self.media_messages += 1
                    consumer.video(msg.timestamp, msg.payload)
            elif t is _AUDIO:
                if self.media_active:
                    self.media_messages += 1
                    consumer.audio(msg.timestamp, msg.payload)
            elif t is m.DataMessage:
                self._data(msg)
            elif t is m.CommandMessage:
                self._command(msg)
            elif t is m.UserControl:
                if msg.event == m.UserControlEvent.PING_REQUEST:
                    self.conn.send(m.UserControl.ping_response(msg.value))
                elif self.mode == PLAY and self.phase == PLAYING and msg.value == self.stream_id:
                    # StreamEOF/StreamBegin (RTMP 1.0 7.1.7) mark the publisher leaving and coming
                    # back on servers that send no Unpublish/PublishNotify (nginx-rtmp's default, ours).
                    if msg.event == m.UserControlEvent.STREAM_EOF:
                        self._media_stopped("stream ended upstream")
                    elif msg.event == m.UserControlEvent.STREAM_BEGIN:
                        self._media_started()
            if self.phase == CLOSED:
                return

    def connection_lost(self, reason: str) -> None:
        """The transport is gone; tell the consumer if it was receiving."""
        if self.failure is None:
            self.failure = reason
        self._set_phase(CLOSED)
        self._media_stopped(reason)

    # -- publishing -----------------------------------------------------------------------------

    def send_metadata(self, payload: bytes, timestamp: int = 0) -> None:
        """``payload``: an onMetaData body ("onMetaData", object); sent as @setDataFrame so the server keeps it."""
        self._check_publishing()
        self.conn.send_raw(18, _SET_DATA_FRAME + payload, stream_id=self.stream_id, timestamp=timestamp)

    def send_data(self, payload: bytes, timestamp: int = 0) -> None:
        self._check_publishing()
        self.conn.send_raw(18, payload, stream_id=self.stream_id, timestamp=timestamp)

    def send_video(self, timestamp: int, payload: bytes) -> None:
        self._check_publishing()
        self.conn.send_raw(9, payload, stream_id=self.stream_id, timestamp=timestamp)

    def send_audio(self, timestamp: int, payload: bytes) -> None:
        self._check_publishing()
        self.conn.send_raw(8, payload, stream_id=self.stream_id, timestamp=timestamp)

    def send_frame(self, frame, timestamp: int) -> None:
        """A hub ``Frame`` at ``timestamp``: audio/video reuse its shared chunk body (made once per chunk size)."""
        self._check_publishing()
        if frame.type_id == 18:
            if frame.header:
                self.send_metadata(frame.payload, timestamp)
            else:
                self.send_data(frame.payload, timestamp)
            return
        writer = self.conn.writer
        header, ext = writer.header(frame.csid, timestamp, frame.type_id, self.stream_id, len(frame.payload))
        if ext is None:
            body = frame.body(writer.chunk_size)
        else:
            body = continuation(frame.payload, writer.chunk_size, frame.csid, ext)
        self.conn.queue(header)
        self.conn.queue(body)

    def _check_publishing(self) -> None:
        if self.phase != PUBLISHING:
            raise LocalProtocolError(f"relay to {self.url} cannot send media while {self.phase}")

    def close(self) -> None:
        """Say goodbye politely (deleteStream / FCUnpublish); the owner then closes the transport."""
        if self.phase in (PLAYING, PUBLISHING, STARTING) and self.stream_id:
            if self.mode == PUBLISH:
                self.conn.send_command("FCUnpublish", 0.0, None, self.url.stream_name)
            self.conn.send_command("deleteStream", 0.0, None, float(self.stream_id))
        self._set_phase(CLOSED)

    # -- internals --------------------------------------------------------------------------------

    def _set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self._phase_changed(phase)

    def _fail(self, reason: str) -> None:
        if self.phase == CLOSED:
            return
        self.failure = reason
        self._set_phase(CLOSED)
        self._media_stopped(reason)
        self._failed(reason)

    def _media_stopped(self, reason: str) -> None:
        if self.media_active:
            self.media_active = False
            self.consumer.relay_stopped(reason)

    def _media_started(self) -> None:
        if not self.media_active:
            self.media_active = True
            self.consumer.relay_started()

    def _call(self, name: str, obj=None, *args, stream_id: int = 0) -> None:
        tid = float(next(self._tids))
        self._calls[tid] = name
        self.conn.send_command(name, tid, obj, *args, stream_id=stream_id)

    def _send_connect(self) -> None:
        url = self.url
        obj = {
            "app": url.app,
            "type": "nonprivate",
            "flashVer": self.settings.flash_ver,
            "tcUrl": url.tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
            "objectEncoding": 0.0,
            "fourCcList": list(FOURCC_LIST),
        }
        if self.mode == PUBLISH:
            # A publisher does not advertise decoding abilities (FFmpeg and OBS leave them out).
            for k in ("fpad", "capabilities", "audioCodecs", "videoCodecs", "videoFunction"):
                del obj[k]
        self._call("connect", obj)
        self._set_phase(CONNECTING)

    def _connected(self) -> None:
        s = self.settings
        self.conn.send(m.SetChunkSize(s.chunk_size))
        self.conn.send(m.WindowAcknowledgementSize(s.window_ack_size))
        name = self.url.stream_name
        if self.mode == PUBLISH:
            self._call("releaseStream", None, name)
            self._call("FCPublish", None, name)
        self._call("createStream", None)
        self._set_phase(STARTING)

    def _stream_created(self, sid) -> None:
        if isinstance(sid, bool) or not isinstance(sid, (int, float)) or not 0 < sid < 2**31:
            self._fail(f"createStream answered {sid!r}")
            return
        self.stream_id = sid = int(sid)
        name = self.url.stream_name
        if self.mode == PLAY:
            # -1000: live only (what FFmpeg sends for -rtmp_live live); -1 duration: until it ends.
            self.conn.send_command("play", 0.0, None, name, -1000.0, -1.0, stream_id=sid)
            self.conn.send(m.UserControl.set_buffer_length(sid, self.settings.buffer_ms))
        else:
            self.conn.send_command("publish", 0.0, None, name, "live", stream_id=sid)

    def _command(self, msg: m.CommandMessage) -> None:
        name = msg.name
        if name == "_result" or name == "_error":
            call = self._calls.pop(msg.transaction_id, None)
            if call is None:
                return  # an answer to releaseStream/FCPublish we never waited for, or unsolicited
            if name == "_error":
                if call in ("releaseStream", "FCPublish"):
                    return  # optional calls; servers that do not know them may refuse
                info = _info(msg)
                self._fail(f"{call} refused: {info.get('code') or ''} {info.get('description') or ''}".strip())
                return
            if call == "connect":
                code = _info(msg).get("code")
                if code not in (None, "NetConnection.Connect.Success"):
                    self._fail(f"connect answered {code}")
                    return
                self._connected()
            elif call == "createStream":
                self._stream_created(msg.arguments[0] if msg.arguments else None)
        elif name == "onStatus":
            self._status(_info(msg))
        elif name == "close":
            self._fail("the server closed the connection (close command)")
        # onBWDone, onFCPublish, _checkbw...: nothing to do.

    def _status(self, info: dict) -> None:
        code = str(info.get("code") or "")
        level = info.get("level")
        self.statuses.append(code)
        del self.statuses[:-32]
        if self.mode == PLAY:
            if code == "NetStream.Play.Start" or code == "NetStream.Play.PublishNotify":
                self._set_phase(PLAYING)
                self._media_started()
                return
            if code == "NetStream.Play.UnpublishNotify":
                self._media_stopped("unpublished upstream")
                return
            if code in ("NetStream.Play.Stop", "NetStream.Play.Complete"):
                self._fail(f"origin ended the stream ({code})")
                return
        elif code == "NetStream.Publish.Start":
            self._set_phase(PUBLISHING)
            return
        if level == "error" or code in ("NetStream.Play.StreamNotFound", "NetStream.Publish.BadName", "NetConnection.Connect.Closed"):
            desc = info.get("description")
            self._fail(f"{code}: {desc}" if desc else code)

    def _data(self, msg: m.DataMessage) -> None:
        if not self.media_active:
            return
        payload = msg.payload[1:] if msg.amf3 and msg.payload[:1] == b"\x00" else msg.payload
        values = msg.values
        first = values[0] if values else None
        if first == "@setDataFrame":
            if len(values) >= 3 and values[1] == "onMetaData":
                self.consumer.metadata(msg.timestamp, payload[len(_SET_DATA_FRAME):])
            return
        if first == "onMetaData":
            self.consumer.metadata(msg.timestamp, payload)
        elif isinstance(first, str) and first.startswith("|"):
            return  # |RtmpSampleAccess and the like: permissions for a Flash player, not stream data
        else:
            self.consumer.data(msg.timestamp, payload)


def _info(msg: m.CommandMessage) -> dict:
    for value in msg.arguments:
        if isinstance(value, dict):
            return value
    return {}


@implementer(IPushProducer)
class RelayProtocol(protocol.Protocol):
    """Moves bytes between a transport and a ``RelaySession``; the transport's push producer.

    ``owner`` (a ``rtmpserver.relay.manager.Relay``) is told about phases, failures, the end of the
    connection and when a full transport drains.
    """

    _log = Logger()

    def __init__(self, session: RelaySession, owner=None) -> None:
        self.session = session
        self.owner = owner
        self.paused = False
        self.bytes_in = 0
        self.connected = False
        self._closing = False
        session._phase_changed = self._phase_changed
        session._failed = self._failed

    def _phase_changed(self, phase: str) -> None:
        if self.owner is not None:
            self.owner.phase_changed(self, phase)

    def _failed(self, reason: str) -> None:
        self.close(reason)

    @property
    def bytes_out(self) -> int:
        return self.session.bytes_sent

    def connectionMade(self) -> None:
        self.connected = True
        self.transport.registerProducer(self, True)
        self.session.start()
        self.flush()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.bytes_in += len(data)
        try:
            self.session.receive_data(data)
        except RemoteProtocolError as e:
            self._log.info("relay {url}: protocol error from upstream: {error}", url=self.session.url, error=e)
            self.session.failure = f"protocol error: {e}"
            self._closing = True
            self.transport.abortConnection()
            return
        self.flush()

    def flush(self) -> None:
        if self._closing:
            return
        out = self.session.data_to_send()
        if out:
            self.transport.write(out)

    def close(self, reason: str) -> None:
        """Close politely; ``reason`` is what the owner records."""
        if self._closing:
            return
        if self.session.failure is None:
            self.session.failure = reason
        self.session.close()
        self.flush()
        self._closing = True
        self.transport.loseConnection()

    def abort(self, reason: str) -> None:
        if self.session.failure is None:
            self.session.failure = reason
        self._closing = True
        self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        self.connected = False
        why = self.session.failure or (reason.getErrorMessage() if reason is not None else "closed")
        self.session.connection_lost(why)
        if self.owner is not None:
            self.owner.connection_lost(self, why)

    # IPushProducer: the transport tells us when its buffer is full and when it drained.

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.owner is not None and not self._closing:
            self.owner.writable(self)

    def stopProducing(self) -> None:
        self.paused = True


class RelayClientFactory(protocol.Factory):
    """Builds the one protocol of one connection attempt, with a session made by ``make_session``."""

    noisy = False  # the Relay logs its own state changes

    def __init__(self, make_session: Callable[[], RelaySession], owner=None) -> None:
        self.make_session = make_session
        self.owner = owner

    def buildProtocol(self, addr):
        p = RelayProtocol(self.make_session(), self.owner)
        p.factory = self
        return p
