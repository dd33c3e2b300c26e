"""GStreamer against a real twistd: ``rtmpsrc`` (librtmp) and ``rtmp2src`` play, ``rtmp2sink`` publishes.

Each player is there before the publisher starts, so it must receive every audio and video message
of the 9 s source bit-exact (ffprobe's per-packet MD5, timestamps and sizes), and end by itself:
``rtmp2src`` on StreamEOF, ``rtmpsrc`` when its ``timeout`` (4 s) passes without data.  librtmp
stops reading and closes on ``NetStream.Play.UnpublishNotify``, losing what it has not read yet;
the server sends none by default (``publish_notify = no``) and sends StreamEOF only after
``EOF_DELAY`` (docs/handlers.md, live).  The GStreamer tools come from ``make system-deps``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import ClientProcess, wait_until

pytestmark = pytest.mark.e2e

SOURCE_SECONDS = 9
RTMPSRC_TIMEOUT = 4  # seconds without data after which rtmpsrc (librtmp's socket timeout) ends


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A 9 s H.264 + AAC FLV file, 30 fps, 1 s GOP: what the publishers send."""
    if shutil.which("gst-launch-1.0") is None:
        pytest.fail("gst-launch-1.0 not found; `make system-deps` installs GStreamer", pytrace=False)
    path = tmp_path_factory.mktemp("gst") / "source.flv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
         "-t", str(SOURCE_SECONDS), str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def packets(path: Path, with_dts: bool = True) -> list[tuple]:
    """Audio and video packets as ffprobe reads them: (type, dts, size, MD5 of the data)."""
    data = helpers.ffprobe_json(path, "-show_entries", "packet=codec_type,dts,size,data_hash",
                                "-show_data_hash", "MD5", "-show_packets")["packets"]  # fmt: skip
    return [(p["codec_type"], p["dts"] if with_dts else None, p["size"], p["data_hash"])
            for p in data if p["codec_type"] in ("audio", "video")]  # fmt: skip


def same_packets(got: list[tuple], want: list[tuple], who: str) -> None:
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    raise AssertionError(
        f"{who}: {len(got)} packets, the source has {len(want)}; first difference at packet {first}: "
        f"got {got[first:first + 2]}, want {want[first:first + 2]}"
    )


def players(e2e, srv, name: str) -> dict[str, tuple[ClientProcess, Path]]:
    out = {}
    url = srv.url(f"live/{name}")
    for element, spec in (
        ("rtmpsrc", ["rtmpsrc", f"location={url} live=1 timeout={RTMPSRC_TIMEOUT}"]),
        ("rtmp2src", ["rtmp2src", f"location={url}"]),
    ):
        path = e2e.workdir / f"{name}-{element}.flv"
        client = ClientProcess(f"{name}-{element}", ["gst-launch-1.0", "-e", *spec, "!", "filesink", f"location={path}"],
                               e2e.workdir)  # fmt: skip
        e2e.clients.append(client)
        out[element] = (client, path)
    return out


def wait_for_players(srv, name: str, n: int) -> None:
    """Until ``n`` players of live/NAME are listed by /api/v1/clients (they wait for the publisher)."""

    def count() -> int:
        with urllib.request.urlopen(srv.http_url("/api/v1/clients"), timeout=5) as r:
            clients = json.load(r)["clients"]
        return sum(1 for c in clients if c.get("role") == "player" and name in c.get("streams", []))

    assert wait_until(lambda: count() >= n, 20), f"{n} players of live/{name} did not show up"


def check_players(e2e, waiting: dict, want: list[tuple], published_at: float) -> None:
    for element, (client, path) in waiting.items():
        # rtmp2src ends on StreamEOF; rtmpsrc when its timeout passes after the last byte.
        rc = client.wait(timeout=RTMPSRC_TIMEOUT + 6)
        assert rc == 0, f"{element} failed\n{client.describe()}"
        assert client.ended - published_at <= RTMPSRC_TIMEOUT + 5, (
            f"{element} ended {client.ended - published_at:.1f} s after the publisher\n{client.describe()}")
        same_packets(packets(path), want, element)


def test_rtmpsrc_and_rtmp2src_receive_every_message_of_an_ffmpeg_publisher(e2e, source):
    srv = e2e.server(http={})
    waiting = players(e2e, srv, "ff")
    wait_for_players(srv, "ff", 2)
    pub = ClientProcess("publisher", ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-i", str(source),
                                      "-c", "copy", "-f", "flv", srv.url("live/ff")], e2e.workdir)  # fmt: skip
    e2e.clients.append(pub)
    pub.wait_ok(timeout=SOURCE_SECONDS + 15)
    check_players(e2e, waiting, packets(source), time.monotonic())


def test_rtmp2sink_publishes_and_players_receive_every_message(e2e, source):
    srv = e2e.server(http={})
    waiting = players(e2e, srv, "gst")
    wait_for_players(srv, "gst", 2)
    pub = ClientProcess(
        "rtmp2sink",
        ["gst-launch-1.0", "-e", "filesrc", f"location={source}", "!", "flvdemux", "name=d",
         "d.video", "!", "queue", "!", "h264parse", "!", "flvmux", "name=m", "streamable=true",
         "!", "rtmp2sink", f"location={srv.url('live/gst')}",
         "d.audio", "!", "queue", "!", "aacparse", "!", "m."],
        e2e.workdir,
    )  # fmt: skip
    e2e.clients.append(pub)
    pub.wait_ok(timeout=SOURCE_SECONDS + 15)
    check_players(e2e, waiting, packets(source), time.monotonic())
