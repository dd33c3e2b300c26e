"""The ``exec`` handler with real programs: a transcode ladder, an on-demand source, a crash loop, shutdown.

The server runs ffmpeg (and a few POSIX tools) as supervised children; ffmpeg/ffprobe players judge
the streams they make, ``/api/v1/processes`` and the log show the supervision.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.helpers import FPS, check_media, wait_until

pytestmark = pytest.mark.e2e


def processes(srv) -> list[dict]:
    with urllib.request.urlopen(srv.http_url("api/v1/processes"), timeout=5) as r:
        return json.load(r)["processes"]


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie nobody reaped yet in this container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


FFMPEG = "ffmpeg -hide_banner -nostdin -nostats -loglevel error"
X264 = "-c:v libx264 -preset ultrafast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -b:a 64k"


def test_transcode_ladder_makes_a_360p_rendition(e2e):
    port = _port()
    srv = _server(e2e, port, {
        "app:live": {"handlers": "exec, live",
                     "exec.publish": f"{FFMPEG} -i rtmp://127.0.0.1:{port}/{{app}}/{{name}} -vf scale=-2:360 {X264} "
                                     f"-f flv rtmp://127.0.0.1:{port}/hd/{{name}}_360p"},
        "app:hd": {"handlers": "live"},
    })
    pub = e2e.publish(srv.url("live/cam"), seconds=20, size="640x480")
    assert wait_until(lambda: len(processes(srv)) == 1 and processes(srv)[0]["state"] == "running", timeout=10), processes(srv)
    row = processes(srv)[0]
    assert row["name"] == "cam" and row["role"] == "publish" and row["program"] == "ffmpeg" and row["pid"] > 0, row
    player = e2e.play(srv.url("hd/cam_360p"), seconds=2)
    player.wait_ok(timeout=25)
    check_media(player.out_path, size=(480, 360), min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, player))
    pid = row["pid"]
    pub.kill()
    # The publisher left: its transcoder is stopped (SIGTERM) and forgotten.
    assert wait_until(lambda: processes(srv) == [] and gone(pid), timeout=10), processes(srv)


def test_on_demand_source(e2e):
    port = _port()
    srv = _server(e2e, port, {
        "app:src": {"handlers": "exec, live", "exec.linger": "1",
                    "exec.pull": f"{FFMPEG} -re -f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 "
                                 f"{X264} -f flv rtmp://127.0.0.1:{port}/{{app}}/{{name}}"},
    })
    assert processes(srv) == []
    player = e2e.play(srv.url("src/demo"), seconds=2)
    assert wait_until(lambda: len(processes(srv)) == 1, timeout=10)
    row = processes(srv)[0]
    assert row["role"] == "pull" and row["name"] == "demo", row
    player.wait_ok(timeout=25)
    check_media(player.out_path, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(player))
    # The last player left: exec.linger later the source is stopped.
    assert wait_until(lambda: processes(srv) == [] and gone(row["pid"]), timeout=10), processes(srv)
    # An HTTP-FLV viewer starts one too; its request waits (exec.http_wait) until the stream is live.
    viewer = e2e.play(srv.http_url("src/other.flv"), seconds=2)
    viewer.wait_ok(timeout=25)
    check_media(viewer.out_path, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(viewer))


def test_crash_loop_backs_off(e2e):
    port = _port()
    srv = _server(e2e, port, {
        "app:live": {"handlers": "exec, live", "exec.publish": "false {name}",
                     "exec.backoff_initial": "0.2", "exec.backoff_max": "1.6"},
    })
    pub = e2e.publish(srv.url("live/cam"), seconds=20)
    assert wait_until(lambda: processes(srv) != [], timeout=10)
    time.sleep(4.0)
    starts = srv.log_text().count("started false")
    row = processes(srv)[0]  # read after the log: it may have restarted once more in between
    # Immediate restarts would be hundreds in 4 s; with 0.2, 0.4, 0.8, 1.6, 1.6 s waits about 5-6.
    assert 3 <= starts <= 8, (starts, row)
    assert row["restarts"] in (starts - 1, starts) and row["last_exit"] == "exit 1", row
    assert "next start in 1.6 s" in srv.log_text()
    pub.kill()
    assert wait_until(lambda: processes(srv) == [], timeout=10), processes(srv)


def test_no_orphans_after_sigterm(e2e):
    port = _port()
    srv = _server(e2e, port, {
        "app:live": {"handlers": "exec, live", "exec.grace": "1",
                     # The second ignores SIGTERM (an ignored signal stays ignored across exec):
                     # only the SIGKILL after exec.grace ends it.
                     "exec.publish": ["sleep 600", "sh -c 'trap \"\" TERM; exec sleep 600'"]},
    })
    pub = e2e.publish(srv.url("live/cam"), seconds=30)
    assert wait_until(lambda: len(processes(srv)) == 2 and all(p["pid"] for p in processes(srv)), timeout=10), processes(srv)
    pids = [p["pid"] for p in processes(srv)]
    rc, took = srv.process.terminate()
    assert srv.process.clean_stop_problem(rc) is None, srv.process.clean_stop_problem(rc)
    assert all(gone(pid) for pid in pids), [(pid, gone(pid)) for pid in pids]
    assert 1.0 <= took < 8, took  # waited for the SIGKILL after the grace, not for the shutdown timeout
    assert "still running after SIGTERM and the grace; SIGKILL" in srv.log_text()
    pub.kill()


def _port() -> int:
    from tests.e2e.helpers import free_port

    return free_port()


def _server(e2e, port: int, apps: dict):
    from tests.e2e.helpers import free_port

    http_port = free_port()
    sections = {
        "server": {"listen": f"tcp:{port}:interface=127.0.0.1", "name": "e2e"},
        "http:main": {"listen": f"tcp:{http_port}:interface=127.0.0.1", "api": "yes"},
        **apps,
    }
    return e2e.start_process(e2e.write_config(sections), port, None, http_port=http_port)



def test_record_done_runs_per_finished_recording(e2e):
    port = _port()
    rec = e2e.workdir / "rec; touch INJECTED"  # a path with a space and a ';': one argument, no shell
    srv = _server(e2e, port, {
        "app:live": {"handlers": "record, exec, live", "record.path": f"{rec}/{{name}} take.flv",
                     "exec.record_done": "cp {path} {dirname}/copy-{basename}"},
    })
    pub = e2e.publish(srv.url("live/cam"), seconds=2)
    pub.wait_ok(timeout=20)
    assert wait_until(lambda: (rec / "copy-cam take.flv").exists(), timeout=10), sorted(p.name for p in rec.iterdir())
    assert (rec / "copy-cam take.flv").read_bytes() == (rec / "cam take.flv").read_bytes()
    assert not (e2e.workdir / "INJECTED").exists() and not (rec / "INJECTED").exists()
    assert "started cp" in srv.log_text()
    assert wait_until(lambda: processes(srv) == [], timeout=5)
