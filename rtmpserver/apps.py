"""Application handler discovery and chain building.

Handler factories are Twisted plugins (``getPlugins(IAppHandlerFactory, rtmpserver.plugins)``),
each checked with ``verifyObject`` when it loads.  A handler named in config that is missing or
broken stops startup with a ConfigError: a server must never run with part of its policy (say,
auth) silently absent.  ``getPlugins`` only logs a plugin module that fails to import, so
``discover`` imports those modules itself to say which one failed and why.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger
from twisted.plugin import getCache, getPlugins
from twisted.python.modules import getModule
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
    IMonitoredHandler,
    IRecordingController,
    IRecordingObserver,
    IRecordingSource,
    IVodProvider,
)
from rtmpserver.requests import HandlerContext

__all__ = ["discover", "build_chains", "providers", "Discovered"]

_log = Logger()

# Interfaces a handler may provide besides IAppHandler: checked with verifyObject when it loads.
_OPTIONAL = (IHandlerService, IRecordingController, IRecordingSource, IRecordingObserver, IHLSProvider,
             IMonitoredHandler, IVodProvider)


class Discovered(dict):
    """Handler factories by name (an Exception for a broken one), plus ``import_errors``:
    ``{module name: "ExceptionType: message"}`` for plugin modules that failed to import."""

    def __init__(self) -> None:
        super().__init__()
        self.import_errors: dict[str, str] = {}


def _summary(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _import_failures(package: Any) -> dict[str, str]:
    """Plugin modules that twisted.plugin could not import, after ``getPlugins`` ran.

    A module that fails on first sight has no entry in the plugin cache; one cached earlier that
    fails now (a dependency removed since) has handler factories in the cache but is not imported.
    """
    cached = getCache(package)
    failed: dict[str, str] = {}
    for module in getModule(package.__name__).iterModules():
        key = module.name.rsplit(".", 1)[-1]
        if key in cached:
            provides = any(IAppHandlerFactory in p.provided for p in cached[key].plugins)
            if not provides or module.name in sys.modules:
                continue
        try:
            module.load()
        except BaseException as e:  # noqa: B036 - a plugin may raise anything at import, SystemExit too
            if isinstance(e, KeyboardInterrupt):
                raise
            failed[module.name] = _summary(e)
            _log.failure("handler plugin module {module} failed to import", module=module.name)
    return failed


def discover() -> Discovered:
    """Every handler factory on the plugin path, by name. Broken plugins are reported, not hidden."""
    import rtmpserver.plugins

    found = Discovered()
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
    found.import_errors = _import_failures(rtmpserver.plugins)
    return found


def build_chains(config: ServerConfig, hub: Any, clock: Any, reactor: Any = None, factories: Mapping[str, Any] | None = None,
                 metrics: Any = None) -> dict[str, Chain]:
    """A Chain per application, in config order; ``live`` is always last (added when absent).

    ``metrics`` is the server's ``IServerMetrics`` given to every handler (a new one when None).
    """
    if factories is None:
        factories = discover()
    if metrics is None:
        from rtmpserver.metrics import ServerMetrics

        metrics = ServerMetrics()
    chains: dict[str, Chain] = {}
    for app in config.apps.values():
        names = list(app.handlers)
        where = f"{config.path}: [app:{app.name}] handlers"
        if "live" in names and names[-1] != "live":
            raise ConfigError(f"{where}: 'live' must be the last handler (it is where the chain ends)")
        if "live" not in names:
            names.append("live")
        context = HandlerContext(app=app, server=config, hub=hub, clock=clock, reactor=reactor, metrics=metrics)
        built = []
        for name in names:
            f = factories.get(name)
            if f is None:
                known = ", ".join(sorted(k for k, v in factories.items() if not isinstance(v, Exception)))
                failed = factories.import_errors if isinstance(factories, Discovered) else {}
                why = "".join(f"; plugin module {m} failed to import: {e}" for m, e in sorted(failed.items()))
                raise ConfigError(f"{where}: no handler named {name!r} is installed (installed: {known}){why}")
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
