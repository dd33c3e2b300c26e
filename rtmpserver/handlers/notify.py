"""The ``notify`` handler: HTTP callbacks that speak nginx-rtmp's notify protocol.

Existing stream-management backends were written against nginx-rtmp's ``on_publish`` &c.
(ngx_rtmp_notify_module.c), so a backend should not be able to tell the difference: the same
form fields (``call``, ``app``, ``name``, ``addr``, ``clientid``, ``tcurl``, ...), the same
reading of the answer (only the first digit of the status counts: 2 allows, 3 redirects via
``Location``, anything else refuses) and the same fire-and-forget ``*_done`` calls.

Deliberate differences, each documented in docs/handlers.md:

- a timeout or connection error refuses (nginx's netcall also fails closed, but has no
  per-call timeout of its own);
- client arguments whose names collide with a field we send are dropped instead of being
  appended after it (a backend that takes the last value would otherwise let a client choose
  its own ``name`` or ``addr``);
- a Location of ``rtmp://...`` (nginx: relay push/pull) refuses, since relays are not built;
- a connect redirect to another application refuses, since that would skip the other
  application's handler chain;
- ``on_connect`` also sends ``clientid`` so a backend can tie it to the later calls.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twisted.internet import defer
from twisted.internet.error import TimeoutError as _ConnectTimeout
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from rtmpserver.errors import Rejected
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHandlerService,
    IRecordingObserver,
)
from rtmpserver.settings import Section, choice, seconds, url

__all__ = ["NotifySettings", "NotifyHandler", "NotifyHandlerFactory", "Reply", "HTTPCaller", "factory", "parse_settings"]

# Callback settings, in the order nginx-rtmp documents its directives.
CALLBACKS = ("on_connect", "on_publish", "on_play", "on_done", "on_publish_done", "on_play_done", "on_record_done")
_KEYS = CALLBACKS + ("timeout", "method")
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0

# The answer's body is read only so a pooled connection can be reused; past this many bytes the
# connection is dropped instead (a backend has no reason to send more than a short message).
BODY_LIMIT = 64 * 1024
# Idle keep-alive connections kept per backend host, and for how long.  Shorter than the
# common server keep-alive times (nginx 75 s) so that most stale connections are ours to close.
POOL_PER_HOST = 4
POOL_IDLE_SECONDS = 30.0

_FORM = b"application/x-www-form-urlencoded"
_USER_AGENT = b"rtmpserver-notify"
# "scheme://" at the start of a Location: a URL, not a stream name (RFC 3986 section 3.1).
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_APP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", re.ASCII)
# Failures that mean the request never got an answer on a connection that may have been a
# stale pooled one (the server closed it while idle).  Twisted's pool retries these itself
# only for bodiless idempotent requests, so a POST gets one retry here.
_RETRYABLE = (ResponseNeverReceived, RequestTransmissionFailed, RequestNotSent)

_CODES = {
    "connect": "NetConnection.Connect.Rejected",
    "publish": "NetStream.Publish.Denied",
    "play": "NetStream.Play.Failed",
}


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifySettings:
    """Validated ``notify.*`` settings of one application."""

    urls: Mapping[str, str]  # callback name ("on_publish") -> http(s) URL
    timeout: float = DEFAULT_TIMEOUT
    method: str = "POST"


_URL = url(("http", "https"))
_METHOD = choice("POST", "GET", ignore_case=True, expectation="'post' or 'get'")


def parse_settings(settings: Mapping[str, str], context: Any) -> NotifySettings:
    """Check every ``notify.*`` key of one app section; the first mistake is a ConfigError."""
    section = Section.for_handler("notify", settings, context)
    section.check_known(_KEYS)
    urls = {key: section.get(key, _URL) for key in CALLBACKS if key in section}
    timeout = section.get("timeout", seconds(high=MAX_TIMEOUT), repr(DEFAULT_TIMEOUT))
    method = section.get("method", _METHOD, "POST")
    handler_timeout = getattr(context.app, "handler_timeout", 0) or 0
    if handler_timeout and timeout >= handler_timeout:
        if "timeout" in section:
            # The chain would refuse first with a vaguer message (handler did not decide).
            raise section.error("timeout", f"expected fewer seconds than this app's handler_timeout ({handler_timeout:g})")
        # Keep the default below a short handler_timeout so our own refusal (with its reason)
        # comes first; an explicit value was checked above.
        timeout = handler_timeout * 0.8
    return NotifySettings(urls=urls, timeout=timeout, method=method)


# --- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a callback answered: the status code and the Location header (if any)."""

    code: int
    location: bytes | None = None


@implementer(IBodyProducer)
class _BytesBody:
    """A form body, written in one go.

    ``FileBodyProducer`` would schedule its writes on the global cooperator (and so the global
    reactor); a body of a few hundred bytes needs no pacing.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Discard(Protocol):
    """Reads a response body to its end (so the connection can go back to the pool) and keeps
    nothing; drops the connection once more than ``limit`` bytes have come."""

    def __init__(self, limit: int) -> None:
        self.finished: defer.Deferred = defer.Deferred(self._cancel)
        self.limit = limit
        self.received = 0
        self.cancelled = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit and not self.finished.called:
            self.finished.callback(None)
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure) -> None:
        # ResponseDone, PotentialDataLoss or a broken body: the status line and headers were
        # complete, and they are all a callback's answer consists of.
        if not self.finished.called and not self.cancelled:
            self.finished.callback(None)

    def _cancel(self, _: defer.Deferred) -> None:
        self.cancelled = True
        if self.transport is not None:
            self.transport.stopProducing()


class HTTPCaller:
    """Sends one form to a URL and reports the answer; a bounded, pooled, timed-out HTTP client.

    ``agent`` is made on first use from ``reactor`` (a callable returning the reactor), so that
    building a handler never imports or touches the reactor.
    """

    _log = Logger()

    def __init__(self, clock, timeout: float, method: str, reactor: Callable[[], Any], agent=None) -> None:
        self.clock = clock
        self.timeout = timeout
        self.method = method.encode("ascii")
        self._reactor = reactor
        self._agent = agent
        self.pool: HTTPConnectionPool | None = None

    @property
    def agent(self):
        if self._agent is None:
            reactor = self._reactor()
            self.pool = HTTPConnectionPool(reactor, persistent=True)
            self.pool.maxPersistentPerHost = POOL_PER_HOST
            self.pool.cachedConnectionTimeout = POOL_IDLE_SECONDS
            self._agent = Agent(reactor, connectTimeout=self.timeout, pool=self.pool)
        return self._agent

    def call(self, url: str, form: bytes) -> defer.Deferred:
        """Deferred firing with a Reply, or failing (connection error, TimeoutError)."""
        if self.method == b"GET":
            target = url + ("&" if "?" in url else "?") + form.decode("ascii")
            body = None
        else:
            target, body = url, form
        headers = Headers({b"User-Agent": [_USER_AGENT]})
        if body is not None:
            headers.setRawHeaders(b"Content-Type", [_FORM])
        attempt: list[defer.Deferred] = []

        def start(first: bool) -> None:
            d = self.agent.request(self.method, target.encode("ascii"), headers, None if body is None else _BytesBody(body))
            d.addCallback(self._read)
            attempt[:] = [d]
            d.addCallbacks(answered, failed, errbackArgs=(first,))

        def answered(reply: Reply) -> None:
            if not result.called:
                timer.cancel()
                result.callback(reply)

        def failed(f: Failure, first: bool) -> None:
            if result.called:
                return None  # timed out or cancelled: the outcome is already decided
            if first and f.check(*_RETRYABLE):
                self._log.debug("notify {url}: no answer on a (possibly stale) connection, retrying once", url=url)
                start(False)
                return None
            timer.cancel()
            result.errback(f)
            return None

        def timed_out() -> None:
            if not result.called:
                result.errback(defer.TimeoutError(f"no answer within {self.timeout:g} s"))
                for d in attempt:
                    d.cancel()

        def cancel(_: defer.Deferred) -> None:
            if timer.active():
                timer.cancel()
            for d in attempt:
                d.cancel()

        result: defer.Deferred = defer.Deferred(cancel)
        timer = self.clock.callLater(self.timeout, timed_out)
        try:
            start(True)
        except Exception:
            timer.cancel()
            return defer.fail()
        return result

    @staticmethod
    def _read(response) -> defer.Deferred:
        locations = response.headers.getRawHeaders(b"location") or [None]
        reply = Reply(response.code, locations[0])
        proto = _Discard(BODY_LIMIT)
        finished = proto.finished
        response.deliverBody(proto)
        return finished.addCallback(lambda _: reply)

    def close(self) -> defer.Deferred:
        """Close idle pooled connections (e.g. on shutdown)."""
        if self.pool is None:
            return defer.succeed(None)
        return self.pool.closeCachedConnections()


# --- the handler -----------------------------------------------------------------------------


def _text(value: Any) -> str:
    """Connect-object strings as the client sent them; anything else (a number, a malicious
    object) as nginx would have it: absent, i.e. empty."""
    return value if isinstance(value, str) else ""


def _uint32(value: Any) -> str:
    """nginx-rtmp formats play's start/duration as ``(uint32_t) value``: -2 -> 4294967294."""
    try:
        return str(int(value) & 0xFFFFFFFF)
    except (TypeError, ValueError, OverflowError):
        return "0"


_SESSION_FIELDS = ("app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid")


def _session_fields(app: str, session: Any) -> list[tuple[str, str]]:
    """The fields nginx-rtmp sends with every call after connect (ngx_rtmp_netcall_http_format_session)."""
    params = session.connect_params
    return [
        ("app", app),
        ("flashver", _text(params.get("flashVer"))),
        ("swfurl", _text(params.get("swfUrl"))),
        ("tcurl", _text(params.get("tcUrl"))),
        ("pageurl", _text(params.get("pageUrl"))),
        ("addr", session.host),
        ("clientid", str(session.id)),
    ]


def _with_args(fields: list[tuple[str, str]], args: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
    """``fields`` followed by the client's own arguments, minus any that would shadow a field."""
    taken = {k for k, _ in fields}
    dropped = [k for k in args if k in taken]
    return fields + [(str(k), str(v)) for k, v in args.items() if k not in taken], dropped


@dataclass
class _Tracked:
    """A publish or play that proceeded: what its ``*_done`` calls will report."""

    name: str  # as the client asked for it (nginx-rtmp reports the pre-redirect name)
    args: Mapping[str, str]


@implementer(IAppHandler, IRecordingObserver, IHandlerService)
class NotifyHandler:
    """One application's callbacks.  See the module docstring and docs/handlers.md."""

    _log = Logger()

    def __init__(self, settings: NotifySettings, context: Any, caller: HTTPCaller | None = None) -> None:
        self.settings = settings
        self.context = context
        self.app = getattr(context.app, "name", "?")
        limits = getattr(context.server, "limits", None)
        self.max_name = getattr(limits, "max_stream_name_length", 256)
        self.caller = caller or HTTPCaller(context.clock, settings.timeout, settings.method, lambda: _reactor(context))
        self._pending: set[defer.Deferred] = set()  # done calls in flight
        # The metrics hook (IServerMetrics): one counter per server, labelled by application.
        self.calls = context.metrics.shared(NotifyHandler, _calls_counter)

    def _count(self, call: str, result: str) -> None:
        self.calls.labels(app=self.app, call=call, result=result).inc()

    # -- decisions ----------------------------------------------------------------------------

    async def connect(self, request, proceed):
        url = self.settings.urls.get("on_connect")
        if url is None:
            return await proceed(request)
        session = request.session
        fields = [
            ("app", request.app),
            ("flashver", request.flash_ver),
            ("swfurl", request.swf_url),
            ("tcurl", request.tc_url),
            ("pageurl", request.page_url),
            ("addr", session.host),
            ("clientid", str(session.id)),
            ("epoch", str(int(self.context.clock.seconds() * 1000) & 0xFFFFFFFF)),
            ("call", "connect"),
        ]
        reply = await self._decide("connect", url, fields, request.args, session, request.app)
        if reply.code // 100 == 3 and reply.location is not None:
            target = self._location(reply, "connect", session, request.app)
            if target != request.app:
                # nginx-rtmp would switch applications here; ours would skip that app's chain.
                self._log.warn(
                    "notify connect: {addr} redirected to application {target!r}; switching applications is "
                    "not supported, refusing", addr=session.peer, target=target,
                )
                raise Rejected(_CODES["connect"], "Redirect to another application is not supported.")
        return await proceed(request)

    async def publish(self, request, proceed):
        fields = _session_fields(request.app, request.session) + [
            ("call", "publish"), ("name", request.name), ("type", request.mode),
        ]
        return await self._stream("publish", "on_publish", "publisher", request, fields, proceed)

    async def play(self, request, proceed):
        fields = _session_fields(request.app, request.session) + [
            ("call", "play"), ("name", request.name),
            ("start", _uint32(request.start)), ("duration", _uint32(request.duration)),
            ("reset", "1" if request.reset else "0"),
        ]
        return await self._stream("play", "on_play", "player", request, fields, proceed)

    async def _stream(self, hook: str, setting: str, role: str, request, fields, proceed):
        url = self.settings.urls.get(setting)
        asked = _Tracked(request.name, dict(request.args))
        if url is not None:
            reply = await self._decide(hook, url, fields, request.args, request.session, f"{request.app}/{request.name}")
            if reply.code // 100 == 3 and reply.location is not None:
                request = self._rename(hook, reply, request)
        track = self._tracks(role)
        key = (role, request.name)
        if track:
            self._table(request.session).setdefault(key, []).append(asked)
        try:
            outcome = await proceed(request)
        except BaseException:
            if track:
                self._untrack(request.session, key, asked)
            raise
        final = getattr(outcome, "name", None)
        if track and isinstance(final, str) and final != request.name:
            # A later handler renamed the stream: close_stream will report the final name.
            self._untrack(request.session, key, asked)
            self._table(request.session).setdefault((role, final), []).append(asked)
        return outcome

    def _rename(self, hook: str, reply: Reply, request):
        """A 3xx with Location: the stream name to use instead (nginx: publish/play redirect)."""
        target = self._location(reply, hook, request.session, f"{request.app}/{request.name}")
        name, _, query = target.partition("?")
        args = dict(request.args)
        if query:
            args.update(parse_qsl(query, keep_blank_values=True))
        self._log.info(
            "notify {hook}: {addr} {app}/{old} redirected to {new!r}",
            hook=hook, addr=request.session.peer, app=request.app, old=request.name, new=name,
        )
        return dataclasses.replace(request, name=name, args=args)

    def _location(self, reply: Reply, hook: str, session, what: str) -> str:
        """The Location as a name (app for connect, stream otherwise); refuses what cannot be one."""
        code = _CODES[hook]
        raw = reply.location or b""
        try:
            target = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            target = None
        problem = None
        if target is None:
            problem = "is not UTF-8"
        elif target[:7].lower() == "rtmp://" or target[:8].lower() == "rtmps://":
            self._log.warn(
                "notify {hook}: {addr} {what} redirected to {target!r}: relaying to another server is not "
                "supported (nginx-rtmp would {action} it), refusing",
                hook=hook, addr=session.peer, what=what, target=target,
                action="pull" if hook == "play" else "push",
            )
            raise Rejected(code, "Relay redirects are not supported.")
        elif _URL_SCHEME.match(target):
            problem = "is a URL, not a name"
        elif not target or target.startswith("?"):
            problem = "is empty"
        elif hook == "connect" and not _APP_NAME.fullmatch(target.strip("/")):
            problem = "is not an application name"
        elif hook != "connect" and len(target.partition("?")[0].encode("utf-8")) > self.max_name:
            problem = f"is longer than {self.max_name} bytes"
        elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
            problem = "contains control characters"
        if problem:
            self._log.warn(
                "notify {hook}: {addr} {what}: HTTP {status} Location {location!r} {problem}; refusing",
                hook=hook, addr=session.peer, what=what, status=reply.code, location=raw[:200], problem=problem,
            )
            raise Rejected(code, "Bad redirect from the notify callback.")
        return target.strip("/") if hook == "connect" else target

    async def _decide(self, hook: str, url: str, fields, args, session, what: str) -> Reply:
        """Make the call; return a 2xx/3xx Reply, raise Rejected for anything else."""
        code = _CODES[hook]
        fields, dropped = _with_args(list(fields), args)
        if dropped:
            self._log.info(
                "notify {hook}: {addr} sent arguments {dropped} that name notify fields; not forwarded",
                hook=hook, addr=session.peer, dropped=dropped,
            )
        try:
            form = urlencode(fields, encoding="utf-8", errors="strict").encode("ascii")
        except UnicodeEncodeError:
            self._log.warn("notify {hook}: {addr} {what}: a field is not valid Unicode text; refusing", hook=hook, addr=session.peer, what=what)
            raise Rejected(code, "Invalid characters in the request.") from None
        try:
            reply = await self.caller.call(url, form)
        except Exception as e:
            reason = "timed out" if isinstance(e, (defer.TimeoutError, _ConnectTimeout)) else _describe(e)
            self._count(f"on_{hook}", "failed")
            self._log.warn(
                "notify {hook}: {addr} {what}: {url} {reason}; refusing",
                hook=hook, addr=session.peer, what=what, url=url, reason=reason,
            )
            raise Rejected(code, "Notify callback unavailable.") from None
        self._count(f"on_{hook}", "ok" if reply.code // 100 in (2, 3) else "refused")
        if reply.code // 100 in (2, 3):
            self._log.info(
                "notify {hook}: {addr} {what}: HTTP {status} from {url}",
                hook=hook, addr=session.peer, what=what, status=reply.code, url=url,
            )
            return reply
        self._log.info(
            "notify {hook}: {addr} {what}: HTTP {status} from {url}; refusing",
            hook=hook, addr=session.peer, what=what, status=reply.code, url=url,
        )
        raise Rejected(code, f"Refused by the notify callback (HTTP {reply.code}).")

    # -- done calls ---------------------------------------------------------------------------

    def close_stream(self, event) -> None:
        role = event.role
        specific = "on_publish_done" if role == "publisher" else "on_play_done" if role == "player" else None
        if specific is None:
            return None
        urls = self.settings.urls
        if specific not in urls and "on_done" not in urls:
            return None
        table = self._table(event.session)
        key = (role, event.name)
        if key not in table:
            # A later handler renamed a play (its outcome does not tell us the final name): every
            # stream of this connection that proceeded through us is in the table, so the oldest
            # one of this role left over is the one closing.
            key = next((k for k in table if k[0] == role), None)
            if key is None:
                # Never proceeded through us (refused): nginx-rtmp only reports streams it saw start.
                return None
        entries = table[key]
        asked = entries.pop(0)
        if not entries:
            del table[key]
        base = _session_fields(event.app, event.session)
        for setting, call in ((specific, specific[3:]), ("on_done", "done")):
            url = urls.get(setting)
            if url is not None:
                fields = base + [("call", call), ("name", asked.name)]
                self._fire(setting, url, _with_args(fields, asked.args)[0], event)
        return None

    def recording_done(self, done: Any) -> None:
        """A recording file was finished: ``call=record_done`` with ``recorder``, ``name`` and
        ``path``, like nginx-rtmp.

        ``done`` is a ``rtmpserver.handlers.record.RecordingDone`` (app, name, path, recorder,
        session, args); this method is meant to be appended to the record handler's
        ``on_record_done`` list of the same application.  A recording started by the control API
        has no session: the session fields are then sent empty.
        """
        url = self.settings.urls.get("on_record_done")
        if url is None:
            return None
        session = getattr(done, "session", None)
        if session is not None:
            fields = _session_fields(done.app, session)
        else:
            fields = [(k, done.app if k == "app" else "") for k in _SESSION_FIELDS]
        fields += [("call", "record_done"), ("recorder", getattr(done, "recorder", "") or ""), ("name", done.name), ("path", done.path)]
        fields = _with_args(fields, getattr(done, "args", None) or {})[0]
        self._fire("on_record_done", url, fields, None, what=f"{done.app}/{done.name} {done.path}")
        return None

    # -- IHandlerService ------------------------------------------------------------------------

    def start_service(self) -> None:
        return None

    def stop_service(self) -> defer.Deferred:
        """The server stops: close the pooled keep-alive connections to the backends."""
        return self.caller.close()

    def _fire(self, setting: str, url: str, fields, event, what: str | None = None) -> None:
        """A call whose answer changes nothing (nginx-rtmp ignores it too): failures are logged."""
        if what is None:
            what = f"{event.app}/{event.name}"
        form = urlencode(fields, encoding="utf-8", errors="backslashreplace").encode("ascii")
        try:
            d = self.caller.call(url, form)
        except Exception as e:  # a broken agent must not break the session's teardown
            self._log.warn("notify {setting}: {what}: {reason}", setting=setting, what=what, reason=_describe(e))
            return
        self._pending.add(d)

        def answered(reply: Reply) -> None:
            self._count(setting, "ok" if reply.code // 100 == 2 else "refused")
            if reply.code // 100 == 2:
                self._log.debug("notify {setting}: {what}: HTTP {status}", setting=setting, what=what, status=reply.code)
            else:
                self._log.info("notify {setting}: {what}: HTTP {status} from {url} (ignored)", setting=setting, what=what, status=reply.code, url=url)

        def failed(f: Failure) -> None:
            self._count(setting, "failed")
            reason = "timed out" if f.check(defer.TimeoutError, _ConnectTimeout) else _describe(f.value)
            self._log.warn("notify {setting}: {what}: {url} {reason}", setting=setting, what=what, url=url, reason=reason)

        d.addCallbacks(answered, failed)
        d.addBoth(lambda _: self._pending.discard(d))

    # -- bookkeeping --------------------------------------------------------------------------

    def _tracks(self, role: str) -> bool:
        specific = "on_publish_done" if role == "publisher" else "on_play_done"
        return specific in self.settings.urls or "on_done" in self.settings.urls

    @staticmethod
    def _table(session) -> dict:
        return session.data.setdefault("notify", {})

    def _untrack(self, session, key, asked: _Tracked) -> None:
        table = self._table(session)
        entries = table.get(key, [])
        for i, e in enumerate(entries):
            if e is asked:
                del entries[i]
                break
        if not entries:
            table.pop(key, None)


def _describe(e: BaseException) -> str:
    """A one-line reason for a failed call; Twisted's client wraps the real cause in lists."""
    reasons: Sequence[Any] = getattr(e, "reasons", None) or []
    inner = [r.value if isinstance(r, Failure) else r for r in reasons]
    inner = [r for r in inner if not isinstance(r, defer.CancelledError)] or inner
    if inner:
        return f"failed: {type(e).__name__}({'; '.join(f'{type(r).__name__}: {r}' for r in inner)})"
    return f"failed: {type(e).__name__}: {e}"


def _reactor(context: Any):
    """The reactor to make HTTP calls with: the injected one, or (outside twistd, e.g. a
    script embedding the server) the global one, imported only when the first call is made."""
    if context.reactor is not None:
        return context.reactor
    from twisted.internet import reactor

    return reactor


def _calls_counter() -> Any:
    from prometheus_client import Counter

    return Counter("notify_calls", "Notify callbacks made, by setting and result (ok: 2xx/3xx, refused: other "
                   "status, failed: no answer)", ["app", "call", "result"], registry=None)


@implementer(IPlugin, IAppHandlerFactory)
class NotifyHandlerFactory:
    name = "notify"
    description = "HTTP callbacks compatible with nginx-rtmp's on_connect/on_publish/on_play/on_*_done"

    def build(self, settings, context):
        return NotifyHandler(parse_settings(settings, context), context)


factory = NotifyHandlerFactory()
