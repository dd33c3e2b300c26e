"""Users and passwords through twisted.cred (scrypt users file)."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from rtmpserver.handlers import auth
from rtmpserver.handlers.auth import hash_password
from tests.handlers.auth.helpers import (
    FAST,
    accepted,
    log_text,
    publish_request,
    refused,
)


def users_file(env, **users: str) -> str:
    path = env.dir / "users"
    path.write_text("# user:hash\n" + "".join(f"{u}:{hash_password(p, **FAST)}\n" for u, p in users.items()))
    return str(path)


def test_user_and_password(env):
    h = env.build(publish="user", users_file=users_file(env, alice="correct horse"))
    req = publish_request("cam", {"user": "alice", "pass": "correct horse", "x": "1"})
    passed = accepted(h.publish, req)
    assert passed.name == "cam" and dict(passed.args) == {"user": "alice", "x": "1"}
    assert req.session.data["auth.user"] == "alice"
    with capturedLogs() as events:
        refused(h.publish, publish_request("cam", {"user": "alice", "pass": "wrong"}))
        refused(h.publish, publish_request("cam", {"user": "mallory", "pass": "correct horse"}))
        refused(h.publish, publish_request("cam", {"user": "alice"}))
    text = log_text(events)
    assert "correct horse" not in text and "wrong" not in text.replace("wrong password", "")
    # credentials in the connect URL
    accepted(h.publish, publish_request("cam", connect_args={"user": "alice", "pass": "correct horse"}))


def test_users_checker_is_a_twisted_cred_checker(env):
    from twisted.cred.checkers import ICredentialsChecker

    parsed = auth.parse_users_file(f"bob:{hash_password('pw', **FAST)}\n", "users")
    checker = auth.ScryptUsersChecker(lambda: parsed)
    verifyObject(ICredentialsChecker, checker)
    box: list = []
    checker.requestAvatarId(UsernamePassword(b"bob", b"pw")).addBoth(box.append)
    assert box == ["bob"]
    box.clear()
    checker.requestAvatarId(UsernamePassword(b"bob", b"pW")).addBoth(box.append)
    assert isinstance(box[0], Failure) and box[0].check(UnauthorizedLogin)


def test_users_checker_runs_scrypt_through_its_runner():
    parsed = auth.parse_users_file(f"bob:{hash_password('pw', **FAST)}\n", "users")
    pending: list = []

    def runner(f, *args):
        d = defer.Deferred()
        pending.append((d, f, args))
        return d

    checker = auth.ScryptUsersChecker(lambda: parsed, runner, concurrency=1)
    box: list = []
    checker.requestAvatarId(UsernamePassword(b"bob", b"pw")).addBoth(box.append)
    checker.requestAvatarId(UsernamePassword(b"nobody", b"pw")).addBoth(box.append)
    assert len(pending) == 1 and box == []  # the second waits for the first (concurrency 1)
    d, f, args = pending.pop()
    d.callback(f(*args))
    assert box == ["bob"] and len(pending) == 1
    d, f, args = pending.pop()
    d.callback(f(*args))  # an unknown user still costs one scrypt
    assert box[1].check(UnauthorizedLogin)


def test_user_or_key(env):
    h = env.build(publish="key user", publish_keys="key1", users_file=users_file(env, alice="pw"))
    accepted(h.publish, publish_request("key1"))
    accepted(h.publish, publish_request("cam", {"user": "alice", "pass": "pw"}))
    e = refused(h.publish, publish_request("cam", {"user": "alice", "pass": "nope"}))
    assert e.description == "Publishing needs a valid stream key or a valid user name and password."


def test_users_file_reload(env):
    path = users_file(env, alice="one")
    os.utime(path, ns=(10**18, 10**18))
    h = env.build(publish="user", users_file=path)
    accepted(h.publish, publish_request("cam", {"user": "alice", "pass": "one"}))
    Path(path).write_text(f"alice:{hash_password('two', **FAST)}\n")
    os.utime(path, ns=(10**18 + 1, 10**18 + 1))
    refused(h.publish, publish_request("cam", {"user": "alice", "pass": "one"}))
    accepted(h.publish, publish_request("cam", {"user": "alice", "pass": "two"}))


def test_hash_password_format():
    h = hash_password("pw", salt=b"0123456789abcdef")
    assert h.startswith("$scrypt$n=16384,r=8,p=1$")
    assert auth._parse_scrypt(h).verify(b"pw")
    assert not auth._parse_scrypt(h).verify(b"pw ")
