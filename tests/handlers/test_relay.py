"""The relay handler without sockets: which relays it makes, when it stops them, what it refuses to load."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from rtmpserver import testing
from rtmpserver.errors import ConfigError
from rtmpserver.hub import Hub
from rtmpserver.relay.pull import PullSource


class Endpoint:
    """Never connects: the relay stays 'connecting' and the test sees which URL it wanted."""

    def __init__(self, log, url):
        self.log = log
        self.url = url

    def connect(self, factory):
        self.log.append(self.url)
        return defer.Deferred()


def load(settings, clock=None, hub=None):
    clock = clock or Clock()
    hub = hub or Hub()
    h = testing.load_handler("relay", settings, clock=clock, hub=hub)
    wanted = []
    h.endpoint_for = lambda url: Endpoint(wanted, url)
    return h, clock, hub, wanted


def play(h, name, client, clock, args=None):
    view = testing.session_view(id=client)
    return testing.run_hook(h, testing.play_request(name, args=args, session=view), clock=clock)


def test_pull_on_demand_one_upstream_per_stream_closed_after_linger():
    h, clock, hub, wanted = load({"pull": "rtmp://origin:1936/src/{name}?{args}", "linger": "2"})
    assert play(h, "cam", 1, clock, args={"token": "t"}).proceeded
    assert play(h, "cam", 2, clock).proceeded
    assert play(h, "other", 3, clock).proceeded
    assert [u.public for u in wanted] == ["rtmp://origin:1936/src/cam", "rtmp://origin:1936/src/other"]
    assert wanted[0].query == "token=t"  # the first player's arguments go upstream (e.g. a token)
    rows = {r["name"]: r for r in h.monitor_rows(clock.seconds())}
    assert rows["cam"]["url"] == "rtmp://origin:1936/src/cam" and rows["cam"]["state"] == "connecting"
    assert "token" not in repr(rows)  # query strings never reach monitoring
    for client in (1, 2):
        testing.close_stream(h, testing.stream_closed("cam", role="player", session=testing.session_view(id=client)))
    clock.advance(1.9)
    assert {r["name"] for r in h.monitor_rows(clock.seconds())} == {"cam", "other"}
    clock.advance(0.2)
    assert [r["name"] for r in h.monitor_rows(clock.seconds())] == ["other"]


def test_no_pull_for_a_stream_published_here():
    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}"})
    live = hub.get_or_create("live", "cam")
    live.start(object(), 0.0)
    assert play(h, "cam", 1, clock).proceeded
    assert wanted == []


def test_a_refused_play_starts_nothing():
    from rtmpserver.errors import Rejected

    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}"})

    def refuse(req):
        raise Rejected("NetStream.Play.Failed", "no")

    view = testing.session_view(id=1)
    assert testing.run_hook(h, testing.play_request("cam", session=view), clock=clock, final=refuse).rejected
    assert wanted == []


def test_static_pulls_start_with_the_service():
    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}", "pull_static": "a\nb rtmp://other/x/y"})
    assert wanted == []
    h.start_service()
    assert [u.public for u in wanted] == ["rtmp://origin/src/a", "rtmp://other/x/y"]
    rows = h.monitor_rows(clock.seconds())
    assert [(r["name"], r["direction"]) for r in rows] == [("a", "pull-static"), ("b", "pull-static")]
    h.stop_service()
    assert h.monitor_rows(clock.seconds()) == []


def test_push_every_published_stream_to_each_target_until_it_ends():
    h, clock, hub, wanted = load({"push": "rtmp://edge1/live/{name}\nrtmps://edge2/in/{app}-{name}"})
    live = hub.get_or_create("live", "cam")
    live.start(object(), 0.0)
    view = testing.session_view(id=1)
    out = testing.run_hook(h, testing.publish_request("cam", session=view), clock=clock, final=lambda req: live)
    assert out.proceeded
    assert [u.public for u in wanted] == ["rtmp://edge1/live/cam", "rtmps://edge2/in/live-cam"]
    assert len(live.sinks) == 2
    assert [r["direction"] for r in h.monitor_rows(0)] == ["push", "push"]
    live.stop()
    testing.close_stream(h, testing.stream_closed("cam", role="publisher", session=view))
    assert live.sinks == [] and h.monitor_rows(0) == []


def test_an_evicting_publisher_keeps_the_pushes():
    h, clock, hub, wanted = load({"push": "rtmp://edge1/live/{name}"})
    live = hub.get_or_create("live", "cam")
    live.start(object(), 0.0)
    testing.run_hook(h, testing.publish_request("cam"), clock=clock, final=lambda req: live)
    live.start(object(), 1.0)  # a new publisher took over before the old one's close_stream
    testing.close_stream(h, testing.stream_closed("cam", role="publisher"))
    testing.run_hook(h, testing.publish_request("cam"), clock=clock, final=lambda req: live)
    assert len(wanted) == 1 and len(live.sinks) == 1


def test_pull_source_is_not_a_local_publisher():
    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}"})
    live = hub.get_or_create("live", "cam")
    live.start(PullSource(hub, "live", "cam", clock), 0.0)
    assert play(h, "cam", 1, clock).proceeded
    assert len(wanted) == 1  # a stream relayed here is still followed by the on-demand count


@pytest.mark.parametrize("settings, message", [
    ({}, "nothing to relay"),
    ({"pull": "http://origin/x/{name}"}, "relay.pull: expected an rtmp:// or rtmps:// URL template"),
    ({"pull": "rtmp://origin/x/{nam}"}, "relay.pull: expected"),
    ({"push": "rtmp://a/b/{name}\nnot a url"}, "relay.push: expected"),
    ({"pull_static": "cam"}, "relay.pull_static: stream 'cam' has no URL and relay.pull is not set"),
    ({"pull_static": "cam rtmp://a/b/c\ncam rtmp://a/b/d"}, "listed twice"),
    ({"pull_static": "cam rtmp://a/b/c extra"}, "one stream per line"),
    ({"pull": "rtmp://a/b/{name}", "linger": "-1"}, "relay.linger"),
    ({"pull": "rtmp://a/b/{name}", "backoff_initial": "5", "backoff_max": "1"}, "relay.backoff_max"),
    ({"pull": "rtmp://a/b/{name}", "verify": "maybe"}, "relay.verify"),
    ({"pull": "rtmp://a/b/{name}", "pul": "x"}, "did you mean"),
])
def test_bad_settings_stop_startup(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        testing.load_handler("relay", settings)


def test_ca_file_must_be_a_pem_certificate(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="relay.ca_file: .* is not a PEM certificate"):
        testing.load_handler("relay", {"pull": "rtmps://a/b/{name}", "ca_file": str(bad)})
    with pytest.raises(ConfigError, match="relay.ca_file: cannot read"):
        testing.load_handler("relay", {"pull": "rtmps://a/b/{name}", "ca_file": str(tmp_path / "missing.pem")})


def test_an_http_flv_viewer_waits_for_the_pull_bounded_by_http_wait():
    from rtmpserver.requests import HTTPViewerView

    clock = Clock()
    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}", "http_wait": "2"}, clock=clock)
    seen = []

    def final(req):
        live = hub.get("live", req.name)
        seen.append(live is not None and live.active)
        if not seen[-1]:
            from rtmpserver.errors import Rejected

            raise Rejected("NetStream.Play.StreamNotFound", "not live")

    view = HTTPViewerView("http-flv", "127.0.0.1", 1, "live", "http://x/live/cam.flv", {})
    pending = testing.start_hook(h, testing.play_request("cam", session=view), clock=clock, final=final)
    assert len(wanted) == 1 and not pending.outcome.decided  # the pull started; the decision waits
    clock.advance(0.5)
    hub.get_or_create("live", "cam").start(PullSource(hub, "live", "cam", clock), clock.seconds())
    clock.advance(0.1)
    assert pending.outcome.proceeded and seen == [True]
    # The viewer counts as a player of the pull; its end starts the linger.
    assert h.on_demand.demands["cam"].players == {view.id: 1}
    # A stream that does not come: refused after http_wait, and its pull lingers out.
    view2 = HTTPViewerView("http-flv", "127.0.0.1", 2, "live", "http://x/live/gone.flv", {})
    pending = testing.start_hook(h, testing.play_request("gone", session=view2), clock=clock, final=final)
    clock.advance(1.9)
    assert not pending.outcome.decided
    clock.advance(0.2)
    assert pending.outcome.rejected
    clock.advance(5.1)
    assert "gone" not in h.on_demand.demands


def test_max_relays_counts_pulls_and_pushes_together():
    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}", "push": "rtmp://edge/live/{name}", "max_relays": "2"})
    live = hub.get_or_create("live", "pub")
    live.start(object(), 0.0)
    testing.run_hook(h, testing.publish_request("pub"), clock=clock, final=lambda req: live)
    assert play(h, "a", 1, clock).proceeded
    assert play(h, "b", 2, clock).proceeded  # admitted, but no third relay: it waits like for any stream
    assert [u.public for u in wanted] == ["rtmp://edge/live/pub", "rtmp://origin/src/a"]


def test_a_pulled_stream_shows_its_upstream_as_publisher():
    from zope.interface.verify import verifyObject

    from rtmpserver.interfaces import IMonitoredClient

    h, clock, hub, wanted = load({"pull": "rtmp://origin/src/{name}?{args}"})
    play(h, "cam", 1, clock, args={"token": "secret"})
    source = h.on_demand.demands["cam"].source.source
    source.relay_started()
    clock.advance(3)
    verifyObject(IMonitoredClient, source)
    d = source.describe(clock.seconds())
    assert d["address"] == d["tcurl"] == "rtmp://origin/src/cam" and d["protocol"] == "relay" and d["time"] == 3
    assert "secret" not in repr(d)
