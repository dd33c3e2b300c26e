"""The relay client against a real server process over real sockets: rtmp and rtmps.

ffmpeg publishes to ``twistd rtmp``; ``python -m rtmpserver.relay.tool pull`` (the server's own
``Relay`` and ``RelaySession`` under a real reactor) plays it back and writes FLV, which ffprobe and
ffmpeg's decoder judge.
"""

from __future__ import annotations

import sys
import time

import pytest

from tests.e2e.helpers import FPS, REPO_ROOT, ClientProcess, check_media, wait_until

pytestmark = pytest.mark.e2e

def pull(e2e, url: str, out, *extra: str, seconds: float = 3, timeout: float = 20) -> ClientProcess:
    cmd = ["env", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", "rtmpserver.relay.tool", "pull", url, str(out),
           "--seconds", str(seconds), "--timeout", str(timeout), *extra]  # fmt: skip
    client = ClientProcess(e2e._name("relay-pull"), cmd, e2e.workdir)
    e2e.clients.append(client)
    return client

def test_pull_relay_over_rtmp(e2e):
    srv = e2e.server(need_process=True)
    pub = e2e.publish(srv.url("live/relayed"), seconds=8)
    time.sleep(1.0)  # let the publisher get going (the relay would retry anyway)
    out = e2e.workdir / "pulled.flv"
    client = pull(e2e, srv.url("live/relayed"), out, seconds=3)
    client.wait_ok(timeout=25)
    check_media(out, min_video_frames=3 * FPS - 9, max_video_frames=4 * FPS + 5, min_audio_frames=100,
                context=e2e.context(pub, client))  # fmt: skip
    assert "playing" in client.stderr_text()
    pub.wait_ok(timeout=15)

def test_pull_relay_retries_until_the_stream_is_published(e2e):
    srv = e2e.server(need_process=True)
    out = e2e.workdir / "late.flv"
    client = pull(e2e, srv.url("live/late"), out, seconds=2, timeout=25)
    # The stream does not exist yet: the relay plays and waits, or is refused and backs off.
    assert wait_until(lambda: client.stderr_text() != "" or client.poll() is not None, timeout=10)
    time.sleep(1.5)
    assert client.poll() is None, client.describe()
    pub = e2e.publish(srv.url("live/late"), seconds=6)
    client.wait_ok(timeout=25)
    check_media(out, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, client))
    pub.wait_ok(timeout=15)

def test_pull_relay_over_rtmps(e2e):
    srv = e2e.server(need_process=True)
    pub = e2e.publish(srv.url("live/secret"), seconds=20)
    time.sleep(1.0)
    # Self-signed certificate: verification on (the default) refuses it ...
    refused = pull(e2e, srv.url("live/secret", tls=True), e2e.workdir / "refused.flv", seconds=1, timeout=4)
    # ... verify = no takes it ...
    out = e2e.workdir / "tls.flv"
    client = pull(e2e, srv.url("live/secret", tls=True), out, "--no-verify", seconds=2)
    # ... and so does trusting that certificate, with the name it was issued for.
    out2 = e2e.workdir / "tls-ca.flv"
    url = f"rtmps://localhost:{srv.ssl_port}/live/secret"
    client2 = pull(e2e, url, out2, "--ca-file", str(e2e.workdir / "server.crt"), seconds=2)
    assert refused.wait(timeout=20) == 1, refused.describe()
    err = refused.stderr_text()
    assert "VerificationError" in err or "certificate verify failed" in err, refused.describe()
    assert "0 media messages" in err
    client.wait_ok(timeout=25)
    client2.wait_ok(timeout=25)
    check_media(out, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, client))
    check_media(out2, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, client2))
    pub.kill()  # 20 s is only a safety margin for a busy machine


class UnixToTcp:
    """A one-connection forwarder from a Unix socket to the server's TCP port.

    The server has no Unix listener yet; this lets the client's rtmp+unix:// path (the endpoint,
    the tcUrl it sends) run over a real Unix socket today.
    """

    def __init__(self, path, port: int):
        import socket
        import threading

        self.path = str(path)
        self.port = port
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(20)
        self.bytes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import socket
        import threading

        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.port), timeout=20)

        def pipe(src, dst):
            try:
                while data := src.recv(65536):
                    self.bytes += len(data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        back.start()
        pipe(conn, upstream)
        back.join(20)
        conn.close()
        upstream.close()

    def close(self):
        self.listener.close()


def test_pull_relay_over_a_unix_socket(e2e):
    """rtmp+unix://: how relays between worker processes will connect."""
    from urllib.parse import quote

    srv = e2e.server(need_process=True)
    pub = e2e.publish(srv.url("live/worker"), seconds=8)
    time.sleep(1.0)
    sock = e2e.workdir / "rtmp.sock"
    forwarder = UnixToTcp(sock, srv.port)
    try:
        out = e2e.workdir / "unix.flv"
        client = pull(e2e, f"rtmp+unix://{quote(str(sock), safe='')}/live/worker", out, seconds=2)
        client.wait_ok(timeout=25)
    finally:
        forwarder.close()
    assert forwarder.bytes > 100_000
    check_media(out, min_video_frames=2 * FPS - 9, min_audio_frames=60, context=e2e.context(pub, client))
    pub.wait_ok(timeout=15)


def test_push_relay_publishes_to_the_server(e2e):
    """The publish side over a real socket: our client pushes an FLV file, ffmpeg plays it from the server."""
    src = e2e.workdir / "source.flv"
    gen = ClientProcess(e2e._name("make-source"), [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-f", "flv", str(src),
    ], e2e.workdir)  # fmt: skip
    e2e.clients.append(gen)
    gen.wait_ok(timeout=60)
    srv = e2e.server(need_process=True)
    cmd = ["env", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", "rtmpserver.relay.tool", "push", str(src),
           srv.url("live/pushed?key=abc"), "--timeout", "30"]  # fmt: skip
    pusher = ClientProcess(e2e._name("relay-push"), cmd, e2e.workdir)
    e2e.clients.append(pusher)
    assert wait_until(lambda: "publishing" in pusher.stderr_text() or pusher.poll() is not None, timeout=15), pusher.describe()
    player = e2e.play(srv.url("live/pushed"), seconds=3)
    player.wait_ok(timeout=25)
    pusher.wait_ok(timeout=30)
    check_media(player.out_path, min_video_frames=3 * FPS - 9, max_video_frames=3 * FPS + 5, min_audio_frames=100,
                context=e2e.context(pusher, player))  # fmt: skip
    assert " 0 skipped" in pusher.stderr_text()
