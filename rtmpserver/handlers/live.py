"""The ``live`` handler: the terminal link of every chain.

Live fan-out itself is the server's own action (``rtmpserver.hub``), run when the whole chain
has proceeded; this handler only marks the end of the configured chain and lets everything
through, so ``handlers = live`` means "no policy, just live".
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.settings import Section


@implementer(IAppHandler)
class LiveHandler:
    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        return proceed(request)

    def play(self, request, proceed):
        return proceed(request)

    def close_stream(self, event):
        return None


@implementer(IPlugin, IAppHandlerFactory)
class LiveHandlerFactory:
    name = "live"
    description = "live fan-out from one publisher to many players (always last in the chain)"

    def build(self, settings, context):
        section = Section.for_handler(self.name, settings, context)
        for key in settings:
            raise section.problem(key, "unknown key (live has no settings)")
        return LiveHandler()


factory = LiveHandlerFactory()
