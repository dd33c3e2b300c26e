"""Key files: comments, NAME:KEY mapping, re-read on change, fail closed."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.logger import capturedLogs

from tests.handlers.auth.helpers import (
    accepted,
    log_text,
    play_request,
    publish_request,
    refused,
)


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
