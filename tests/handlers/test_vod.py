"""The vod handler (rtmpserver/handlers/vod.py): name resolution that never leaves the directory,
its settings, and files opened as IVodStream."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from rtmpserver import config as configmod
from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers.vod import VodHandler, resolve
from rtmpserver.interfaces import IVodProvider, IVodStream
from rtmpserver.protocol import RTMPServerFactory

DATA = Path(__file__).parent.parent / "data"
SAMPLE = DATA / "media-testsrc-320x240-aac.flv"


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "vod"
    (d / "shows").mkdir(parents=True)
    for rel in ("a.flv", "b.mp4", "c.f4v", "shows/ep1.flv"):
        (d / rel).write_bytes(b"x")
    (tmp_path / "secret.flv").write_bytes(b"x")
    os.symlink(tmp_path / "secret.flv", d / "out.flv")
    os.symlink(d / "a.flv", d / "in.flv")
    (d / "dir.flv").mkdir()
    return str(d.resolve())


@pytest.mark.parametrize("name, rel", [
    ("a", "a.flv"), ("a.flv", "a.flv"), ("flv:a", "a.flv"), ("mp4:b.mp4", "b.mp4"), ("mp4:b", "b.mp4"),
    ("b.mp4", "b.mp4"), ("mp4:c.f4v", "c.f4v"), ("shows/ep1", "shows/ep1.flv"), ("in", "a.flv"),
])  # fmt: skip
def test_names_map_to_files_in_the_directory(root, name, rel):
    assert resolve(root, name) == os.path.join(root, rel)


@pytest.mark.parametrize("name", [
    "missing", "../secret", "shows/../a", "/etc/passwd", "out", "mp4:../b", "a\x00", "shows\\ep1", "", "dir",
    "./a", "shows//ep1", "mp4:", "b",
])  # fmt: skip
def test_names_that_leave_the_directory_or_name_nothing_are_not_found(root, name):
    assert resolve(root, name) is None


def parse(tmp_path, keys: str):
    return configmod.parse(f"[server]\nlisten = tcp:0:interface=127.0.0.1\n[app:vod]\nhandlers = vod\n{keys}", str(tmp_path / "t.ini"))


def handler_of(factory) -> VodHandler:
    return factory.chains["vod"].handlers[0][1]


def test_settings_defaults_and_relative_path(tmp_path):
    (tmp_path / "media").mkdir()
    f = RTMPServerFactory(parse(tmp_path, "vod.path = media\n"), Clock())
    h = handler_of(f)
    verifyObject(IVodProvider, h)
    assert h.root == str((tmp_path / "media").resolve())
    assert h.buffer_limit_ms() == 10_000
    f = RTMPServerFactory(parse(tmp_path, "vod.path = media\nvod.max_buffer = 2.5\n"), Clock())
    assert handler_of(f).buffer_limit_ms() == 2500


@pytest.mark.parametrize("keys, message", [
    ("", "vod.path: required"),
    ("vod.path = nowhere\n", "an existing directory"),
    ("vod.path = media\nvod.max_buffer = 0\n", "vod.max_buffer"),
    ("vod.path = media\nvod.max_buffer = 1000\n", "vod.max_buffer"),
    ("vod.path = media\nvod.buffer = 1\n", "vod.buffer: unknown key"),
])  # fmt: skip
def test_bad_settings_stop_startup(tmp_path, keys, message):
    (tmp_path / "media").mkdir()
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        RTMPServerFactory(parse(tmp_path, keys), Clock())


def test_an_flv_file_opens_as_a_vod_stream(tmp_path):
    (tmp_path / "media").mkdir()
    shutil.copy(SAMPLE, tmp_path / "media" / "clip.flv")
    h = handler_of(RTMPServerFactory(parse(tmp_path, "vod.path = media\n"), Clock()))
    s = h.open_stream("clip")
    try:
        verifyObject(IVodStream, s)
        assert s.name == "clip" and s.duration_ms > 0
        meta = s.metadata()
        assert meta["width"] == 320 and "keyframes" not in meta
        assert [x.type_id for x in s.sequence_headers()] == [9, 8]
        first = s.read()
        assert first.type_id in (8, 9) and first.timestamp == 0
        landed = s.seek(s.duration_ms // 2)
        assert 0 <= landed <= s.duration_ms // 2
        assert s.next_due_ms() == landed
    finally:
        s.close()
    s.close()  # idempotent
    assert h.open_stream("nothing") is None


def test_a_malformed_file_is_refused_with_play_failed(tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "bad.mp4").write_bytes(b"\x00\x00\x00\x08junk" * 4)
    (tmp_path / "media" / "bad.flv").write_bytes(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x12\xff\xff\xff")
    h = handler_of(RTMPServerFactory(parse(tmp_path, "vod.path = media\n"), Clock()))
    for name in ("bad.mp4", "bad"):
        with pytest.raises(Rejected) as e:
            h.open_stream(name)
        assert e.value.code == "NetStream.Play.Failed"


def test_closing_frees_the_index_without_waiting_for_the_cycle_collector(tmp_path):
    import gc
    import weakref

    (tmp_path / "media").mkdir()
    shutil.copy(SAMPLE, tmp_path / "media" / "clip.flv")
    h = handler_of(RTMPServerFactory(parse(tmp_path, "vod.path = media\n"), Clock()))
    s = h.open_stream("clip")
    reader = weakref.ref(s._source.flv)
    gc.disable()
    try:
        s.close()
        assert reader() is None
        assert s.read() is None and s.next_due_ms() is None
    finally:
        gc.enable()


def test_with_a_reactor_files_are_opened_on_its_thread_pool(tmp_path):
    from rtmpserver.handlers.vod import VodFactory

    calls = []

    class Pool:
        def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
            calls.append(f)
            try:
                on_result(True, f(*args, **kwargs))
            except Exception as e:
                from twisted.python.failure import Failure

                on_result(False, Failure(e))

    class Reactor(Clock):
        def getThreadPool(self):
            return Pool()

        def callFromThread(self, f, *args, **kwargs):
            f(*args, **kwargs)

    (tmp_path / "media").mkdir()
    shutil.copy(SAMPLE, tmp_path / "media" / "clip.flv")
    (tmp_path / "media" / "bad.mp4").write_bytes(b"\x00\x00\x00\x08junk")
    cfg = parse(tmp_path, "vod.path = media\n")
    from rtmpserver.requests import HandlerContext

    h = VodFactory().build({"path": "media"}, HandlerContext(app=cfg.apps["vod"], server=cfg, hub=None, clock=Clock(), reactor=Reactor()))
    got = []
    h.open_stream("clip").addCallback(got.append)
    assert len(calls) == 1 and got[0].duration_ms > 0
    got[0].close()
    failures = []
    h.open_stream("bad.mp4").addErrback(failures.append)
    assert failures[0].check(Rejected) and failures[0].value.code == "NetStream.Play.Failed"
    assert h.open_stream("nothing") is None
