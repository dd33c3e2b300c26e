"""The notify handler end to end: a real twistd calls a real HTTP backend while ffmpeg publishes.

The backend is the standard library's http.server in a thread (HTTP/1.1, so the server's
connection pool is exercised too); it records every form it receives and answers as the test
says.  The fields checked are nginx-rtmp's (ngx_rtmp_notify_module.c), so a backend written for
nginx-rtmp works unchanged.
"""

from __future__ import annotations

import http.server
import sys
import threading
import time
from urllib.parse import parse_qsl

import pytest

from tests.e2e.helpers import check_media, free_port, wait_until

pytestmark = pytest.mark.e2e

HANG_LIMIT = 30.0  # a hanging answer is released after this long, or at teardown


class Backend:
    """A notify backend: ``answers[path] = (status, location)`` or ``"hang"``; records forms."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict[str, str]]] = []  # (method, path, form)
        self.answers: dict[str, object] = {}
        self.release = threading.Event()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                assert self.headers.get("Content-Type") == "application/x-www-form-urlencoded"
                path = self.path.partition("?")[0]
                with backend.lock:
                    backend.calls.append(("POST", path, dict(parse_qsl(body, keep_blank_values=True))))
                answer = backend.answers.get(path, (200, None))
                if answer == "hang":
                    backend.release.wait(HANG_LIMIT)
                    answer = (200, None)
                status, location = answer
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                payload = b"ok\n"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # The RTMP server hangs up on an answer it stopped waiting for (the timeout
                # test): writing that late answer fails, which is expected.  Anything else
                # (a failed assertion on the request) fails the test at teardown.
                error = sys.exc_info()[1]
                if not isinstance(error, ConnectionError):
                    backend.errors.append(repr(error))

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def forms(self, call: str) -> list[dict[str, str]]:
        with self.lock:
            return [form for _, _, form in self.calls if form.get("call") == call]

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()
    assert b.errors == [], f"the backend failed on a request: {b.errors}"


def notify_app(backend: Backend, **callbacks: str) -> dict:
    keys = {"handlers": "notify"}
    keys.update({f"notify.{name}": backend.url(path) for name, path in callbacks.items()})
    return keys


def test_publish_play_and_done_calls_carry_nginx_rtmp_fields(e2e, backend):
    srv = e2e.server({"app:live": notify_app(
        backend, on_publish="/publish", on_play="/play", on_publish_done="/publish_done",
        on_play_done="/play_done", on_done="/done",
    )})
    pub = e2e.publish(srv.url("live/cam?key=k1&room=7"), seconds=4)
    assert wait_until(lambda: backend.forms("publish"), 10), f"no on_publish call\n{e2e.context(pub)}"
    player = e2e.play(srv.url("live/cam?viewer=v1"), seconds=1.5)
    player.wait_ok(timeout=20)
    pub.wait_ok(timeout=20)
    ctx = e2e.context(pub, player) + "\n" + srv.log_text()[-3000:]
    assert wait_until(lambda: len(backend.forms("done")) >= 2, 10), f"done calls: {backend.calls}\n{ctx}"

    (publish,) = backend.forms("publish")
    assert {k: publish[k] for k in ("call", "app", "name", "type", "addr", "key", "room")} == {
        "call": "publish", "app": "live", "name": "cam", "type": "live", "addr": "127.0.0.1", "key": "k1", "room": "7",
    }
    assert publish["tcurl"] == f"rtmp://127.0.0.1:{srv.port}/live"
    assert publish["flashver"].startswith("FMLE/3.0"), publish  # what ffmpeg sends as a publisher
    assert publish["clientid"].isdigit()
    assert set(publish) >= {"swfurl", "pageurl"}

    (play,) = backend.forms("play")
    assert (play["call"], play["app"], play["name"], play["viewer"], play["addr"]) == ("play", "live", "cam", "v1", "127.0.0.1")
    assert {"start", "duration", "reset", "clientid", "tcurl", "flashver"} <= set(play)
    assert play["clientid"] != publish["clientid"]

    (publish_done,) = backend.forms("publish_done")
    assert (publish_done["name"], publish_done["key"], publish_done["clientid"]) == ("cam", "k1", publish["clientid"])
    (play_done,) = backend.forms("play_done")
    assert (play_done["name"], play_done["viewer"], play_done["clientid"]) == ("cam", "v1", play["clientid"])
    done = sorted(f["clientid"] for f in backend.forms("done"))
    assert done == sorted([publish["clientid"], play["clientid"]])


def test_redirect_renames_the_published_stream(e2e, backend):
    backend.answers["/publish"] = (302, "renamed")
    srv = e2e.server({"app:live": notify_app(backend, on_publish="/publish")})
    pub = e2e.publish(srv.url("live/secret-key"), seconds=6)
    assert wait_until(lambda: backend.forms("publish"), 10), f"no on_publish call\n{e2e.context(pub)}"
    time.sleep(1.0)
    player = e2e.play(srv.url("live/renamed"), seconds=2)
    player.wait_ok(timeout=20)
    check_media(player.out_path, min_video_frames=45, context=e2e.context(pub, player))
    assert backend.forms("publish")[0]["name"] == "secret-key"
    pub.wait_ok(timeout=20)


def test_forbidden_refuses_the_publish(e2e, backend):
    backend.answers["/publish"] = (403, None)
    srv = e2e.server({"app:live": notify_app(backend, on_publish="/publish", on_publish_done="/publish_done")})
    pub = e2e.publish(srv.url("live/nope"), seconds=5)
    rc = pub.wait(timeout=20)
    assert rc != 0, f"publish went on after the backend answered 403\n{e2e.context(pub)}"
    assert len(backend.forms("publish")) == 1
    log = srv.log_text()
    assert "HTTP 403" in log and "refusing" in log, log[-3000:]
    # A publish the backend allows, ended: its publish_done is sent after anything the refused one
    # could have caused, so when it has arrived the refused publish's absence is settled.
    backend.answers["/publish"] = (200, None)
    ok = e2e.publish(srv.url("live/allowed"), seconds=1)
    ok.wait_ok(timeout=20)
    assert wait_until(lambda: backend.forms("publish_done"), 10), f"no on_publish_done call\n{e2e.context(ok)}"
    assert [f["name"] for f in backend.forms("publish_done")] == ["allowed"], "a refused publish must not report publish_done"


def test_hanging_backend_times_out_and_refuses(e2e, backend):
    backend.answers["/publish"] = "hang"
    app = notify_app(backend, on_publish="/publish")
    app["notify.timeout"] = "1.5"
    srv = e2e.server({"app:live": app})
    pub = e2e.publish(srv.url("live/slow"), seconds=5)
    rc = pub.wait(timeout=25)
    assert rc != 0, f"publish went on although the backend never answered\n{e2e.context(pub)}"
    assert wait_until(lambda: "timed out" in srv.log_text(), 5), srv.log_text()[-3000:]
    backend.release.set()


def test_unreachable_backend_refuses_connect(e2e):
    # A port the kernel just handed out and that was closed again: the connection is refused.
    srv = e2e.server({"app:live": {"handlers": "notify", "notify.on_connect": f"http://127.0.0.1:{free_port()}/connect"}})
    pub = e2e.publish(srv.url("live/x"), seconds=3)
    rc = pub.wait(timeout=20)
    assert rc != 0, f"connect went through without the backend\n{e2e.context(pub)}"
    assert wait_until(lambda: "notify connect" in srv.log_text(), 5), srv.log_text()[-3000:]
