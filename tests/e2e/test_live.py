"""Live streaming end to end: ffmpeg publishes H.264 + AAC, ffmpeg players pull, ffprobe judges.

Every publisher sends 30 fps with a keyframe each second (see helpers.publish_command); the players
copy what the server sends, unchanged and including any frames before the first keyframe, to FLV.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import (
    FPS,
    GOP_SECONDS,
    check_media,
    max_gap_ms,
    rate_of,
    wait_until,
)

pytestmark = pytest.mark.e2e

# Frame counts for a pull of N seconds: N * 30, a little less if the last frames fall past -t.
# The upper bound catches a server that sends frames twice or a stale cache plus the live GOP.
def _frames(seconds: float) -> dict:
    n = int(seconds * FPS)
    return {"min_video_frames": n - n // 10, "max_video_frames": n + 5, "min_audio_frames": int(seconds * 40)}


def _wait_for_video(player, frames: int = 5, timeout: float = 10.0) -> None:
    """Block until the player has received some video: proof that the stream is live."""
    ok = wait_until(lambda: len(player.reader.video_frames()) >= frames or player.poll() is not None, timeout)
    assert ok and len(player.reader.video_frames()) >= frames, (
        f"player got {len(player.reader.video_frames())} video frames within {timeout} s\n{player.describe()}"
    )


def test_push_then_pull_gives_clean_h264_aac(e2e):
    srv = e2e.server()
    url = srv.url("live/basic")
    pub = e2e.publish(url, seconds=6)
    helpers.wait_live(srv.port, "live", "basic")
    player = e2e.play(url, seconds=3)
    player.wait_ok(timeout=20)
    summary = check_media(player.out_path, **_frames(3), context=e2e.context(pub, player))
    r_rate, avg_rate = rate_of(summary.video, "r_frame_rate"), rate_of(summary.video, "avg_frame_rate")
    assert abs(r_rate - FPS) < 1, f"r_frame_rate {summary.video['r_frame_rate']}"
    assert abs(avg_rate - FPS) < 3, f"avg_frame_rate {summary.video['avg_frame_rate']}"
    assert summary.audio["channels"] == 1
    pub.wait_ok(timeout=15)


def test_four_players_at_once(e2e):
    srv = e2e.server()
    url = srv.url("live/many")
    pub = e2e.publish(url, seconds=6)
    helpers.wait_live(srv.port, "live", "many")
    players = [e2e.play(url, seconds=3) for _ in range(4)]
    for p in players:
        p.wait_ok(timeout=25)
    for p in players:
        check_media(p.out_path, **_frames(3), context=e2e.context(pub, p))
    pub.wait_ok(timeout=15)


@pytest.mark.parametrize("gop_cache", ["yes", "no"])
def test_late_joiner_starts_at_a_keyframe(e2e, gop_cache):
    # With the cache the player gets the current GOP at once; without it the server must hold the
    # player back until the next keyframe. Either way its first video frame is a keyframe.
    srv = e2e.server(None if gop_cache == "yes" else {"app:live": {"gop_cache": "no"}})
    url = srv.url("live/late")
    pub = e2e.publish(url, seconds=6)
    time.sleep(2.0)  # the player joins in the middle of the third GOP
    player = e2e.play(url, seconds=2)
    player.wait_ok(timeout=20)
    ctx = e2e.context(pub, player)

    frames = player.reader.video_frames()
    assert frames, f"no video received\n{ctx}"
    assert frames[0].is_keyframe, f"first video frame sent to a late joiner is not a keyframe (FLV frame type {frames[0].first_byte >> 4})\n{ctx}"
    # Wall-clock bound on purpose: waiting more than a GOP (plus process start and ffmpeg's probing)
    # means the server neither cached the GOP nor forwarded the next keyframe promptly.
    delay = player.first_video_delay()
    assert delay is not None and delay < GOP_SECONDS + 2.0, f"first video frame after {delay:.2f} s\n{ctx}"
    print(f"gop_cache={gop_cache}: first video frame {delay:.2f} s after the player started")

    packets = helpers.video_packets(player.out_path)
    assert packets and "K" in packets[0]["flags"], f"first packet in the file is not a keyframe: {packets[:1]}\n{ctx}"
    summary = check_media(player.out_path, **_frames(2), context=ctx)
    assert len(summary.video_frames) == len(packets), (
        f"{len(packets)} video packets but only {len(summary.video_frames)} decoded frames: "
        f"the pull starts with undecodable frames\n{ctx}"
    )
    assert summary.video_frames[0]["key_frame"] == 1
    pub.wait_ok(timeout=15)


def test_player_waits_for_publisher(e2e):
    srv = e2e.server()
    url = srv.url("live/early")
    player = e2e.play(url, seconds=3)
    time.sleep(1.5)
    assert player.poll() is None, f"player gave up before the publisher arrived\n{player.describe()}"
    pub = e2e.publish(url, seconds=5)
    player.wait_ok(timeout=20)
    check_media(player.out_path, **_frames(3), context=e2e.context(pub, player))
    pub.wait_ok(timeout=15)


def test_killed_publisher_can_republish_at_once(e2e):
    srv = e2e.server()
    url = srv.url("live/phoenix")
    first = e2e.publish(url, seconds=30)
    watcher = e2e.play(url, seconds=None, name="watcher")
    _wait_for_video(watcher)

    first.kill()  # SIGKILL: no FCUnpublish, no deleteStream, just a closed socket
    time.sleep(0.5)
    # The new publisher sends another picture size so the player below can tell whose media it got.
    second = e2e.publish(url, seconds=5, size="640x360")
    time.sleep(1.5)
    assert second.poll() is None, f"republish within 0.5 s of the kill was refused\n{second.describe()}"
    player = e2e.play(url, seconds=2)
    player.wait_ok(timeout=20)
    check_media(player.out_path, size=(640, 360), **_frames(2), context=e2e.context(second, player))
    second.wait_ok(timeout=15)
    watcher_status = watcher.poll()
    print(f"player connected across the kill: {'still running' if watcher_status is None else f'exited {watcher_status}'}"
          f" with {len(watcher.reader.video_frames())} video frames")  # fmt: skip


def test_second_publisher_is_refused_while_first_keeps_flowing(e2e):
    srv = e2e.server()
    url = srv.url("live/taken")
    first = e2e.publish(url, seconds=8)
    player = e2e.play(url, seconds=5)
    _wait_for_video(player)

    intruder = e2e.publish(url, seconds=3, size="640x360", name="intruder")
    rc = intruder.wait(timeout=15)
    assert rc != 0, f"second publisher on a live name was accepted\n{intruder.describe()}"
    assert first.poll() is None, f"first publisher stopped when the second one tried\n{first.describe()}"
    print(f"refused publisher said: {intruder.stderr_text().strip()!r}")

    player.wait_ok(timeout=20)
    ctx = e2e.context(first, intruder, player)
    check_media(player.out_path, **_frames(5), context=ctx)  # 320x240 only: nothing of the intruder
    gap = max_gap_ms([t.timestamp for t in player.reader.video_frames()])
    assert gap < 300, f"video timestamps jump by {gap} ms: the stream was interrupted\n{ctx}"
    first.wait_ok(timeout=15)


def test_publisher_clean_disconnect_then_new_publish(e2e):
    srv = e2e.server()
    url = srv.url("live/again")
    first = e2e.publish(url, seconds=3)
    watcher = e2e.play(url, seconds=None, name="watcher")
    _wait_for_video(watcher)
    first.wait_ok(timeout=15)
    frames_from_first = len(watcher.reader.video_frames())

    # What does a connected ffmpeg player do when the publisher unpublishes? Either answer is
    # acceptable; the test records it (run with -s to see) and insists only that the server lives on.
    ended = wait_until(lambda: watcher.poll() is not None, timeout=5)
    behaviour = (
        f"ended with status {watcher.poll()} {watcher.ended - first.ended:.1f} s after the publisher"
        if ended
        else "still waiting 5 s after the publisher left"
    )
    assert srv.alive(), "server died when the publisher disconnected"

    second = e2e.publish(url, seconds=4)
    helpers.wait_live(srv.port, "live", url.rsplit("/", 1)[1])
    player = e2e.play(url, seconds=2)
    player.wait_ok(timeout=20)
    check_media(player.out_path, **_frames(2), context=e2e.context(second, player))
    second.wait_ok(timeout=15)
    if not ended:
        behaviour += f"; then got {len(watcher.reader.video_frames()) - frames_from_first} video frames from the new publisher"
    print(f"player on unpublish: {behaviour}")
    assert frames_from_first >= 30, f"watcher got only {frames_from_first} frames from the first publisher"


def _garbage_sockets(port: int) -> dict[str, socket.socket]:
    """Open one connection per kind of garbage and send it; returns them by name."""
    socks = {}

    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: e2e\r\n\r\n")
    socks["http-get"] = s

    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    noise = bytearray(os.urandom(4096))
    noise[0] |= 0x80  # a C0 version of 128..255 is not RTMP
    s.sendall(bytes(noise))
    socks["random-bytes"] = s

    # After a good handshake: Set Chunk Size 0 (legal sizes are 1..2^31-1) on csid 2, stream 0.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    helpers.simple_handshake(s)
    s.sendall(bytes([0x02]) + bytes(3) + (4).to_bytes(3, "big") + b"\x01" + bytes(4) + bytes(4))
    socks["chunk-size-0"] = s

    # After a good handshake: an AMF0 command whose first value has an undefined type marker (0x42).
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    helpers.simple_handshake(s)
    body = b"\x42\x00\x07connect"
    s.sendall(bytes([0x03]) + bytes(3) + len(body).to_bytes(3, "big") + b"\x14" + bytes(4) + body)
    socks["bad-amf-command"] = s
    return socks


def test_garbage_clients_are_closed_while_a_session_keeps_working(e2e):
    # Long handshake/idle timeouts, so a prompt close can only be the server rejecting the bytes.
    srv = e2e.server({"limits": {"handshake_timeout": "60", "idle_timeout": "120"}})
    url = srv.url("live/survivor")
    pub = e2e.publish(url, seconds=7)
    player = e2e.play(url, seconds=4)
    _wait_for_video(player)

    socks = _garbage_sockets(srv.port)
    still_open = []
    for name, s in socks.items():
        with s:
            closed, received, how = helpers.wait_closed_by_peer(s, timeout=5)
        if not closed:
            still_open.append(f"{name} (server sent {received} bytes, connection still open after 5 s)")
    assert not still_open, "garbage connections not closed: " + ", ".join(still_open)

    player.wait_ok(timeout=20)
    ctx = e2e.context(pub, player)
    check_media(player.out_path, **_frames(4), context=ctx)
    gap = max_gap_ms([t.timestamp for t in player.reader.video_frames()])
    assert gap < 300, f"video timestamps jump by {gap} ms while garbage arrived\n{ctx}"
    pub.wait_ok(timeout=15)
    assert srv.alive()
