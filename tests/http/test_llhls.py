"""LL-HLS, fMP4 and hls.path through the HTTP site: blocking playlist reload, the preload hint,
bounds on held requests, fMP4 init segments with viewer tokens, files on disk."""

from __future__ import annotations

import os
import re
import stat

import pytest
from twisted.internet.task import Clock

from rtmpserver import config as configmod
from rtmpserver.codec import messages as m
from rtmpserver.errors import ConfigError
from rtmpserver.http.hls import hls_routes
from rtmpserver.http.site import RootResource
from rtmpserver.media.flv import FLVReader
from rtmpserver.protocol import RTMPServerFactory
from tests.handlers.test_hls import DATA
from tests.http.test_site import body, get
from tests.test_protocol import Peer

TAGS = FLVReader().feed((DATA / "media-testsrc-320x240-aac.flv").read_bytes())
SPAN = max(t.timestamp for t in TAGS) + 33  # 1 s: GOP 0.5 s


def make(tmp_path=None, **settings):
    values = {"fragment": "1", "window": "3", "linger": "10", "low_latency": "yes", "part": "0.5", **settings}
    if tmp_path is not None and "path" not in values:
        values["path"] = str(tmp_path / "hls")
    lines = "".join(f"hls.{k} = {v}\n" for k, v in values.items())
    cfg = configmod.parse(
        f"[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:live]\nhandlers = hls, live\n{lines}"
        "[http:main]\nlisten = tcp:0:interface=127.0.0.1\n",
        "t.ini",
    )
    f = RTMPServerFactory(cfg, Clock())
    return f, RootResource(f, cfg.http["main"], hls_routes(f.chains))


class Publisher:
    """Sends the capture's messages (repeated, timestamps continued) up to a given time."""

    def __init__(self, f, name="cam"):
        self.pub = Peer(f)
        self.sid, _ = self.pub.publish(name)
        self.sent_until = -1
        self.round = 0
        self.index = 0

    def until(self, ms: int) -> None:
        while True:
            t = TAGS[self.index]
            ts = t.timestamp + self.round * SPAN
            if ts > ms:
                break
            if t.type == 9:
                self.pub.client.send(m.VideoMessage(ts, self.sid, t.payload))
            elif t.type == 8 and (self.round == 0 or t.payload[1] == 1):
                self.pub.client.send(m.AudioMessage(ts, self.sid, t.payload))
            self.index += 1
            if self.index == len(TAGS):
                self.index = 0
                self.round += 1
            self.pub.pump()


def uris(text: str) -> list[str]:
    return re.findall(r'URI="([^"]+)"', text) + [line for line in text.splitlines() if line and not line.startswith("#")]


def test_blocking_reload_returns_when_the_part_appears():
    f, root = make()
    pub = Publisher(f)
    pub.until(2100)
    first = body(get(root, "hls/live/cam.m3u8")).decode()
    assert "#EXT-X-PART-INF:PART-TARGET=0.500" in first and "CAN-BLOCK-RELOAD=YES" in first
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="cam-(\d+)\.(\d+)\.ts\?vt=', first)
    msn, part = int(hint.group(1)), int(hint.group(2))
    req = get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(msn), "_HLS_part": str(part)})
    assert not req.finished  # held: that part is not there yet
    seg = root.hls.segmenter("live", "cam")
    ms = 2100
    while not seg.ready(msn, part):
        assert not req.finished
        ms += 10
        pub.until(ms)
    assert req.finished and req.responseCode in (None, 200)  # answered as the part appeared
    assert ms < 2700
    text = body(req).decode()
    assert f'URI="cam-{msn}.{part}.ts?vt=' in text or re.search(rf"^cam-{msn}\.ts\?vt=", text, re.M)
    # The same viewer session: _HLS_* arguments do not start another one.
    assert len(root.hls_viewers.sessions) == 1
    assert root.hls_viewers.blocked_by_app["live"] == 0


def test_blocking_requests_time_out_are_bounded_and_checked():
    f, root = make(max_blocked="2")
    pub = Publisher(f)
    pub.until(2100)
    body(get(root, "hls/live/cam.m3u8"))
    seg = root.hls.segmenter("live", "cam")
    nxt = seg.next_sequence
    held = [get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(nxt + 1)}) for _ in range(2)]
    assert not any(r.finished for r in held)
    third = get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(nxt + 1)})
    assert third.responseCode == 503 and b"too many" in body(third)
    assert get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(nxt + 2)}).responseCode == 400  # > 2 ahead
    assert get(root, "hls/live/cam.m3u8", {"_HLS_part": "1"}).responseCode == 400  # part without msn
    assert get(root, "hls/live/cam.m3u8", {"_HLS_msn": "x"}).responseCode == 400
    f.clock.advance(3 * seg.target_duration + 0.1)  # three target durations
    assert all(r.responseCode == 503 for r in held)
    assert root.hls_viewers.blocked_by_app["live"] == 0 and not seg.listeners


def test_a_client_that_leaves_frees_its_slot():
    f, root = make(max_blocked="1")
    pub = Publisher(f)
    pub.until(2100)
    body(get(root, "hls/live/cam.m3u8"))
    nxt = root.hls.segmenter("live", "cam").next_sequence
    req = get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(nxt + 1)})
    req.processingFailed(Exception("gone"))  # the connection dropped
    assert root.hls_viewers.blocked_by_app["live"] == 0
    assert not get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(nxt + 1)}).finished


def test_the_hinted_part_is_served_once_complete_and_unknown_parts_are_404():
    f, root = make()
    pub = Publisher(f)
    pub.until(2100)
    text = body(get(root, "hls/live/cam.m3u8")).decode()
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text).group(1)
    req = get(root, f"hls/live/{hint}")
    assert not req.finished
    pub.until(3200)
    assert req.finished and req.responseHeaders.getRawHeaders(b"content-type") == [b"video/mp2t"]
    data = body(req)
    assert data and len(data) % 188 == 0
    token = hint.split("?")[1]
    assert get(root, f"hls/live/cam-0.99.ts?{token}").responseCode == 404
    assert get(root, f"hls/live/cam-0.0.m4s?{token}").responseCode == 404  # not this stream's format
    assert get(root, "hls/live/cam-0.0.ts").responseCode == 403  # no token


def test_fmp4_init_segments_parts_and_segments_carry_the_token():
    f, root = make(format="fmp4")
    pub = Publisher(f)
    pub.until(3100)
    text = body(get(root, "hls/live/cam.m3u8")).decode()
    assert re.search(r'^#EXT-X-MAP:URI="cam-init0\.mp4\?vt=[^"]+"$', text, re.M)
    for uri in uris(text):
        if "PRELOAD" in uri:
            continue
        req = get(root, f"hls/live/{uri}")
        if uri == re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text).group(1):
            assert not req.finished
            continue
        assert req.responseCode in (None, 200), uri
        data = body(req)
        kind = data[4:8]
        if ".mp4?" in uri:
            assert kind == b"ftyp" and req.responseHeaders.getRawHeaders(b"content-type") == [b"video/mp4"]
        else:
            assert kind == b"moof" and req.responseHeaders.getRawHeaders(b"content-type") == [b"video/iso.segment"]


def test_classic_playlists_have_no_low_latency_tags():
    f, root = make(low_latency="no")
    Publisher(f).until(3100)
    text = body(get(root, "hls/live/cam.m3u8")).decode()
    assert "#EXT-X-PART" not in text and "SERVER-CONTROL" not in text and "#EXT-X-VERSION:3" in text
    # _HLS_msn on a classic playlist is answered at once (no blocking without CAN-BLOCK-RELOAD).
    assert get(root, "hls/live/cam.m3u8", {"_HLS_msn": "50"}).finished


# --------------------------------------------------------------------------- hls.path


def test_files_on_disk_follow_the_playlist_with_modes_and_no_temporaries(tmp_path):
    f, root = make(tmp_path, format="fmp4", window="2")
    pub = Publisher(f)
    d = tmp_path / "hls" / "live"
    seen_max = 0
    for ms in range(500, 9000, 250):
        pub.until(ms)
        names = sorted(os.listdir(d)) if d.exists() else []
        assert not [n for n in names if n.startswith(".")]  # temporaries are renamed at once
        segs = [n for n in names if n.endswith(".m4s")]
        seen_max = max(seen_max, len(segs))
        if "cam.m3u8" in names:
            listed = [line for line in (d / "cam.m3u8").read_text().splitlines() if line and not line.startswith("#")]
            assert all((d / n).exists() for n in listed)  # every listed segment is there
            assert 'URI="cam-init0.mp4"' in (d / "cam.m3u8").read_text() and (d / "cam-init0.mp4").exists()
    assert seen_max <= 2 + 3  # window + grace
    assert stat.S_IMODE(os.stat(d / "cam.m3u8").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750
    assert "#EXT-X-PART" not in (d / "cam.m3u8").read_text()  # no parts on disk
    handler = root.hls.providers["live"]
    assert handler.budget.used == sum(os.path.getsize(d / n) for n in os.listdir(d) if not n.endswith(".m3u8"))
    pub.pub.call("deleteStream", None, float(pub.sid))
    assert "#EXT-X-ENDLIST" in (d / "cam.m3u8").read_text()
    f.clock.advance(11)  # linger: the files go with the playlist
    assert os.listdir(d) == [] and handler.budget.used == 0


def test_disk_budget_skips_segments_instead_of_filling_the_disk(tmp_path):
    f, root = make(tmp_path, max_disk_bytes=str(1 << 20), low_latency="no")
    handler = root.hls.providers["live"]
    handler.budget.limit = 60_000  # below the config minimum, to hit it with a small stream
    pub = Publisher(f)
    pub.until(12000)
    d = tmp_path / "hls" / "live"
    assert handler.budget.used <= 60_000
    assert sum(os.path.getsize(d / n) for n in os.listdir(d) if n.endswith(".ts")) == handler.budget.used
    directory = handler.directories[("live", "cam")]
    assert directory.skipped > 0


def test_unsafe_names_stay_in_memory(tmp_path):
    f, root = make(tmp_path)
    Publisher(f, name="we ird").until(2100)
    assert not (tmp_path / "hls" / "live").exists() or os.listdir(tmp_path / "hls" / "live") == []


@pytest.mark.parametrize("settings, message", [
    ({"format": "mkv"}, "hls.format: expected one of ts | fmp4"),
    ({"part": "0.01"}, "hls.part: expected a number of seconds from 0.1 to 5"),
    ({"part": "2"}, "hls.part: must not be longer than hls.fragment"),
    ({"low_latency": "maybe"}, "hls.low_latency: expected yes/no"),
    ({"max_blocked": "-1"}, "hls.max_blocked: expected a number of requests"),
    ({"file_mode": "0999"}, "hls.file_mode: expected permission bits in octal"),
    ({"dir_mode": "4755"}, "hls.dir_mode: expected permission bits in octal"),
    ({"max_disk_bytes": "10"}, "hls.max_disk_bytes: expected a size in bytes"),
    ({"path": "/proc/nope"}, "hls.path: cannot create"),
])  # fmt: skip
def test_bad_settings_stop_startup(settings, message):
    with pytest.raises(ConfigError, match=message):
        make(**settings)


def test_a_failing_answer_does_not_reach_the_publisher(monkeypatch):
    f, root = make()
    pub = Publisher(f)
    pub.until(2100)
    body(get(root, "hls/live/cam.m3u8"))
    seg = root.hls.segmenter("live", "cam")
    req = get(root, "hls/live/cam.m3u8", {"_HLS_msn": str(seg.next_sequence + 1)})
    lost = []
    req.loseConnection = lambda: lost.append(True)

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(root.hls_viewers, "_write_playlist", broken)
    pub.until(5000)  # the segment appears; answering fails; media goes on
    assert lost == [True] and seg.next_sequence >= 3
    assert root.hls_viewers.blocked_by_app["live"] == 0
