"""HTTP viewers through the application's handler chain: HTTP-FLV requests and HLS viewer sessions.

An HTTP-FLV request or an HLS playlist request becomes a ``PlayRequest`` (app, name, the URL's
query string as ``args``, an ``HTTPViewerView`` as session) and runs the app's chain exactly like
an RTMP ``play``: access rules, auth keys and signed URLs, notify's ``on_play``, third-party
handlers.  A refusal answers 403 with the handler's description (404 when the stream does not
exist), a rename serves the renamed stream, and when the viewer leaves the chain's
``close_stream`` gets a ``StreamClosed`` (role ``player``) so notify sends ``on_play_done``.

HLS has no connection to follow, so the decision is made on the playlist request and kept as a
viewer session: the segment URIs of the playlist carry a short-lived viewer token
(``/hls/<app>/<name>-<n>.ts?vt=<token>``; in the query, because players such as hls.js compare
a reloaded playlist's URIs with their queries stripped), an HMAC over app, name, expiry, client address and
session id with a per-process random key.  A segment without a valid token of a live session is
refused (403); segments are never decided one by one.  Playlist requests from the same client with
the same URL arguments reuse the session instead of running the chain again; a session with no
request for ``hls_viewer_timeout`` seconds ends (``close_stream``).

The token rides on every URI of the playlist: segments (``<name>-<n>.ts`` or ``.m4s``), fMP4
init segments (``<name>-init<k>.mp4``, EXT-X-MAP) and LL-HLS partial segments
(``<name>-<n>.<p>.ts|m4s``, EXT-X-PART and EXT-X-PRELOAD-HINT).  LL-HLS blocking requests
(draft-pantos-hls-rfc8216bis 6.2.5.2): a playlist request with ``_HLS_msn=M`` (and
``_HLS_part=P``) of a viewer session is held until the playlist has segment M (part P of M), a
request for the hinted part until that part exists; at most the provider's ``max_blocked`` per
app are held (503 beyond), each for at most three target durations (503 then, as the draft
says).  ``_HLS_*`` arguments are not handler ``args`` and do not make a new session.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from rtmpserver.errors import Rejected
from rtmpserver.requests import HTTPViewerView, PlayRequest, StreamClosed

__all__ = ["query_args", "decide_play", "HLSViewers"]

_NOT_FOUND = "NetStream.Play.StreamNotFound"
_FAILED = "NetStream.Play.Failed"
_MAX_ARGS = 32
_MAX_ARG_BYTES = 2048
_MEDIA_TYPES = {".ts": b"video/mp2t", ".m4s": b"video/iso.segment", ".mp4": b"video/mp4"}


def query_args(request) -> dict[str, str]:
    """The URL's query string as handler ``args`` (first value of each name), bounded."""
    out: dict[str, str] = {}
    for k, values in list(request.args.items())[:_MAX_ARGS]:
        if not values or len(k) > 256 or len(values[0]) > _MAX_ARG_BYTES:
            continue
        try:
            out[k.decode("utf-8")] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def _peer(request) -> tuple[str, int | str]:
    addr = request.getClientAddress()
    return str(getattr(addr, "host", "?")), getattr(addr, "port", "")


def _url(request) -> str:
    """The request URL without its query string (no key or signature may leak through it)."""
    path = request.uri.split(b"?", 1)[0].decode("utf-8", "replace")[:1024]
    host = (request.getHeader(b"host") or b"").decode("ascii", "replace")[:256]
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host}{path}" if host else path


def _answer(request, code: int, text: str) -> None:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.write(text.encode("utf-8", "replace") + b"\n")
    request.finish()


def decide_play(factory, request, protocol: str, app: str, name: str,
                final: Callable[[PlayRequest, HTTPViewerView], Any],
                args: dict[str, str] | None = None) -> tuple[Any, Any]:
    """Run ``app``'s chain for an HTTP viewer; ``final(play_request, view)`` acts once it has proceeded.

    Answers the HTTP request itself on refusal (403, or 404 for an unknown stream or app).
    Returns (a Deferred that fires once decided, ``server.NOT_DONE_YET``) or (None, response body).
    """
    chain = factory.chains.get(app)
    if chain is None or app not in factory.config.apps:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return None, f"no application {app}\n".encode()
    host, port = _peer(request)
    if args is None:
        args = query_args(request)
    view = HTTPViewerView(protocol, host, port, app, _url(request), args)
    play = PlayRequest(app=app, name=name, start=-1.0, duration=-1.0, reset=True, args=args, session=view)
    gone: list[bool] = []

    def left(_):
        gone.append(True)
        view.closed = True

    request.notifyFinish().addBoth(left)

    def guarded(req: PlayRequest):
        if gone:
            raise Rejected(_FAILED, "the client left before the decision")
        return final(req, view)

    def refused(f: Failure) -> None:
        f.trap(Rejected)
        view.closed = True
        if gone:
            return
        code = 404 if f.value.code == _NOT_FOUND else 403
        _answer(request, code, f.value.description or "play refused")

    def failed(f: Failure) -> None:
        HLSViewers._log.failure("HTTP play decision failed", f)
        if not gone:
            _answer(request, 500, "internal error")

    d = chain.run("play", play, guarded).addErrback(refused).addErrback(failed)
    return d, server.NOT_DONE_YET


class _Viewer:
    """One HLS viewer session: the decision of a playlist request, kept while the viewer polls."""

    __slots__ = ("view", "app", "name", "identity", "last_seen", "timer")

    def __init__(self, view: HTTPViewerView, app: str, name: str, identity: tuple, now: float) -> None:
        self.view = view
        self.app = app
        self.name = name  # the name the chain decided on (after any rename)
        self.identity = identity
        self.last_seen = now
        self.timer = None


class HLSViewers:
    """HLS requests of one HTTP site: playlist decisions, viewer tokens, idle sessions."""

    _log = Logger()

    def __init__(self, factory, registry, clock, timeout: float, max_viewers: int, key: bytes | None = None) -> None:
        self.factory = factory
        self.registry = registry
        self.clock = clock
        self.timeout = timeout
        self.max_viewers = max_viewers
        self._key = key if key is not None else os.urandom(32)
        self.sessions: dict[int, _Viewer] = {}
        self._by_identity: dict[tuple, _Viewer] = {}
        self._deciding = 0
        self._blocked: dict[int, _Watch] = {}  # id(segmenter) -> its held requests
        self.blocked_by_app: dict[str, int] = {}

    # -- tokens -------------------------------------------------------------------------------

    def token(self, v: _Viewer, expiry: int) -> str:
        text = f"{v.app}\n{v.name}\n{expiry}\n{v.view.host}\n{v.view.id}".encode()
        mac = hmac.new(self._key, text, hashlib.sha256).hexdigest()[:32]
        return f"{v.view.id}.{expiry}.{mac}"

    def _check(self, token: str, app: str, name: str, host: str) -> _Viewer | None:
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[0]) > 20 or len(parts[1]) > 12:
            return None
        v = self.sessions.get(int(parts[0]))
        expiry = int(parts[1])
        if v is None or v.app != app or v.name != name or v.view.host != host or expiry < self.clock.seconds():
            return None
        if not hmac.compare_digest(self.token(v, expiry), token):
            return None
        return v

    # -- requests -----------------------------------------------------------------------------

    def render(self, request, app: str, filename: str):
        """``/hls/<app>/<name>.m3u8`` or ``/hls/<app>/<name>-<ref>.<ts|m4s|mp4>?vt=<token>`` (cleaned names)."""
        request.setHeader(b"cache-control", b"no-cache")
        if filename.endswith(".m3u8"):
            return self._playlist(request, app, filename[:-5])
        stem, dot, ext = filename.rpartition(".")
        if dot and "." + ext in _MEDIA_TYPES:
            token = request.args.get(b"vt", [b""])[0].decode("ascii", "replace")[:80]
            return self._segment(request, app, token, stem, "." + ext)
        request.setResponseCode(404)
        return b"not found\n"

    def _write_playlist(self, request, v: _Viewer) -> bytes | None:
        seg = self.registry.segmenter(v.app, v.name) if self.registry is not None else None
        if seg is None or not seg.segments:
            return None
        expiry = math.ceil(self.clock.seconds() + self.timeout)
        request.setHeader(b"content-type", b"application/vnd.apple.mpegurl")
        return seg.playlist("?vt=" + self.token(v, expiry)).encode()

    @staticmethod
    def _blocking_args(args: dict[str, str]) -> tuple[int | None, int | None, bool]:
        """(msn, part, valid) from ``_HLS_msn``/``_HLS_part``; every ``_HLS_*`` is removed from ``args``."""
        msn_text = args.pop("_HLS_msn", None)
        part_text = args.pop("_HLS_part", None)
        for k in [k for k in args if k.startswith("_HLS_")]:
            del args[k]
        if msn_text is None:
            return None, None, part_text is None
        if not msn_text.isdigit() or len(msn_text) > 12:
            return None, None, False
        if part_text is not None and (not part_text.isdigit() or len(part_text) > 6):
            return None, None, False
        return int(msn_text), int(part_text) if part_text is not None else None, True

    def _answer_playlist(self, request, v: _Viewer, msn: int | None, part: int | None) -> None:
        """Write the playlist now, or hold the request until it has segment ``msn`` / its part ``part``."""
        seg = self.registry.segmenter(v.app, v.name) if self.registry is not None else None
        if msn is not None and seg is not None and seg.low_latency:
            if msn > seg.next_sequence + 1:
                # More than two segments beyond the last one in the playlist (6.2.5.2).
                return _answer(request, 400, "_HLS_msn is too far ahead")
            if seg.ready(msn, part) is False:
                return self._hold(request, v.app, seg, lambda: seg.ready(msn, part),
                                  lambda state: self._answer_playlist(request, v, None, None))  # fmt: skip
        body = self._write_playlist(request, v)
        if body is None:
            return _answer(request, 404, "no such playlist (yet)")
        request.write(body)
        request.finish()

    def _hold(self, request, app: str, seg, check, respond) -> None:
        """Keep ``request`` until ``check()`` is not False (then ``respond(state)``), or time out."""
        held = self.blocked_by_app.get(app, 0)
        if held >= self.registry.max_blocked(app):
            return _answer(request, 503, "too many blocked LL-HLS requests")
        watch = self._blocked.get(id(seg))
        if watch is None:
            watch = self._blocked[id(seg)] = _Watch(self, seg)
        self.blocked_by_app[app] = held + 1
        entry = _Held(request, check, respond, app)

        def release() -> bool:
            if entry not in watch.waiting:
                return False
            watch.waiting.remove(entry)
            self.blocked_by_app[app] -= 1
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            if not watch.waiting:
                watch.close()
            return True

        def timed_out() -> None:
            entry.timer = None
            if release():
                _answer(request, 503, "not available within three target durations")

        entry.release = release
        watch.waiting.append(entry)
        entry.timer = self.clock.callLater(3 * max(1, seg.target_duration), timed_out)
        request.notifyFinish().addBoth(lambda _: release())

    def _playlist(self, request, app: str, name: str):
        host, _ = _peer(request)
        args = query_args(request)
        msn, part, valid = self._blocking_args(args)
        if not valid:
            request.setResponseCode(400)
            return b"bad _HLS_msn/_HLS_part\n"
        identity = (host, app, name, tuple(sorted(args.items())))
        v = self._by_identity.get(identity)
        if v is not None:
            self._touch(v)
            self._answer_playlist(request, v, msn, part)
            return server.NOT_DONE_YET
        if len(self.sessions) + self._deciding >= self.max_viewers:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"too many HLS viewers\n"

        def final(req: PlayRequest, view: HTTPViewerView):
            seg = self.registry.segmenter(app, req.name) if self.registry is not None else None
            if seg is None or not seg.segments:
                raise Rejected(_NOT_FOUND, "no such playlist (yet)")
            viewer = _Viewer(view, app, req.name, identity, self.clock.seconds())
            self._start(viewer)
            self._answer_playlist(request, viewer, msn, part)
            return None

        self._deciding += 1
        d, result = decide_play(self.factory, request, "hls", app, name, final, args)
        if d is None:
            self._deciding -= 1
        else:
            d.addBoth(self._decided)
        return result

    def _decided(self, _) -> None:
        self._deciding -= 1

    def _segment(self, request, app: str, token: str, stem_n: str, ext: str):
        stem, _, ref = stem_n.rpartition("-")
        host, _ = _peer(request)
        v = self._check(token, app, stem, host) if token else None
        if v is None:
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"segments need the viewer token of a playlist request (missing, expired or not yours)\n"
        self._touch(v)
        seg = self.registry.segmenter(app, stem) if self.registry is not None else None
        data = None
        number, dot, part = ref.partition(".")
        if seg is None or len(ref) > 24:
            pass
        elif ext == ".mp4":
            if ref.startswith("init") and ref[4:].isdigit():
                data = seg.init_segment(int(ref[4:]))
        elif "." + seg.extension != ext or not number.isdigit():
            pass
        elif not dot:
            data = seg.segment(int(number))
        elif part.isdigit():
            n, p = int(number), int(part)
            state = seg.part_state(n, p)
            if state is False:
                # The preload hint: answered once the part is complete (rfc8216bis 6.2.5.3).
                def respond(state) -> None:
                    body = seg.part(n, p) if state else None
                    if body is None:
                        return _answer(request, 404, "no such part")
                    request.setHeader(b"content-type", _MEDIA_TYPES[ext])
                    request.write(bytes(body))
                    request.finish()

                self._hold(request, app, seg, lambda: seg.part_state(n, p), respond)
                return server.NOT_DONE_YET
            data = seg.part(n, p) if state else None
        if data is None:
            request.setResponseCode(404)
            return b"no such segment\n"
        request.setHeader(b"content-type", _MEDIA_TYPES[ext])
        return bytes(data)

    # -- sessions -----------------------------------------------------------------------------

    def _start(self, v: _Viewer) -> None:
        old = self._by_identity.get(v.identity)
        if old is not None:
            self._end(old, "replaced")
        self.sessions[v.view.id] = v
        self._by_identity[v.identity] = v
        v.timer = self.clock.callLater(self.timeout, self._idle_check, v)

    def _touch(self, v: _Viewer) -> None:
        v.last_seen = self.clock.seconds()

    def _idle_check(self, v: _Viewer) -> None:
        v.timer = None
        idle = self.clock.seconds() - v.last_seen
        if idle >= self.timeout:
            self._end(v, "idle")
        else:
            v.timer = self.clock.callLater(self.timeout - idle, self._idle_check, v)

    def _end(self, v: _Viewer, reason: str) -> None:
        if self.sessions.get(v.view.id) is not v:
            return
        del self.sessions[v.view.id]
        if self._by_identity.get(v.identity) is v:
            del self._by_identity[v.identity]
        if v.timer is not None and v.timer.active():
            v.timer.cancel()
        v.timer = None
        v.view.closed = True
        chain = self.factory.chains.get(v.app)
        if chain is not None:
            chain.close_stream(StreamClosed(app=v.app, name=v.name, role="player", reason=reason, session=v.view))

    def shutdown(self) -> None:
        for v in list(self.sessions.values()):
            self._end(v, "server shutdown")
        for watch in list(self._blocked.values()):
            for entry in list(watch.waiting):
                if entry.release():
                    _answer(entry.request, 503, "server shutting down")


class _Held:
    """One held request: ``check()`` says whether it can be answered, ``respond(state)`` does."""

    __slots__ = ("request", "check", "respond", "app", "timer", "release")

    def __init__(self, request, check, respond, app: str) -> None:
        self.request = request
        self.check = check
        self.respond = respond
        self.app = app
        self.timer = None
        self.release = None


class _Watch:
    """The requests held on one segmenter; woken by its ``listeners`` on every playlist change."""

    __slots__ = ("viewers", "seg", "waiting")

    def __init__(self, viewers: HLSViewers, seg) -> None:
        self.viewers = viewers
        self.seg = seg
        self.waiting: list[_Held] = []
        seg.listeners.append(self.changed)

    def changed(self) -> None:
        # Called from the segmenter, on the publisher's media path: an answer that fails is
        # logged and that request ends, the stream goes on.
        for entry in list(self.waiting):
            state = entry.check()
            if state is not False and entry.release():
                try:
                    entry.respond(state)
                except Exception:
                    HLSViewers._log.failure("answering a held LL-HLS request failed")
                    if not entry.request.finished:
                        entry.request.loseConnection()

    def close(self) -> None:
        if self.changed in self.seg.listeners:
            self.seg.listeners.remove(self.changed)
        if self.viewers._blocked.get(id(self.seg)) is self:
            del self.viewers._blocked[id(self.seg)]
