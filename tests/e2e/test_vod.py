"""Recorded playback (the ``vod`` handler) end to end: FFmpeg and rtmpdump play FLV, MP4 and
fragmented MP4 files that FFmpeg made at test time; rtmpdump's ``-A``/``-B`` (play start and
duration) land on the keyframe at or before the start; our own player (tests/e2e/rtmpclient.py)
drives seek, pause/unpause, playlists and play2; a missing file is NetStream.Play.StreamNotFound;
a recording made by the record handler plays back.

Where a seek landed is judged by content, not by timestamps: the first video packet a client
received is looked up (by its MD5) among the packets of the source file, whose times ffmpeg
reports.  So a server that stamps the right times on the wrong frames cannot pass.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import check_media
from tests.e2e.rtmpclient import Player

pytestmark = pytest.mark.e2e

SECONDS = 8
GOP_MS = 1000


def _ffmpeg(*args: str) -> None:
    r = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """clip.mp4 (8 s, 30 fps, 1 s GOP, H.264 + AAC), clip.flv (the same packets, keyframe index),
    frag.mp4 (fragmented), short.flv (3 s, for playlists)."""
    d = tmp_path_factory.mktemp("vod-media")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "64k", str(d / "clip.mp4"))  # fmt: skip
    _ffmpeg("-i", str(d / "clip.mp4"), "-c", "copy", "-flvflags", "add_keyframe_index", str(d / "clip.flv"))
    _ffmpeg("-i", str(d / "clip.mp4"), "-c", "copy", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(d / "frag.mp4"))
    _ffmpeg("-i", str(d / "clip.mp4"), "-t", "3", "-c", "copy", str(d / "short.flv"))
    (d / "shows").mkdir()
    _ffmpeg("-i", str(d / "clip.mp4"), "-t", "2", "-c", "copy", str(d / "shows" / "ep1.mp4"))
    return d


def _vod_server(e2e, media: Path, **extra: str):
    keys = {"handlers": "vod", "vod.path": str(media)}
    keys.update(extra)
    return e2e.server({"app:vod": keys})


def _packet_times(path: Path) -> dict[str, float]:
    """MD5 of each video packet -> its time in seconds (ffmpeg's framemd5 of the copied stream)."""
    r = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v",
                        "-c", "copy", "-f", "framemd5", "-"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    tb = 1 / 1000
    out: dict[str, float] = {}
    for line in r.stdout.splitlines():
        if line.startswith("#tb"):
            num, den = line.split(":")[1].strip().split("/")
            tb = int(num) / int(den)
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            out.setdefault(fields[5], int(fields[1]) * tb)
    return out


def _video_hashes(path: Path) -> list[str]:
    r = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v",
                        "-c", "copy", "-f", "framemd5", "-"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [line.split(",")[5].strip() for line in r.stdout.splitlines() if line and not line.startswith("#")]


def _rtmpdump(url: str, out: Path, *args: str, timeout: float = 40) -> subprocess.CompletedProcess:
    """rtmpdump playing ``rtmp://host:port/APP/PLAYPATH``; the play path is given with ``-y``
    (rtmpdump would otherwise take ``shows/`` for part of the app name)."""
    parts = url.split("/", 4)  # rtmp:, '', host:port, app, play path
    base, app, playpath = "/".join(parts[:4]), parts[3], parts[4]
    return subprocess.run(["rtmpdump", "-q", "-r", base, "-a", app, "-y", playpath, "-o", str(out), *args],
                          capture_output=True, text=True, timeout=timeout)


def _ffmpeg_play(url: str, out: Path, timeout: float = 40, live: str = "recorded") -> subprocess.CompletedProcess:
    """FFmpeg playing ``url``; ``live`` is its ``-rtmp_live``: ``recorded`` sends start 0, ``any``
    (FFmpeg's default) -2000, which plays the file when nobody publishes the name."""
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-rtmp_live", live,
                           "-rw_timeout", "10000000", "-i", url, "-c", "copy", str(out)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("name", ["clip", "mp4:clip.mp4", "clip.mp4", "frag.mp4"])
def test_ffmpeg_plays_flv_mp4_and_fragmented_mp4_whole(e2e, media, name):
    srv = _vod_server(e2e, media)
    out = e2e.workdir / "out.flv"
    t0 = time.monotonic()
    r = _ffmpeg_play(srv.url(f"vod/{name}"), out, live="any" if name == "clip.mp4" else "recorded")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    check_media(out, min_video_frames=SECONDS * 30, max_video_frames=SECONDS * 30, min_audio_frames=340, context=r.stderr)
    # Every packet of the file, unchanged and in order.
    assert _video_hashes(out) == _video_hashes(media / "clip.mp4")
    # FFmpeg asks for a 3 s buffer: the 8 s file is paced, not sent at once.
    assert took >= SECONDS - 3 - 1.0, f"{name} played in {took:.1f} s"


@pytest.mark.parametrize("name", ["clip", "mp4:clip", "shows/ep1.mp4"])
def test_rtmpdump_plays_flv_and_mp4(e2e, media, name):
    srv = _vod_server(e2e, media)
    out = e2e.workdir / "out.flv"
    r = _rtmpdump(srv.url(f"vod/{name}"), out)
    # 2 is "may be incomplete": rtmpdump compares the last timestamp with onMetaData duration,
    # which includes the last frame's duration; the content is checked below.
    assert r.returncode in (0, 2), r.stderr
    source = media / ("shows/ep1.mp4" if name.startswith("shows") else "clip.mp4")
    assert _video_hashes(out) == _video_hashes(source)


def test_rtmpdump_start_and_stop_land_within_one_gop(e2e, media):
    srv = _vod_server(e2e, media)
    times = _packet_times(media / "clip.flv")
    report = []
    for name, start, stop in (("clip", 2.5, 4.2), ("mp4:clip.mp4", 4.2, 6.0), ("frag.mp4", 5.9, 7.0)):
        out = e2e.workdir / f"seek-{start}.flv"
        r = _rtmpdump(srv.url(f"vod/{name}"), out, "-A", str(start), "-B", str(stop))
        assert r.returncode in (0, 2), r.stderr
        got = _video_hashes(out)
        assert got, f"nothing received for -A {start}"
        first, last = times[got[0]], times[got[-1]]
        report.append(f"{name} -A {start} -B {stop}: first frame {first:.3f} s, last {last:.3f} s")
        # The keyframe at or before the start: at most one GOP early, never late.
        assert start - GOP_MS / 1000 < first <= start + 1e-6, report
        # Played for (stop - start) from the start position, i.e. up to the stop time.
        assert stop - 0.1 <= last < stop + 1e-6, report
        # Frames in a row from there (no gaps).
        order = sorted(times.values())
        i = order.index(first)
        assert [times[h] for h in got] == order[i : i + len(got)]
    print("\n".join(report))


def test_seek_pause_unpause_with_our_client(e2e, media):
    srv = _vod_server(e2e, media)
    times = _packet_times(media / "clip.mp4")
    p = Player(srv.port, "vod")
    try:
        p.set_buffer(500)
        p.play("mp4:clip.mp4", 0.0)
        assert p.wait_for(lambda: p.has("NetStream.Play.Start"), 5), p.codes()
        meta = next(e.info[0] for e in p.events if e.kind == "data" and e.value == "onMetaData")
        assert meta["width"] == 320 and meta["height"] == 240 and abs(meta["duration"] - SECONDS) < 0.1, meta
        assert meta["videocodecid"] == 7 and meta["audiocodecid"] == 10, meta
        p.wait_for(lambda: False, 1.5)
        # Paced: each message arrives no earlier than its time minus the 500 ms buffer (less
        # 200 ms for the first burst's own transfer), counted from the first one; not the whole file.
        got = p.media()
        t0, ts0 = got[0].arrived, got[0].value
        early = [(e.value, round(e.arrived - t0, 3)) for e in got if e.arrived - t0 < (e.value - ts0 - 500) / 1000 - 0.2]
        assert early == [], early[:5]
        assert max(e.value for e in got) < 4000, "the whole file was sent"

        # seek(5500): the keyframe at 5.0 s, Seek.Notify, timestamps from that position.
        mark = len(p.events)
        p.stream_command("seek", 5500.0)
        assert p.wait_for(lambda: p.has("NetStream.Seek.Notify") and len(p.media(mark)) > 10, 5), p.codes()
        video = [e for e in p.media(mark) if e.kind == "video" and e.info[1] == 1]  # AVC NALUs, not the header
        import hashlib

        landed = times[hashlib.md5(video[0].info[5:]).hexdigest()]
        assert 4.5 < landed <= 5.5, landed
        assert abs(video[0].value - landed * 1000) <= 50, (video[0].value, landed)
        assert video[0].info[0] >> 4 == 1, "seek must land on a keyframe"

        # pause: Pause.Notify, nothing more arrives; unpause: Unpause.Notify, continues where it stopped.
        p.wait_for(lambda: False, 0.5)
        p.stream_command("pause", True, float(max(e.value for e in p.media()) - 500))
        assert p.wait_for(lambda: p.has("NetStream.Pause.Notify"), 5), p.codes()
        p.wait_for(lambda: False, 0.3)  # in flight
        mark = len(p.events)
        last = max(e.value for e in p.media())
        p.wait_for(lambda: False, 1.5)
        assert p.media(mark) == [], "media arrived while paused"
        p.stream_command("pause", False, float(last - 500))
        assert p.wait_for(lambda: p.has("NetStream.Unpause.Notify") and len(p.media(mark)) > 5, 5), p.codes()
        resumed = [e.value for e in p.media(mark)]
        assert last <= resumed[0] <= last + 100, (last, resumed[:5])
        assert p.wait_for(lambda: p.has("NetStream.Play.Stop"), 10), p.codes()
        codes = p.codes()
        assert codes.index("NetStream.Play.Complete") < codes.index("NetStream.Play.Stop"), codes
        assert any(e.kind == "user" and e.value == 1 for e in p.events[-5:]), "no StreamEOF at the end"
    finally:
        p.close()


def test_playlist_of_two_files_and_stream_length(e2e, media):
    srv = _vod_server(e2e, media)
    p = Player(srv.port, "vod")
    try:
        tid = p.call("getStreamLength", None, "short")
        assert abs(p.wait_result(tid)[0] - 3.0) < 0.1
        tid = p.call("getStreamLength", None, "nothing-here")
        assert p.wait_result(tid)[0] == 0
        p.set_buffer(10_000)
        p.play("short", 0.0, -1.0, True)
        p.play("mp4:clip.mp4", 0.0, -1.0, False)
        assert p.wait_for(lambda: p.has("NetStream.Play.Stop"), 20), p.codes()
        codes = p.codes()
        assert codes.count("NetStream.Play.Start") == 2 and "NetStream.Play.Switch" in codes, codes
        assert codes.count("NetStream.Play.Complete") == 1, codes
        video = [e for e in p.media() if e.kind == "video" and e.info[1] == 1]
        assert len(video) == 3 * 30 + SECONDS * 30, len(video)
        stamps = [e.value for e in p.media()]
        assert stamps == sorted(stamps), "timestamps go back between playlist items"
        assert 3000 + SECONDS * 1000 - 200 <= stamps[-1] <= 3000 + SECONDS * 1000 + 100, stamps[-1]
    finally:
        p.close()


def test_play2_switches_files_at_the_position(e2e, media):
    srv = _vod_server(e2e, media)
    p = Player(srv.port, "vod")
    try:
        p.set_buffer(300)
        p.play("clip", 0.0)
        p.wait_for(lambda: False, 1.5)
        last = max(e.value for e in p.media())
        mark = len(p.events)
        p.stream_command("play2", {"streamName": "mp4:clip.mp4", "transition": "switch"})
        assert p.wait_for(lambda: p.has("NetStream.Play.TransitionComplete") and len(p.media(mark)) > 5, 5), p.codes()
        after = [e.value for e in p.media(mark)]
        assert after == sorted(after) and after[0] >= last - 50, (last, after[:5])
    finally:
        p.close()


def test_missing_files_and_names_outside_the_directory_are_not_found(e2e, media, tmp_path):
    outside = tmp_path / "secret.flv"
    outside.write_bytes((media / "short.flv").read_bytes())
    link = media / "escape.flv"
    if not link.exists():
        os.symlink(outside, link)
    srv = _vod_server(e2e, media)
    r = _rtmpdump(srv.url("vod/nothing"), e2e.workdir / "x.flv", timeout=20)
    assert r.returncode == 1, r.stderr
    for name in ("nothing", "escape", "../" + tmp_path.name + "/secret", "mp4:../clip", "/etc/passwd", "shows/../clip"):
        p = Player(srv.port, "vod")
        try:
            p.play(name, 0.0)
            assert p.wait_for(lambda p=p: p.codes(), 5)
            assert p.codes() == ["NetStream.Play.StreamNotFound"], (name, p.codes())
            assert p.media() == []
        finally:
            p.close()
    # FFmpeg asking for a recorded stream (-rtmp_live recorded sends start 0) gets an error too.
    r = _ffmpeg_play(srv.url("vod/nothing"), e2e.workdir / "y.flv", timeout=20)
    assert r.returncode != 0


def test_access_rules_apply_to_recorded_streams(e2e, media):
    srv = _vod_server(e2e, media, handlers="access, vod", **{"access.rules": "deny play all"})
    p = Player(srv.port, "vod")
    try:
        p.play("clip", 0.0)
        assert p.wait_for(lambda: p.codes(), 5)
        assert p.codes()[0] != "NetStream.Play.Start" and p.media() == [], p.codes()
    finally:
        p.close()


def test_a_recording_plays_back(e2e, media, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    srv = e2e.server({"app:live": {"handlers": "record, vod", "record.path": f"{rec}/{{name}}.flv", "vod.path": str(rec)}},
                     need_process=True)
    pub = e2e.publish(srv.url("live/show"), seconds=3)
    pub.wait_ok(timeout=20)
    assert helpers.wait_until(lambda: "record done" in srv.log_text(), 15), helpers.tail(srv.log_text())
    out = e2e.workdir / "back.flv"
    r = _rtmpdump(srv.url("live/show"), out)
    assert r.returncode in (0, 2), r.stderr
    assert _video_hashes(out) == _video_hashes(rec / "show.flv")
    check_media(out, min_video_frames=80, max_video_frames=95, min_audio_frames=120, context=r.stderr)


@pytest.fixture(scope="module")
def ffmpeg_enhanced() -> str:
    """FFmpeg 9 from imageio-ffmpeg (a test dependency), which plays Enhanced RTMP; Debian's 5.1 does not."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def test_hevc_mp4_plays_over_enhanced_rtmp(e2e, ffmpeg_enhanced, tmp_path):
    """An HEVC + AAC MP4 (``hvc1``, as FFmpeg and OBS write it) reaches FFmpeg 9 (the Enhanced
    RTMP player the live HEVC tests use) packet for packet."""
    media = tmp_path / "hevc"
    media.mkdir()
    src = media / "hevc.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", "3", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=30:log-level=error", "-tag:v", "hvc1",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(src))  # fmt: skip
    srv = _vod_server(e2e, media)
    out = e2e.workdir / "hevc.mkv"
    r = subprocess.run([ffmpeg_enhanced, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-rtmp_live", "recorded",
                        "-rw_timeout", "10000000", "-i", srv.url("vod/mp4:hevc.mp4"), "-c", "copy", str(out)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    streams = {s["codec_type"]: s for s in helpers.streams(out)}
    assert streams["video"]["codec_name"] == "hevc" and streams["audio"]["codec_name"] == "aac", streams
    assert _video_hashes(out) == _video_hashes(src)
    assert helpers.decode_errors(out) == ""
