"""The hls handler: segmenting published streams and serving them over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from rtmpserver import config as configmod
from rtmpserver.errors import ConfigError
from rtmpserver.http.hls import hls_routes
from rtmpserver.http.site import RootResource
from rtmpserver.media.flv import FLVReader
from rtmpserver.protocol import RTMPServerFactory
from tests.http.test_site import body, get
from tests.test_protocol import Peer

DATA = Path(__file__).parent.parent / "data"


def make(extra=""):
    settings = {"hls.fragment": "1", "hls.window": "3", "hls.linger": "10"}
    if extra:
        key, _, value = extra.partition("=")
        settings[key.strip()] = value.strip()
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    cfg = configmod.parse(
        f"[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\nhandlers = hls, live\n{lines}"
        "[http:main]\nlisten = tcp:0:interface=127.0.0.1\n",
        "t.ini",
    )
    f = RTMPServerFactory(cfg, Clock())
    return f, RootResource(f, cfg.http["main"], hls_routes(f.chains))


def publish_capture(f, name="cam", repeat=1):
    """Publish the FFmpeg-made test FLV (2 s, 30 fps, GOP 30) through a real session."""
    from rtmpserver.codec import messages as m

    tags = FLVReader().feed((DATA / "media-testsrc-320x240-aac.flv").read_bytes())
    pub = Peer(f)
    sid, _ = pub.publish(name)
    span = max(t.timestamp for t in tags) + 33
    for r in range(repeat):
        for t in tags:
            ts = t.timestamp + r * span
            if t.type == 9:
                pub.client.send(m.VideoMessage(ts, sid, t.payload))
            elif t.type == 8:
                pub.client.send(m.AudioMessage(ts, sid, t.payload))
        pub.pump()
    return pub, sid


def test_playlist_and_segments_are_served():
    f, root = make()
    pub, sid = publish_capture(f, repeat=3)
    playlist = body(get(root, "hls/live/cam.m3u8")).decode()
    assert playlist.startswith("#EXTM3U")
    uris = [line for line in playlist.splitlines() if ".ts?vt=" in line]
    assert 1 <= len(uris) <= 3  # window
    seg = get(root, f"hls/live/{uris[-1]}")
    data = body(seg)
    assert seg.responseHeaders.getRawHeaders(b"content-type") == [b"video/mp2t"]
    assert len(data) % 188 == 0 and data[0] == 0x47


def test_unpublish_ends_playlist_and_it_lingers_then_goes():
    f, root = make()
    pub, sid = publish_capture(f, repeat=2)
    pub.call("deleteStream", None, float(sid))
    assert "#EXT-X-ENDLIST" in body(get(root, "hls/live/cam.m3u8")).decode()
    f.clock.advance(11)
    assert get(root, "hls/live/cam.m3u8").responseCode == 404


def test_republish_continues_numbering_behind_a_discontinuity():
    f, root = make()
    pub, sid = publish_capture(f, repeat=2)
    pub.call("deleteStream", None, float(sid))
    before = body(get(root, "hls/live/cam.m3u8")).decode()
    pub2, sid2 = publish_capture(f, repeat=2)
    after = body(get(root, "hls/live/cam.m3u8")).decode()
    assert "#EXT-X-DISCONTINUITY" in after
    seqs = [int(line.split("?")[0].rsplit("-", 1)[1][:-3]) for line in after.splitlines() if ".ts?" in line]
    last_before = max(int(line.split("?")[0].rsplit("-", 1)[1][:-3]) for line in before.splitlines() if ".ts?" in line)
    assert max(seqs) > last_before


@pytest.mark.parametrize("path", ["hls/live/nope.m3u8", "hls/live/..%2fcam.m3u8", "hls/other/cam.m3u8"])
def test_unknown_or_hostile_paths_are_404(path):
    f, root = make()
    publish_capture(f)
    assert get(root, path).responseCode == 404


@pytest.mark.parametrize("segment", ["cam-999.ts", "cam-x.ts"])
def test_unknown_segments_are_403_without_a_token_and_404_with_one(segment):
    # Segments moved to tests/http/test_viewers.py for the token rules; here: unknown numbers.
    f, root = make()
    publish_capture(f, repeat=3)
    assert get(root, f"hls/live/{segment}").responseCode == 403
    playlist = body(get(root, "hls/live/cam.m3u8")).decode()
    token = next(line for line in playlist.splitlines() if ".ts?" in line).split("?")[1]
    assert get(root, f"hls/live/{segment}?{token}").responseCode == 404


@pytest.mark.parametrize("line, message", [
    ("hls.fragment = 0", "hls.fragment: expected a number of seconds from 0.5 to 60"),
    # The same number rules as the rest of the config file (docs/configuration.md "Types").
    ("hls.fragment = 1e0", "hls.fragment: expected a number of seconds"),
    ("hls.linger = -1", "hls.linger: expected a number of seconds >= 0 and <= 3600"),
    ("hls.window = many", "hls.window: expected a number"),
    ("hls.window = \u00b2", "hls.window: expected a number of segments from 1 to 100"),
    ("hls.endlist = maybe", "hls.endlist: expected yes/no, true/false, on/off or 1/0"),
    ("hls.colour = red", "hls.colour: unknown key"),
])
def test_bad_settings_stop_startup(line, message):
    with pytest.raises(ConfigError, match=message):
        make(line)
