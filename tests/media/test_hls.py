"""Tests for rtmpserver.media.hls: where segments are cut, the playlist, the window, lifecycle.

Unit tests feed hand-built FLV payloads; the FFmpeg tests push real encoder output through
the segmenter, write what it produces to a directory and let ffprobe/ffmpeg judge it:
tests/data/media-testsrc-320x240-aac.flv plus inputs generated here with

    ffmpeg -f lavfi -i testsrc=size=160x120:rate=30 -f lavfi -i sine=... -t 12 \
        -c:v libx264 -preset ultrafast -g 30 -c:a aac -f flv        (GOP of exactly 1 s)
    ffmpeg -f lavfi -i sine=... -t 5 -c:a libmp3lame -f flv         (audio only, MP3)
    ffmpeg -f lavfi -i testsrc=... -t 2 -c:v libx265 -x265-params keyint=25:bframes=0 -f hevc
        (Annex B, turned into Enhanced RTMP 'hvc1' messages below, as FFmpeg 6.1+/OBS send them)
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.errors import FLVError, LocalProtocolError
from rtmpserver.media.flv import read_file
from rtmpserver.media.hls import HLSSegmenter
from rtmpserver.media.ts import PID_AUDIO, PID_PAT, PID_PMT, PID_VIDEO
from tests.media.test_ts import (
    AAC_HEADER,
    IDR,
    SLICE,
    aac_frame,
    avc_frame,
    avc_header,
    demux,
    hevc_frame,
    hevc_header,
    hvcc_record,
    packets,
)

DATA_FILE = pathlib.Path(__file__).parent.parent / "data" / "media-testsrc-320x240-aac.flv"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

V, A = 9, 8


def key(ts_payload_size: int = 40) -> bytes:
    return avc_frame(True, [IDR + bytes(ts_payload_size)])


def inter() -> bytes:
    return avc_frame(False, [SLICE + bytes(20)])


def video_stream(seg: HLSSegmenter, start: int, end: int, gop_ms: int, step: int = 100, base: int = 0) -> None:
    """Video frames every ``step`` ms from ``start`` to ``end`` (exclusive), a keyframe every ``gop_ms``."""
    for t in range(start, end, step):
        seg.feed(V, base + t, key() if (t - start) % gop_ms == 0 else inter())


def started(**kw) -> HLSSegmenter:
    seg = HLSSegmenter("s", **kw)
    seg.feed(18, 0, b"\x02\x00\x0aonMetaData")  # data messages are ignored
    seg.feed(V, 0, avc_header())
    seg.feed(A, 0, AAC_HEADER)
    return seg


def extinfs(playlist: str) -> list[float]:
    return [float(m) for m in re.findall(r"^#EXTINF:([0-9.]+),$", playlist, re.M)]


def target(playlist: str) -> int:
    return int(re.search(r"^#EXT-X-TARGETDURATION:(\d+)$", playlist, re.M).group(1))


def check_playlist_rules(seg: HLSSegmenter) -> None:
    text = seg.playlist()
    lines = text.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-VERSION:3"]
    assert all(math.ceil(d) <= target(text) for d in extinfs(text))
    assert len(extinfs(text)) == len(seg.segments) <= seg.window
    uris = [line for line in lines if not line.startswith("#")]
    assert uris == [f"{seg.name}-{s.sequence}.ts" for s in seg.segments]
    if seg.segments:
        assert f"#EXT-X-MEDIA-SEQUENCE:{seg.segments[0].sequence}" in lines
    assert len(seg._segments) <= seg.window + seg.grace


# --------------------------------------------------------------------------- cutting


def test_playlist_text():
    seg = started(fragment=2.0, window=3)
    video_stream(seg, 0, 5000, 1000)
    assert seg.playlist() == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:2.000,\ns-0.ts\n#EXTINF:2.000,\ns-1.ts\n"
    )
    seg.end()
    # The partial segment is flushed; its last frame lasts as long as the one before it.
    assert seg.playlist() == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:2.000,\ns-0.ts\n#EXTINF:2.000,\ns-1.ts\n#EXTINF:1.000,\ns-2.ts\n#EXT-X-ENDLIST\n"
    )
    assert seg.ended


def test_empty_playlist_has_only_a_header():
    seg = HLSSegmenter("s", fragment=3.5)
    assert seg.playlist() == "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
    assert seg.segment(0) is None


def test_segments_are_cut_only_at_keyframes_and_last_at_least_a_fragment():
    seg = started(fragment=2.0, window=10)
    keyframes = {0, 1500, 2500, 3000, 6100, 6200, 9000}
    for t in range(0, 10000, 100):
        seg.feed(V, t, key() if t in keyframes else inter())
    # 1500 is too early; 2500 is the first keyframe 2 s after 0; 3000 too early after 2500;
    # 6100 ends a 3.6 s GOP-bound segment; 9000 is 2.9 s after 6100.
    assert [(s.sequence, s.duration_ms) for s in seg.segments] == [(0, 2500), (1, 3600), (2, 2900)]
    assert seg.target_duration == 4
    check_playlist_rules(seg)


def test_target_duration_never_shrinks():
    seg = started(fragment=1.0, window=2)
    video_stream(seg, 0, 3000, 3000)  # one 3 s GOP
    video_stream(seg, 3000, 10000, 1000)
    assert seg.target_duration == 3
    assert extinfs(seg.playlist()) == [1.0, 1.0]
    assert target(seg.playlist()) == 3


def test_audio_only_cuts_by_time():
    seg = HLSSegmenter("a", fragment=1.0, window=10)
    seg.feed(A, 0, AAC_HEADER)
    for i in range(200):
        seg.feed(A, i * 23, aac_frame(b"\x21" + bytes(50)))
    seg.end()
    durations = [s.duration_ms for s in seg.segments]
    # A cut at the first frame at least 1000 ms after the segment start: 44 frames = 1012 ms.
    assert durations[:-1] == [1012] * (len(durations) - 1)
    assert durations[-1] == 199 * 23 + 23 - 1012 * (len(durations) - 1)
    for s in seg.segments:
        ts = demux(s.data, check_cc=False)
        assert [p["pid"] for p in packets(s.data)[:3]] == [PID_PAT, PID_PMT, PID_AUDIO]
        assert ts[PID_PMT]["sections"][0]["pcr_pid"] == PID_AUDIO
        assert ts[PID_AUDIO]["rai"][0] and ts[PID_AUDIO]["pcr"]
    check_playlist_rules(seg)


def test_every_segment_starts_with_pat_pmt_and_a_keyframe_and_counters_run_on():
    seg = started(fragment=1.0, window=10)
    for t in range(0, 6000, 40):
        seg.feed(V, t, key() if t % 1000 == 0 else inter())
        seg.feed(A, t + 5, aac_frame(b"\x21" + bytes(30)))
    seg.end()
    assert len(seg.segments) == 6
    for s in seg.segments:
        first = packets(s.data)[:3]
        assert [p["pid"] for p in first] == [PID_PAT, PID_PMT, PID_VIDEO]
        assert first[2]["pusi"] and first[2]["rai"] and first[2]["pcr"] is not None
        es = demux(s.data, check_cc=False)[PID_VIDEO]["pes"][0]["es"]
        assert es.startswith(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x67")  # AUD, then SPS
    # Played one after another, the segments form one stream without continuity errors.
    whole = demux(b"".join(s.data for s in seg.segments))
    assert len(whole[PID_VIDEO]["pes"]) == 150 and len(whole[PID_AUDIO]["pes"]) == 150


def test_frames_before_the_first_keyframe():
    seg = started(fragment=1.0)
    seg.feed(A, 0, aac_frame(b"\x21\x01"))  # 1100 ms before the keyframe: too old to keep
    seg.feed(V, 1000, inter())  # nothing to decode it from
    seg.feed(A, 1050, aac_frame(b"\x21\x02"))
    seg.feed(A, 1090, aac_frame(b"\x21\x03"))
    seg.feed(V, 1100, key())
    seg.feed(A, 1110, aac_frame(b"\x21\x04"))
    seg.end()
    assert seg.dropped_frames == 2
    (only,) = seg.segments
    ts = demux(only.data)
    assert [p["es"][-1] for p in ts[PID_AUDIO]["pes"]] == [2, 3, 4]
    assert [p["pts"] for p in ts[PID_AUDIO]["pes"]] == [(t + 700) * 90 for t in (1050, 1090, 1110)]
    assert len(ts[PID_VIDEO]["pes"]) == 1


def test_forced_cut_without_keyframes():
    seg = started(fragment=1.0, max_fragment=3.0, window=10)
    video_stream(seg, 0, 10000, 100_000)  # one keyframe, then inter frames only
    assert [s.duration_ms for s in seg.segments] == [3000, 3000, 3000]
    assert seg.forced_cuts == 3
    check_playlist_rules(seg)


def test_forced_cut_by_size():
    seg = started(fragment=1.0, max_segment_bytes=188 * 10, window=50)
    for t in range(0, 3000, 100):
        seg.feed(V, t, avc_frame(t == 0, [(IDR if t == 0 else SLICE) + bytes(500)]))
    assert seg.forced_cuts > 0
    assert all(s.size <= 188 * 10 + 188 * 5 for s in seg.segments)


def test_audio_bounds_a_segment_when_video_stops():
    seg = started(fragment=1.0, max_fragment=2.0, window=10)
    seg.feed(V, 0, key())
    for t in range(0, 5000, 23):
        seg.feed(A, t, aac_frame(b"\x21"))
    assert seg.forced_cuts >= 2
    assert all(s.duration_ms <= 2100 for s in seg.segments)


# --------------------------------------------------------------------------- window and storage


def test_window_grace_and_callbacks():
    events = []
    seg = started(
        fragment=1.0,
        window=3,
        grace=2,
        on_segment_added=lambda q, data: events.append(("added", q, len(data))),
        on_segment_removed=lambda q: events.append(("removed", q)),
        on_playlist_changed=lambda text: events.append(("playlist", text.count("#EXTINF"))),
    )
    video_stream(seg, 0, 10500, 1000)
    assert [s.sequence for s in seg.segments] == [7, 8, 9]
    assert seg.media_sequence == 7
    # Listed and in grace: served; older: gone (and reported gone, oldest first).
    assert all(seg.segment(q) for q in range(5, 10))
    assert all(seg.segment(q) is None for q in (0, 4, 10, 11, -1))
    removed = [e[1] for e in events if e[0] == "removed"]
    assert removed == [0, 1, 2, 3, 4]
    # The order a directory writer needs: the file, then the playlist naming it, then deletions.
    assert events[-3:] == [("added", 9, seg.segments[-1].size), ("playlist", 3), ("removed", 4)]
    check_playlist_rules(seg)


def test_keep_data_false_hands_bytes_to_the_callback_only():
    got = {}
    seg = started(fragment=1.0, keep_data=False, on_segment_added=lambda q, d: got.__setitem__(q, d))
    video_stream(seg, 0, 3500, 1000)
    assert sorted(got) == [0, 1, 2]
    assert seg.segment(0) is None and seg.segments[0].data is None
    assert seg.segments[0].size == len(got[0]) and got[0][:1] == b"\x47"


def test_first_sequence():
    seg = started(fragment=1.0, first_sequence=1000)
    video_stream(seg, 0, 2500, 1000)
    assert "#EXT-X-MEDIA-SEQUENCE:1000\n" in seg.playlist() and "s-1001.ts" in seg.playlist()
    assert seg.segment(1000) is not None


# --------------------------------------------------------------------------- publisher lifecycle


def test_discontinuity_on_publisher_restart():
    seg = started(fragment=1.0, window=3, grace=1)
    video_stream(seg, 0, 2500, 1000)
    seg.discontinuity()
    # The new publisher's timestamps start again from 0, and it sends its headers again.
    seg.feed(V, 0, avc_header())
    seg.feed(A, 0, AAC_HEADER)
    video_stream(seg, 0, 2500, 1000)
    text = seg.playlist()
    assert [s.duration_ms for s in seg.segments] == [500, 1000, 1000]
    assert text.endswith("#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\ns-3.ts\n#EXTINF:1.000,\ns-4.ts\n")
    assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in text
    # The flushed partial segment (2000..2400 + one frame) is the one before the tag.
    assert seg.segments[0].sequence == 2 and seg.segments[0].duration_ms == 500
    video_stream(seg, 2500, 5500, 1000)
    text = seg.playlist()
    assert "#EXT-X-DISCONTINUITY" not in text.replace("#EXT-X-DISCONTINUITY-SEQUENCE", "")
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in text
    check_playlist_rules(seg)


def test_discontinuity_before_any_segment_adds_no_tag():
    seg = started(fragment=1.0)
    seg.discontinuity()
    seg.feed(V, 0, avc_header())
    video_stream(seg, 0, 2500, 1000)
    assert "DISCONTINUITY" not in seg.playlist()


def test_media_after_end_reopens_the_playlist():
    seg = started(fragment=1.0)
    video_stream(seg, 0, 2500, 1000)
    seg.end()
    seg.end()  # idempotent
    assert seg.playlist().endswith("#EXT-X-ENDLIST\n")
    seg.feed(V, 50_000, avc_header())
    assert "#EXT-X-ENDLIST" not in seg.playlist()
    video_stream(seg, 0, 2500, 1000, base=50_000)
    assert "#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\ns-3.ts\n" in seg.playlist()


def test_timestamps_wrapping_at_2_32():
    seg = started(fragment=2.0, window=10)
    base = (1 << 32) - 3000
    for t in range(0, 9000, 100):
        seg.feed(V, (base + t) & 0xFFFFFFFF, key() if t % 1000 == 0 else inter())
    assert [s.duration_ms for s in seg.segments] == [2000] * 4
    pts = [demux(s.data, check_cc=False)[PID_VIDEO]["pes"][0]["pts"] for s in seg.segments]
    assert pts == [((base + t + 700) * 90) % (1 << 33) for t in (0, 2000, 4000, 6000)]


def test_auto_mode_switches_from_audio_to_video():
    seg = HLSSegmenter("s", fragment=1.0, window=10)
    seg.feed(A, 0, AAC_HEADER)
    for t in range(0, 2100, 23):
        seg.feed(A, t, aac_frame(b"\x21"))
    assert len(seg.segments) == 2  # audio-only so far: cut by time
    seg.feed(V, 2100, avc_header())
    seg.feed(V, 2150, inter())  # dropped: no keyframe yet
    for t in range(2100, 2500, 23):
        seg.feed(A, t, aac_frame(b"\x21"))
    video_stream(seg, 2500, 6000, 1000)
    seg.end()
    # The open audio segment went on until the first keyframe at least 1 s after its start.
    assert [s.duration_ms for s in seg.segments][2:] == [3500 - 2024, 1000, 1000, 500]
    assert seg.dropped_frames == 1
    check_playlist_rules(seg)


def test_explicit_modes():
    seg = HLSSegmenter("s", fragment=1.0, has_video=False)
    seg.feed(V, 0, avc_header())
    seg.feed(V, 0, key())
    seg.feed(A, 0, AAC_HEADER)
    for t in range(0, 2100, 23):
        seg.feed(A, t, aac_frame(b"\x21"))
    assert len(seg.segments) == 2
    assert all(PID_VIDEO not in demux(s.data, check_cc=False) for s in seg.segments)

    seg = HLSSegmenter("s", fragment=1.0, has_video=True)
    seg.feed(A, 0, AAC_HEADER)
    for t in range(0, 2100, 23):
        seg.feed(A, t, aac_frame(b"\x21"))
    assert seg.segments == [] and seg._open is None  # waiting for a keyframe

    seg = HLSSegmenter("s", fragment=1.0, has_audio=False)
    seg.feed(V, 0, avc_header())
    seg.feed(A, 0, AAC_HEADER)
    for t in range(0, 2100, 100):
        seg.feed(V, t, key() if t % 1000 == 0 else inter())
        seg.feed(A, t, aac_frame(b"\x21"))
    assert len(seg.segments) == 2
    assert all(PID_AUDIO not in demux(s.data, check_cc=False) for s in seg.segments)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fragment": 0},
        {"window": 0},
        {"grace": -1},
        {"fragment": 2.0, "max_fragment": 1.0},
        {"max_segment_bytes": 100},
        {"first_sequence": -1},
    ],
)
def test_bad_settings_are_our_error(kwargs):
    with pytest.raises(LocalProtocolError):
        HLSSegmenter("s", **kwargs)


# --------------------------------------------------------------------------- bad input


def test_refused_message_leaves_the_segmenter_as_it_was():
    seg = started(fragment=1.0, window=10)
    video_stream(seg, 0, 1500, 1000)
    before = seg.playlist()
    for bad in (b"\x17\x01\x00\x00\x00\x00\x00\x00\x09", b"\x14\x00", b"", b"\x90av01\x00"):
        with pytest.raises(FLVError):
            seg.feed(V, 2000, bad)  # a keyframe-time message that would have cut
    with pytest.raises(FLVError):
        seg.feed(A, 2000, b"\x2f" + bytes(70000))
    assert seg.playlist() == before
    video_stream(seg, 1500, 3500, 1000)  # keyframes at 1500 (too early) and 2500
    seg.end()
    demux(b"".join(s.data for s in seg.segments))  # no continuity gaps
    assert [s.duration_ms for s in seg.segments] == [1000, 1500, 1000]


_messages = st.lists(
    st.tuples(
        st.sampled_from([A, V, 18]),
        st.integers(0, 0xFFFFFFFF),
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([avc_header(), AAC_HEADER, key(), inter(), aac_frame(b"\x21\x00"), b"\x2f\xff\xfb\x90\x64"]),
        ),
    ),
    max_size=40,
)


@SETTINGS
@given(_messages, st.integers(1, 3), st.integers(0, 2))
def test_random_messages_raise_only_flv_error_and_keep_the_rules(messages, window, grace):
    seg = HLSSegmenter("s", fragment=0.5, window=window, grace=grace, max_segment_bytes=188 * 8)
    for type_id, ts, payload in messages:
        try:
            seg.feed(type_id, ts, payload)
        except FLVError:
            pass
    seg.end()
    check_playlist_rules(seg)
    for s in seg._segments:
        packets(s.data)
        assert s.duration_ms >= 0


# --------------------------------------------------------------------------- FFmpeg judges the output


def run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def probe_streams(path) -> list[dict]:
    out = run("ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"]


def decode_errors(path) -> str:
    out = run("ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-")
    assert out.returncode == 0, out.stderr
    return out.stderr


def frame_counts(path) -> dict[str, int]:
    return {s["codec_name"]: int(s["nb_read_frames"]) for s in probe_streams(path)}


class Directory:
    """A directory writer as the lead's sink would be: files follow the callbacks."""

    def __init__(self, path: pathlib.Path, name: str, **kw) -> None:
        self.path = path
        path.mkdir(exist_ok=True)
        self.seg = HLSSegmenter(
            name,
            on_segment_added=lambda q, data: (path / f"{name}-{q}.ts").write_bytes(data),
            on_segment_removed=lambda q: (path / f"{name}-{q}.ts").unlink(),
            on_playlist_changed=lambda text: (path / f"{name}.m3u8").write_text(text),
            **kw,
        )
        self.playlist = path / f"{name}.m3u8"

    def feed_tags(self, tags) -> None:
        for tag in tags:
            self.seg.feed(tag.type, tag.timestamp, tag.payload)
            assert len(list(self.path.glob("*.ts"))) <= self.seg.window + self.seg.grace


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Inputs made once per module by FFmpeg (each takes well under a second)."""
    d = tmp_path_factory.mktemp("media")
    lavfi_av = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    jobs = {
        "long.flv": [*lavfi_av, "-t", "12", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                     "-c:a", "aac", "-b:a", "32k", "-f", "flv"],
        "mp3.flv": ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "5",
                    "-c:a", "libmp3lame", "-b:a", "64k", "-f", "flv"],
        "hevc.hevc": ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "2", "-c:v", "libx265",
                      "-preset", "ultrafast", "-x265-params", "keyint=25:min-keyint=25:bframes=0:log-level=error",
                      "-f", "hevc"],
    }
    for name, args in jobs.items():
        out = run("ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(d / name))
        assert out.returncode == 0, out.stderr
    return d


def test_ffmpeg_reads_the_test_file_as_hls(tmp_path):
    out = Directory(tmp_path / "hls", "live", fragment=0.4, window=10)
    out.feed_tags(read_file(DATA_FILE))
    out.seg.end()
    # Keyframes at 0 and 500 ms (the key-flagged tag at 967 is the AVC end of sequence): two
    # segments, each a GOP; the last picture is at 967 ms and lasts 33 ms like the one before.
    assert [s.duration_ms for s in out.seg.segments] == [500, 500]
    streams = probe_streams(out.playlist)
    assert [(s["codec_name"], s.get("width"), s.get("height")) for s in streams] == [("h264", 320, 240), ("aac", None, None)]
    assert frame_counts(out.playlist) == frame_counts(DATA_FILE) == {"h264": 30, "aac": 45}
    assert decode_errors(out.playlist) == ""
    for s in out.seg.segments:
        path = out.path / f"live-{s.sequence}.ts"
        assert decode_errors(path) == ""  # each segment decodes on its own


def test_long_stream_window_durations_and_frame_counts(media, tmp_path):
    tags = read_file(media / "long.flv")
    # Everything kept: the frame counts must be the FLV's, with no decoding errors.
    full = Directory(tmp_path / "full", "full", fragment=2.0, window=100)
    full.feed_tags(tags)
    full.seg.end()
    assert frame_counts(full.playlist) == frame_counts(media / "long.flv")
    assert decode_errors(full.playlist) == ""
    text = full.playlist.read_text()
    durations = extinfs(text)
    # GOP 1 s, fragment 2 s: every segment is two GOPs; the last one is whatever was left.
    assert durations[:-1] == [2.0] * 5 and 0 < durations[-1] <= 2.1
    assert target(text) >= max(math.ceil(d) for d in durations)
    assert abs(sum(durations) - 12.0) < 0.1
    # What a segment's EXTINF says matches the pictures in it (30 fps).
    for s in full.seg.segments[:-1]:
        counts = frame_counts(full.path / f"full-{s.sequence}.ts")
        assert counts["h264"] == round(s.duration * 30)

    # A short window: old segments disappear from the playlist and then from disk.
    live = Directory(tmp_path / "live", "live", fragment=2.0, window=2, grace=1)
    live.feed_tags(tags)
    text = live.playlist.read_text()
    assert [s.sequence for s in live.seg.segments] == [3, 4]
    assert "#EXT-X-MEDIA-SEQUENCE:3\n" in text and "#EXT-X-ENDLIST" not in text
    assert sorted(p.name for p in live.path.glob("*.ts")) == ["live-2.ts", "live-3.ts", "live-4.ts"]
    live.seg.end()
    assert decode_errors(live.playlist) == ""
    assert [s.sequence for s in live.seg.segments] == [4, 5]
    assert frame_counts(live.playlist)["h264"] == 30 * (2 + 2)


def test_mp3_audio_only(media, tmp_path):
    out = Directory(tmp_path / "mp3", "radio", fragment=1.0, window=10)
    out.feed_tags(read_file(media / "mp3.flv"))
    out.seg.end()
    durations = extinfs(out.playlist.read_text())
    assert len(durations) == 5 and all(1.0 <= d < 1.1 for d in durations[:-1])
    assert frame_counts(out.playlist) == frame_counts(media / "mp3.flv")
    (stream,) = probe_streams(out.playlist)
    assert stream["codec_name"] == "mp3" and stream["sample_rate"] == "44100"
    assert decode_errors(out.playlist) == ""


def split_annexb(data: bytes) -> list[bytes]:
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    ends = [s - 3 for s in starts[1:]] + [len(data)]
    return [data[s:e].rstrip(b"\x00") for s, e in zip(starts, ends, strict=False)]


def hevc_messages(raw: bytes, fps: int) -> list[tuple[int, int, bytes]]:
    """Annex B HEVC as Enhanced RTMP messages: SequenceStart, then one access unit per message.

    The parameter sets are taken out of the access units, so the output decodes only if the
    muxer puts them back in front of each IRAP picture.
    """
    access_units, pending, params = [], [], {}
    for nal in split_annexb(raw):
        t = (nal[0] >> 1) & 0x3F
        if t in (32, 33, 34):
            params.setdefault(t, nal)
            continue
        pending.append(nal)
        if t < 32:  # a VCL NAL unit ends the access unit (one slice per picture here)
            access_units.append(pending)
            pending = []
    messages = [(V, 0, hevc_header(hvcc_record(sets=sorted(params.items()))))]
    for i, au in enumerate(access_units):
        is_key = any(16 <= (n[0] >> 1) & 0x3F <= 23 for n in au)
        # Alternate CodedFrames (with a zero composition time) and CodedFramesX.
        messages.append((V, i * 1000 // fps, hevc_frame(is_key, au, cts=0 if i % 2 else None)))
    return messages


def test_hevc_enhanced_rtmp(media, tmp_path):
    out = Directory(tmp_path / "hevc", "h", fragment=1.0, window=10)
    for type_id, ts, payload in hevc_messages((media / "hevc.hevc").read_bytes(), 25):
        out.seg.feed(type_id, ts, payload)
    out.seg.end()
    assert [s.duration_ms for s in out.seg.segments] == [1000, 1000]
    (stream,) = probe_streams(out.playlist)
    assert (stream["codec_name"], stream["width"], stream["height"], stream["nb_read_frames"]) == ("hevc", 160, 120, "50")
    assert decode_errors(out.playlist) == ""
    for s in out.seg.segments:
        assert decode_errors(out.path / f"h-{s.sequence}.ts") == ""


# --------------------------------------------------------------------------- LL-HLS and fMP4


def ll_tags(text: str, tag: str) -> list[dict[str, str]]:
    """The attribute lists of every ``#<tag>:`` line (RFC 8216 4.2 attribute-list syntax)."""
    out = []
    for line in text.splitlines():
        if line.startswith(f"#{tag}:"):
            attrs = re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1])
            out.append({k: v.strip('"') for k, v in attrs})
    return out


def test_low_latency_playlist_has_parts_server_control_and_a_preload_hint():
    seg = started(fragment=2.0, window=5, part=0.5)
    video_stream(seg, 0, 9000, 1000, step=50)  # GOP 1 s: a cut every 2 s
    text = seg.playlist()
    assert "#EXT-X-VERSION:6" in text
    (control,) = ll_tags(text, "EXT-X-SERVER-CONTROL")
    (info,) = ll_tags(text, "EXT-X-PART-INF")
    assert control == {"CAN-BLOCK-RELOAD": "YES", "PART-HOLD-BACK": "1.500"}  # 3x the part target
    assert info == {"PART-TARGET": "0.500"}
    # Tag order: SERVER-CONTROL and PART-INF in the header, before any segment.
    assert text.index("#EXT-X-PART-INF") < text.index("#EXTINF")
    parts = ll_tags(text, "EXT-X-PART")
    assert parts and all(float(p["DURATION"]) <= 0.5 for p in parts)
    # Parts of the finished segments of the last three target durations, then the open one's.
    listed = {int(p["URI"].split("-")[1].split(".")[0]) for p in parts}
    # Segment 1 (2-4 s) ends within three target durations (6 s) of the end of the finished ones.
    assert listed == {1, 2, 3, 4}  # 4 is being built
    (hint,) = ll_tags(text, "EXT-X-PRELOAD-HINT")
    open_parts = [p for p in parts if p["URI"].startswith("s-4.")]
    assert hint == {"TYPE": "PART", "URI": f"s-4.{len(open_parts)}.ts"}
    # Parts of a finished segment add up to it, in duration and in bytes.
    for s in seg.segments[-2:]:
        mine = [p for p in parts if p["URI"].startswith(f"s-{s.sequence}.")]
        assert round(sum(float(p["DURATION"]) for p in mine) * 1000) == s.duration_ms
        assert b"".join(bytes(seg.part(s.sequence, i)) for i in range(len(mine))) == s.data
        assert mine[0].get("INDEPENDENT") == "YES"
    # The text given to a directory writer has no parts.
    assert "#EXT-X-PART" not in seg.playlist(parts=False) and "#EXTINF" in seg.playlist(parts=False)


def test_parts_start_at_every_keyframe_and_never_exceed_the_target():
    seg = started(fragment=1.0, window=10, part=0.3)
    video_stream(seg, 0, 6000, 1000, step=40)
    for s in seg.segments:
        assert all(p.duration_ms <= 300 for p in s.parts)
        assert sum(p.duration_ms for p in s.parts) == s.duration_ms
        assert s.parts[0].independent and s.parts[0].offset == 0
        # All but the last are at least 85 % of the target (rfc8216bis 4.4.4.9).
        assert all(p.duration_ms >= 255 for p in s.parts[:-1])


def test_ready_and_part_state_follow_the_playlist():
    seg = started(fragment=1.0, window=5, part=0.5)
    video_stream(seg, 0, 1000, 1000, step=100)
    assert seg.next_sequence == 0 and seg.ready(0) is False
    assert seg.ready(0, 0) is True and seg.ready(0, 1) is False  # part 0 done at 500 ms
    assert seg.part_state(0, 1) is False and seg.part_state(0, 2) is None  # 2: not the hinted one
    seg.feed(V, 1000, key())  # cut: segment 0 finished with two parts
    assert seg.ready(0) is True and seg.ready(1, 0) is False
    assert seg.part_state(0, 1) is True and seg.part_state(0, 2) is None
    seg.end()
    assert seg.ready(5) is None and seg.part_state(1, 0) is True and seg.part_state(2, 0) is None


def test_listeners_hear_every_part_and_segment():
    seg = started(fragment=1.0, window=5, part=0.5)
    heard = []
    seg.listeners.append(lambda: heard.append((seg.next_sequence, seg.ready(seg.next_sequence, 0))))
    video_stream(seg, 0, 2100, 1000, step=100)
    assert heard == [(0, True), (1, False), (1, True), (2, False)]


def test_fmp4_playlist_names_the_init_segment_and_a_new_one_after_a_discontinuity():
    seg = started(fragment=1.0, window=10, fmt="fmp4")
    video_stream(seg, 0, 2100, 1000)
    seg.discontinuity()
    seg.feed(V, 0, avc_header())
    seg.feed(A, 0, AAC_HEADER)
    video_stream(seg, 0, 2100, 1000)
    text = seg.playlist()
    maps = ll_tags(text, "EXT-X-MAP")
    assert maps == [{"URI": "s-init0.mp4"}, {"URI": "s-init1.mp4"}]
    assert text.index("#EXT-X-DISCONTINUITY") < text.index('URI="s-init1.mp4"')
    assert "#EXT-X-VERSION:6" in text and re.search(r"^s-0\.m4s$", text, re.M)
    assert seg.init_segment(0)[4:8] == b"ftyp" and seg.init_segment(1) is not None
    assert seg.segment(0)[4:8] == b"moof"
    # Suffixes go on every URI, tags included.
    with_token = seg.playlist("?vt=T")
    assert 's-init0.mp4?vt=T"' in with_token and "s-0.m4s?vt=T\n" in with_token
    assert "\x00" not in with_token


def test_init_segments_are_forgotten_with_their_last_segment():
    seg = started(fragment=1.0, window=1, grace=0, fmt="fmp4")
    video_stream(seg, 0, 2100, 1000)
    seg.discontinuity()
    seg.feed(V, 0, avc_header())
    video_stream(seg, 0, 2100, 1000)
    assert seg.init_segment(0) is None and seg.init_segment(1) is not None


@pytest.mark.parametrize("kw, message", [
    ({"fmt": "mkv"}, "fmt must be one of"),
    ({"part": 0.05}, "part must be within"),
    ({"part": 3.0, "fragment": 2.0}, "part must be within"),
])  # fmt: skip
def test_format_and_part_are_checked(kw, message):
    with pytest.raises(LocalProtocolError, match=message):
        HLSSegmenter("s", **kw)


def test_ffmpeg_reads_fmp4_and_ts_low_latency_playlists(media, tmp_path):
    """Whole-segment playlists (what a directory gets) of both formats, with parts cut inside."""
    tags = read_file(media / "long.flv")
    for fmt in ("fmp4", "ts"):
        d = tmp_path / fmt
        d.mkdir()
        seg = HLSSegmenter("s", 2.0, 100, fmt=fmt, part=0.5)
        for tag in tags:
            seg.feed(tag.type, tag.timestamp, tag.payload)
        seg.end()
        for s in seg.segments:
            (d / seg.segment_uri(s.sequence)).write_bytes(s.data)
        if fmt == "fmp4":
            (d / seg.map_uri(0)).write_bytes(seg.init_segment(0))
        (d / "s.m3u8").write_text(seg.playlist(parts=False))
        assert frame_counts(d / "s.m3u8") == frame_counts(media / "long.flv"), fmt
        assert decode_errors(d / "s.m3u8") == "", fmt
