"""The ``relay`` handler: pull streams from other servers on demand (or always), push published ones out.

- ``relay.pull = rtmp://origin/app/{name}``: a player asking for a stream nobody publishes here
  makes one upstream connection for that stream (a ``Relay`` in play mode feeding a
  ``PullSource``, which publishes into the local hub); ``relay.linger`` seconds after the last
  player left it is closed (``rtmpserver.handlers.demand``).
- ``relay.pull_static``: streams pulled for as long as the server runs, players or not.
- ``relay.push``: every stream published to the application (once the chain let it through) is
  pushed to each target (``PushSink`` on the live stream, a ``Relay`` in publish mode), with the
  publisher's metadata and sequence headers, until the publisher leaves.

Every relay reconnects with backoff and jitter while it is wanted, is listed in ``/stat`` and
``/api/v1/relays`` (``IMonitoredHandler``) and logs a failure once per state change
(``rtmpserver.relay.manager``).  URLs are filled from templates with ``fill_template``: a stream
name cannot add path segments, a query or a port.  docs/handlers.md "relay" has the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import ConfigError
from rtmpserver.handlers.demand import OnDemand
from rtmpserver.interfaces import (
    IAppHandler,
    IAppHandlerFactory,
    IHandlerService,
    IMonitoredHandler,
)
from rtmpserver.relay.client import PLAY, PUBLISH
from rtmpserver.relay.manager import Relay, RelaySettings
from rtmpserver.relay.pull import PullSource
from rtmpserver.relay.push import PushSink
from rtmpserver.relay.url import client_endpoint, fill_template, parse_url
from rtmpserver.settings import Section, boolean, integer, seconds

__all__ = ["RelayHandler", "RelayHandlerFactory", "PulledStream", "factory"]


def _query(args: Mapping[str, str]) -> str:
    return urlencode(list(args.items()))


class PulledStream:
    """A pull relay and the local stream it publishes: the source ``OnDemand`` and static pulls hold."""

    def __init__(self, relay: Relay, source: PullSource, static: bool = False) -> None:
        self.relay = relay
        self.source = source
        self.static = static

    def start(self) -> None:
        self.relay.start()

    def close(self) -> None:
        self.source.close()

    def describe(self, now: float) -> dict:
        return _row(self.relay, self.source.name, "pull-static" if self.static else "pull", now)


def _row(relay: Relay, name: str, direction: str, now: float) -> dict:
    d = relay.describe()
    since = d.pop("since")
    d.pop("mode")
    return {"kind": "relay", "name": name, "direction": direction, **d, "state_time": round(now - since, 3)}


@implementer(IAppHandler, IHandlerService, IMonitoredHandler)
class RelayHandler:
    _log = Logger()

    def __init__(self, context, *, pull: str | None, pull_static: list[tuple[str, str]], push: list[str],
                 verify: bool, ca_file: str | None, linger: float, max_relays: int, settings: RelaySettings,
                 http_wait: float = 5.0) -> None:
        self.app = context.app.name
        self.app_config = context.app
        self.hub = context.hub
        self.clock = context.clock
        self.reactor = context.reactor if context.reactor is not None else context.clock
        self.pull = pull
        self.pull_static = pull_static
        self.push = push
        self.verify = verify
        self.ca_file = ca_file
        self.max_relays = max_relays
        self.http_wait = http_wait
        self.settings = settings
        self.on_demand = OnDemand(self.clock, linger, self._start_pull, max_relays, f"relay.pull [app:{self.app}]")
        self.static: list[PulledStream] = []
        self.pushes: dict[str, list[PushSink]] = {}
        self.endpoint_for = self._endpoint

    def _endpoint(self, url):
        return client_endpoint(self.reactor, url, verify=self.verify, ca_file=self.ca_file, timeout=self.settings.connect_timeout)

    def _relay(self, url, mode: str, label: str, consumer=None) -> Relay:
        return Relay(url, mode, clock=self.clock, endpoint_for=lambda u: self.endpoint_for(u),
                     consumer=consumer, settings=self.settings, label=label)

    def _pulled(self, name: str, url, static: bool = False) -> PulledStream:
        a = self.app_config
        source = PullSource(self.hub, self.app, name, self.clock, gop_cache=a.gop_cache,
                            gop_max_frames=a.gop_cache_max_frames, gop_max_bytes=a.gop_cache_max_bytes)
        relay = self._relay(url, PLAY, f"pull {self.app}/{name} <- {url.public}", consumer=source)
        source.attach(relay)
        return PulledStream(relay, source, static)

    def _start_pull(self, name: str, args: dict) -> PulledStream:
        if self._relay_count() >= self.max_relays:
            raise ValueError(f"{self._relay_count()} relays already run (relay.max_relays)")
        url = fill_template(self.pull, name=name, app=self.app, args=_query(args))
        pulled = self._pulled(name, url)
        pulled.start()
        return pulled

    def _relay_count(self) -> int:
        return len(self.on_demand.demands) + len(self.static) + sum(len(v) for v in self.pushes.values())

    # -- IAppHandler --------------------------------------------------------------------------

    def connect(self, request, proceed):
        return proceed(request)

    def publish(self, request, proceed):
        d = proceed(request)
        if self.push:
            d.addCallback(self._push, request)
        return d

    def play(self, request, proceed):
        if self.pull is None:
            return proceed(request)
        if request.session.protocol == "http-flv" and not self._live_here(request.name, pulled_too=True):
            # HTTP-FLV answers 404 unless the stream is live when decided: start the pull and wait.
            return self.on_demand.proceed_when_live(request, proceed, lambda: self._live_here(request.name, pulled_too=True),
                                                    self.http_wait, self._played)
        d = proceed(request)
        d.addCallback(self._played, request)
        return d

    def _live_here(self, name: str, pulled_too: bool = False) -> bool:
        live = self.hub.get(self.app, name)
        return live is not None and live.active and (pulled_too or not isinstance(live.publisher, PullSource))

    def _played(self, result, request):
        name = request.name
        if self.on_demand.wanted(name) or not self._live_here(name):
            self.on_demand.joined(name, request.session.id, dict(request.args))
        return result

    def close_stream(self, event):
        if event.role == "player":
            self.on_demand.left(event.name, event.session.id)
        elif event.role == "publisher":
            live = self.hub.get(self.app, event.name)
            if live is None or not live.active:
                # The publisher is gone and no other took its place (an evicting publisher keeps
                # the pushes: they carry on with its media).
                for sink in self.pushes.pop(event.name, ()):
                    sink.close()

    def _push(self, live, request):
        if live is None or live.name in self.pushes:
            return live
        sinks: list[PushSink] = []
        self.pushes[live.name] = sinks
        for template in self.push:
            if self._relay_count() >= self.max_relays:
                self._log.warn("relay.push [app:{app}]: {n} relays already run (relay.max_relays); {name} not pushed to more targets",
                               app=self.app, n=self._relay_count(), name=live.name)
                break
            try:
                url = fill_template(template, name=live.name, app=self.app, args=_query(request.args))
            except ValueError as e:
                self._log.warn("relay.push [app:{app}]: cannot push {name}: {error}", app=self.app, name=live.name, error=e)
                continue
            relay = self._relay(url, PUBLISH, f"push {self.app}/{live.name} -> {url.public}")
            sink = PushSink(live, relay, backlog_bytes=self.app_config.player_backlog_bytes,
                            backlog_time=self.app_config.player_backlog_time)
            sinks.append(sink)
            live.add_sink(sink)
            relay.start()
        return live

    # -- IHandlerService ------------------------------------------------------------------------

    def start_service(self):
        for name, url in self.pull_static:
            pulled = self._pulled(name, url, static=True)
            self.static.append(pulled)
            pulled.start()

    def stop_service(self):
        self.on_demand.close_all()
        for pulled in self.static:
            pulled.close()
        self.static = []
        for sinks in self.pushes.values():
            for sink in sinks:
                sink.close()
        self.pushes = {}

    # -- IMonitoredHandler ------------------------------------------------------------------------

    def monitor_rows(self, now):
        rows = [d.source.describe(now) for d in self.on_demand.demands.values()]
        rows += [p.describe(now) for p in self.static]
        for name, sinks in self.pushes.items():
            rows += [_row(s.relay, name, "push", now) for s in sinks]
        return rows


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _template(section: Section, key: str, text: str) -> str:
    try:
        fill_template(text, name="stream", app="app", args="a=1")
    except ValueError as e:
        raise section.error(key, f"expected an rtmp:// or rtmps:// URL template ({e})", text, secret="?" in text) from None
    return text


@implementer(IPlugin, IAppHandlerFactory)
class RelayHandlerFactory:
    name = "relay"
    description = "pull streams from other RTMP servers on demand or always; push published streams to them"

    def build(self, settings, context):
        section = Section.for_handler(self.name, settings, context)
        v = section.convert({
            "verify": (boolean, "yes"),
            "linger": (seconds(0.0, 3600.0, allow_zero=True), "5"),
            "http_wait": (seconds(0.0, 60.0, allow_zero=True), "5"),
            "max_relays": (integer(1, 10000, "a number of relays"), "64"),
            "connect_timeout": (seconds(0.1, 300.0), "10"),
            "idle_timeout": (seconds(1.0, 3600.0), "30"),
            "backoff_initial": (seconds(0.01, 300.0), "1"),
            "backoff_max": (seconds(0.01, 3600.0), "30"),
        }, extra=("pull", "pull_static", "push", "ca_file"))
        pull = _template(section, "pull", section.raw("pull")) if "pull" in section else None
        push = [_template(section, "push", line) for line in _lines(section.raw("push"))]
        static: list[tuple[str, str]] = []
        for line in _lines(section.raw("pull_static")):
            parts = line.split()
            if len(parts) > 2:
                raise section.error("pull_static", "expected one stream per line: NAME, or NAME URL", line)
            name = parts[0]
            try:
                url = parse_url(parts[1]) if len(parts) == 2 else (
                    fill_template(pull, name=name, app=context.app.name) if pull else None)
            except ValueError as e:
                raise section.error("pull_static", f"expected NAME [URL] with a valid stream name and URL ({e})", line,
                                    secret="?" in line) from None
            if url is None:
                raise section.problem("pull_static", f"stream {name!r} has no URL and relay.pull is not set")
            if any(n == name for n, _ in static):
                raise section.problem("pull_static", f"stream {name!r} is listed twice")
            static.append((name, url))
        ca_file = None
        if "ca_file" in section:
            ca_file, pem = section.read("ca_file")
            try:
                from twisted.internet import ssl

                ssl.Certificate.loadPEM(pem)
            except Exception:
                raise section.problem("ca_file", f"{ca_file} is not a PEM certificate") from None
        if v["backoff_max"] < v["backoff_initial"]:
            raise section.problem("backoff_max", "must not be less than relay.backoff_initial")
        if pull is None and not push and not static:
            raise ConfigError(f"{section.where} relay: set relay.pull, relay.pull_static or relay.push (nothing to relay)")
        try:
            rs = RelaySettings(connect_timeout=v["connect_timeout"], start_timeout=v["connect_timeout"],
                               idle_timeout=v["idle_timeout"], backoff_initial=v["backoff_initial"],
                               backoff_max=v["backoff_max"])
        except ValueError as e:
            raise section.problem("backoff_initial", str(e)) from None
        if v["http_wait"] >= context.app.handler_timeout:
            raise section.problem("http_wait", f"must be less than the app's handler_timeout ({context.app.handler_timeout:g} s)")
        return RelayHandler(context, pull=pull, pull_static=static, push=push, verify=v["verify"], ca_file=ca_file,
                            linger=v["linger"], max_relays=v["max_relays"], settings=rs, http_wait=v["http_wait"])


factory = RelayHandlerFactory()
