"""The auth handler: stream keys, signed URLs, passwords, and its configuration."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers import auth
from rtmpserver.handlers.auth import factory, hash_password, sign_url, signed_string
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.requests import ConnectRequest, HandlerContext, PlayRequest, PublishRequest, SessionView

SECRET = "s3cret-s3cret-s3cret"
NOW = 1_700_000_000
# Cheap scrypt for tests; the passwd command uses RFC 7914's interactive cost.
FAST = {"n": 1024, "r": 8, "p": 1}


class FakeSession:
    def __init__(self, host: str = "192.0.2.10", connect_args: dict | None = None) -> None:
        self.id = 3
        self.host = host
        self.peer = f"{host}:40000"
        self.app = "live"
        self.connect_params = {"app": "live", "args": dict(connect_args or {})}
        self.handler_data: dict = {}
        self.closed = False


class FakeProceed:
    def __init__(self, outcome=None) -> None:
        self.calls: list = []
        self.outcome = outcome

    def __call__(self, request):
        self.calls.append(request)
        return defer.succeed(self.outcome)


class Env:
    """A config directory, a clock, and the handler built from some settings."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.config = str(tmp_path / "server.ini")
        self.clock = Clock()
        self.clock.advance(NOW)

    def build(self, **settings: str):
        ctx = HandlerContext(app=SimpleNamespace(name="live"), server=SimpleNamespace(path=self.config),
                             hub=None, clock=self.clock)  # fmt: skip
        return factory.build(settings, ctx)

    def error(self, **settings: str) -> str:
        with pytest.raises(ConfigError) as info:
            self.build(**settings)
        return str(info.value)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def publish_request(name: str, args: dict | None = None, host: str = "192.0.2.10", connect_args=None, app="live"):
    return PublishRequest(app=app, name=name, mode="live", args=dict(args or {}),
                          session=SessionView(FakeSession(host, connect_args)))  # fmt: skip


def play_request(name: str, args: dict | None = None, host: str = "192.0.2.10", connect_args=None, app="live"):
    return PlayRequest(app=app, name=name, start=-2, duration=-1, reset=True, args=dict(args or {}),
                       session=SessionView(FakeSession(host, connect_args)))  # fmt: skip


def run(hook, request):
    """Call a hook with a fake proceed; returns (request passed on or None, Rejected or None)."""
    proceed = FakeProceed()
    try:
        r = hook(request, proceed)
    except Rejected as e:
        assert proceed.calls == []
        return None, e
    if isinstance(r, defer.Deferred):
        box: list = []
        r.addBoth(box.append)
        assert box, "hook did not finish synchronously"
        if isinstance(box[0], Failure):
            box[0].trap(Rejected)
            assert proceed.calls == []
            return None, box[0].value
    assert len(proceed.calls) == 1
    return proceed.calls[0], None


def accepted(hook, request):
    passed, rejected = run(hook, request)
    assert rejected is None, f"refused: {rejected}"
    return passed


def refused(hook, request, code="NetStream.Publish.Denied") -> Rejected:
    passed, rejected = run(hook, request)
    assert passed is None, f"accepted: {passed}"
    assert rejected.code == code
    return rejected


def log_text(events) -> str:
    out = []
    for e in events:
        fields = {k: v for k, v in e.items() if not k.startswith("log_")}
        out.append(e["log_format"].format(**fields) if "log_format" in e and e["log_format"] else "")
        f = e.get("log_failure")
        if f is not None:
            out.append(str(f.value))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# interfaces


def test_factory_and_handler_provide_their_interfaces(env):
    verifyObject(IAppHandlerFactory, factory)
    assert factory.name == "auth"
    verifyObject(IAppHandler, env.build(publish_keys="k1"))


def test_connect_and_close_stream_pass_through(env):
    h = env.build(publish_keys="k1")
    req = ConnectRequest(app="live", tc_url="rtmp://x/live", page_url="", swf_url="", flash_ver="FMLE/3.0",
                         args={}, params={}, session=SessionView(FakeSession()))  # fmt: skip
    assert accepted(h.connect, req) is req
    assert h.close_stream(object()) is None


# --------------------------------------------------------------------------------------------------
# static keys


def test_stream_name_that_is_a_key_is_accepted_and_the_name_kept(env):
    h = env.build(publish_keys="key1 key2")
    req = publish_request("key2")
    assert accepted(h.publish, req) == req


def test_wrong_key_is_refused_before_anything_proceeds(env):
    h = env.build(publish_keys="key1, key2")
    e = refused(h.publish, publish_request("key3"))
    assert "stream key" in e.description
    refused(h.publish, publish_request("KEY1"))  # keys are case sensitive
    refused(h.publish, publish_request("key"))  # a prefix is not the key


def test_key_argument_keeps_the_name_and_is_not_passed_on(env):
    h = env.build(publish_keys="key1")
    passed = accepted(h.publish, publish_request("cam", {"key": "key1", "quality": "hd"}))
    assert passed.name == "cam"
    assert dict(passed.args) == {"quality": "hd"}
    passed = accepted(h.publish, publish_request("cam", {"token": "key1"}))
    assert passed.name == "cam" and dict(passed.args) == {}


def test_wrong_key_argument_is_refused_even_if_the_name_is_a_key(env):
    h = env.build(publish_keys="key1")
    refused(h.publish, publish_request("key1", {"key": "nope"}))
    refused(h.publish, publish_request("key1", {"key": ""}))


def test_key_in_the_connect_url(env):
    h = env.build(publish_keys="key1")
    passed = accepted(h.publish, publish_request("cam", connect_args={"key": "key1"}))
    assert passed.name == "cam"
    refused(h.publish, publish_request("cam", connect_args={"key": "key9"}))


def test_stream_keys_rename_the_stream(env):
    h = env.build(stream_keys="alice:key123, bob:key456")
    assert accepted(h.publish, publish_request("key123")).name == "alice"
    assert accepted(h.publish, publish_request("key456")).name == "bob"
    # A mapped key always publishes under its own name, whatever name came with it.
    assert accepted(h.publish, publish_request("whatever", {"key": "key123"})).name == "alice"
    # The name alone is not a key.
    refused(h.publish, publish_request("alice"))


def test_stream_keys_and_plain_keys_together(env):
    h = env.build(stream_keys="alice:key123", publish_keys="open1")
    assert accepted(h.publish, publish_request("key123")).name == "alice"
    assert accepted(h.publish, publish_request("open1")).name == "open1"


def test_keys_never_appear_in_logs(env):
    h = env.build(stream_keys="alice:SeCrEtKeY123", publish_keys="PlainKey777")
    with capturedLogs() as events:
        accepted(h.publish, publish_request("SeCrEtKeY123"))
        accepted(h.publish, publish_request("PlainKey777"))
        accepted(h.publish, publish_request("cam", {"key": "PlainKey777"}))
        refused(h.publish, publish_request("SeCrEtKeY124"))
        refused(h.publish, publish_request("cam", {"key": "SeCrEtKeY124"}))
    text = log_text(events)
    assert "SeCrEtKeY12" not in text and "PlainKey777" not in text, text
    assert "alice" in text and "192.0.2.10:40000" in text
    assert "refused by auth" in text and "wrong key" in text


def test_play_is_open_by_default(env):
    h = env.build(publish_keys="key1")
    req = play_request("cam")
    assert accepted(h.play, req) is req


def test_play_keys_come_from_arguments_only(env):
    h = env.build(publish_keys="key1", play="key", play_keys="watch1")
    passed = accepted(h.play, play_request("cam", {"key": "watch1"}))
    assert passed.name == "cam" and dict(passed.args) == {}
    accepted(h.play, play_request("cam", connect_args={"token": "watch1"}))
    refused(h.play, play_request("watch1"), "NetStream.Play.Failed")  # the name is the stream to watch
    refused(h.play, play_request("cam", {"key": "key1"}), "NetStream.Play.Failed")  # a publish key is not a play key


def test_publish_none_play_key(env):
    h = env.build(publish="none", play="key", play_keys="watch1")
    req = publish_request("anything")
    assert accepted(h.publish, req) is req
    refused(h.play, play_request("cam"), "NetStream.Play.Failed")


# --------------------------------------------------------------------------------------------------
# key files


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_keys_file_with_comments_and_mapping(env):
    write(env.dir / "keys.txt", "# publishers\nkey1\n\n  alice:key123  \n# old: key0\n", 10**18)
    h = env.build(publish_keys_file="keys.txt")  # relative to the config file's directory
    accepted(h.publish, publish_request("key1"))
    assert accepted(h.publish, publish_request("key123")).name == "alice"
    refused(h.publish, publish_request("key0"))
    refused(h.publish, publish_request("# publishers"))


def test_keys_file_is_reread_when_it_changes(env):
    path = env.dir / "keys.txt"
    write(path, "key1\n", 10**18)
    h = env.build(publish_keys_file=str(path))
    accepted(h.publish, publish_request("key1"))
    refused(h.publish, publish_request("key2"))
    write(path, "key2\n", 10**18 + 1)
    with capturedLogs() as events:
        refused(h.publish, publish_request("key1"))
        accepted(h.publish, publish_request("key2"))
    assert "changed; reloaded" in log_text(events)


def test_keys_file_same_size_same_mtime_is_not_reread(env):
    # What "changed" means: mtime, size or inode. Same everything: the cached keys stay.
    path = env.dir / "keys.txt"
    write(path, "key1\n", 10**18)
    h = env.build(publish_keys_file=str(path))
    write(path, "key2\n", 10**18)
    accepted(h.publish, publish_request("key1"))


def test_keys_file_replaced_by_rename_is_reread(env):
    path = env.dir / "keys.txt"
    write(path, "key1\n", 10**18)
    h = env.build(publish_keys_file=str(path))
    new = env.dir / "keys.new"
    write(new, "key2\n", 10**18)  # same size and mtime, different inode
    os.replace(new, path)
    accepted(h.publish, publish_request("key2"))
    refused(h.publish, publish_request("key1"))


def test_keys_file_that_breaks_or_vanishes_fails_closed_and_recovers(env):
    path = env.dir / "keys.txt"
    write(path, "key1\n", 10**18)
    h = env.build(stream_keys="alice:static1", publish_keys_file=str(path))
    with capturedLogs() as events:
        write(path, "key1\nbad key with spaces\n", 10**18 + 1)
        refused(h.publish, publish_request("key1"))
        refused(h.publish, publish_request("key1"))
        assert accepted(h.publish, publish_request("static1")).name == "alice"  # other sources still work
    text = log_text(events)
    assert text.count("keys.txt:2:") == 1, text  # logged once, with file and line
    assert "bad key" not in text
    path.unlink()
    with capturedLogs() as events:
        refused(h.publish, publish_request("key1"))
    assert "file not found" in log_text(events)
    write(path, "key1\n", 10**18 + 2)
    with capturedLogs() as events:
        accepted(h.publish, publish_request("key1"))
    assert "usable again" in log_text(events)


def test_play_keys_file(env):
    write(env.dir / "viewers", "v1\nv2\n", 10**18)
    h = env.build(publish="none", play="key", play_keys_file="viewers")
    accepted(h.play, play_request("cam", {"key": "v2"}))
    refused(h.play, play_request("cam", {"key": "v3"}), "NetStream.Play.Failed")


# --------------------------------------------------------------------------------------------------
# signed URLs


def signed(query: str) -> dict:
    return dict(p.split("=", 1) for p in query.split("&"))


def test_signed_string_is_documented_format():
    assert signed_string("publish", "live", "cam", 1700000000) == "publish/live/cam?expires=1700000000"
    assert signed_string("play", "live", "cam", 5, "::1") == "play/live/cam?expires=5&ip=::1"


def test_sign_url_known_answer():
    # Computed outside Python, from the text docs/handlers.md says is signed:
    # printf %s 'publish/live/cam?expires=1700000000' | openssl dgst -sha256 -hmac 's3cret-s3cret-s3cret'
    expected = "e3ec5d08b02b2f1dcc2b9ab3668c5d87ad82cc1bd618f0c3e1e20eff8437b4ff"
    assert sign_url(SECRET, "live", "cam", 1700000000) == f"expires=1700000000&sign={expected}"


def test_valid_signature_accepted_and_sign_not_passed_on(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    passed = accepted(h.publish, publish_request("cam", {**args, "x": "1"}))
    assert passed.name == "cam"
    assert dict(passed.args) == {"expires": str(NOW + 60), "x": "1"}


def test_signature_in_the_connect_url(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    accepted(h.publish, publish_request("cam", connect_args=args))


def test_expiry_boundary(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 10))
    env.clock.advance(10)
    accepted(h.publish, publish_request("cam", args))  # valid up to and including second `expires`
    env.clock.advance(0.5)
    with capturedLogs() as events:
        refused(h.publish, publish_request("cam", args))
    assert "expired" in log_text(events)


def test_expired_signature_refused(env):
    h = env.build(play="signed", publish="none", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW - 1, action="play"))
    e = refused(h.play, play_request("cam", args), "NetStream.Play.Failed")
    assert "signed URL" in e.description


def test_tampered_signatures_refused(env):
    h = env.build(publish="signed", secret=SECRET)
    good = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    sig = good["sign"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    refused(h.publish, publish_request("cam", {**good, "sign": flipped}))
    refused(h.publish, publish_request("cam", {**good, "expires": str(NOW + 3600)}))  # extended expiry
    refused(h.publish, publish_request("cam2", good))  # another stream
    refused(h.publish, publish_request("cam", good, app="other"))  # another app
    refused(h.publish, publish_request("cam", signed(sign_url("another-secret-value", "live", "cam", NOW + 60))))


def test_play_signature_cannot_publish(env):
    h = env.build(publish="signed", play="signed", secret=SECRET)
    play_args = signed(sign_url(SECRET, "live", "cam", NOW + 60, action="play"))
    accepted(h.play, play_request("cam", play_args))
    refused(h.publish, publish_request("cam", play_args))


def test_malformed_signature_arguments(env):
    h = env.build(publish="signed", secret=SECRET)
    good = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    with capturedLogs() as events:
        refused(h.publish, publish_request("cam"))
        refused(h.publish, publish_request("cam", {"sign": good["sign"]}))
        refused(h.publish, publish_request("cam", {**good, "expires": "-5"}))
        refused(h.publish, publish_request("cam", {**good, "expires": "1e10"}))
        refused(h.publish, publish_request("cam", {**good, "sign": "zz"}))
        refused(h.publish, publish_request("cam", {**good, "sign": good["sign"][:-2]}))
    text = log_text(events)
    assert "no ?sign=" in text and "malformed ?expires=" in text and "malformed ?sign=" in text


def test_hex_case_and_base64url_signatures(env):
    h = env.build(publish="signed", secret=SECRET)
    good = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    accepted(h.publish, publish_request("cam", {**good, "sign": good["sign"].upper()}))
    raw = bytes.fromhex(good["sign"])
    b64 = base64.urlsafe_b64encode(raw).decode()
    accepted(h.publish, publish_request("cam", {**good, "sign": b64.rstrip("=")}))
    accepted(h.publish, publish_request("cam", {**good, "sign": b64}))


def test_bind_ip(env):
    h = env.build(publish="signed", secret=SECRET, bind_ip="yes")
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60, ip="192.0.2.10"))
    accepted(h.publish, publish_request("cam", args, host="192.0.2.10"))
    accepted(h.publish, publish_request("cam", args, host="::ffff:192.0.2.10"))  # dual-stack listener
    refused(h.publish, publish_request("cam", args, host="192.0.2.11"))
    refused(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60)), host="192.0.2.10"))
    refused(h.publish, publish_request("cam", args, host="not-an-address"))
    v6 = signed(sign_url(SECRET, "live", "cam", NOW + 60, ip="2001:DB8:0::1"))
    accepted(h.publish, publish_request("cam", v6, host="2001:db8::1"))


def test_signature_not_bound_to_ip_works_from_anywhere(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    accepted(h.publish, publish_request("cam", args, host="198.51.100.1"))
    refused(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60, ip="198.51.100.1"))))


def test_secret_file(env):
    (env.dir / "secret").write_text(SECRET + "\n")
    h = env.build(publish="signed", secret_file="secret")
    accepted(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60))))


def test_key_or_signature(env):
    h = env.build(publish="key signed", publish_keys="key1", secret=SECRET)
    accepted(h.publish, publish_request("key1"))
    accepted(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60))))
    e = refused(h.publish, publish_request("cam"))
    assert e.description == "Publishing needs a valid stream key or a valid signed URL."


@settings(max_examples=100, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="?"), min_size=1, max_size=40),
    ttl=st.integers(0, 10**6),
    position=st.integers(0, 63),
)
def test_signature_roundtrip_and_any_one_digit_changed(tmp_path_factory, name, ttl, position):
    env = Env(tmp_path_factory.mktemp("sig"))
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", name, NOW + ttl))
    accepted(h.publish, publish_request(name, args))
    sig = args["sign"]
    changed = sig[:position] + format((int(sig[position], 16) + 1) % 16, "x") + sig[position + 1 :]
    refused(h.publish, publish_request(name, {**args, "sign": changed}))


def test_sign_url_validates_its_arguments():
    with pytest.raises(ValueError):
        sign_url(SECRET, "live", "cam", NOW, action="record")
    with pytest.raises(ValueError):
        sign_url(SECRET, "live", "cam", NOW, ip="example.org")
    assert sign_url(SECRET, "live", "cam", NOW, ip="::ffff:1.2.3.4") == sign_url(SECRET, "live", "cam", NOW, ip="1.2.3.4")


# --------------------------------------------------------------------------------------------------
# users (twisted.cred)


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


# --------------------------------------------------------------------------------------------------
# command line


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


# --------------------------------------------------------------------------------------------------
# configuration errors


def bad_users(env) -> str:
    (env.dir / "badusers").write_text("alice:plaintext\n")
    return "badusers"


@pytest.mark.parametrize(
    "settings, key, expected",
    [
        ({}, "publish", "'key' needs auth.stream_keys, auth.publish_keys or auth.publish_keys_file"),
        ({"publish_keys": "k", "colour": "red"}, "colour", "unknown key"),
        ({"publish": "keys", "publish_keys": "k"}, "publish", "expected none, or one or more of key, signed, user"),
        ({"publish": "", "publish_keys": "k"}, "publish", "expected none"),
        ({"publish": "none key", "publish_keys": "k"}, "publish", "expected none"),
        ({"publish": "key key", "publish_keys": "k"}, "publish", "expected none"),
        ({"publish": "none"}, "publish", "both are none"),
        ({"publish_keys": "k", "play": "key"}, "play", "'key' needs auth.play_keys or auth.play_keys_file"),
        ({"publish_keys": "k", "play": "everyone"}, "play", "expected none"),
        ({"publish_keys": ""}, "publish_keys", "expected one or more keys"),
        ({"publish_keys": "good a+b"}, "publish_keys", "entry 2: a key must be 1-512 letters"),
        ({"publish_keys": "k:v"}, "publish_keys", "found ':'"),
        ({"publish_keys": "x" * 513}, "publish_keys", "a key must be 1-512"),
        ({"publish_keys": "k1 k1"}, "publish_keys", "a key is given twice"),
        ({"stream_keys": "alice"}, "stream_keys", "entry 1: expected NAME:KEY"),
        ({"stream_keys": "al ice:k"}, "stream_keys", "entry 1: expected NAME:KEY"),
        ({"stream_keys": "a?b:k"}, "stream_keys", "stream name of letters"),
        ({"stream_keys": "alice:"}, "stream_keys", "a key must be"),
        ({"stream_keys": "alice:k1", "publish_keys": "k1"}, "publish_keys", "a key is given twice"),
        ({"publish": "signed", "publish_keys": "k"}, "publish_keys", "auth.publish does not include 'key'"),
        ({"publish_keys": "k", "play_keys": "v"}, "play_keys", "auth.play does not include 'key'"),
        ({"publish_keys_file": "missing.txt"}, "publish_keys_file", "cannot read"),
        ({"publish_keys_file": ""}, "publish_keys_file", "expected a file name"),
        ({"publish": "signed"}, "publish", "'signed' needs auth.secret or auth.secret_file"),
        ({"publish": "signed", "secret": "short"}, "secret", "at least 16 characters"),
        ({"publish": "signed", "secret": SECRET, "secret_file": "s"}, "secret_file", "not both"),
        ({"publish": "signed", "secret_file": "nope"}, "secret_file", "cannot read"),
        ({"publish_keys": "k", "secret": SECRET}, "secret", "neither auth.publish nor auth.play includes 'signed'"),
        ({"publish_keys": "k", "bind_ip": "yes"}, "bind_ip", "includes 'signed'"),
        ({"publish": "signed", "secret": SECRET, "bind_ip": "maybe"}, "bind_ip", "expected yes/no"),
        ({"publish": "user"}, "publish", "'user' needs auth.users_file"),
        ({"publish_keys": "k", "users_file": "u"}, "users_file", "includes 'user'"),
        ({"publish": "user", "users_file": "nope"}, "users_file", "cannot read"),
    ],
)
def test_config_errors_name_file_app_and_key(env, settings, key, expected):
    msg = env.error(**settings)
    assert msg.startswith(f"{env.config}: [app:live] auth.{key}: "), msg
    assert expected in msg, msg


def test_config_errors_never_show_keys_or_secrets(env):
    for settings in (
        {"publish_keys": "TopSecretKey a+b"},
        {"stream_keys": "alice:TopSecretKey bob"},
        {"publish": "signed", "secret": "TopSecretKey"},
        {"publish_keys": "k", "secret": "TopSecretKey1234567890"},
        {"publish": "signed", "publish_keys": "TopSecretKey", "secret": SECRET},
        {"publish_keys": "TopSecretKey TopSecretKey"},
    ):
        msg = env.error(**settings)
        assert "TopSecretKey" not in msg, msg


def test_key_file_errors_name_file_and_line(env):
    (env.dir / "keys").write_text("# ok\nkey1\nkey 2\n")
    msg = env.error(publish_keys_file="keys")
    assert f"auth.publish_keys_file: {env.dir / 'keys'}:3: a key must be" in msg
    (env.dir / "keys").write_text("key1\nkey1\n")
    assert "keys:2: this key appears on an earlier line too" in env.error(publish_keys_file="keys")
    (env.dir / "keys").write_bytes(b"key1\n\xff\n")
    assert "not UTF-8" in env.error(publish_keys_file="keys")
    (env.dir / "viewers").write_text("alice:v1\n")
    assert "viewers:1: expected a key" in env.error(publish="none", play="key", play_keys_file="viewers")


def test_users_file_errors(env):
    assert "badusers:1: expected USER:$scrypt$" in env.error(publish="user", users_file=bad_users(env))
    (env.dir / "u").write_text(f"al ice:{hash_password('x', **FAST)}\n")
    assert "u:1: expected USER:HASH" in env.error(publish="user", users_file="u")
    (env.dir / "u").write_text(f"a:{hash_password('x', **FAST)}\na:{hash_password('y', **FAST)}\n")
    assert "u:2: user 'a' appears on an earlier line too" in env.error(publish="user", users_file="u")
    (env.dir / "u").write_text(f"a:{hash_password('x', **FAST).replace('n=1024', 'n=1000')}\n")
    assert "power of two" in env.error(publish="user", users_file="u")
