"""Application handler discovery and chain building.

Handler factories are Twisted plugins (``getPlugins(IAppHandlerFactory, rtmpserver.plugins)``),
each checked with ``verifyObject`` when it loads.  A handler named in config that is missing or
broken stops startup with a ConfigError: a server must never run with part of its policy (say,
auth) silently absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from rtmpserver.chain import Chain
from rtmpserver.config import ServerConfig
from rtmpserver.errors import ConfigError
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHandlerService,
    IHLSProvider,
    IRecordingController,
    IRecordingObserver,
    IRecordingSource,
)
from rtmpserver.requests import HandlerContext

__all__ = ["discover", "build_chains", "providers"]

_log = Logger()

# Interfaces a handler may provide besides IAppHandler: checked with verifyObject when it loads.
_OPTIONAL = (IHandlerService, IRecordingController, IRecordingSource, IRecordingObserver, IHLSProvider)


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
            for iface in (IAppHandler, *_OPTIONAL):
                if iface is IAppHandler or iface.providedBy(handler):
                    try:
                        verifyObject(iface, handler)
                    except Invalid as e:
                        raise ConfigError(
                            f"{where}: handler {name!r} built an object that is not an {iface.__name__}: {e}") from None
            built.append((name, handler))
        _connect_record_done(built)
        chains[app.name] = Chain(app.name, built, clock, app.handler_timeout)
    return chains


def _connect_record_done(built: list[tuple[str, Any]]) -> None:
    """Every IRecordingObserver of an app (notify's on_record_done) hears from every
    IRecordingSource of the same app (record), like nginx-rtmp's on_record_done."""
    handlers = [h for _, h in built]
    for source in handlers:
        if IRecordingSource.providedBy(source):
            for observer in handlers:
                if IRecordingObserver.providedBy(observer):
                    source.add_observer(observer)


def providers(chains: Mapping[str, Chain], iface: Any) -> list[tuple[str, Any]]:
    """(app name, handler) for every handler of every chain that provides ``iface``, in order."""
    return [(app, h) for app, chain in chains.items() for _, h in chain.handlers if iface.providedBy(h)]
