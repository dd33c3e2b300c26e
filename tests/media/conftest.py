"""Small media files made with FFmpeg once per test session (tests of media.mp4, flvfile, vod).

FFmpeg and ffprobe are required (CI installs them); a missing binary fails these tests rather than
skipping them, since a skipped test is not a passing one.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

_SOURCE = [
    "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
    "-t", "4", "-pix_fmt", "yuv420p",
]
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "35", "-g", "30", "-bf", "2", "-c:a", "aac", "-b:a", "32k"]


def _ffmpeg(*args: str) -> None:
    assert shutil.which("ffmpeg"), "ffmpeg is required for the media file tests"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="session")
def media_files(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("media")
    files = {name: d / f"{name}.{'flv' if name.startswith('flv') else 'mp4'}" for name in (
        "h264", "faststart", "fragmented", "hevc", "video_only", "audio_only", "flv", "flv_indexed"
    )}
    _ffmpeg(*_SOURCE, *_X264, str(files["h264"]))
    _ffmpeg("-i", str(files["h264"]), "-c", "copy", "-movflags", "+faststart", str(files["faststart"]))
    _ffmpeg("-i", str(files["h264"]), "-c", "copy", "-movflags", "frag_keyframe+empty_moov", str(files["fragmented"]))
    _ffmpeg(
        *_SOURCE, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=30:bframes=2",
        "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "32k", str(files["hevc"]),
    )
    _ffmpeg("-i", str(files["h264"]), "-c", "copy", "-an", str(files["video_only"]))
    _ffmpeg("-i", str(files["h264"]), "-c", "copy", "-vn", str(files["audio_only"]))
    _ffmpeg("-i", str(files["h264"]), "-c", "copy", "-f", "flv", str(files["flv"]))
    _ffmpeg("-i", str(files["h264"]), "-c", "copy", "-flvflags", "add_keyframe_index", "-f", "flv", str(files["flv_indexed"]))
    return files


def ffprobe_packets(path) -> dict[int, dict]:
    """Per stream index: {'time_base': (num, den), 'codec': name, 'packets': [dict(dts, pts, size, key, pos)]}."""
    assert shutil.which("ffprobe"), "ffprobe is required for the media file tests"
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-of", "json", "-show_streams", "-show_packets",
            "-show_entries", "stream=index,codec_name,time_base:packet=stream_index,pts,dts,size,flags,pos",
            str(path),
        ],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    info = json.loads(out)
    streams = {}
    for s in info["streams"]:
        num, den = s["time_base"].split("/")
        streams[s["index"]] = {"time_base": (int(num), int(den)), "codec": s["codec_name"], "packets": []}
    for p in info["packets"]:
        streams[p["stream_index"]]["packets"].append(
            {
                "dts": int(p["dts"]),
                "pts": int(p["pts"]),
                "size": int(p["size"]),
                "key": "K" in p["flags"],
                "pos": int(p["pos"]),
            }
        )
    return streams


def reader(path):
    """(read_at, size) over a file's bytes, counting the bytes read."""
    data = pathlib.Path(path).read_bytes()
    stats = {"bytes": 0, "calls": 0}

    def read_at(offset: int, size: int) -> bytes:
        stats["bytes"] += size
        stats["calls"] += 1
        return data[offset : offset + size]

    read_at.stats = stats  # type: ignore[attr-defined]
    return read_at, len(data)
