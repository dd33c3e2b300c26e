"""Recorded playback on an RTMP NetStream: ``VodPlayer`` and the session's VOD decisions.

Play semantics (Adobe RTMP specification 1.0, 7.2.2.1 ``play``): ``start`` -2 plays the live
stream if there is one and the recorded one otherwise (and waits for a live one when neither
exists), -1 plays only the live stream, ``start >= 0`` plays the recorded stream from that
position.  On the wire clients send milliseconds: librtmp (rtmpdump) sends ``-A`` seconds as
``start`` in ms and ``-B`` as ``duration = stop - start`` in ms; FFmpeg sends its ``rtmp_live``
setting times 1000 (``-2000`` any, ``-1000`` live, ``0`` recorded); Flash Player sends its
seconds times 1000.  So -1 and -1000 mean "live only", any other negative value "live, else
recorded".  ``duration`` < 0 plays to the end, 0 plays the single frame at ``start``, > 0 plays
that many milliseconds.  ``reset`` false on a NetStream already playing a recorded stream adds
the name to its playlist; ``play2`` switches to another file at the current position.

Which application handlers serve files is found by interface: the first ``IVodProvider`` of the
app's chain that has the name.  Only after the whole chain said yes to the play (access rules
and keys apply as to live streams).

Pacing: a player is sent at most its buffer length ahead of real time (the client's Set Buffer
Length, 7.1.7 event 3, capped by the provider's ``buffer_limit_ms``), so a file is never sent
whole and the server holds one message at a time.  When the transport is full (push-producer
pause) sending stops until it drains.  A tick sends at most ``_BATCH`` messages, so a fast
client cannot keep the reactor from other connections.

Messages (in the order FMS-compatible players expect): Stream Is Recorded and Stream Begin
(7.1.7), ``NetStream.Play.Reset`` (when ``reset``) and ``NetStream.Play.Start``,
``|RtmpSampleAccess``, ``onMetaData``, the sequence headers, media.  At the end:
``onPlayStatus`` ``NetStream.Play.Complete``, Stream EOF, ``NetStream.Play.Stop``.  ``seek``
answers ``NetStream.Seek.Notify`` and ``NetStream.Play.Start`` and sends metadata and headers
again, timestamps being the file's positions; ``pause`` sends Stream EOF and
``NetStream.Pause.Notify``, ``unpause`` Stream Begin and ``NetStream.Unpause.Notify`` and goes
on from where it stopped.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rtmpserver.chain import Chain
from rtmpserver.codec import messages as m
from rtmpserver.codec.chunk import CSID_AUDIO, CSID_DATA, CSID_VIDEO, continuation
from rtmpserver.errors import Rejected, RemoteProtocolError
from rtmpserver.interfaces import IMonitoredClient, IVodProvider
from rtmpserver.requests import PlayRequest
from rtmpserver.session.admission import PENDING

if TYPE_CHECKING:
    from rtmpserver.session.netconnection import Session

__all__ = [
    "VodPlayer", "play_decided", "queue_play", "switch", "get_stream_length", "providers", "live_only",
    "playlist_play", "play2", "stream_command", "set_buffer_length", "stream_closed",
]

_log = Logger(namespace="rtmpserver.session.vod")

_DATA = 18
_VIDEO = 9
# The buffer length assumed until the client sends Set Buffer Length (FFmpeg's default is 3 s).
DEFAULT_BUFFER_MS = 3000
# Messages sent per reactor turn at most; the rest go on the next turn.
_BATCH = 64
# Smallest wait between ticks, seconds.
_MIN_WAIT = 0.005
_SAMPLE_ACCESS = m.data_payload("|RtmpSampleAccess", True, True)
# Playlist plays that wait for the NetStream's first play to be decided: how many, how often
# they look, and how long past the app's handler_timeout they wait for a file to open.
_MAX_WAITING = 16
_RETRY = 0.02
_OPEN_WAIT = 10.0


def live_only(start: float) -> bool:
    """``start`` -1 (as specified) or -1000 (-1 s in milliseconds, as FFmpeg and Flash send it)."""
    return start in (-1.0, -1000.0)


def providers(session: Session) -> list[Any]:
    """The app's ``IVodProvider`` handlers in chain order (none for a chain that is not a ``Chain``,
    e.g. a test's stand-in)."""
    chain = session.chain
    if not isinstance(chain, Chain):
        return []
    return [h for _, h in chain.handlers if IVodProvider.providedBy(h)]


def _open(session: Session, name: str) -> defer.Deferred:
    """A Deferred firing with (stream, provider) of the first provider that has ``name``, or
    (None, None); it fails with Rejected when a provider refuses.  Providers may open files on a
    thread (``open_stream`` returning a Deferred); a synchronous one gives an already-fired
    Deferred."""
    found = providers(session)

    def attempt(i: int) -> defer.Deferred:
        if i == len(found):
            return defer.succeed((None, None))
        d = defer.maybeDeferred(found[i].open_stream, name)
        return d.addCallback(lambda stream: (stream, found[i]) if stream is not None else attempt(i + 1))

    return attempt(0)


def _settle(d: defer.Deferred, act) -> bool:
    """Run ``act(result)`` with ``d``'s result (a Failure on error).  When ``d`` has already
    fired, ``act`` runs now, its exceptions propagate and True is returned; otherwise it runs
    when ``d`` fires (its exceptions are logged) and False is returned."""
    now = True
    got: list = []

    def arrived(result):
        if now:
            got.append(result)
            return None
        try:
            act(result)
        except Exception:
            _log.failure("vod: acting on an opened file failed")
        return None

    d.addBoth(arrived)
    now = False
    if got:
        act(got[0])
        return True
    return False


def _refuse(session: Session, sid: int, code: str, description: str) -> None:
    session.stats.rejected("play")
    if not session.closed:
        session.status(sid, "error", code, description)


def _failure_code(f: Failure) -> tuple[str, str]:
    if f.check(Rejected):
        return f.value.code or "NetStream.Play.Failed", f.value.description or "play refused"
    _log.failure("vod: opening a file failed", f)
    return "NetStream.Play.Failed", "internal error"


def _buffer_cap(provider) -> int:
    return max(100, int(provider.buffer_limit_ms()))


def play_decided(session: Session, sid: int, request) -> bool:
    """The chain said yes to ``request``: start a recorded play if that is what it is.

    Returns False when the play is a live one (the caller starts it); raises Rejected
    (``NetStream.Play.StreamNotFound``) for a recorded-only play of a name nobody has.
    """
    start = request.start
    if live_only(start) or not providers(session):
        return False
    if start < 0:
        live = session.hub.get(session.app, request.name)
        if live is not None and live.active:
            return False
    # A synchronous provider answers now: refusals go back through the chain (its handlers'
    # proceed() fails) and a live fallback is the caller's.  A provider that opens on a thread
    # answers later: the NetStream stays pending meanwhile, and the outcome is sent from here.
    state: dict = {}

    def now(result) -> None:
        if isinstance(result, Failure):
            result.raiseException()
        stream, provider = result
        if stream is None:
            if start >= 0:
                raise Rejected("NetStream.Play.StreamNotFound", f"{request.name} not found.")
            state["live"] = True
            return
        _begin(session, sid, request, stream, provider)

    def later(result) -> None:
        if isinstance(result, Failure):
            if session.streams.get(sid) is PENDING:
                session.streams[sid] = None
            _refuse(session, sid, *_failure_code(result))
            return
        stream, provider = result
        if session.closed or session.streams.get(sid) is not PENDING:
            if stream is not None:
                stream.close()
            return
        if stream is None:
            if start >= 0:
                session.streams[sid] = None
                _refuse(session, sid, "NetStream.Play.StreamNotFound", f"{request.name} not found.")
            else:
                session._start_play(sid, request.name, dict(request.args), request.reset)
            return
        _begin(session, sid, request, stream, provider)

    box = {"sync": True}

    def act(result) -> None:
        (now if box["sync"] else later)(result)

    synchronous = _settle(_open(session, request.name), act)
    box["sync"] = False
    if synchronous:
        return not state.get("live", False)
    return True


def _begin(session: Session, sid: int, request, stream, provider) -> None:
    player = VodPlayer(session, sid, _buffer_cap(provider))
    session.streams[sid] = player
    session.stats.began("player", request.name)
    player.begin(stream, request.name, max(0, int(request.start)), int(request.duration), request.reset)


def queue_play(session: Session, player: VodPlayer, request) -> None:
    """``play`` with reset false on a NetStream playing a recorded stream: decided by the chain
    like any play, then added to the playlist (refusals and unknown names are reported with an
    error status and leave the playlist as it was)."""

    # Until this play is decided and its file opened, the player does not announce the end of
    # the playlist (it waits, "starved", if the current file ends meanwhile).
    player.expecting += 1
    pending = [True]

    def settled() -> None:
        if pending[0]:
            pending[0] = False
            player.expecting -= 1

    def final(req):
        if player.closed or session.closed:
            raise Rejected("NetStream.Play.Failed", "stream closed before the decision")

        def got(result) -> None:
            settled()
            _opened(session, player, req, result, player.enqueue, max(0, int(req.start)), int(req.duration))
            player.check_starved()

        _settle(_open(session, req.name), got)

    def refused() -> None:
        settled()
        player.check_starved()

    _decide(session, player.stream_id, request, final, refused)


def _opened(session: Session, player: VodPlayer, req, result, use, *args) -> None:
    """A playlist or play2 file has been opened (or not): hand it to ``use`` or say why not."""
    if isinstance(result, Failure):
        _refuse(session, player.stream_id, *_failure_code(result))
        return
    stream, _ = result
    if player.closed or session.closed:
        if stream is not None:
            stream.close()
        return
    if stream is None:
        _refuse(session, player.stream_id, "NetStream.Play.StreamNotFound", f"{req.name} not found.")
        return
    session.stats.began("player", req.name)
    use(stream, req.name, *args)


def switch(session: Session, player: VodPlayer, request) -> None:
    """``play2``: replace the file being played by ``request.name`` at the current position."""

    def final(req):
        if player.closed or session.closed:
            raise Rejected("NetStream.Play.Failed", "stream closed before the decision")
        _settle(_open(session, req.name), lambda result: _opened(session, player, req, result, player.switch))

    _decide(session, player.stream_id, request, final)


def _decide(session: Session, sid: int, request, final, on_refused=None) -> None:
    def refused(f) -> None:
        f.trap(Rejected)
        session.stats.rejected("play")
        if not session.closed:
            session.status(sid, "error", f.value.code, f.value.description or "play refused")
        if on_refused is not None:
            on_refused()

    if session.chain is None:
        try:
            final(request)
        except Rejected as e:
            session.stats.rejected("play")
            session.status(sid, "error", e.code, e.description)
            if on_refused is not None:
                on_refused()
        return
    session.chain.run("play", request, final).addErrback(refused)


def get_stream_length(session: Session, cmd: m.CommandMessage) -> None:
    """``getStreamLength(name)``: the recorded stream's duration in seconds (0 for live or unknown).

    Only names the app's providers have are measured; the answer says nothing about a file
    beyond its length, and a name that leaves the provider's directory is "unknown"."""
    raw = cmd.arguments[0] if cmd.arguments and isinstance(cmd.arguments[0], str) else ""
    name = raw.partition("?")[0]
    tid = cmd.transaction_id
    if not name or session.app is None:
        session.command("_result", tid, None, 0.0)
        return

    def answer(result) -> None:
        length = 0.0
        if not isinstance(result, Failure) and result[0] is not None:
            length = result[0].duration_ms / 1000.0
            result[0].close()
        if not session.closed:
            session.command("_result", tid, None, length)

    _settle(_open(session, name), answer)


class _Item:
    __slots__ = ("stream", "name", "start", "duration")

    def __init__(self, stream, name: str, start: int, duration: int) -> None:
        self.stream = stream
        self.name = name
        self.start = start
        self.duration = duration


@implementer(IMonitoredClient)
class VodPlayer:
    """A NetStream playing recorded files (one at a time, more queued as a playlist)."""

    def __init__(self, session: Session, stream_id: int, buffer_cap_ms: int) -> None:
        self.session = session
        self.stream_id = stream_id
        self.buffer_cap_ms = buffer_cap_ms
        self.clock = session.clock
        self.name = ""
        self.stream = None
        self.playlist: deque[_Item] = deque()
        self.offset = 0  # added to file times: playlist items after the first continue the timeline
        self.stop_at: int | None = None  # file time at which the current item ends
        self.base_clock = 0.0  # clock seconds at which the player was at output time base_ts
        self.base_ts = 0
        self.last_ts = -1  # last output timestamp sent
        self.paused = False
        self.finished = False
        self.closed = False
        self.expecting = 0  # playlist files being opened
        self.starved = False  # the current file ended while the next one was being opened
        self.bytes_sent = 0
        self.messages_sent = 0
        self._call = None

    # -- monitoring ---------------------------------------------------------------------------

    def describe(self, now: float) -> dict:
        return {**self.session.describe(now), "timestamp": max(0, self.last_ts)}

    @property
    def buffer_ms(self) -> int:
        asked = self.session.buffer_lengths.get(self.stream_id, DEFAULT_BUFFER_MS)
        return max(0, min(asked, self.buffer_cap_ms))

    # -- starting -----------------------------------------------------------------------------

    def begin(self, stream, name: str, start: int, duration: int, reset: bool) -> None:
        s = self.session
        sid = self.stream_id
        self.stream, self.name = stream, name
        s.send_user_control(m.UserControl.stream_is_recorded(sid))
        s.send_user_control(m.UserControl.stream_begin(sid))
        if reset:
            s.status(sid, "status", "NetStream.Play.Reset", f"Playing and resetting {name}.", details=name)
        s.status(sid, "status", "NetStream.Play.Start", f"Started playing {name}.", details=name)
        s.conn.send_raw(_DATA, _SAMPLE_ACCESS, stream_id=sid, csid=CSID_DATA)
        self._start_item(start, duration)

    def _start_item(self, start: int, duration: int, follow: bool = False) -> None:
        landed = self.stream.seek(start) if start > 0 else 0
        if follow:
            # A playlist item's timeline starts right after the last message sent.
            self.offset = max(0, self.last_ts + 1) - landed
        if duration < 0:
            self.stop_at = None
        else:
            self.stop_at = start + max(duration, 1)  # 0: the frame at start only
        self._headers(landed)
        self._rebase(landed + self.offset)
        self._schedule(0)

    def _headers(self, landed: int) -> None:
        """onMetaData and the sequence headers, stamped with the position played from."""
        s = self.session
        ts = landed + self.offset
        meta = dict(self.stream.metadata())
        s.conn.send_raw(_DATA, m.data_payload("onMetaData", meta), stream_id=self.stream_id, timestamp=ts, csid=CSID_DATA)
        s.flush()
        for msg in self.stream.sequence_headers():
            self._send(msg.type_id, ts, msg.payload)

    def _rebase(self, ts: int) -> None:
        self.base_clock = self.clock.seconds()
        self.base_ts = ts

    def enqueue(self, stream, name: str, start: int, duration: int) -> None:
        if (self.finished or self.starved) and not self.playlist:
            # The playlist had run out (or was waiting for this file): it plays now.
            if self.starved:
                self.starved = False
                self._play_status("NetStream.Play.Switch", self.last_ts, details=name)
            self._next(_Item(stream, name, start, duration))
            return
        self.playlist.append(_Item(stream, name, start, duration))

    def check_starved(self) -> None:
        """A playlist file failed to open: if the player was waiting for it, the playlist ends."""
        if self.starved and not self.expecting and not self.playlist and not self.closed:
            self.starved = False
            self._item_done()

    def switch(self, stream, name: str) -> None:
        """play2: the new file from the keyframe at or before the position reached, continuing
        the timeline (its first message follows the last one sent)."""
        position = max(0, self.last_ts - self.offset)
        old, self.stream, self.name = self.stream, stream, name
        if old is not None:
            old.close()
        landed = stream.seek(position) if position > 0 else 0
        self.offset = max(0, self.last_ts + 1) - landed
        self.finished = False
        self._play_status("NetStream.Play.TransitionComplete", landed + self.offset)
        self._headers(landed)
        self._rebase(landed + self.offset)
        if not self.paused:
            self._schedule(0)

    # -- per-NetStream commands -----------------------------------------------------------------

    def pause(self, flag: bool, position_ms: float | None) -> None:
        s, sid = self.session, self.stream_id
        if flag:
            if self.paused:
                return
            self.paused = True
            self._cancel()
            s.send_user_control(m.UserControl.stream_eof(sid))
            s.status(sid, "status", "NetStream.Pause.Notify", f"Paused {self.name}.", details=self.name)
            return
        if not self.paused:
            return
        self.paused = False
        s.send_user_control(m.UserControl.stream_begin(sid))
        s.status(sid, "status", "NetStream.Unpause.Notify", f"Unpaused {self.name}.", details=self.name)
        # The client still holds what it buffered: go on from the next unsent message, paced from
        # the position it paused at (its argument, in ms) so it gets its buffer length ahead again.
        resume = self.last_ts
        if position_ms is not None and 0 <= position_ms <= self.last_ts:
            resume = int(position_ms)
        self._rebase(max(0, resume))
        if not self.finished:
            self._schedule(0)

    def seek(self, ms: float) -> None:
        s, sid = self.session, self.stream_id
        if self.stream is None:
            return
        target = max(0, int(ms) - self.offset)
        landed = self.stream.seek(target)
        self.finished = False
        self.stop_at = None if self.stop_at is None or self.stop_at <= landed else self.stop_at
        s.send_user_control(m.UserControl.stream_begin(sid))
        s.status(sid, "status", "NetStream.Seek.Notify", f"Seeking {landed + self.offset} (stream ID: {sid}).", details=self.name)
        s.status(sid, "status", "NetStream.Play.Start", f"Started playing {self.name}.", details=self.name)
        s.conn.send_raw(_DATA, _SAMPLE_ACCESS, stream_id=sid, csid=CSID_DATA)
        self._headers(landed)
        self.last_ts = landed + self.offset - 1
        self._rebase(landed + self.offset)
        if not self.paused:
            self._schedule(0)

    def resume(self) -> None:
        """The transport drained."""
        if self._call is None and not self.paused and not self.finished and not self.closed:
            self._schedule(0)

    # -- sending --------------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self.closed:
            return
        self._cancel()
        self._call = self.clock.callLater(delay, self._pump)

    def _cancel(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _send(self, type_id: int, ts: int, payload: bytes) -> None:
        w = self.session.conn.writer
        csid = CSID_VIDEO if type_id == _VIDEO else CSID_AUDIO
        header, ext = w.header(csid, ts, type_id, self.stream_id, len(payload))
        body = continuation(payload, w.chunk_size, csid, ext)
        self.session.write_media(header, body)
        self.bytes_sent += len(payload)

    def _pump(self) -> None:
        self._call = None
        if self.paused or self.closed or self.finished or self.session.closed:
            return
        stream = self.stream
        horizon = self.base_ts + int((self.clock.seconds() - self.base_clock) * 1000) + self.buffer_ms
        for _ in range(_BATCH):
            if self.session.link.paused:
                return  # resume() when the transport drains
            try:
                due = stream.next_due_ms()
                if due is not None and self.stop_at is not None and due >= self.stop_at:
                    due = None
                if due is None:
                    self._item_done()
                    return
                ts = due + self.offset
                if ts > horizon:
                    self._schedule(max(_MIN_WAIT, (ts - horizon) / 1000.0))
                    return
                msg = stream.read()
            except RemoteProtocolError as e:
                _log.warn("vod {name}: stopping at a malformed part of the file: {error}", name=self.name, error=e)
                self._item_done()
                return
            if msg is None:
                self._item_done()
                return
            ts = max(msg.timestamp + self.offset, self.last_ts if self.last_ts > 0 else 0)
            self._send(msg.type_id, ts, msg.payload)
            self.last_ts = ts
            self.messages_sent += 1
        self._schedule(0)

    def _play_status(self, code: str, ts: int, **extra: Any) -> None:
        info = {"level": "status", "code": code, **extra}
        self.session.conn.send_raw(_DATA, m.data_payload("onPlayStatus", info), stream_id=self.stream_id, timestamp=max(0, ts), csid=CSID_DATA)
        self.session.flush()

    def _item_done(self) -> None:
        if self.playlist:
            item = self.playlist.popleft()
            self._play_status("NetStream.Play.Switch", self.last_ts, details=item.name)
            self._next(item)
            return
        if self.expecting or self.session.vod_waiting.get(self.stream_id):
            self.starved = True  # enqueue() or check_starved() goes on
            return
        s, sid = self.session, self.stream_id
        self.finished = True
        self._play_status("NetStream.Play.Complete", self.last_ts, duration=self.stream.duration_ms / 1000.0, bytes=float(self.bytes_sent))
        s.send_user_control(m.UserControl.stream_eof(sid))
        s.status(sid, "status", "NetStream.Play.Stop", f"Stopped playing {self.name}.", details=self.name)

    def _next(self, item: _Item) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream, self.name = item.stream, item.name
        self.finished = False
        s, sid = self.session, self.stream_id
        s.send_user_control(m.UserControl.stream_begin(sid))
        s.status(sid, "status", "NetStream.Play.Start", f"Started playing {item.name}.", details=item.name)
        self._start_item(item.start, item.duration, follow=True)

    # -- life cycle -----------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel()
        for item in self.playlist:
            item.stream.close()
        self.playlist.clear()
        if self.stream is not None:
            self.stream.close()



# -- the session's hooks (called from rtmpserver.session.netconnection) -----------------------------


def playlist_play(session: Session, cmd: m.CommandMessage) -> bool:
    """``play`` with ``reset`` false on a NetStream playing a recorded stream: queue it (True).

    Anything else (a first play, reset true, a live NetStream) is the session's usual play (False).
    """
    sid = cmd.stream_id
    player = session.streams.get(sid)
    a = cmd.arguments
    if len(a) < 4 or a[3] is not False:
        return False
    waiting = session.vod_waiting
    if (player is PENDING or sid in waiting) and providers(session):
        # Players send a playlist's plays back to back; the first may still be being decided
        # (a handler, or a file opened on a thread): the rest wait for it, in order, bounded.
        queue = waiting.get(sid)
        if queue is None:
            queue = waiting[sid] = []
            deadline = session.clock.seconds() + session.app_config.handler_timeout + _OPEN_WAIT
            session.clock.callLater(_RETRY, _replay, session, sid, deadline)
        if len(queue) >= _MAX_WAITING:
            return False
        queue.append(cmd)
        return True
    if type(player) is not VodPlayer or player.closed:
        return False
    parsed = session._stream_name(cmd, "NetStream.Play.StreamNotFound")
    if parsed is not None:
        name, args = parsed
        queue_play(session, player, PlayRequest(
            app=session.app, name=name, start=_number(a, 1, 0.0), duration=_number(a, 2, -1.0), reset=False,
            args=args, session=session.view,
        ))
    return True


def _replay(session: Session, sid: int, deadline: float) -> None:
    if session.closed:
        session.vod_waiting.pop(sid, None)
        return
    if session.streams.get(sid) is PENDING and session.clock.seconds() < deadline:
        session.clock.callLater(_RETRY, _replay, session, sid, deadline)
        return
    queue = session.vod_waiting.pop(sid, [])
    try:
        for cmd in queue:
            if session.closed:
                break
            session._command(cmd)
    except RemoteProtocolError as e:  # e.g. the NetStream was deleted meanwhile
        session.close(f"protocol error: {e}")
    player = session.streams.get(sid)
    if type(player) is VodPlayer:
        player.check_starved()
    session.flush()


def play2(session: Session, cmd: m.CommandMessage, new: str) -> bool:
    """``play2`` on a NetStream playing a recorded stream: switch files (True)."""
    player = session.streams.get(cmd.stream_id)
    if type(player) is not VodPlayer or player.closed:
        return False
    name = new.partition("?")[0]
    args = dict(parse_qsl(new.partition("?")[2], keep_blank_values=True))
    if not name or len(name.encode("utf-8", "surrogatepass")) > session.limits.max_stream_name_length:
        session.status(cmd.stream_id, "error", "NetStream.Play.StreamNotFound", "bad stream name")
        return True
    session.status(cmd.stream_id, "status", "NetStream.Play.Transition", f"Transitioned to {name}.", details=name)
    switch(session, player, PlayRequest(app=session.app, name=name, start=0.0, duration=-1.0, reset=False, args=args, session=session.view))
    return True


def stream_command(session: Session, cmd: m.CommandMessage) -> bool:
    """``pause``/``pauseRaw``/``seek`` on a NetStream playing a recorded stream (True when it is one)."""
    player = session.streams.get(cmd.stream_id)
    if type(player) is not VodPlayer:
        return False
    if player.closed:
        return True
    a = cmd.arguments
    if cmd.name == "seek":
        target = _number(a, 0, -1.0)
        if target >= 0:
            player.seek(target)
        else:
            session.status(cmd.stream_id, "error", "NetStream.Seek.InvalidTime", "seek without a time")
        return True
    flag = bool(a[0]) if a else True
    position = _number(a, 1, -1.0)
    player.pause(flag, position if position >= 0 else None)
    return True


def set_buffer_length(session: Session, msg: m.UserControl) -> None:
    """Set Buffer Length (event 3) for a created NetStream; remembered per stream (bounded by
    the streams a connection may have)."""
    sid = msg.value
    if sid not in session.streams:
        return
    lengths = session.buffer_lengths
    lengths[sid] = msg.buffer_ms
    if len(lengths) > len(session.streams):
        for k in [k for k in lengths if k not in session.streams]:
            del lengths[k]
    player = session.streams.get(sid)
    if type(player) is VodPlayer:
        player.resume()


def stream_closed(session: Session, sid: int, player: VodPlayer, why: str) -> None:
    player.close()
    if not session.closed and why == "closeStream":
        session.status(sid, "status", "NetStream.Play.Stop", f"Stopped playing {player.name}.", details=player.name)
    session._closed_event(player.name, "player", why)


def _number(a: list, i: int, default: float) -> float:
    v = a[i] if len(a) > i else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default
