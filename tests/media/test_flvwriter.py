"""rtmpserver.media.flvwriter: the sans-IO FLV recording writer (reserved metadata, keyframe index).

Media comes from tests/data/media-testsrc-320x240-aac.flv (FFmpeg: H.264 320x240 30 fps, AAC).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtmpserver.codec import amf0
from rtmpserver.media.flv import FLVReader, is_video_keyframe, read_file
from rtmpserver.media.flvwriter import (
    _METADATA_TEMPLATE,
    METADATA_OFFSET,
    FLVRecording,
    _filler,
    metadata_reserve,
    publisher_metadata,
)

MEDIA = read_file(Path(__file__).resolve().parents[1] / "data" / "media-testsrc-320x240-aac.flv")
VSEQ = MEDIA[1].payload
ASEQ = MEDIA[2].payload
FRAMES = [t for t in MEDIA[3:] if (t.type == 9 and t.payload[1] == 1) or (t.type == 8 and t.timestamp < 1000)]
KEY = FRAMES[0].payload
AAC = next(t.payload for t in FRAMES if t.type == 8)


def test_reserve_fits_a_full_index_and_every_key():
    r = FLVRecording(has_video=True, has_audio=True, max_index=3)
    r.start(9, FRAMES[0].payload, video_header=VSEQ, audio_header=ASEQ)
    for i in range(1, 10):  # more keyframes than the index holds: the first 3 are indexed
        r.add(9, i * 500, KEY, seek_point=True)
        r.add(8, i * 500 + 10, AAC)
    tag = r.metadata_tag()
    assert len(tag) == 11 + metadata_reserve(3) + 4
    meta = amf0.decode(tag[11:-4])[1]
    assert len(meta["keyframes"]["times"]) == 3
    assert set(meta) <= {k for k, _ in _METADATA_TEMPLATE} | {"keyframes", "padding"}


@pytest.mark.parametrize("room", [0, 1, 2, 3, 4, 257, 258, 259, 260, 261, 1000, 18 * 10000])
def test_filler_has_the_exact_size(room):
    encoded = amf0.encode(_filler(room), references=False)
    assert len(encoded) == 5 + room
    assert all(x is None or len(x) <= 255 for x in _filler(room))



def test_bytes_alone_make_a_file_whose_final_prefix_indexes_the_keyframes():
    r = FLVRecording(has_video=True, has_audio=True, max_index=10)
    r.start(9, KEY, video_header=VSEQ, audio_header=ASEQ)
    for i in range(1, 4):
        r.add(8, i * 500 - 10, AAC)
        r.add(9, i * 500, KEY, seek_point=True)
    data = bytearray(r.take())
    assert r.pending == 0 and r.take() == b""
    prefix = r.final_prefix()
    assert len(prefix) == METADATA_OFFSET + 11 + metadata_reserve(10) + 4
    data[: len(prefix)] = prefix
    tags = FLVReader().feed(bytes(data))
    assert [t.type for t in tags[:4]] == [18, 9, 8, 9]
    meta = amf0.decode(tags[0].payload)[1]
    assert meta["duration"] == 2.0  # last video frame (1.5 s) plus one frame interval (0.5 s), as FFmpeg writes
    assert meta["width"] == 320 and meta["height"] == 240
    keyframes = [t for t in tags if t.type == 9 and is_video_keyframe(t.payload) and t.payload[1] == 1]
    assert meta["keyframes"]["filepositions"] == [float(t.offset) for t in keyframes]
    assert meta["keyframes"]["times"] == [t.timestamp / 1000 for t in keyframes]


def test_publisher_metadata_keeps_only_positive_finite_numbers_and_stereo():
    body = amf0.encode("onMetaData", {"width": 640.0, "height": -1.0, "framerate": float("inf"), "stereo": True, "x": 1.0})
    assert publisher_metadata(body) == {"width": 640.0, "stereo": True}
    assert publisher_metadata(b"\x02\x00") == {}
