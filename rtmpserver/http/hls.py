"""``/hls/<app>/...``: routes each app's HLS requests to the handler that segments that app.

The handlers are found by interface (``IHLSProvider``) in the apps' handler chains, so the site
and the hls handler need not know each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rtmpserver.interfaces import IHLSProvider

__all__ = ["HLSRoutes", "hls_routes"]


class HLSRoutes:
    """``segmenter(app, name)`` for the site: the stream's segmenter, None for an app without HLS."""

    def __init__(self, providers: Mapping[str, Any]) -> None:
        self.providers = dict(providers)

    def segmenter(self, app: str, name: str):
        provider = self.providers.get(app)
        return provider.segmenter(app, name) if provider is not None else None

    def max_blocked(self, app: str) -> int:
        """How many LL-HLS blocking requests may be held for ``app`` (0 without a provider)."""
        provider = self.providers.get(app)
        return provider.max_blocked if provider is not None else 0


def hls_routes(chains: Mapping[str, Any]) -> HLSRoutes | None:
    """The routes for every app whose chain has an ``IHLSProvider``; None when no app has one."""
    providers: dict[str, Any] = {}
    for app, chain in chains.items():
        for _, handler in chain.handlers:
            if IHLSProvider.providedBy(handler):
                providers.setdefault(app, handler)
    return HLSRoutes(providers) if providers else None
