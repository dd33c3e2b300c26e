"""python -m rtmpserver.handlers.auth sign|passwd."""

from __future__ import annotations

import io

import pytest

from rtmpserver.handlers import auth
from rtmpserver.handlers.auth import sign_url
from tests.handlers.auth.helpers import (
    NOW,
    SECRET,
)


def test_cli_sign_prints_the_query_string(tmp_path):
    out = io.StringIO()
    assert auth.main(["sign", "--secret", SECRET, "--app", "live", "--name", "cam", "--expires", "1700000000"], out=out) == 0
    assert out.getvalue() == sign_url(SECRET, "live", "cam", 1700000000) + "\n"
    out = io.StringIO()
    (tmp_path / "s").write_text(SECRET + "\n")
    auth.main(["sign", "--secret-file", str(tmp_path / "s"), "--app", "live", "--name", "cam", "--ttl", "3600",
               "--action", "play", "--ip", "10.0.0.1"], out=out, now=lambda: NOW + 0.7)  # fmt: skip
    assert out.getvalue() == sign_url(SECRET, "live", "cam", NOW + 3600, "10.0.0.1", action="play") + "\n"


def test_cli_sign_refuses_short_secret(capsys):
    with pytest.raises(SystemExit) as info:
        auth.main(["sign", "--secret", "short", "--app", "live", "--name", "cam", "--ttl", "1"], out=io.StringIO())
    assert info.value.code == 2
    assert "at least 16" in capsys.readouterr().err


def test_cli_passwd():
    out = io.StringIO()
    assert auth.main(["passwd", "alice"], out=out, stdin=io.StringIO("hunter2\n")) == 0
    users = auth.parse_users_file(out.getvalue(), "users")
    assert users["alice"].verify(b"hunter2")


def test_cli_as_a_module():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "rtmpserver.handlers.auth", "sign", "--secret", SECRET, "--app", "live",
                        "--name", "cam", "--expires", "1700000000"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == sign_url(SECRET, "live", "cam", 1700000000) + "\n"
