"""The metrics hook handlers get through ``HandlerContext.metrics`` (``IServerMetrics``).

One ``ServerMetrics`` per server: handlers register their Prometheus collectors into its registry
and add fields to the stream and client entries of ``/api`` and ``/stat``; every HTTP site of the
server reads the same object.  See docs/plugins.md, "Showing what a handler counts".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.interfaces import IServerMetrics

__all__ = ["ServerMetrics", "RESERVED_PREFIX"]

# The server's own families (rtmp_connections, rtmp_streams...) use this prefix.
RESERVED_PREFIX = "rtmp_"


def _names(collector: Any) -> set[str]:
    """The family names a collector exposes (from describe() when it has one, else collect())."""
    describe = getattr(collector, "describe", None)
    families = describe() if callable(describe) else collector.collect()
    return {f.name for f in families}


@implementer(IServerMetrics)
class ServerMetrics:
    _log = Logger()

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)
        self._collectors: list[Any] = []
        self._shared: dict[int, tuple[Any, Any]] = {}
        self._streams: list[tuple[Callable[[str, str], dict], str | None]] = []
        self._clients: list[tuple[Callable[[str | None, int], dict], str | None]] = []

    # -- IServerMetrics -------------------------------------------------------------------------

    def register(self, collector: Any) -> Any:
        if any(c is collector for c in self._collectors):
            return collector
        reserved = sorted(n for n in _names(collector) if n.startswith(RESERVED_PREFIX))
        if reserved:
            raise ValueError(f"metric name {reserved[0]!r}: the {RESERVED_PREFIX}* names are the server's own; use your handler's prefix")
        self.registry.register(collector)  # ValueError on a name another collector has
        self._collectors.append(collector)
        return collector

    def shared(self, owner: Any, make: Callable[[], Any]) -> Any:
        found = self._shared.get(id(owner))
        if found is not None and found[0] is owner:
            return found[1]
        collector = self.register(make())
        self._shared[id(owner)] = (owner, collector)  # owner kept alive, so its id stays unique
        return collector

    def annotate_stream(self, annotate: Callable[[str, str], dict], app: str | None = None) -> None:
        self._streams.append((annotate, app))

    def annotate_client(self, annotate: Callable[[str | None, int], dict], app: str | None = None) -> None:
        self._clients.append((annotate, app))

    # -- for the HTTP site ----------------------------------------------------------------------

    def collect(self):
        """The handlers' metric families, for a site registry that also holds the server's own."""
        yield from self.registry.collect()

    def stream_extra(self, app: str, name: str) -> dict:
        return self._run(self._streams, app, (app, name))

    def client_extra(self, app: str | None, client_id: int) -> dict:
        return self._run(self._clients, app, (app, client_id))

    def annotate_snapshot(self, snap: dict) -> None:
        """Add ``extra`` to the stream and client entries of a monitoring snapshot, in place."""
        if not (self._streams or self._clients):
            return
        for app, streams in snap.get("apps", {}).items():
            for st in streams:
                extra = self.stream_extra(app, st["name"])
                if extra:
                    st["extra"] = extra
        for c in snap.get("clients", ()):
            extra = self.client_extra(c.get("app"), c["id"])
            if extra:
                c["extra"] = extra

    def _run(self, annotators: list, app: str | None, args: tuple) -> dict:
        out: dict = {}
        for annotate, only in annotators:
            if only is not None and only != app:
                continue
            try:
                fields = annotate(*args)
            except Exception:
                self._log.failure("annotation {annotate!r} failed; skipped", annotate=annotate)
                continue
            if isinstance(fields, dict):
                out.update({str(k): v for k, v in fields.items()})
            elif fields is not None:
                self._log.warn("annotation {annotate!r} returned {kind}, not a dict; skipped", annotate=annotate, kind=type(fields).__name__)
        return out
