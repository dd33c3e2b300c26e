"""NetConnection and NetStream state for one RTMP connection.

The session is sans-transport: it talks to its connection through a small ``Link`` (write bytes,
write media, close, flow-control state) that ``rtmpserver.protocol`` implements.  Commands go
through the session; audio/video/data from a publisher go straight to the hub, never through
command handling.  Admission of publish/play is in ``admission``, the NetStreams in ``streams``,
the counters monitoring reads in ``stats``.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol
from urllib.parse import parse_qsl

from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.codec import amf0
from rtmpserver.codec import messages as m
from rtmpserver.codec.chunk import CSID_DATA
from rtmpserver.codec.connection import RTMPConnection
from rtmpserver.config import AppConfig, ServerConfig
from rtmpserver.errors import MessageError, Rejected
from rtmpserver.hub import DATA, Hub, LiveStream
from rtmpserver.interfaces import IMonitoredClient, IPlayerStream
from rtmpserver.requests import (
    ConnectRequest,
    PlayRequest,
    PublishRequest,
    SessionView,
    StreamClosed,
    client_ids,
)
from rtmpserver.session import admission, courtesy, vod
from rtmpserver.session.admission import PENDING
from rtmpserver.session.stats import SessionStats
from rtmpserver.session.streams import PlayerStream, PublisherStream
from rtmpserver.session.vod import VodPlayer

__all__ = ["Session", "Link", "State"]

_SET_DATA_FRAME = amf0.encode("@setDataFrame")
_ON_METADATA = amf0.encode("onMetaData")
_SAMPLE_ACCESS = m.data_payload("|RtmpSampleAccess", True, True)

# Enhanced RTMP (veovera enhanced-rtmp v2, "Enhancing NetConnection connect Command"): we forward
# any codec without looking inside, so we say CanForward (0x04) for all of them with the wildcard.
_FOURCC_CAN_FORWARD = 0x04

# Commands a client may pipeline behind connect while the chain decides (bounded).
_MAX_QUEUED_COMMANDS = 32
_session_ids = client_ids  # shared with HTTP viewers


class State(enum.Enum):
    """Where a session is in its life."""

    HANDSHAKE = "handshake"  # bytes before the connect command: handshake, chunk size, ...
    CONNECTING = "connecting"  # connect received, the handler chain is deciding (commands queue)
    CONNECTED = "connected"  # connected to an app (also once a refused connect is being closed)
    CLOSED = "closed"  # the connection is gone; nothing more is sent


class Link(Protocol):
    """What a session needs from its transport (implemented by ``RTMPServerProtocol``).

    How media writes reach the socket (each at once, or merged into one write per tick when the
    app sets ``write_merge_ms``) is the link's business; the session only says which app's
    setting applies.
    """

    paused: bool  # the transport's buffer is full (push-producer pause); players queue instead

    def write(self, data: bytes) -> None:
        """Control/command bytes, written after any media the link still holds."""

    def write_sequence(self, parts: list) -> None:
        """Media (chunk headers and bodies), possibly merged with others until the next tick."""

    def merge_writes(self, delay: float) -> None:
        """Hold media writes for up to ``delay`` seconds (0: write each at once)."""

    def close(self, reason: str) -> None: ...

    def peer_host(self) -> str: ...


def _split_query(name: str) -> tuple[str, dict[str, str]]:
    """``key?a=1&b=2`` -> ("key", {"a": "1", "b": "2"}): encoders pass tokens this way."""
    if "?" in name:
        base, _, query = name.partition("?")
        return base, dict(parse_qsl(query, keep_blank_values=True))
    return name, {}


@implementer(IMonitoredClient)
class Session:
    """One RTMP connection's NetConnection and its NetStreams."""

    _log = Logger()

    def __init__(self, link: Link, config: ServerConfig, hub: Hub, clock, *, peer: str = "?", host: str = "", chains=None, random_bytes=None, protocol: str = "rtmp") -> None:
        self.link = link
        self.protocol = protocol  # "rtmp", "rtmps", "rtmpt" or "rtmpts", for handlers (request.session.protocol)
        self.id = next(_session_ids)
        self.host = host
        self.chains = chains or {}
        self.chain = None
        self.handler_data: dict = {}
        self.state = State.HANDSHAKE
        self._queued: list = []
        self.config = config
        self.limits = config.limits
        self.hub = hub
        self.clock = clock
        self.peer = peer
        self.started = clock.seconds()
        kw: dict[str, Any] = {}
        if random_bytes is not None:
            kw["random_bytes"] = random_bytes
        started = self.started
        self.conn = RTMPConnection(
            server=True,
            max_message_size=self.limits.max_message_size,
            max_partial_bytes=self.limits.max_partial_bytes,
            max_partial_csids=self.limits.max_partial_csids,
            max_amf_depth=self.limits.max_amf_depth,
            uptime_ms=lambda: int((clock.seconds() - started) * 1000),
            **kw,
        )
        self.app: str | None = None
        self.app_config: AppConfig | None = None
        self.connect_params: dict = {}
        self.amf3 = False
        # stream id -> None (created) / admission.PENDING (being decided) / PublisherStream / PlayerStream
        self.streams: dict[int, Any] = {}
        self._next_stream_id = 1
        self.close_reason = ""
        self.last_ping_sent = 0.0
        self.stats = SessionStats()
        self.buffer_lengths: dict[int, int] = {}  # stream id -> Set Buffer Length (ms), for VOD pacing
        self.vod_waiting: dict[int, list] = {}  # stream id -> playlist plays sent while its first play is decided
        self._reading = False  # data_received is handling a read (_flush_after_read)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def view(self) -> SessionView:
        """What handlers see of this session. Made on each use: a stored view would be a reference
        cycle (session -> view -> session) that keeps every ended session alive until the cyclic
        GC's next full collection (docs/performance.md, "Memory under churn")."""
        return SessionView(self)

    @property
    def handshake_complete(self) -> bool:
        return self.conn.handshake_complete

    @property
    def bytes_out(self) -> int:
        for stream in self.streams.values():
            if type(stream) is PlayerStream:
                stream.sync_counters()  # bytes a PlayerCohort sent for it
        return self.conn.bytes_sent + self.stats.media_bytes_out

    # -- IMonitoredClient -------------------------------------------------------------------

    def describe(self, now: float) -> dict:
        """The connection as /stat and /api/v1/clients show it."""
        port = self.peer.rsplit(":", 1)[-1]
        params = self.connect_params
        stats = self.stats
        return {
            "id": self.id,
            "address": self.host,
            "port": int(port) if port.isdigit() else 0,
            "protocol": self.protocol,
            "app": self.app,
            "streams": sorted(stats.stream_names),
            "role": stats.role,
            "time": now - self.started,
            "flashver": str(params.get("flashVer", "")),
            "swfurl": str(params.get("swfUrl", "")),
            "pageurl": str(params.get("pageUrl", "")),
            "tcurl": str(params.get("tcUrl", "")),
            "bytes_in": stats.bytes_in,
            "bytes_out": self.bytes_out,
            "dropped": stats.dropped + sum(s.dropped for s in self.streams.values() if IPlayerStream.providedBy(s)),
        }

    # -- input ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed bytes; raises RemoteProtocolError on garbage (the protocol closes us)."""
        self.stats.bytes_in += len(data)
        reading, self._reading = self._reading, True
        try:
            for msg in self.conn.receive_data(data):
                if self.state is State.CLOSED:
                    break
                t = type(msg)
                if t is m.AudioMessage or t is m.VideoMessage or t is m.DataMessage:
                    self._media(msg)
                elif t is m.CommandMessage:
                    self._command(msg)
                elif t is m.UserControl:
                    self._user_control(msg)
                # SetChunkSize/Abort were applied by the reader; Ack/WindowAck/PeerBandwidth need nothing.
        finally:
            self._reading = reading
            self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.link.write(data)

    def _flush_after_read(self) -> None:
        """``flush``, except while ``data_received`` handles a read: then its replies go out in one
        write when the read is handled (a play's StreamBegin, Play.Reset, Play.Start and
        |RtmpSampleAccess were four writes, i.e. four system calls). Media, ``close`` and everything
        outside a read still flush at once (``write_media`` sends what is queued first)."""
        if not self._reading:
            self.flush()

    def write_media(self, header: bytes, body: bytes) -> None:
        """A player's chunk header and body (commands queued before it go first)."""
        if self.conn.pending:
            self.flush()
        self.stats.media_bytes_out += len(header) + len(body)
        self.link.write_sequence([header, body])

    # -- output helpers ---------------------------------------------------------------------

    def send_user_control(self, msg: m.UserControl) -> None:
        self.conn.send(msg)
        self._flush_after_read()

    def command(self, name: str, tid: float, obj: Any = None, *args: Any, stream_id: int = 0) -> None:
        self.conn.send(m.CommandMessage(stream_id, name, tid, obj, list(args), amf3=self.amf3))
        self._flush_after_read()

    def status(self, stream_id: int, level: str, code: str, description: str, **extra: Any) -> None:
        info = {"level": level, "code": code, "description": description}
        info.update(extra)
        self.command("onStatus", 0, None, info, stream_id=stream_id)

    def _error(self, tid: float, code: str, description: str) -> None:
        self.command("_error", tid, None, {"level": "error", "code": code, "description": description})

    def close(self, reason: str) -> None:
        if self.state is not State.CLOSED:
            self.close_reason = reason
            self.flush()
            self.link.close(reason)

    # -- media ------------------------------------------------------------------------------

    def _media(self, msg) -> None:
        stream = self.streams.get(msg.stream_id)
        if type(stream) is not PublisherStream:
            # Media on a stream that is not publishing: ignore, as FMS does, but don't let it pass.
            return
        stream.last_media_time = self.clock.seconds()
        live = stream.live
        t = type(msg)
        if t is m.VideoMessage:
            live.video(msg.timestamp, msg.payload)
        elif t is m.AudioMessage:
            live.audio(msg.timestamp, msg.payload)
        else:
            values = msg.values
            if msg.amf3:
                return
            if values and values[0] == "@setDataFrame":
                # The publisher asks us to store this data frame; players get it as "onMetaData".
                if len(values) >= 3 and values[1] == "onMetaData":
                    live.set_metadata(msg.timestamp, msg.payload[len(_SET_DATA_FRAME):])
                return
            if values and values[0] == "onMetaData":
                live.set_metadata(msg.timestamp, msg.payload)
                return
            if values and values[0] == "@clearDataFrame":
                live.metadata = None
                return
            live.data(msg.timestamp, msg.payload)

    # -- commands ---------------------------------------------------------------------------

    def _command(self, cmd: m.CommandMessage) -> None:
        name = cmd.name
        state = self.state
        if state is State.CONNECTING:
            if len(self._queued) >= _MAX_QUEUED_COMMANDS:
                raise MessageError(f"more than {_MAX_QUEUED_COMMANDS} commands sent before connect was answered")
            self._queued.append(cmd)
            return
        if state is State.HANDSHAKE and name != "connect":
            if name in ("_result", "_error", "onStatus"):
                return
            raise MessageError(f"command {name!r} before connect")
        handler = _COMMANDS.get(name)
        if handler is None:
            if name in ("_result", "_error", "onStatus", "onBWDone", "_checkbw_result"):
                return
            if cmd.transaction_id:
                self._error(cmd.transaction_id, "NetConnection.Call.Failed", f"Method not found ({name}).")
            return
        handler(self, cmd)

    def _connect(self, cmd: m.CommandMessage) -> None:
        if self.state is not State.HANDSHAKE:
            raise MessageError("second connect on one connection")
        obj = cmd.command_object if isinstance(cmd.command_object, dict) else {}
        app = obj.get("app")
        if not isinstance(app, str):
            raise MessageError("connect without an app name")
        app_name, args = _split_query(app)
        app_name = app_name.strip("/")
        self.connect_params = dict(obj)
        self.connect_params["args"] = args
        self.amf3 = cmd.amf3
        app_config = self.config.apps.get(app_name)
        if app_config is None:
            self._log.info("connect from {peer} to unknown app {app!r} rejected", peer=self.peer, app=app_name)
            self._error(cmd.transaction_id, "NetConnection.Connect.Rejected", f"No such application: {app_name}")
            self.close(f"unknown app {app_name!r}")
            return
        self.app = app_name
        self.app_config = app_config
        if app_config.write_merge_ms:
            self.link.merge_writes(app_config.write_merge_ms / 1000.0)
        self.chain = self.chains.get(app_name)

        def text(key: str) -> str:
            v = obj.get(key)
            return v if isinstance(v, str) else ""

        request = ConnectRequest(
            app=app_name, tc_url=text("tcUrl"), page_url=text("pageUrl"), swf_url=text("swfUrl"),
            flash_ver=text("flashVer"), args=args, params=dict(obj), session=self.view,
        )
        tid = cmd.transaction_id

        def accept(req: ConnectRequest) -> None:
            if self.closed:
                raise Rejected("NetConnection.Connect.Rejected", "connection closed")
            self._accept_connect(tid, obj)

        def refused(f) -> None:
            f.trap(Rejected)
            self.stats.rejected("connect")
            if self.state is State.CONNECTING:
                self.state = State.CONNECTED  # refused: nothing more is queued; we close below
            self._queued.clear()
            if not self.closed:
                self._error(tid, f.value.code, f.value.description or "Connection rejected.")
                self.close(f"connect rejected: {f.value}")

        self.state = State.CONNECTING
        if self.chain is None:
            accept(request)
        else:
            self.chain.run("connect", request, accept).addErrback(refused)

    def _accept_connect(self, tid: float, obj: dict) -> None:
        self.state = State.CONNECTED
        encoding = obj.get("objectEncoding", 0)
        c = self.conn
        c.send(m.WindowAcknowledgementSize(self.config.window_ack_size))
        c.send(m.SetPeerBandwidth(self.config.peer_bandwidth, 2))
        c.send(m.SetChunkSize(self.config.out_chunk_size))
        props: dict[str, Any] = {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0}
        if any(k in obj for k in ("fourCcList", "videoFourCcInfoMap", "audioFourCcInfoMap", "capsEx")):
            # Enhanced RTMP: we forward every codec untouched (HEVC, AV1, VP9, Opus...).
            fourccs = obj.get("fourCcList")
            if isinstance(fourccs, list):
                props["fourCcList"] = [f for f in fourccs if isinstance(f, str)]
            props["videoFourCcInfoMap"] = {"*": float(_FOURCC_CAN_FORWARD)}
            props["audioFourCcInfoMap"] = {"*": float(_FOURCC_CAN_FORWARD)}
            props["capsEx"] = 0.0
        info = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": float(encoding) if isinstance(encoding, (int, float)) and not isinstance(encoding, bool) else 0.0,
        }
        self.command("_result", tid, props, info)
        queued, self._queued = self._queued, []
        for cmd in queued:
            if self.closed:
                break
            self._command(cmd)
        self._flush_after_read()

    def _create_stream(self, cmd: m.CommandMessage) -> None:
        if len(self.streams) >= self.limits.max_streams_per_connection:
            self._error(cmd.transaction_id, "NetConnection.Call.Failed", "Too many streams on this connection.")
            return
        sid = self._next_stream_id
        self._next_stream_id += 1
        for stream in self.streams.values():
            if type(stream) is PlayerStream:
                # Another NetStream shares the media chunk streams: players here deliver alone.
                stream.leave_cohort()
        self.streams[sid] = None
        self.command("_result", cmd.transaction_id, None, float(sid))

    def _delete_stream(self, cmd: m.CommandMessage) -> None:
        sid = cmd.arguments[0] if cmd.arguments else None
        if isinstance(sid, float) and sid.is_integer() and int(sid) in self.streams:
            self._close_stream(int(sid), "deleteStream")
            del self.streams[int(sid)]

    def _close_stream_cmd(self, cmd: m.CommandMessage) -> None:
        if cmd.stream_id in self.streams:
            self._close_stream(cmd.stream_id, "closeStream")
            self.streams[cmd.stream_id] = None

    def _check_stream(self, cmd: m.CommandMessage) -> bool:
        if cmd.stream_id not in self.streams:
            raise MessageError(f"{cmd.name} on stream {cmd.stream_id}, which was never created")
        return True

    def _stream_name(self, cmd: m.CommandMessage, code: str) -> tuple[str, dict] | None:
        raw = cmd.arguments[0] if cmd.arguments else None
        if not isinstance(raw, str):
            self.status(cmd.stream_id, "error", code, f"{cmd.name} without a stream name")
            return None
        name, args = _split_query(raw)
        problem = None
        if not name:
            problem = "empty stream name"
        elif len(name.encode("utf-8", "surrogatepass")) > self.limits.max_stream_name_length:
            problem = f"stream name longer than {self.limits.max_stream_name_length} bytes"
        elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            problem = "control character in stream name"
        if problem:
            self._log.info("{peer}: {cmd} refused: {problem}", peer=self.peer, cmd=cmd.name, problem=problem)
            self.status(cmd.stream_id, "error", code, problem)
            return None
        return name, args

    def _publish(self, cmd: m.CommandMessage) -> None:
        self._check_stream(cmd)
        sid = cmd.stream_id
        if self.streams[sid] is not None:
            self.status(sid, "error", "NetStream.Publish.BadName", "Stream is already in use on this NetStream.")
            return
        parsed = self._stream_name(cmd, "NetStream.Publish.BadName")
        if parsed is None:
            return
        name, args = parsed
        mode = cmd.arguments[1] if len(cmd.arguments) > 1 and isinstance(cmd.arguments[1], str) else "live"
        request = PublishRequest(app=self.app, name=name, mode=mode, args=args, session=self.view)
        admission.decide(self, "publish", request, sid, lambda req: admission.go_live(self, sid, req))

    def live(self, name: str) -> LiveStream:
        """This app's live stream ``name``, created with the app's cache bounds if new."""
        app = self.app_config
        return self.hub.get_or_create(self.app, name, gop_cache=app.gop_cache, gop_max_frames=app.gop_cache_max_frames, gop_max_bytes=app.gop_cache_max_bytes)

    def _play(self, cmd: m.CommandMessage) -> None:
        self._check_stream(cmd)
        sid = cmd.stream_id
        if self.streams[sid] is PENDING:
            if vod.playlist_play(self, cmd):
                return
            self.status(sid, "error", "NetStream.Play.Failed", "A play on this NetStream is still being decided.")
            return
        if vod.playlist_play(self, cmd):
            return
        if self.streams[sid] is not None:
            # A second play on the same NetStream replaces the first (Flash does this on reconnect).
            self._close_stream(sid, "play again")
            self.streams[sid] = None
        parsed = self._stream_name(cmd, "NetStream.Play.StreamNotFound")
        if parsed is None:
            return
        name, args = parsed
        a = cmd.arguments

        def number(i: int, default: float) -> float:
            v = a[i] if len(a) > i else None
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default

        reset = a[3] if len(a) > 3 and isinstance(a[3], bool) else True
        request = PlayRequest(app=self.app, name=name, start=number(1, -2.0), duration=number(2, -1.0), reset=reset, args=args, session=self.view)
        admission.decide(self, "play", request, sid,
                         lambda req: None if vod.play_decided(self, sid, req) else self._start_play(sid, req.name, dict(req.args), req.reset))

    def _start_play(self, sid: int, name: str, args: dict, reset: bool) -> None:
        live = self.live(name)
        player = PlayerStream(self, sid, live, name, args)
        self.streams[sid] = player
        self.stats.began("player", name)
        # Order players expect: StreamBegin, Play.Reset, Play.Start, |RtmpSampleAccess,
        # then metadata, sequence headers and media from a keyframe.
        self.send_user_control(m.UserControl.stream_begin(sid))
        if reset:
            self.status(sid, "status", "NetStream.Play.Reset", f"Playing and resetting {name}.", details=name)
        self.status(sid, "status", "NetStream.Play.Start", f"Started playing {name}.", details=name)
        self.conn.send_raw(DATA, _SAMPLE_ACCESS, stream_id=sid, csid=CSID_DATA)
        self._flush_after_read()
        player.playing = True
        live.add_sink(player)

    def _play2(self, cmd: m.CommandMessage) -> None:
        self._check_stream(cmd)
        params = cmd.arguments[0] if cmd.arguments and isinstance(cmd.arguments[0], dict) else {}
        new = params.get("streamName")
        if not isinstance(new, str):
            self.status(cmd.stream_id, "error", "NetStream.Play.Failed", "play2 without streamName")
            return
        if self.streams.get(cmd.stream_id) is PENDING:
            return
        if vod.play2(self, cmd, new):
            return
        # Switch streams (bitrate change): decided like a play, then the old stream stops.
        fake = m.CommandMessage(cmd.stream_id, "play", 0, None, [new, -2.0, -1.0, False])
        self.status(cmd.stream_id, "status", "NetStream.Play.Transition", f"Transitioned to {new}.", details=new)
        self._play(fake)

    def _player(self, cmd: m.CommandMessage) -> PlayerStream | None:
        self._check_stream(cmd)
        s = self.streams[cmd.stream_id]
        return s if type(s) is PlayerStream else None

    def _pause(self, cmd: m.CommandMessage) -> None:
        if self._check_stream(cmd) and vod.stream_command(self, cmd):
            return
        p = self._player(cmd)
        if p is not None:
            p.pause(bool(cmd.arguments[0]) if cmd.arguments else True)

    def _seek(self, cmd: m.CommandMessage) -> None:
        if self._check_stream(cmd) and vod.stream_command(self, cmd):
            return
        p = self._player(cmd)
        if p is not None:
            p.seek()

    def _receive_av(self, cmd: m.CommandMessage) -> None:
        p = self._player(cmd)
        if p is None:
            return
        flag = bool(cmd.arguments[0]) if cmd.arguments else True
        if cmd.name == "receiveAudio":
            p.set_receive_audio(flag)
        else:
            p.set_receive_video(flag)

    # -- user control -------------------------------------------------------------------------

    def _user_control(self, msg: m.UserControl) -> None:
        if msg.event == m.UserControlEvent.PING_REQUEST:
            self.conn.send(m.UserControl.ping_response(msg.value))
        elif msg.event == m.UserControlEvent.SET_BUFFER_LENGTH:
            vod.set_buffer_length(self, msg)
        # PingResponse: nothing to do beyond having received bytes.

    def ping(self) -> None:
        self.last_ping_sent = self.clock.seconds()
        self.conn.send(m.UserControl.ping_request(int((self.last_ping_sent - self.started) * 1000)))
        self.flush()

    # -- stream teardown ----------------------------------------------------------------------

    def _close_stream(self, sid: int, why: str) -> None:
        s = self.streams.get(sid)
        if s is None or s is PENDING:
            return
        if type(s) is PublisherStream:
            if s.live.publisher is s:
                s.live.stop()
                if not self.closed:
                    self.status(sid, "status", "NetStream.Unpublish.Success", f"{s.name} is now unpublished.", details=s.name)
            self._closed_event(s.name, "publisher", why)
        elif type(s) is PlayerStream:
            s.close()
            if not self.closed and why == "closeStream":
                self.status(sid, "status", "NetStream.Play.Stop", f"Stopped playing {s.name}.", details=s.name)
            self._closed_event(s.name, "player", why)
        elif type(s) is VodPlayer:
            vod.stream_closed(self, sid, s, why)

    def _closed_event(self, name: str, role: str, why: str) -> None:
        if self.chain is not None:
            self.chain.close_stream(StreamClosed(app=self.app, name=name, role=role, reason=why, session=self.view))

    def redirect(self, sid: int, new_name: str) -> None:
        """Control API: move a publish or play on ``sid`` to another stream name (nginx-rtmp's redirect).

        The stream is closed and the same request made again under the new name, through the
        handler chain like any other.
        """
        st = self.streams.get(sid)
        if st is None or st is PENDING or self.closed:
            return
        if type(st) is PublisherStream:
            mode = st.mode
            self._close_stream(sid, "redirect")
            self.streams[sid] = None
            self._command(m.CommandMessage(sid, "publish", 0, None, [new_name, mode]))
        else:
            self._close_stream(sid, "redirect")
            self.streams[sid] = None
            self._command(m.CommandMessage(sid, "play", 0, None, [new_name, -2.0, -1.0, True]))
        self.flush()

    def evicted(self, pub: PublisherStream, reason: str) -> None:
        """Another publisher took our stream over (publisher_clash)."""
        self.streams[pub.stream_id] = None
        self._closed_event(pub.name, "publisher", reason)
        if not self.closed:
            self.status(pub.stream_id, "error", "NetStream.Publish.BadName", reason)
            self.close(reason)

    def transport_resumed(self) -> None:
        for s in list(self.streams.values()):
            if type(s) is PlayerStream and s.backlog:
                s.flush()
            elif type(s) is VodPlayer:
                s.resume()

    def shutdown(self) -> None:
        """Server shutdown: players get StreamEOF + UnpublishNotify, then we close."""
        for sid, s in list(self.streams.items()):
            if type(s) is PlayerStream:
                self.send_user_control(m.UserControl.stream_eof(sid))
                self.status(sid, "status", "NetStream.Play.UnpublishNotify", f"{s.name} is now unpublished (server shutdown).")
        self.close("server shutdown")

    def connection_lost(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        if not self.close_reason:
            self.close_reason = reason
        for sid in list(self.streams):
            self._close_stream(sid, "connection lost")
        self.streams.clear()


_COMMANDS = {
    "connect": Session._connect,
    "createStream": Session._create_stream,
    "releaseStream": courtesy.release_stream,
    "FCPublish": courtesy.fc_publish,
    "FCUnpublish": courtesy.fc_unpublish,
    "FCSubscribe": courtesy.fc_subscribe,
    "getStreamLength": vod.get_stream_length,
    "_checkbw": courtesy.checkbw,
    "deleteStream": Session._delete_stream,
    "closeStream": Session._close_stream_cmd,
    "publish": Session._publish,
    "play": Session._play,
    "play2": Session._play2,
    "pause": Session._pause,
    "pauseRaw": Session._pause,
    "seek": Session._seek,
    "receiveAudio": Session._receive_av,
    "receiveVideo": Session._receive_av,
}
