"""auth.* configuration errors: file, app and key named, secrets never shown."""

from __future__ import annotations

import pytest

from rtmpserver.handlers.auth import hash_password
from tests.handlers.auth.helpers import (
    FAST,
    SECRET,
)


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
