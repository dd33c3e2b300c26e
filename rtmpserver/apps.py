"""Application handler discovery and chain building.

Handler factories are Twisted plugins (``getPlugins(IAppHandlerFactory, rtmpserver.plugins)``),
each checked with ``verifyObject`` when it loads.  A handler named in config that is missing or
broken stops startup with a ConfigError: a server must never run with part of its policy (say,
auth) silently absent.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from rtmpserver.chain import Chain
from rtmpserver.config import ServerConfig
from rtmpserver.errors import ConfigError
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.requests import HandlerContext

__all__ = ["discover", "build_chains"]

_log = Logger()


def discover() -> dict[str, Any]:
    """Every handler factory on the plugin path, by name. Broken plugins are reported, not hidden."""
    import rtmpserver.plugins

    found: dict[str, Any] = {}
    for f in getPlugins(IAppHandlerFactory, rtmpserver.plugins):
        name = getattr(f, "name", None)
        try:
            verifyObject(IAppHandlerFactory, f)
        except Invalid as e:
            _log.error("handler plugin {plugin!r} does not provide IAppHandlerFactory: {error}", plugin=f, error=e)
            found.setdefault(str(name), e)  # remembered so config naming it gets a precise error
            continue
        if name in found and not isinstance(found[name], Exception):
            _log.warn("two handler plugins named {name!r}; using the first ({first!r})", name=name, first=found[name])
            continue
        found[name] = f
    return found


def build_chains(config: ServerConfig, hub: Any, clock: Any, reactor: Any = None, factories: Mapping[str, Any] | None = None) -> dict[str, Chain]:
    """A Chain per application, in config order; ``live`` is always last (added when absent)."""
    if factories is None:
        factories = discover()
    chains: dict[str, Chain] = {}
    for app in config.apps.values():
        names = list(app.handlers)
        where = f"{config.path}: [app:{app.name}] handlers"
        if "live" in names and names[-1] != "live":
            raise ConfigError(f"{where}: 'live' must be the last handler (it is where the chain ends)")
        if "live" not in names:
            names.append("live")
        context = HandlerContext(app=app, server=config, hub=hub, clock=clock, reactor=reactor)
        built = []
        for name in names:
            f = factories.get(name)
            if f is None:
                known = ", ".join(sorted(k for k, v in factories.items() if not isinstance(v, Exception)))
                raise ConfigError(f"{where}: no handler named {name!r} is installed (installed: {known})")
            if isinstance(f, Exception):
                raise ConfigError(f"{where}: handler {name!r} is broken: {f}")
            settings = app.handler_settings.get(name, {})
            try:
                handler = f.build(dict(settings), context)
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(f"{where}: handler {name!r} failed to start: {e!r}") from e
            try:
                verifyObject(IAppHandler, handler)
            except Invalid as e:
                raise ConfigError(f"{where}: handler {name!r} built an object that is not an IAppHandler: {e}") from None
            built.append((name, handler))
        _connect_record_done(built)
        chains[app.name] = Chain(app.name, built, clock, app.handler_timeout)
    return chains


def _connect_record_done(built: list[tuple[str, Any]]) -> None:
    """notify's on_record_done needs to hear from record in the same app (nginx-rtmp's on_record_done)."""
    sources = [h for _, h in built if isinstance(getattr(h, "on_record_done", None), list)]
    sinks = [h.recording_done for _, h in built if callable(getattr(h, "recording_done", None))]
    for source in sources:
        for sink in sinks:
            source.on_record_done.append(sink)
