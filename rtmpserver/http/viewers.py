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
        """``/hls/<app>/<name>.m3u8`` or ``/hls/<app>/<name>-<n>.ts?vt=<token>`` (cleaned names)."""
        request.setHeader(b"cache-control", b"no-cache")
        if filename.endswith(".m3u8"):
            return self._playlist(request, app, filename[:-5])
        if filename.endswith(".ts"):
            token = request.args.get(b"vt", [b""])[0].decode("ascii", "replace")[:80]
            return self._segment(request, app, token, filename[:-3])
        request.setResponseCode(404)
        return b"not found\n"

    def _write_playlist(self, request, v: _Viewer) -> bytes | None:
        seg = self.registry.segmenter(v.app, v.name) if self.registry is not None else None
        if seg is None or not seg.segments:
            return None
        expiry = math.ceil(self.clock.seconds() + self.timeout)
        suffix = "?vt=" + self.token(v, expiry)
        lines = [line if not line or line.startswith("#") else line + suffix for line in seg.playlist().split("\n")]
        request.setHeader(b"content-type", b"application/vnd.apple.mpegurl")
        return "\n".join(lines).encode()

    def _playlist(self, request, app: str, name: str):
        host, _ = _peer(request)
        args = query_args(request)
        identity = (host, app, name, tuple(sorted(args.items())))
        v = self._by_identity.get(identity)
        if v is not None:
            self._touch(v)
            body = self._write_playlist(request, v)
            if body is None:
                request.setResponseCode(404)
                return b"no such playlist (yet)\n"
            return body
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
            request.write(self._write_playlist(request, viewer) or b"")
            request.finish()
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

    def _segment(self, request, app: str, token: str, stem_n: str):
        stem, _, number = stem_n.rpartition("-")
        host, _ = _peer(request)
        v = self._check(token, app, stem, host) if token else None
        if v is None:
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"segments need the viewer token of a playlist request (missing, expired or not yours)\n"
        self._touch(v)
        seg = self.registry.segmenter(app, stem) if self.registry is not None else None
        data = seg.segment(int(number)) if seg is not None and number.isdigit() and len(number) < 12 else None
        if data is None:
            request.setResponseCode(404)
            return b"no such segment\n"
        request.setHeader(b"content-type", b"video/mp2t")
        return data

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
