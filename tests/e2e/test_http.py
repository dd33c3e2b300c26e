"""HTTP delivery end to end: ffmpeg publishes over RTMP, HTTP clients read what the same twistd
process serves from its ``[http:main]`` section.

- HLS (``/hls/<app>/<stream>.m3u8``): the playlist is checked against RFC 8216 while the stream is
  live (tags, TARGETDURATION, MEDIA-SEQUENCE, sliding window, removed segments), every segment is
  fetched and the whole series decoded, ffprobe and ffmpeg read the playlist URL themselves, and
  EXT-X-ENDLIST follows the unpublish.
- HTTP-FLV (``/<app>/<stream>.flv``), /stat (nginx-rtmp XML), /metrics (Prometheus) and the JSON API
  while a publisher, an RTMP player and an HTTP-FLV player are connected.
- /control/drop/publisher, and the monitoring token.

Media is judged by ffprobe/ffmpeg and the documents by ElementTree and prometheus_client's parser,
never by our own code.  Every publisher sends 30 fps with a keyframe each second.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import (
    FPS,
    GOP_SECONDS,
    ClientProcess,
    check_media,
    decode_errors,
    ffprobe_json,
    wait_until,
)

pytestmark = pytest.mark.e2e

# Neither ffmpeg's nor the helpers' default size, so a right answer cannot be a coincidence.
SIZE = (384, 216)
SIZE_ARG = f"{SIZE[0]}x{SIZE[1]}"

FRAGMENT = 1.0  # hls.fragment
WINDOW = 2  # hls.window
# Segments stay fetchable for this many further cuts after they left the playlist: the
# segmenter's default, window + 1, because RFC 8216 6.2.2 wants a removed segment available for
# its own duration plus that of the longest playlist that listed it.
GRACE = WINDOW + 1
LINGER = 5.0  # hls.linger: seconds the ended playlist stays served
HLS_PUBLISH_SECONDS = 8  # > WINDOW * FRAGMENT, and long enough for segment 0 to be removed live

TOKEN = "e2e-monitoring-token-0123456789"

HTTP_TIMEOUT = 5.0


def _get(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of a request that is expected to end by itself."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _hls_server(e2e, **http_keys: str):
    return e2e.server(
        {"app:live": {"handlers": "hls, live", "hls.fragment": str(FRAGMENT), "hls.window": str(WINDOW),
                      "hls.endlist": "yes", "hls.linger": str(LINGER)}},
        http=http_keys,
    )  # fmt: skip


def _flv_pull_command(url: str, seconds: float, out) -> list[str]:
    """ffmpeg reading HTTP-FLV, copying it unchanged (``-copyinkf``: keep anything before a keyframe)."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rw_timeout", "10000000",  # give up after 10 s without data (microseconds)
        "-i", url, "-t", str(seconds), "-c", "copy", "-copyinkf", "-f", "flv", str(out),
    ]  # fmt: skip


def _wait_for_video(player, frames: int = 5, timeout: float = 10.0) -> None:
    ok = wait_until(lambda: len(player.reader.video_frames()) >= frames or player.poll() is not None, timeout)
    assert ok and len(player.reader.video_frames()) >= frames, (
        f"player got {len(player.reader.video_frames())} video frames within {timeout} s\n{player.describe()}"
    )


def _frames(seconds: float) -> dict:
    n = int(seconds * FPS)
    return {"size": SIZE, "min_video_frames": n - n // 10, "max_video_frames": n + 5, "min_audio_frames": int(seconds * 40)}


def _check_av(streams: list[dict], what: str) -> None:
    kinds = sorted(s["codec_type"] for s in streams)
    assert kinds == ["audio", "video"], f"{what}: streams {kinds}"
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next(s for s in streams if s["codec_type"] == "audio")
    assert video["codec_name"] == "h264" and (video["width"], video["height"]) == SIZE, f"{what}: video {video}"
    assert audio["codec_name"] == "aac" and int(audio["sample_rate"]) == 44100, f"{what}: audio {audio}"


# --------------------------------------------------------------------------------------------------
# HLS


@dataclass
class Playlist:
    text: str
    version: int | None
    target: int | None
    media_sequence: int | None
    segments: list[tuple[float, str]]  # (EXTINF duration, URI), in order
    endlist: bool


def _parse_playlist(text: str) -> Playlist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines and lines[0] == "#EXTM3U", f"playlist does not start with #EXTM3U:\n{text}"
    version = target = media_sequence = None
    segments: list[tuple[float, str]] = []
    duration: float | None = None
    endlist = False
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-VERSION":
            version = int(value)
        elif tag == "#EXT-X-TARGETDURATION":
            target = int(value)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            media_sequence = int(value)
        elif tag == "#EXTINF":
            assert duration is None, f"two EXTINF without a URI between them:\n{text}"
            duration = float(value.split(",", 1)[0])
        elif tag == "#EXT-X-ENDLIST":
            endlist = True
        elif not line.startswith("#"):
            assert duration is not None, f"URI {line} without EXTINF:\n{text}"
            segments.append((duration, line))
            duration = None
    assert duration is None, f"EXTINF without a URI:\n{text}"
    return Playlist(text, version, target, media_sequence, segments, endlist)


def _check_playlist(pl: Playlist, name: str) -> None:
    """What every playlist we serve must satisfy, live or ended (RFC 8216 4.3)."""
    text = pl.text
    # Decimal EXTINF durations need version 3 or later (RFC 8216 7).
    assert pl.version is not None and pl.version >= 3, f"EXT-X-VERSION missing or < 3:\n{text}"
    assert pl.target is not None, f"EXT-X-TARGETDURATION missing:\n{text}"
    assert pl.media_sequence is not None, f"EXT-X-MEDIA-SEQUENCE missing:\n{text}"
    assert pl.segments, f"a served playlist lists no segment:\n{text}"
    assert len(pl.segments) <= WINDOW, f"{len(pl.segments)} segments listed, window is {WINDOW}:\n{text}"
    for d, _ in pl.segments:
        # RFC 8216 4.3.3.1: each EXTINF, rounded to an integer, <= TARGETDURATION; ours are never over.
        assert 0 < d <= pl.target, f"EXTINF {d} vs TARGETDURATION {pl.target}:\n{text}"
    # MEDIA-SEQUENCE is the number of the first listed segment, and the rest follow it (our URIs
    # carry the number: <stream>-<n>.ts?vt=<viewer token>, one token per playlist).
    token = _token(pl)
    expected = [f"{name}-{pl.media_sequence + i}.ts?vt={token}" for i in range(len(pl.segments))]
    assert [uri for _, uri in pl.segments] == expected, f"URIs do not follow MEDIA-SEQUENCE:\n{text}"


def _token(pl: Playlist) -> str:
    """The viewer token a playlist put in its segment URIs (segments need it: 403 without)."""
    return pl.segments[0][1].partition("?vt=")[2]


def _check_durations(pl: Playlist) -> None:
    """Cuts happen at keyframes once a segment is at least FRAGMENT long: fragment <= d <= fragment + GOP.

    Only the last segment of an ended playlist may be shorter (the publisher stopped mid-GOP).
    """
    upper = FRAGMENT + GOP_SECONDS + 1 / FPS
    durations = [d for d, _ in pl.segments]
    whole = durations[:-1] if pl.endlist else durations
    for d in whole:
        assert FRAGMENT <= d <= upper, f"segment duration {d} outside [{FRAGMENT}, {upper}]:\n{pl.text}"
    if pl.endlist:
        assert 0 < durations[-1] <= upper, f"last segment duration {durations[-1]}:\n{pl.text}"


def test_hls_live_playlist_window_segments_and_endlist(e2e):
    srv = _hls_server(e2e)
    name = "hlscam"
    m3u8 = srv.http_url(f"hls/live/{name}.m3u8")

    token = [""]  # the viewer token of the latest playlist

    def seg_url(n: int) -> str:
        return srv.http_url(f"hls/live/{name}-{n}.ts?vt={token[0]}")

    assert _get(m3u8)[0] == 404, "a playlist for a stream nobody publishes"
    pub = e2e.publish(srv.url(f"live/{name}"), seconds=HLS_PUBLISH_SECONDS, size=SIZE_ARG)
    ctx = e2e.context(pub)

    segments: dict[int, bytes] = {}
    durations: dict[int, float] = {}
    most_listed = 0
    last_media_sequence = -1
    gone: set[int] = set()  # segments seen answering 404 after they left the window + grace
    in_grace: set[int] = set()  # segments seen answering 200 after they left the window
    live_probe = None
    deadline = time.monotonic() + HLS_PUBLISH_SECONDS + 10
    with ThreadPoolExecutor(max_workers=1) as pool:
        while pub.poll() is None and time.monotonic() < deadline:
            status, headers, body = _get(m3u8)
            if status == 404:
                assert not segments, f"playlist vanished while publishing\n{ctx}"
                time.sleep(0.1)
                continue
            assert status == 200, f"playlist: HTTP {status} {body[:200]!r}"
            assert headers.get("content-type") == "application/vnd.apple.mpegurl", headers
            assert headers.get("access-control-allow-origin") == "*", headers
            pl = _parse_playlist(body.decode())
            _check_playlist(pl, name)
            token[0] = _token(pl)
            if not segments:
                # A guessed segment URL (no viewer token of a playlist decision) is refused.
                assert _get(srv.http_url(f"hls/live/{name}-{pl.media_sequence}.ts"))[0] == 403
            if pl.endlist:
                break  # the publisher has just finished; judged below
            _check_durations(pl)
            ms = pl.media_sequence
            assert ms >= last_media_sequence, f"MEDIA-SEQUENCE went back from {last_media_sequence}:\n{pl.text}"
            last_media_sequence = ms
            most_listed = max(most_listed, len(pl.segments))
            for i, (d, _) in enumerate(pl.segments):
                seq = ms + i
                assert durations.setdefault(seq, d) == d, f"segment {seq} changed its EXTINF {durations[seq]} -> {d}"
                if seq not in segments:
                    s, h, data = _get(seg_url(seq))
                    assert s == 200, f"listed segment {seq}: HTTP {s}"
                    assert h.get("content-type") == "video/mp2t", h
                    assert data and data[0] == 0x47 and len(data) % 188 == 0, f"segment {seq} is not MPEG-TS packets"
                    segments[seq] = data
            # Left the window: still served for GRACE more cuts, then gone.  One cut may happen
            # between the playlist and the segment request, so the boundary case is not judged.
            for seq in range(max(0, ms - GRACE - 3), ms):
                behind = ms - seq
                if behind <= GRACE - 1:
                    assert _get(seg_url(seq))[0] == 200, f"segment {seq} gone {behind} cut(s) after leaving the window"
                    in_grace.add(seq)
                elif behind >= GRACE + 1:
                    assert _get(seg_url(seq))[0] == 404, f"segment {seq} still served {behind} cuts after leaving the window"
                    gone.add(seq)
            if live_probe is None and len(segments) >= WINDOW:
                # ffprobe on the live playlist URL, as a player would open it.
                live_probe = pool.submit(ffprobe_json, m3u8, "-show_streams")
            time.sleep(0.25)
        assert live_probe is not None, f"never {WINDOW} segments while publishing (got {sorted(segments)})\n{ctx}"
        _check_av(live_probe.result(timeout=30)["streams"], "ffprobe of the live playlist")
    pub.wait_ok(timeout=15)

    assert most_listed == WINDOW, f"the playlist never filled its window of {WINDOW} (at most {most_listed})"
    assert gone, "no segment was seen removed while publishing: publish for longer"
    assert in_grace, "no segment was seen in its grace period"

    # Unpublish: the partial segment is finished and EXT-X-ENDLIST appended.
    ended: list[Playlist] = []

    def has_endlist() -> bool:
        status, _, body = _get(m3u8)
        if status == 200:
            ended[:] = [_parse_playlist(body.decode())]
        return bool(ended) and ended[0].endlist

    assert wait_until(has_endlist, timeout=10, interval=0.2), f"no EXT-X-ENDLIST after unpublish: {ended and ended[0].text}"
    final = ended[0]
    _check_playlist(final, name)
    token[0] = _token(final)
    _check_durations(final)
    for i, (d, _) in enumerate(final.segments):
        seq = final.media_sequence + i
        if seq in durations:
            assert durations[seq] == d, f"segment {seq} changed its EXTINF {durations[seq]} -> {d}"
        if seq not in segments:
            s, _, segments[seq] = _get(seg_url(seq))
            assert s == 200, f"segment {seq} of the ended playlist: HTTP {s}"

    # Every segment from the first to the last, each fetched while listed: together they are the
    # whole publish, decodable without a gap or a duplicate frame.
    assert sorted(segments) == list(range(max(segments) + 1)), f"segments seen: {sorted(segments)}"
    joined = e2e.workdir / "hls-all.ts"
    joined.write_bytes(b"".join(segments[n] for n in sorted(segments)))
    n = HLS_PUBLISH_SECONDS * FPS
    check_media(joined, size=SIZE, min_video_frames=n - 10, max_video_frames=n + 5,
                min_audio_frames=HLS_PUBLISH_SECONDS * 40, context=ctx)  # fmt: skip

    # ffmpeg decodes the ended playlist from its URL, and ffprobe counts what it lists.
    assert decode_errors(m3u8) == "", f"ffmpeg decoding {m3u8}:\n{decode_errors(m3u8)}"
    streams = ffprobe_json(m3u8, "-count_frames", "-show_streams")["streams"]
    _check_av(streams, "ffprobe of the ended playlist")
    video = next(s for s in streams if s["codec_type"] == "video")
    listed = sum(d for d, _ in final.segments)
    assert int(video["nb_read_frames"]) >= int((listed - 0.1) * FPS), f"{video['nb_read_frames']} frames for {listed} s listed"

    # After hls.linger the ended playlist and its segments are forgotten.
    assert wait_until(lambda: _get(m3u8)[0] == 404, timeout=LINGER + 5, interval=0.25), "playlist still served after linger"
    assert _get(seg_url(final.media_sequence))[0] == 404


# --------------------------------------------------------------------------------------------------
# HTTP-FLV, /stat, /metrics, API


def _metric_samples(text: str) -> dict[tuple[str, str], list]:
    """Prometheus families by (name, type) as the reference parser gives them -> their samples.

    The type is part of the key, so a gauge and a counter of one name would be told apart.
    """
    families: dict[tuple[str, str], list] = {}
    for family in text_string_to_metric_families(text):
        key = (family.name, family.type)
        assert key not in families, f"metric family {key} twice"
        families[key] = family.samples
    return families


def _sample(families: dict, family: str, kind: str, sample: str, **labels: str) -> float:
    assert (family, kind) in families, f"no {kind} family {family} (have {sorted(families)})"
    samples = families[family, kind]
    values = [s.value for s in samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) == 1, f"{sample}{labels}: {samples}"
    return values[0]


def test_http_flv_stat_metrics_and_api_with_three_clients(e2e):
    srv = e2e.server(http={})
    name = "cam"
    rtmp = srv.url(f"live/{name}")
    flv_url = srv.http_url(f"live/{name}.flv")
    status, headers, _ = _get(flv_url)
    assert status == 404 and headers.get("access-control-allow-origin") == "*", (status, headers)

    pub = e2e.publish(rtmp, seconds=9, size=SIZE_ARG)
    player = e2e.play(rtmp, seconds=4)
    _wait_for_video(player)
    flv_out = e2e.workdir / "httpflv.flv"
    flv = ClientProcess("httpflv", _flv_pull_command(flv_url, 4, flv_out), e2e.workdir)
    e2e.clients.append(flv)
    ctx = e2e.context(pub, player, flv)

    def api_streams() -> list[dict]:
        status, _, body = _get(srv.http_url("api/v1/streams"))
        assert status == 200, status
        return [s for s in json.loads(body)["streams"] if s["app"] == "live" and s["name"] == name]

    # All three attached: the RTMP player and the HTTP-FLV client count as players.
    assert wait_until(lambda: [s["players"] for s in api_streams()] == [2], timeout=10, interval=0.2), (
        f"API streams: {api_streams()}\n{ctx}"
    )
    [api] = api_streams()
    assert api["active"] and api["publisher"] is not None and api["bytes_in"] > 0, api

    # ffprobe opens the HTTP-FLV URL itself (a third player for a moment).
    with ThreadPoolExecutor(max_workers=1) as pool:
        probe = pool.submit(ffprobe_json, flv_url, "-show_streams")

        status, headers, body = _get(srv.http_url("stat"))
        assert status == 200 and headers.get("content-type", "").startswith("text/xml"), (status, headers)
        assert "access-control-allow-origin" not in headers, "CORS on /stat: other sites' pages could read it"
        wrong_addresses = _check_stat(ET.fromstring(body), name)

        status, headers, body = _get(srv.http_url("metrics"))
        assert status == 200 and headers.get("content-type", "").startswith("text/plain"), (status, headers)
        samples = _metric_samples(body.decode())
        assert _sample(samples, "rtmp_open_connections", "gauge", "rtmp_open_connections") >= 2
        assert _sample(samples, "rtmp_connections", "counter", "rtmp_connections_total") >= 2
        assert _sample(samples, "rtmp_streams", "gauge", "rtmp_streams", app="live") == 1
        assert _sample(samples, "rtmp_players", "gauge", "rtmp_players", app="live") >= 2
        assert _sample(samples, "rtmp_bytes_in", "counter", "rtmp_bytes_in_total", app="live") > 100_000
        assert _sample(samples, "rtmp_bytes_out", "counter", "rtmp_bytes_out_total", app="live") > 100_000
        assert _sample(samples, "rtmp_uptime_seconds", "gauge", "rtmp_uptime_seconds") > 0

        status, _, body = _get(srv.http_url("api/v1/clients"))
        assert status == 200, status
        protocols = sorted(c["protocol"] for c in json.loads(body)["clients"] if c["app"] == "live")
        assert protocols.count("rtmp") == 2 and "http-flv" in protocols, protocols

        _check_av(probe.result(timeout=30)["streams"], f"ffprobe of {flv_url}")

    player.wait_ok(timeout=20)
    flv.wait_ok(timeout=20)
    check_media(player.out_path, **_frames(4), context=ctx)
    check_media(flv_out, **_frames(4), context=ctx)
    pub.wait_ok(timeout=15)
    assert not wrong_addresses, f"/stat <address> is not the bare IP address: {wrong_addresses}"


def _check_stat(root: ET.Element, name: str) -> list[str]:
    """nginx-rtmp's stat document (ngx_rtmp_stat_module.c): element names and nesting.

    Returns the <client> elements whose <address> is not the bare IP address.
    """
    wrong_addresses: list[str] = []
    assert root.tag == "rtmp", root.tag
    for tag in ("nginx_version", "nginx_rtmp_version", "pid", "uptime", "naccepted", "bw_in", "bytes_in", "bw_out", "bytes_out"):
        assert root.find(tag) is not None, f"/stat has no <rtmp><{tag}>"
    assert int(root.findtext("naccepted")) >= 2
    apps = {a.findtext("name"): a for a in root.findall("server/application")}
    assert "live" in apps, f"applications: {sorted(apps)}"
    app = apps["live"]
    streams = {s.findtext("name"): s for s in app.findall("live/stream")}
    assert name in streams, f"streams: {sorted(streams)}"
    stream = streams[name]
    text = ET.tostring(stream, encoding="unicode")
    for tag in ("time", "bw_in", "bytes_in", "bw_out", "bytes_out", "bw_audio", "bw_video", "nclients"):
        assert stream.find(tag) is not None, f"<stream> has no <{tag}>: {text}"
    assert int(stream.findtext("bytes_in")) > 100_000, text
    assert stream.find("publishing") is not None and stream.find("active") is not None, text

    clients = stream.findall("client")
    # The publisher, the RTMP player, the HTTP-FLV player, and ffprobe's HTTP-FLV read if it is
    # still connected.
    assert len(clients) in (3, 4) and int(stream.findtext("nclients")) == len(clients), text
    assert int(app.findtext("live/nclients")) >= len(clients), text
    for c in clients:
        for tag in ("id", "address", "time", "flashver", "dropped", "avsync", "timestamp"):
            assert c.find(tag) is not None, f"<client> has no <{tag}>: {ET.tostring(c, encoding='unicode')}"
        # nginx-rtmp's <address> is the peer's IP address alone.
        if c.findtext("address") != "127.0.0.1":
            wrong_addresses.append(ET.tostring(c, encoding="unicode"))
        assert c.find("active") is not None
    publishers = [c for c in clients if c.find("publishing") is not None]
    assert len(publishers) == 1, text
    # ffmpeg's RTMP publisher connects with flashVer "FMLE/3.0 (compatible; Lavf...)".
    assert publishers[0].findtext("flashver").startswith("FMLE/"), text
    assert len({c.findtext("id") for c in clients}) == len(clients), f"client ids repeat: {text}"

    video, audio = stream.find("meta/video"), stream.find("meta/audio")
    assert video is not None and audio is not None, text
    assert (int(video.findtext("width")), int(video.findtext("height"))) == SIZE, text
    assert video.findtext("codec") == "H264" and float(video.findtext("frame_rate")) == FPS, text
    assert video.findtext("profile") and video.findtext("level"), text
    assert audio.findtext("codec") == "AAC" and audio.findtext("profile") == "LC", text
    assert int(audio.findtext("sample_rate")) == 44100 and int(audio.findtext("channels")) == 1, text
    return wrong_addresses


# --------------------------------------------------------------------------------------------------
# Control and the monitoring token


def test_control_drop_publisher_ends_publisher_and_players(e2e):
    # control always needs a token; publish_notify: FFmpeg ends its play on UnpublishNotify
    # (without it, only at its -rw_timeout, as against nginx-rtmp's defaults).
    srv = e2e.server({"app:live": {"publish_notify": "yes"}}, http={"control": "yes", "token": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    name = "dropme"
    rtmp = srv.url(f"live/{name}")
    pub = e2e.publish(rtmp, seconds=30, size=SIZE_ARG)  # would run 30 s unless dropped
    player = e2e.play(rtmp, seconds=None)  # would run until the stream ends
    _wait_for_video(player, frames=15)
    ctx = e2e.context(pub, player)

    # A drop without any filter would hit everyone: refused, nobody dropped.
    status, _, body = _get(srv.http_url("control/drop/client"), auth)
    assert status == 400, (status, body)
    # DNS rebinding: a page of another site reaching this loopback listener names its own host.
    status, _, body = _get(srv.http_url(f"control/drop/publisher?app=live&name={name}"), {**auth, "Host": "evil.example"})
    assert status == 403, (status, body)
    status, _, body = _get(srv.http_url(f"control/drop/publisher?app=live&name={name}"), auth, method="POST")
    assert (status, body.strip()) == (200, b"1"), (status, body)

    # The dropped publisher notices its closed connection at its next write; waiting 8 s, less
    # than the players' 10 s read timeout, tells "the stream ended" from "the player timed out".
    rc = pub.wait(timeout=8)
    assert rc != 0, f"publisher exited cleanly although it was dropped\n{ctx}"
    player.wait_ok(timeout=8)
    check_media(player.out_path, size=SIZE, min_video_frames=15, min_audio_frames=10, context=ctx)

    status, _, body = _get(srv.http_url("api/v1/streams"), auth)
    live = [s for s in json.loads(body)["streams"] if s["name"] == name and s["active"]]
    assert status == 200 and not live, body
    status, _, body = _get(srv.http_url(f"control/drop/publisher?app=live&name={name}"), auth)
    assert (status, body.strip()) == (200, b"0"), (status, body)


def test_monitoring_and_control_need_the_token(e2e):
    srv = e2e.server(http={"token": TOKEN, "control": "yes"})
    for path in ("stat", "api/v1/streams", "api/v1/clients", "metrics", "control/drop/client?app=live&name=nobody"):
        url = srv.http_url(path)
        sep = "&" if "?" in path else "?"
        assert _get(url)[0] == 401, path
        assert _get(url, {"Authorization": f"Bearer {TOKEN}x"})[0] == 401, path
        assert _get(f"{url}{sep}token={TOKEN[:-1]}")[0] == 401, path
        assert _get(url, {"Authorization": f"Bearer {TOKEN}"})[0] == 200, path
        assert _get(f"{url}{sep}token={TOKEN}")[0] == 200, path
    # Playback is not monitoring: no token needed (404: nothing is published).
    assert _get(srv.http_url("live/nobody.flv"))[0] == 404
