"""Recording file names: sanitized components that stay in the record directory, unique names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from rtmpserver.handlers.record import (
    Recorder,
    render_path,
    sanitize,
)
from tests.handlers.record.helpers import (
    live_stream,
    record_stream,
    send_headers,
    send_loops,
    settings_for,
)

# --- names -----------------------------------------------------------------------------------

_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cam1", "cam1"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/etc/passwd", "_etc_passwd"),
        ("..", "_"),
        ("...hidden", "hidden"),
        ("", "_"),
        ("a\x00b", "a_b"),
        ("a\\b", "a_b"),
        ("ca m?x=1", "ca_m_x_1"),
        ("kamera-ü", "kamera-_"),
    ],
)
def test_sanitize_examples(name, expected):
    assert sanitize(name) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_sanitized_names_are_one_safe_component(name):
    safe = sanitize(name)
    assert safe and set(safe) <= _SAFE and not safe.startswith(".") and len(safe) <= 128
    root = "/var/rec"
    path = render_path(root + "/{app}/{name}-{time}.flv", name, name, 0)
    assert os.path.commonpath([root, path]) == root
    assert os.path.dirname(os.path.dirname(path)) == root  # exactly rec/<app>/<file>


def test_hostile_names_stay_in_the_record_directory(tmp_path):
    clock = Clock()
    for name in ["../../escape", "/abs/path", "a/b/c", "..", "x\x00y", "..\\..\\w"]:
        stream = live_stream(name=name)
        rec = Recorder(settings_for(tmp_path, path=str(tmp_path / "rec" / "{name}.flv")), "live", name, clock)
        stream.add_sink(rec)
        send_headers(stream)
        send_loops(stream, 1)
        stream.stop()
        assert rec.paths, name
        for p in rec.paths:
            assert Path(p).parent == tmp_path / "rec", p
    created = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert created == sorted(["_.flv", "_.._escape.flv", "_.._w.flv", "_abs_path.flv", "a_b_c.flv", "x_y.flv"])
    assert [p for p in tmp_path.iterdir()] == [tmp_path / "rec"]


def test_time_placeholder_and_counter_keep_names_unique(tmp_path):
    clock = Clock()
    clock.advance(1795300530)  # 2026-11-21 22:35:30 UTC
    paths = []
    for _ in range(3):
        rec, _ = record_stream(tmp_path, loops=1, clock=clock)
        paths += rec.paths
    base = tmp_path / "rec" / "live" / "cam-20261121-223530"
    assert paths == [f"{base}.flv", f"{base}-1.flv", f"{base}-2.flv"]
