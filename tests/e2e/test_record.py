"""Recording end to end: ffmpeg publishes to an app with ``handlers = record``; ffprobe and ffmpeg
judge the files (duration, both streams, clean decode, seeking through the keyframe index), also
after the server was killed with SIGKILL in the middle of a recording.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, check_media, ffprobe_json, wait_until

pytestmark = pytest.mark.e2e


def _record_server(e2e, **settings: str):
    rec_dir = e2e.workdir / "rec"
    keys = {"handlers": "record", "record.path": f"{rec_dir}/{{app}}/{{name}}-{{time}}.flv"}
    keys.update({f"record.{k}": v for k, v in settings.items()})
    return e2e.server({"app:live": keys}, need_process=True), rec_dir / "live"


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.flv")) if directory.exists() else []


def _wait_done(srv, count: int = 1, timeout: float = 15.0) -> None:
    """A file is finished when the server logs 'record done' (after the publisher's connection closed)."""
    ok = wait_until(lambda: srv.log_text().count("record done") >= count, timeout)
    assert ok, f"no 'record done' x{count} in the server log within {timeout} s\n{helpers.tail(srv.log_text())}"


def _format(path: Path) -> dict:
    return ffprobe_json(path, "-show_format")["format"]


def _seek(path: Path, seconds: float) -> str:
    """ffmpeg's complaints when it starts decoding ``seconds`` into the file ('' = clean)."""
    r = helpers._run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-ss", str(seconds), "-i", str(path),
                      "-frames:v", "1", "-f", "null", "-"])  # fmt: skip
    return r.stderr.strip() if r.returncode == 0 else f"(exit status {r.returncode}) {r.stderr.strip()}"


def test_recording_has_the_right_duration_both_streams_and_seeks(e2e):
    srv, rec_dir = _record_server(e2e)
    pub = e2e.publish(srv.url("live/rec"), seconds=4)
    pub.wait_ok(timeout=20)
    _wait_done(srv)
    files = _files(rec_dir)
    assert len(files) == 1, files
    path = files[0]
    assert path.name.startswith("rec-") and path.suffix == ".flv"
    ctx = e2e.context(pub)

    fmt = _format(path)
    assert abs(float(fmt["duration"]) - 4.0) <= 0.5, f"duration {fmt['duration']}\n{ctx}"
    assert int(fmt["size"]) == path.stat().st_size
    tags = fmt.get("tags", {})
    assert tags.get("hasKeyframes") == "true" and tags.get("metadatacreator") == "rtmpserver", tags
    check_media(path, min_video_frames=int(3.5 * FPS), max_video_frames=4 * FPS + 5, min_audio_frames=150, context=ctx)

    assert _seek(path, 2) == ""
    # The seek went through the index: reading from 2 s starts at the keyframe at or before it
    # (1 s GOPs), not at the beginning of the file.
    packets = ffprobe_json(path, "-read_intervals", "2%+0.3", "-select_streams", "v:0",
                           "-show_entries", "packet=pts_time,flags", "-show_packets")["packets"]  # fmt: skip
    assert packets and packets[0]["flags"].startswith("K"), packets[:3]
    assert 0.9 <= float(packets[0]["pts_time"]) <= 2.1, packets[:3]


def test_split_files_each_play_on_their_own(e2e):
    srv, rec_dir = _record_server(e2e, max_duration="1.5")
    pub = e2e.publish(srv.url("live/split"), seconds=5)
    pub.wait_ok(timeout=20)
    ok = wait_until(lambda: len(_files(rec_dir)) >= 3 and srv.log_text().count("record done") >= len(_files(rec_dir)), 15)
    files = _files(rec_dir)
    assert ok, f"{len(files)} files\n{helpers.tail(srv.log_text())}"
    total = 0.0
    for path in files:
        fmt = _format(path)
        total += float(fmt["duration"])
        # Keyframes every second (x264 may add one at a scene cut), split at the first one at
        # least 1.5 s in: files of 1.5 to 2 s.
        if path != files[-1]:
            assert 1.5 <= float(fmt["duration"]) <= 2.3, (path.name, fmt["duration"])
        check_media(path, min_video_frames=1, min_audio_frames=1, context=e2e.context(pub))
    assert abs(total - 5.0) <= 0.6, total


def test_kill_9_mid_recording_leaves_a_playable_file(e2e):
    srv, rec_dir = _record_server(e2e)
    pub = e2e.publish(srv.url("live/crash"), seconds=10)
    assert wait_until(lambda: "recording to" in srv.log_text(), 15), helpers.tail(srv.log_text())
    time.sleep(3.0)  # a few GOPs on disk
    srv.process.proc.kill()
    srv.process.proc.wait(timeout=5)
    srv.process.terminate()  # marks the stop as ours and closes the log
    pub.kill()
    files = _files(rec_dir)
    assert len(files) == 1, files
    path = files[0]
    kinds = sorted(s["codec_type"] for s in helpers.streams(path))
    assert kinds == ["audio", "video"], kinds
    errors = helpers.decode_errors(path)
    assert errors == "", errors
    frames = helpers.video_frames(path)
    assert len(frames) >= 2 * FPS, len(frames)
    assert frames[0]["key_frame"] == 1
    # The placeholder metadata is still there (duration 0: ffprobe works it out from the tags).
    fmt = _format(path)
    assert fmt.get("tags", {}).get("hasKeyframes") == "false"
    assert float(fmt["duration"]) >= 2.0


def test_sigterm_finishes_the_file(e2e):
    srv, rec_dir = _record_server(e2e)
    pub = e2e.publish(srv.url("live/term"), seconds=10)
    assert wait_until(lambda: "recording to" in srv.log_text(), 15), helpers.tail(srv.log_text())
    time.sleep(2.5)
    rc, _ = srv.process.terminate()
    assert srv.process.clean_stop_problem(rc) is None
    pub.kill()
    path = _files(rec_dir)[0]
    fmt = _format(path)
    assert fmt.get("tags", {}).get("hasKeyframes") == "true", fmt
    assert 1.5 <= float(fmt["duration"]) <= 4.0
    assert _seek(path, 1) == ""
