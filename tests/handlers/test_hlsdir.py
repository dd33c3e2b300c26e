"""rtmpserver.handlers.hlsdir: files appear whole (temporary name + rename), a failed write leaves
the previous file, modes are applied whatever the umask, the budget bounds bytes on disk."""

from __future__ import annotations

import os
import stat

import pytest

from rtmpserver.handlers.hlsdir import DiskBudget, HLSDirectory, safe_name
from rtmpserver.media.hls import HLSSegmenter
from tests.media.test_hls import started, video_stream
from tests.media.test_ts import avc_header


def attached(tmp_path, limit=1 << 30, **kw):
    seg = started(fragment=1.0, window=2, grace=1, **kw)
    d = HLSDirectory(str(tmp_path), "live", "s", DiskBudget(limit))
    d.attach(seg)
    return seg, d


def test_only_renames_reach_the_final_names(tmp_path, monkeypatch):
    renames = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((os.path.basename(a), os.path.basename(b))), real(a, b)))
    seg, d = attached(tmp_path)
    video_stream(seg, 0, 3100, 1000)
    assert ("s-0.ts" in os.listdir(d.dir)) and (".s-0.ts.tmp", "s-0.ts") in renames
    assert (".s.m3u8.tmp", "s.m3u8") in renames
    assert not [n for n in os.listdir(d.dir) if n.startswith(".")]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    seg, d = attached(tmp_path)
    video_stream(seg, 0, 2100, 1000)
    before = (tmp_path / "live" / "s.m3u8").read_text()

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    video_stream(seg, 3000, 3100, 1000)  # cuts segment 2: its write fails
    monkeypatch.undo()
    assert (tmp_path / "live" / "s.m3u8").read_text() == before
    assert not [n for n in os.listdir(d.dir) if n.startswith(".")]
    assert d.errors > 0 and "s-2.ts" not in os.listdir(d.dir) and "s-2.ts" not in d.sizes


def test_modes_ignore_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        seg = started(fragment=1.0, window=2)
        d = HLSDirectory(str(tmp_path), "live", "s", DiskBudget(1 << 30), file_mode=0o644, dir_mode=0o755)
        d.attach(seg)
        video_stream(seg, 0, 2100, 1000)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "live").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "live" / "s-0.ts").st_mode) == 0o644


def test_old_segments_go_and_the_budget_holds(tmp_path):
    seg, d = attached(tmp_path, limit=40_000)
    for end in range(1100, 20100, 1000):
        video_stream(seg, end - 1100 if end == 1100 else end - 1000, end, 1000)
        names = [n for n in os.listdir(d.dir) if n.endswith(".ts")]
        assert len(names) <= 2 + 1 + 0  # window + grace
        assert sum(os.path.getsize(os.path.join(d.dir, n)) for n in names) == d.budget.used <= 40_000
    d.remove_all()
    assert os.listdir(d.dir) == [] and d.budget.used == 0


def test_init_segments_are_written_and_removed_with_the_last_segment_needing_them(tmp_path):
    seg, d = attached(tmp_path, fmt="fmp4")
    video_stream(seg, 0, 2100, 1000)
    assert "s-init0.mp4" in os.listdir(d.dir)
    seg.discontinuity()
    seg.feed(9, 0, avc_header())
    video_stream(seg, 0, 6100, 1000)
    names = os.listdir(d.dir)
    assert "s-init1.mp4" in names and "s-init0.mp4" not in names


@pytest.mark.parametrize("name, ok", [("cam", True), ("a.b-c_1", True), (".hidden", False), ("a/b", False),
                                      ("..", False), ("", False), ("caf\u00e9", False)])  # fmt: skip
def test_safe_names(name, ok):
    assert safe_name(name) is ok


def test_segmenter_without_directory_is_unchanged():
    seg = HLSSegmenter("s")
    assert seg.on_segment_added is None and seg.on_init_added is None
