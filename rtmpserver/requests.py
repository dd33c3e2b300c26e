"""What application handlers see: requests to decide on, a read-only session view, their context.

Requests are frozen dataclasses: a handler that wants to change one (rename a stream, add an
argument) passes ``dataclasses.replace(request, ...)`` to ``proceed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zope.interface import implementer

from rtmpserver.interfaces import ISessionView

__all__ = [
    "SessionView", "HTTPViewerView", "client_ids", "ConnectRequest", "PublishRequest", "PlayRequest",
    "StreamClosed", "HandlerContext",
]

# Client ids shared by RTMP sessions and HTTP viewers, so ``clientid`` (notify, /stat, control)
# names one client whichever protocol it uses.
client_ids = iter(range(1, 1 << 62))


@implementer(ISessionView)
class SessionView:
    """A read-only window on one RTMP connection, plus ``data``: a dict handlers may attach things to."""

    __slots__ = ("_session",)

    def __init__(self, session) -> None:
        self._session = session

    @property
    def id(self) -> int:
        return self._session.id

    @property
    def peer(self) -> str:
        """``host:port`` of the client."""
        return self._session.peer

    @property
    def host(self) -> str:
        """The client's IP address (IPv4 or IPv6 text form)."""
        return self._session.host

    @property
    def app(self) -> str | None:
        return self._session.app

    @property
    def connect_params(self) -> Mapping[str, Any]:
        """The connect command object (tcUrl, flashVer, ...), with ``args`` parsed from the app's query."""
        return dict(self._session.connect_params)

    @property
    def data(self) -> dict:
        return self._session.handler_data

    @property
    def closed(self) -> bool:
        return self._session.closed

    @property
    def protocol(self) -> str:
        """``rtmp`` or ``rtmps``."""
        return self._session.protocol

    def __repr__(self) -> str:
        return f"<SessionView {self.id} {self.peer} app={self.app}>"


@implementer(ISessionView)
class HTTPViewerView:
    """The session of one HTTP viewer (an HTTP-FLV request, or an HLS viewer's playlist session).

    It has no RTMP connect: ``connect_params`` holds only ``args`` (the URL's query string) and
    ``tcUrl`` (the URL without its query, so no key reaches a callback through it).
    """

    __slots__ = ("id", "peer", "host", "app", "protocol", "_params", "data", "closed")

    def __init__(self, protocol: str, host: str, port: int | str, app: str, url: str, args: Mapping[str, str]) -> None:
        self.id = next(client_ids)
        self.protocol = protocol  # "http-flv" or "hls"
        self.host = host
        self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.app = app
        self._params = {"tcUrl": url, "args": dict(args)}
        self.data: dict = {}
        self.closed = False

    @property
    def connect_params(self) -> Mapping[str, Any]:
        return dict(self._params)

    def __repr__(self) -> str:
        return f"<HTTPViewerView {self.id} {self.protocol} {self.peer} app={self.app}>"


@dataclass(frozen=True)
class ConnectRequest:
    app: str
    tc_url: str
    page_url: str
    swf_url: str
    flash_ver: str
    args: Mapping[str, str]  # from "app?key=value" in the connect URL
    params: Mapping[str, Any]  # the whole connect command object
    session: SessionView = field(compare=False, repr=False)


@dataclass(frozen=True)
class PublishRequest:
    app: str
    name: str
    mode: str  # "live", "record" or "append"
    args: Mapping[str, str]  # from "name?key=value"
    session: SessionView = field(compare=False, repr=False)


@dataclass(frozen=True)
class PlayRequest:
    app: str
    name: str
    start: float  # as sent: -2/-2000 live or recorded, -1/-1000 live only, >= 0 recorded from that millisecond
    duration: float  # milliseconds; < 0 to the end
    reset: bool
    args: Mapping[str, str]
    session: SessionView = field(compare=False, repr=False)


@dataclass(frozen=True)
class StreamClosed:
    app: str
    name: str
    role: str  # "publisher" or "player"
    # "closeStream" or "deleteStream" (the client's command), "connection lost", "redirect" (the
    # control API moved it), "play again" (a player's second play on one NetStream), or
    # "taken over by a new publisher" (publisher_clash = evict).
    reason: str
    session: SessionView = field(compare=False, repr=False)


@dataclass(frozen=True)
class HandlerContext:
    """What a handler factory gets to build a handler for one application."""

    app: Any  # rtmpserver.config.AppConfig
    server: Any  # rtmpserver.config.ServerConfig
    hub: Any  # rtmpserver.hub.Hub
    clock: Any  # IReactorTime
    reactor: Any = None  # the reactor, for handlers that make network calls (notify)
    # The server's IServerMetrics: Prometheus collectors and /api annotations (docs/plugins.md).
    metrics: Any = field(default_factory=lambda: _server_metrics())

    def annotate_stream(self, annotate) -> None:
        """``annotate(app, name) -> dict``: fields for this application's streams in /api and /stat."""
        self.metrics.annotate_stream(annotate, app=self.app.name)

    def annotate_client(self, annotate) -> None:
        """``annotate(app, client_id) -> dict``: fields for this application's clients in /api."""
        self.metrics.annotate_client(annotate, app=self.app.name)


def _server_metrics():
    from rtmpserver.metrics import ServerMetrics

    return ServerMetrics()
