"""Tests for rtmpserver.codec.chunk.

Byte vectors are written out by hand from the RTMP 1.0 specification (section 5.3) with the small
independent builders below, never with the module's own ``basic_header``/``ChunkWriter``, so a
mistake shared by reader and writer still shows up.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rtmpserver.codec.chunk import (
    MAX_CHUNK_SIZE,
    ChunkReader,
    ChunkWriter,
    RawMessage,
    basic_header,
    continuation,
)
from rtmpserver.errors import (
    ChunkStreamError,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETTINGS_FILTERED = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


# -- independent builders (section 5.3.1) --------------------------------------------------------


def bh(fmt: int, csid: int, form: int | None = None) -> bytes:
    """Basic header; ``form`` forces the 1/2/3-byte encoding (default: the shortest)."""
    if form is None:
        form = 1 if csid <= 63 else 2 if csid <= 319 else 3
    if form == 1:
        return bytes([fmt << 6 | csid])
    if form == 2:
        return bytes([fmt << 6 | 0, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) % 256, (csid - 64) // 256])


def u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


def ts_fields(ts: int) -> tuple[bytes, bytes]:
    """(24-bit field, extended field) for a timestamp or delta (section 5.3.1.3)."""
    if ts >= 0xFFFFFF:
        return b"\xff\xff\xff", ts.to_bytes(4, "big")
    return u24(ts), b""


def h0(csid: int, ts: int, length: int, type_id: int, stream_id: int, form: int | None = None) -> bytes:
    t24, ext = ts_fields(ts)
    return bh(0, csid, form) + t24 + u24(length) + bytes([type_id]) + stream_id.to_bytes(4, "little") + ext


def h1(csid: int, delta: int, length: int, type_id: int) -> bytes:
    t24, ext = ts_fields(delta)
    return bh(1, csid) + t24 + u24(length) + bytes([type_id]) + ext


def h2(csid: int, delta: int) -> bytes:
    t24, ext = ts_fields(delta)
    return bh(2, csid) + t24 + ext


def h3(csid: int, ext: bytes = b"") -> bytes:
    return bh(3, csid) + ext


def set_chunk_size(value: int) -> bytes:
    """A complete Set Chunk Size message on csid 2 (section 5.4.1); ``value`` is the raw 32-bit word."""
    return h0(2, 0, 4, 1, 0) + struct.pack(">I", value)


def abort(csid: int) -> bytes:
    return h0(2, 0, 4, 2, 0) + struct.pack(">I", csid)


def pattern(n: int, seed: int = 0) -> bytes:
    """Payload bytes that never start with 0xFF or 0x00 (so they cannot look like an extended field)."""
    return bytes((seed + i) % 200 + 20 for i in range(n))


def feed_all(reader: ChunkReader, data: bytes, step: int | None = None) -> list[RawMessage]:
    if step is None:
        return reader.feed(data)
    out: list[RawMessage] = []
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    return out


def msg(csid, ts, type_id, stream_id, payload) -> RawMessage:
    return RawMessage(csid, ts, type_id, stream_id, payload)


# -- specification examples (section 5.3.2) ------------------------------------------------------

# Example 1: four 32-byte audio messages, message stream 12345, timestamps 1000, 1020, 1040, 1060,
# on chunk stream 3.  Table: chunk 1 type 0 (12-byte header), chunk 2 type 2 (delta 20, 4-byte
# header), chunks 3 and 4 type 3 (1-byte header).
AUDIO = [bytes([0xAF, 0x01]) + pattern(30, k) for k in range(4)]
EXAMPLE1 = (
    bytes([0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x20, 0x08, 0x39, 0x30, 0x00, 0x00]) + AUDIO[0]
    + bytes([0x83, 0x00, 0x00, 0x14]) + AUDIO[1]
    + bytes([0xC3]) + AUDIO[2]
    + bytes([0xC3]) + AUDIO[3]
)
EXAMPLE1_MESSAGES = [msg(3, 1000 + 20 * k, 8, 12345, AUDIO[k]) for k in range(4)]

# Example 2: one 307-byte video message, message stream 12346, timestamp 1000, chunk stream 4,
# chunk size 128: a type 0 chunk with 128 bytes, then type 3 chunks with 128 and 51 bytes.
VIDEO = pattern(307, 7)
EXAMPLE2 = (
    bytes([0x04, 0x00, 0x03, 0xE8, 0x00, 0x01, 0x33, 0x09, 0x3A, 0x30, 0x00, 0x00]) + VIDEO[:128]
    + bytes([0xC4]) + VIDEO[128:256]
    + bytes([0xC4]) + VIDEO[256:]
)


def test_spec_example_sizes():
    # The spec's tables give 44 + 36 + 33 + 33 and 140 + 129 + 52 bytes; check our hand-built
    # vectors against them before using them.
    assert len(EXAMPLE1) == 44 + 36 + 33 + 33
    assert len(EXAMPLE2) == 140 + 129 + 52


@pytest.mark.parametrize("step", [None, 1, 5, 12, 13, 44])
def test_reader_spec_example_1(step):
    assert feed_all(ChunkReader(), EXAMPLE1, step) == EXAMPLE1_MESSAGES


@pytest.mark.parametrize("step", [None, 1, 7, 128, 140])
def test_reader_spec_example_2(step):
    assert feed_all(ChunkReader(), EXAMPLE2, step) == [msg(4, 1000, 9, 12346, VIDEO)]


def test_writer_spec_example_1():
    w = ChunkWriter()
    assert b"".join(w.write(3, 1000 + 20 * k, 8, 12345, AUDIO[k]) for k in range(4)) == EXAMPLE1


def test_writer_spec_example_2():
    assert ChunkWriter().write(4, 1000, 9, 12346, VIDEO) == EXAMPLE2


# -- reader: basic header ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "csid,form",
    [(2, 1), (3, 1), (63, 1), (64, 2), (200, 2), (319, 2), (64, 3), (319, 3), (320, 3), (1000, 3), (65599, 3)],
)
def test_reader_basic_header_forms(csid, form):
    # Both long forms are accepted, including the 3-byte form for ids that fit the 2-byte one.
    payload = pattern(300, csid)
    data = (
        h0(csid, 5, 300, 9, 1, form) + payload[:128]
        + bh(3, csid, form) + payload[128:256]
        + bh(3, csid, form) + payload[256:]
        + bh(2, csid, form) + u24(10)  # a fmt 2 header in the same form, and a second message
    )
    payload2 = pattern(300, csid + 1)
    data += payload2[:128] + bh(3, csid, form) + payload2[128:256] + bh(3, csid, form) + payload2[256:]
    expected = [msg(csid, 5, 9, 1, payload), msg(csid, 15, 9, 1, payload2)]
    assert feed_all(ChunkReader(), data) == expected
    assert feed_all(ChunkReader(), data, 1) == expected


def test_reader_basic_header_split_inside():
    # A 3-byte basic header cut after each of its bytes.
    data = h0(65599, 1, 3, 20, 0) + b"abc"
    r = ChunkReader()
    assert r.feed(data[:1]) == []
    assert r.feed(data[1:2]) == []
    assert r.feed(data[2:]) == [msg(65599, 1, 20, 0, b"abc")]


def test_reader_keeps_chunk_streams_apart():
    # csid 5 in its 1-byte form and csid 69 (= 5 + 64) in the 2-byte form are different streams.
    data = h0(5, 1, 1, 8, 1) + b"a" + h0(69, 2, 1, 9, 1) + b"b" + h2(5, 1) + b"c" + h2(69, 1) + b"d"
    assert ChunkReader().feed(data) == [
        msg(5, 1, 8, 1, b"a"), msg(69, 2, 9, 1, b"b"), msg(5, 2, 8, 1, b"c"), msg(69, 3, 9, 1, b"d")
    ]


# -- reader: message header formats ---------------------------------------------------------------


def test_reader_fmt1_takes_stream_id_from_previous():
    data = h0(6, 100, 2, 8, 7) + b"ab" + h1(6, 33, 3, 9) + b"cde"
    assert ChunkReader().feed(data) == [msg(6, 100, 8, 7, b"ab"), msg(6, 133, 9, 7, b"cde")]


def test_reader_fmt2_takes_length_type_and_stream_id_from_previous():
    data = h0(6, 100, 2, 8, 7) + b"ab" + h2(6, 40) + b"cd" + h2(6, 0) + b"ef"
    assert ChunkReader().feed(data) == [msg(6, 100, 8, 7, b"ab"), msg(6, 140, 8, 7, b"cd"), msg(6, 140, 8, 7, b"ef")]


def test_reader_fmt0_timestamp_is_absolute():
    # A type 0 header may go backwards; it replaces the timestamp, it is not a delta.
    data = h0(6, 500, 1, 8, 1) + b"a" + h0(6, 20, 1, 8, 1) + b"b" + h0(6, 20, 1, 8, 2) + b"c"
    assert ChunkReader().feed(data) == [msg(6, 500, 8, 1, b"a"), msg(6, 20, 8, 1, b"b"), msg(6, 20, 8, 2, b"c")]


def test_reader_fmt3_new_message_after_fmt0_uses_its_timestamp_as_delta():
    # Section 5.3.1.2.4: a type 3 chunk following a type 0 one has the type 0 timestamp as delta.
    data = h0(6, 1000, 2, 8, 1) + b"ab" + h3(6) + b"cd" + h3(6) + b"ef"
    assert ChunkReader().feed(data) == [msg(6, 1000, 8, 1, b"ab"), msg(6, 2000, 8, 1, b"cd"), msg(6, 3000, 8, 1, b"ef")]


def test_reader_fmt3_new_message_reuses_last_delta():
    data = h0(6, 1000, 2, 8, 1) + b"ab" + h1(6, 23, 2, 8) + b"cd" + h3(6) + b"ef" + h2(6, 7) + b"gh" + h3(6) + b"ij"
    assert [m.timestamp for m in ChunkReader().feed(data)] == [1000, 1023, 1046, 1053, 1060]


def test_reader_fmt3_continuation_does_not_advance_timestamp():
    # Continuation chunks carry the same message; only a fmt 3 that starts a message adds the delta.
    p1, p2 = pattern(200, 1), pattern(200, 2)
    data = (
        h0(6, 10, 200, 9, 1) + p1[:128] + h3(6) + p1[128:]
        + h2(6, 5) + p2[:128] + h3(6) + p2[128:]
        + h3(6) + p1[:128] + h3(6) + p1[128:]
    )
    assert ChunkReader().feed(data) == [msg(6, 10, 9, 1, p1), msg(6, 15, 9, 1, p2), msg(6, 20, 9, 1, p1)]


def test_reader_zero_length_message():
    data = h0(6, 1, 0, 18, 1) + h3(6) + h0(6, 4, 1, 18, 1) + b"x"
    assert ChunkReader().feed(data) == [msg(6, 1, 18, 1, b""), msg(6, 2, 18, 1, b""), msg(6, 4, 18, 1, b"x")]


def test_reader_stream_id_little_endian_full_range():
    data = h0(6, 0, 1, 8, 0xFFFFFFFE) + b"a" + h0(7, 0, 1, 8, 0x01020304) + b"b"
    assert [m.stream_id for m in ChunkReader().feed(data)] == [0xFFFFFFFE, 0x01020304]


# -- reader: timestamps ---------------------------------------------------------------------------


def test_reader_delta_wraps_at_32_bits():
    data = h0(6, 0xFFFFFFF0, 1, 8, 1) + b"a" + h2(6, 0x20) + b"b" + h3(6) + b"c"
    assert [m.timestamp for m in ChunkReader().feed(data)] == [0xFFFFFFF0, 0x10, 0x30]


def test_reader_extended_delta_wraps():
    data = h0(6, 0xF0000000, 1, 8, 1) + b"a" + h2(6, 0x20000000) + b"b"
    assert [m.timestamp for m in ChunkReader().feed(data)] == [0xF0000000, 0x10000000]


@pytest.mark.parametrize("ts", [0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF])
def test_reader_fmt0_extended_boundary(ts):
    # 0xFFFFFF itself is sent as the marker plus an extended field (section 5.3.1.3).
    data = h0(6, ts, 3, 8, 1) + b"abc"
    assert len(data) == 12 + 3 + (4 if ts >= 0xFFFFFF else 0)
    assert ChunkReader().feed(data) == [msg(6, ts, 8, 1, b"abc")]


@pytest.mark.parametrize("repeat", [True, False], ids=["repeated", "not-repeated"])
@pytest.mark.parametrize("step", [None, 1, 3])
def test_reader_extended_timestamp_on_continuation_chunks(repeat, step):
    # FFmpeg/librtmp/FMS repeat the 4-byte extended field on each type 3 chunk, other encoders do
    # not; both byte sequences must give the same message.
    ts = 0x01234567
    ext = ts.to_bytes(4, "big")
    payload = pattern(300, 3)
    rep = ext if repeat else b""
    data = (
        bytes([0x06, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x2C, 0x09, 0x01, 0x00, 0x00, 0x00]) + ext + payload[:128]
        + bytes([0xC6]) + rep + payload[128:256]
        + bytes([0xC6]) + rep + payload[256:]
        + h0(6, 5, 1, 8, 1) + b"z"  # proves the stream stays in sync afterwards
    )
    assert feed_all(ChunkReader(), data, step) == [msg(6, ts, 9, 1, payload), msg(6, 5, 8, 1, b"z")]


@pytest.mark.parametrize("repeat", [True, False], ids=["repeated", "not-repeated"])
@pytest.mark.parametrize("step", [None, 1])
def test_reader_extended_delta_on_continuation_and_fmt3_new_message(repeat, step):
    delta = 0x01000000
    ext = delta.to_bytes(4, "big")
    rep = ext if repeat else b""
    p = [pattern(200, k) for k in range(3)]
    data = (
        h0(6, 10, 200, 9, 2) + p[0][:128] + h3(6) + p[0][128:]
        + h2(6, delta) + p[1][:128] + h3(6, rep) + p[1][128:]
        # a type 3 chunk starting a new message after an extended delta: delta reused
        + h3(6, rep) + p[2][:128] + h3(6, rep) + p[2][128:]
    )
    assert data.count(ext) == (4 if repeat else 1)
    assert feed_all(ChunkReader(), data, step) == [
        msg(6, 10, 9, 2, p[0]), msg(6, 10 + delta, 9, 2, p[1]), msg(6, 10 + 2 * delta, 9, 2, p[2])
    ]


def test_reader_extended_field_not_expected_after_plain_header():
    # After a header without the extended field, 4 bytes that look like one are payload.
    payload = b"\x00\x00\x00\x05" + pattern(200)
    data = h0(6, 5, len(payload), 9, 1) + payload[:128] + h3(6) + payload[128:]
    assert ChunkReader().feed(data) == [msg(6, 5, 9, 1, payload)]


def test_reader_extended_field_forgotten_after_plain_header():
    # A later fmt 2 without extension replaces the remembered extended field.
    payload = b"\x01\x00\x00\x00" + pattern(200)
    data = (
        h0(6, 0x01000000, 1, 9, 1) + b"a"
        + h1(6, 1, len(payload), 9) + payload[:128] + h3(6) + payload[128:]
    )
    assert ChunkReader().feed(data) == [msg(6, 0x01000000, 9, 1, b"a"), msg(6, 0x01000001, 9, 1, payload)]


def test_reader_short_last_chunk_without_repeated_extended_field_is_not_held_back():
    # An encoder that does not repeat the extended field sends the last 2 bytes of a message and
    # then waits for our answer.  The bytes here (b"yz") are not a prefix of the extended field,
    # so the message is complete; holding it back until more bytes arrive could stall the session.
    ts = 0x01000000
    payload = pattern(128) + b"yz"
    data = h0(3, ts, 130, 20, 0) + payload[:128] + h3(3) + payload[128:]
    assert ChunkReader().feed(data) == [msg(3, ts, 20, 0, payload)]


def test_reader_short_tail_that_may_be_the_extended_field_waits():
    # b"\x01\x00" could be the start of the repeated field 01 00 00 00: wait for more bytes.
    ts = 0x01000000
    payload = pattern(128) + b"\x01\x00"
    head = h0(3, ts, 130, 20, 0) + payload[:128] + h3(3)
    r = ChunkReader()
    assert r.feed(head + b"\x01\x00") == []
    # ... and it was: the field is completed and the payload follows.
    assert r.feed(b"\x00\x00" + b"\x01\x00") == [msg(3, ts, 20, 0, payload)]
    # Without the repeated field the same two bytes turn out to be payload once more bytes show it.
    r = ChunkReader()
    assert r.feed(head + b"\x01\x00") == []
    assert r.feed(h0(4, 0, 1, 8, 1) + b"a") == [msg(3, ts, 20, 0, payload), msg(4, 0, 8, 1, b"a")]


@SETTINGS_FILTERED
@given(st.binary(min_size=1, max_size=40), st.integers(1, 8), st.booleans(), st.data())
def test_reader_extended_continuations_any_split(payload, chunk_size, repeat, data):
    # Whatever the split, the reader must decide the same way as when it sees everything at once.
    ts = 0x01000000
    ext = ts.to_bytes(4, "big")
    pieces = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)]
    # Without repetition, a piece that starts like the field itself is ambiguous.
    assume(repeat or not any(p[:4] == ext[: len(p)] for p in pieces[1:]))
    wire = set_chunk_size(chunk_size) + h0(5, ts, len(payload), 9, 1) + pieces[0]
    wire += b"".join(h3(5, ext if repeat else b"") + p for p in pieces[1:])
    wire += h0(6, 0, 1, 8, 1) + b"a"  # what the encoder sends next
    expected = [msg(5, ts, 9, 1, payload), msg(6, 0, 8, 1, b"a")]
    assert ChunkReader().feed(wire)[1:] == expected
    r = ChunkReader()
    out = []
    for part in splits(data.draw, wire):
        out += r.feed(part)
    assert out[1:] == expected


# -- reader: interleaving and protocol errors ----------------------------------------------------


def test_reader_interleaved_chunk_streams():
    a, v = pattern(300, 1), pattern(200, 2)
    data = (
        h0(6, 0, 300, 8, 1) + a[:128]
        + h0(7, 3, 200, 9, 1) + v[:128]
        + h3(6) + a[128:256]
        + h0(3, 0, 5, 20, 0) + b"hello"
        + h3(7) + v[128:]
        + h3(6) + a[256:]
    )
    assert ChunkReader().feed(data) == [
        msg(3, 0, 20, 0, b"hello"), msg(7, 3, 9, 1, v), msg(6, 0, 8, 1, a)
    ]


@pytest.mark.parametrize("fmt", [0, 1, 2])
def test_reader_new_header_while_message_incomplete(fmt):
    p = pattern(200)
    new_header = {0: h0(6, 1, 4, 8, 1), 1: h1(6, 1, 4, 8), 2: h2(6, 1)}[fmt]
    r = ChunkReader()
    assert r.feed(h0(6, 0, 200, 9, 1) + p[:128]) == []
    with pytest.raises(ChunkStreamError, match="chunk stream 6"):
        r.feed(new_header + b"abcd")


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_reader_compressed_header_on_unknown_chunk_stream(fmt):
    data = {1: h1(6, 1, 4, 8), 2: h2(6, 1), 3: h3(6)}[fmt] + b"abcd"
    with pytest.raises(ChunkStreamError, match="chunk stream 6"):
        ChunkReader().feed(data)


def test_reader_compressed_header_on_other_chunk_stream_is_unknown():
    r = ChunkReader()
    r.feed(h0(6, 0, 1, 8, 1) + b"a")
    with pytest.raises(ChunkStreamError, match="byte 13"):
        r.feed(h2(7, 1) + b"b")


# -- reader: Set Chunk Size and Abort ---------------------------------------------------------------


def test_reader_set_chunk_size_applies_to_next_chunk_in_same_feed():
    p = pattern(1000)
    data = set_chunk_size(400) + h0(6, 0, 1000, 9, 1) + p[:400] + h3(6) + p[400:800] + h3(6) + p[800:]
    r = ChunkReader()
    out = r.feed(data)
    assert out == [msg(2, 0, 1, 0, b"\x00\x00\x01\x90"), msg(6, 0, 9, 1, p)]
    assert r.chunk_size == 400


def test_reader_set_chunk_size_mid_message_on_other_csid():
    # The new size applies to every chunk after it, including the rest of a message in flight.
    p = pattern(300)
    data = h0(6, 0, 300, 9, 1) + p[:128] + set_chunk_size(50) + h3(6) + p[128:178] + h3(6) + p[178:228]
    data += h3(6) + p[228:278] + h3(6) + p[278:]
    assert feed_all(ChunkReader(), data, 7)[-1] == msg(6, 0, 9, 1, p)


@pytest.mark.parametrize(
    "word,size",
    [
        (1, 1),
        (128, 128),
        (0xFFFFFF, 0xFFFFFF),
        (0x1000000, MAX_CHUNK_SIZE),  # larger than any message: same as 0xFFFFFF
        (0x7FFFFFFF, MAX_CHUNK_SIZE),
        (0x80000080, 128),  # bit 31 must be 0; ignored
        (0xFFFFFFFF, MAX_CHUNK_SIZE),
    ],
)
def test_reader_set_chunk_size_values(word, size):
    r = ChunkReader()
    r.feed(set_chunk_size(word))
    assert r.chunk_size == size


def test_reader_chunk_size_1():
    r = ChunkReader()
    payload = b"abcde"
    data = set_chunk_size(1) + h0(6, 0, 5, 8, 1) + b"a" + b"".join(h3(6) + bytes([c]) for c in payload[1:])
    assert r.feed(data)[-1] == msg(6, 0, 8, 1, payload)


@pytest.mark.parametrize("word", [0, 0x80000000])
def test_reader_set_chunk_size_zero_rejected(word):
    with pytest.raises(ChunkStreamError, match="0"):
        ChunkReader().feed(set_chunk_size(word))


@pytest.mark.parametrize("type_id", [1, 2])
def test_reader_short_control_body_rejected(type_id):
    with pytest.raises(ChunkStreamError, match="3-byte body"):
        ChunkReader().feed(h0(2, 0, 3, type_id, 0) + b"\x00\x00\x01")


def test_reader_abort_discards_partial_message():
    p = pattern(300)
    r = ChunkReader()
    assert r.feed(h0(6, 0, 300, 9, 1) + p[:128] + h0(7, 0, 300, 9, 1) + p[:128]) == []
    assert (r.partial_bytes, r.partial_csids) == (256, 2)
    assert r.feed(abort(6)) == [msg(2, 0, 2, 0, b"\x00\x00\x00\x06")]
    assert (r.partial_bytes, r.partial_csids) == (128, 1)
    # csid 6 may now start over with a full header; csid 7 is untouched.
    q = pattern(10, 9)
    out = r.feed(h0(6, 50, 10, 8, 1) + q + h3(7) + p[128:256] + h3(7) + p[256:])
    assert out == [msg(6, 50, 8, 1, q), msg(7, 0, 9, 1, p)]
    assert (r.partial_bytes, r.partial_csids) == (0, 0)


def test_reader_abort_then_fmt3_starts_new_message():
    p = pattern(200)
    r = ChunkReader()
    r.feed(h0(6, 10, 200, 9, 1) + p[:128] + abort(6))
    assert r.feed(h3(6) + p[:128] + h3(6) + p[128:]) == [msg(6, 20, 9, 1, p)]


def test_reader_abort_unknown_or_idle_csid_is_harmless():
    r = ChunkReader()
    r.feed(h0(6, 0, 1, 8, 1) + b"a")
    r.feed(abort(6) + abort(40))
    assert r.feed(h2(6, 1) + b"b") == [msg(6, 1, 8, 1, b"b")]


def test_reader_bytes_received_counts_everything():
    r = ChunkReader()
    for i in range(0, len(EXAMPLE1), 10):
        r.feed(EXAMPLE1[i : i + 10])
    assert r.bytes_received == len(EXAMPLE1)


# -- reader: bounds --------------------------------------------------------------------------------


def test_max_message_size():
    r = ChunkReader(max_message_size=1000)
    assert r.feed(set_chunk_size(4096) + h0(6, 0, 1000, 9, 1) + pattern(1000))[-1].payload == pattern(1000)
    with pytest.raises(LimitExceeded, match="1001 bytes"):
        r.feed(h0(6, 0, 1001, 9, 1))  # raised on the header, before any payload is buffered


def test_max_message_size_on_fmt1():
    r = ChunkReader(max_message_size=100)
    r.feed(h0(6, 0, 10, 9, 1) + pattern(10))
    with pytest.raises(LimitExceeded):
        r.feed(h1(6, 0, 101, 9))


def test_max_message_size_argument_checked():
    with pytest.raises(LocalProtocolError):
        ChunkReader(max_message_size=0)
    with pytest.raises(LocalProtocolError):
        ChunkReader(max_message_size=0x1000000)


def test_max_partial_bytes():
    r = ChunkReader(max_partial_bytes=300)
    p = pattern(1000)
    r.feed(h0(6, 0, 1000, 9, 1) + p[:128] + h0(7, 0, 1000, 9, 1) + p[:128])
    assert r.partial_bytes == 256
    with pytest.raises(LimitExceeded, match="384"):
        r.feed(h3(6) + p[128:256])


def test_max_partial_bytes_one_over():
    r = ChunkReader(max_partial_bytes=255)
    p = pattern(256)
    r.feed(h0(6, 0, 256, 9, 1) + p[:128])
    with pytest.raises(LimitExceeded, match="256"):
        r.feed(h3(6) + p[128:])


def test_max_partial_bytes_exact_fit_and_release():
    r = ChunkReader(max_partial_bytes=256)
    p = pattern(256)
    # A message that fills the limit exactly completes, and its bytes are released.
    assert r.feed(h0(6, 0, 256, 9, 1) + p[:128] + h3(6) + p[128:]) == [msg(6, 0, 9, 1, p)]
    assert r.partial_bytes == 0
    assert r.feed(h0(6, 0, 256, 9, 1) + p[:128] + h3(6) + p[128:]) == [msg(6, 0, 9, 1, p)]


def _chunked(csid: int, payload: bytes, chunk_size: int) -> bytes:
    """A whole message: one fmt 0 chunk, then fmt 3 chunks of ``chunk_size`` bytes."""
    out = bytearray(h0(csid, 0, len(payload), 9, 1) + payload[:chunk_size])
    for i in range(chunk_size, len(payload), chunk_size):
        out += h3(csid) + payload[i : i + chunk_size]
    return bytes(out)


def _chunked_by_one(csid: int, payload: bytes) -> bytes:
    return _chunked(csid, payload, 1)


def test_max_partial_bytes_trips_at_chunk_size_1():
    r = ChunkReader(max_partial_bytes=1000)
    r.feed(set_chunk_size(1))
    data = _chunked_by_one(6, pattern(2000))
    cut = len(h0(6, 0, 2000, 9, 1)) + 1 + 999 * 2  # 1000 payload bytes: exactly the limit
    r.feed(data[:cut])
    assert r.partial_bytes == 1000
    with pytest.raises(LimitExceeded, match="1001 bytes, over the limit of 1000"):
        r.feed(data[cut:])


@pytest.mark.parametrize("chunk_size, held_factor", [(1, 1.25), (7, 1.25), (127, 1.25), (128, 2.0), (4096, 1.1)])
def test_partial_message_memory_is_payload_proportional(chunk_size, held_factor):
    """Tiny chunks must not cost an object (and at completion a join descriptor) per chunk:
    what the reader holds stays close to the payload bytes it counts in partial_bytes."""
    import tracemalloc

    n = 200_000
    payload = pattern(n)
    data = _chunked(6, payload, chunk_size)
    r = ChunkReader()
    r.feed(set_chunk_size(chunk_size))
    last = n - (n - 1) // chunk_size * chunk_size  # payload bytes in the last chunk
    cut = len(data) - last - 1  # everything but the last chunk: the message is still in flight
    pieces = [data[i : min(i + 16384, cut)] for i in range(0, cut, 16384)]
    tracemalloc.start()
    try:
        for piece in pieces:
            r.feed(piece)
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        (out,) = r.feed(data[cut:])
        _, completion_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.payload == payload
    assert r.partial_bytes == 0
    # Held: small chunks coalesced into a bytearray (over-allocated by at most 1/8), chunks of
    # 128 bytes or more as pieces (~120 bytes overhead each), plus the unparsed tail.  A list of
    # 1-byte pieces took 8 bytes per chunk (8x the payload) before.
    assert held < held_factor * n + 8192, held
    # Completing adds one copy of the payload; joining a million pieces used to take ~90x.
    assert completion_peak < (held_factor + 1.1) * n + 8192, completion_peak


def test_max_partial_csids():
    r = ChunkReader(max_partial_csids=3)
    p = pattern(200)
    for csid in (10, 11, 12):
        r.feed(h0(csid, 0, 200, 9, 1) + p[:128])
    assert r.partial_csids == 3
    # Messages that fit one chunk are never in flight, so they still pass.
    assert r.feed(h0(13, 0, 128, 9, 1) + p[:128]) == [msg(13, 0, 9, 1, p[:128])]
    with pytest.raises(LimitExceeded, match="more than 3 chunk streams"):
        r.feed(h0(14, 0, 200, 9, 1))


def test_max_partial_csids_released_on_completion():
    r = ChunkReader(max_partial_csids=1)
    p = pattern(200)
    for csid in (10, 11, 12):
        assert r.feed(h0(csid, 0, 200, 9, 1) + p[:128] + h3(csid) + p[128:]) == [msg(csid, 0, 9, 1, p)]
    assert r.partial_csids == 0


def test_unparsed_buffer_bounded_by_one_chunk():
    # A peer that announces a huge chunk size and then trickles a message in: what the reader
    # holds unparsed never exceeds one chunk (bounded by max_message_size) plus a header.
    limit = 2000
    r = ChunkReader(max_message_size=limit)
    data = set_chunk_size(0x7FFFFFFF)
    for k in range(3):
        data += h0(6, 0x01000000 + k, limit, 9, 1) + pattern(limit, k)
    worst = 0
    out = []
    for i in range(0, len(data), 7):
        out += r.feed(data[i : i + 7])
        worst = max(worst, len(r._buf))  # no public accessor for the unparsed tail
    assert len(out) == 4
    assert worst <= limit + 18
    assert r._buf == b""


# -- writer -----------------------------------------------------------------------------------------


def fmt_of(data: bytes) -> int:
    return data[0] >> 6


def test_writer_header_choice():
    w = ChunkWriter()
    seq = [
        ((6, 100, 8, 1, b"ab"), 0),  # first on the chunk stream
        ((6, 120, 8, 1, b"cd"), 2),  # only the delta is new (never fmt 3 right after fmt 0)
        ((6, 140, 8, 1, b"ef"), 3),  # same delta
        ((6, 160, 8, 1, b"ef"), 3),
        ((6, 170, 8, 1, b"gh"), 2),  # delta changed
        ((6, 180, 8, 1, b"ijk"), 1),  # length changed
        ((6, 190, 9, 1, b"lmn"), 1),  # type changed
        ((6, 200, 9, 1, b"opq"), 3),
        ((6, 210, 9, 2, b"opq"), 0),  # new message stream id
        ((6, 209, 9, 2, b"opq"), 0),  # timestamp went backwards
        ((6, 209, 9, 2, b"opq"), 2),  # delta 0 after fmt 0
        ((6, 209, 9, 2, b"opq"), 3),
        ((7, 209, 9, 2, b"opq"), 0),  # chunk streams are independent
    ]
    r = ChunkReader()
    for args, fmt in seq:
        data = w.write(*args)
        assert fmt_of(data) == fmt, args
        assert r.feed(data) == [msg(*args)]


def test_writer_header_bytes():
    w = ChunkWriter()
    assert w.write(6, 100, 8, 0x01020304, b"ab") == h0(6, 100, 2, 8, 0x01020304) + b"ab"
    assert w.write(6, 120, 8, 0x01020304, b"cde") == h1(6, 20, 3, 8) + b"cde"
    assert w.write(6, 130, 8, 0x01020304, b"fgh") == h2(6, 10) + b"fgh"
    assert w.write(6, 140, 8, 0x01020304, b"ijk") == h3(6) + b"ijk"


def test_writer_never_fmt3_after_fmt0_even_when_delta_matches_timestamp():
    # After fmt 0 at 1000, a message at 2000 has delta 1000 == the fmt 0 timestamp; the spec says a
    # reader would accept fmt 3 here, but readers disagree, so the writer sends fmt 2.
    w = ChunkWriter()
    w.write(6, 1000, 8, 1, b"a")
    assert fmt_of(w.write(6, 2000, 8, 1, b"b")) == 2
    # The same after a fmt 0 forced by a timestamp going backwards on a known chunk stream.
    assert fmt_of(w.write(6, 500, 8, 1, b"c")) == 0
    assert fmt_of(w.write(6, 1000, 8, 1, b"d")) == 2


def test_writer_wrap_forward_is_a_delta():
    w = ChunkWriter()
    w.write(6, 0xFFFFFFF0, 8, 1, b"a")
    data = w.write(6, 0x10, 8, 1, b"b")
    assert data == h2(6, 0x20) + b"b"
    # 2**31 ahead counts as backwards (comparison modulo 2**32): full header.
    assert fmt_of(w.write(6, 0x80000010, 8, 1, b"c")) == 0


def test_writer_timestamp_masked_to_32_bits():
    w = ChunkWriter()
    assert w.write(6, 0x1_0000_0005, 8, 1, b"a") == h0(6, 5, 1, 8, 1) + b"a"


@pytest.mark.parametrize("ts,extended", [(0xFFFFFE, False), (0xFFFFFF, True), (0x12345678, True)])
def test_writer_extended_timestamp_fmt0(ts, extended):
    h, ext = ChunkWriter().header(6, ts, 9, 1, 300)
    assert h == h0(6, ts, 300, 9, 1)
    assert ext == (ts.to_bytes(4, "big") if extended else None)


def test_writer_extended_field_repeated_on_continuation_chunks():
    ts = 0x12345678
    ext = ts.to_bytes(4, "big")
    p = pattern(300)
    data = ChunkWriter().write(6, ts, 9, 1, p)
    assert data == h0(6, ts, 300, 9, 1) + p[:128] + bytes([0xC6]) + ext + p[128:256] + bytes([0xC6]) + ext + p[256:]


def test_writer_extended_delta():
    w = ChunkWriter()
    w.write(6, 0, 9, 1, b"a")
    delta = 0x01000000
    ext = delta.to_bytes(4, "big")
    assert w.write(6, delta, 9, 1, b"b") == h2(6, delta) + b"b"
    p = pattern(200)
    assert w.write(6, 2 * delta, 9, 1, p) == h1(6, delta, 200, 9) + p[:128] + h3(6, ext) + p[128:]
    # fmt 3 new message with the same extended delta carries the field too (FFmpeg reads it).
    assert w.write(6, 3 * delta, 9, 1, p) == h3(6, ext) + p[:128] + h3(6, ext) + p[128:]


def test_writer_set_chunk_size():
    w = ChunkWriter()
    w.set_chunk_size(100)
    p = pattern(250)
    assert w.write(70, 0, 9, 1, p) == h0(70, 0, 250, 9, 1) + p[:100] + bh(3, 70) + p[100:200] + bh(3, 70) + p[200:]
    w.set_chunk_size(1)
    w.set_chunk_size(MAX_CHUNK_SIZE)
    for bad in (0, -1, MAX_CHUNK_SIZE + 1):
        with pytest.raises(LocalProtocolError):
            w.set_chunk_size(bad)
    assert w.chunk_size == MAX_CHUNK_SIZE


def test_writer_rejects_oversized_message():
    with pytest.raises(LocalProtocolError):
        ChunkWriter().header(6, 0, 9, 1, 0x1000000)


@pytest.mark.parametrize(
    "fmt,csid,expected",
    [
        (0, 2, b"\x02"),
        (3, 2, b"\xc2"),
        (1, 63, b"\x7f"),
        (0, 64, b"\x00\x00"),
        (2, 64, b"\x80\x00"),
        (0, 319, b"\x00\xff"),
        (0, 320, b"\x01\x00\x01"),
        (3, 320, b"\xc1\x00\x01"),
        (0, 65599, b"\x01\xff\xff"),
        (1, 1000, b"\x41\xa8\x03"),  # 1000 - 64 = 936 = 0x03A8, little-endian
    ],
)
def test_basic_header(fmt, csid, expected):
    assert basic_header(fmt, csid) == expected


@pytest.mark.parametrize("csid", [-1, 0, 1, 65600, 100000])
def test_basic_header_out_of_range(csid):
    with pytest.raises(LocalProtocolError):
        basic_header(0, csid)


def test_continuation_single_chunk_is_payload():
    p = pattern(128)
    assert continuation(p, 128, 6) == p
    assert continuation(p, 128, 6, b"\x01\x00\x00\x00") == p  # no type 3 chunk, no repeated field
    assert continuation(b"", 128, 6) == b""


def test_continuation_shared_across_connections():
    # Fan-out contract: two connections with different histories on the same chunk stream need
    # different first headers (fmt 0 vs fmt 1) but byte-identical continuations.
    p = pattern(1000)
    w1, w2 = ChunkWriter(300), ChunkWriter(300)
    w2.write(6, 4000, 9, 1, b"x")
    w2.write(6, 4500, 9, 1, b"x")
    h1_, ext1 = w1.header(6, 5000, 9, 1, len(p))
    h2_, ext2 = w2.header(6, 5000, 9, 1, len(p))
    assert (h1_, ext1) == (h0(6, 5000, 1000, 9, 1), None)
    assert (h2_, ext2) == (h1(6, 500, 1000, 9), None)
    shared = continuation(p, 300, 6, None)
    r1, r2 = ChunkReader(chunk_size=300), ChunkReader(chunk_size=300)
    r2.feed(h0(6, 4000, 1, 9, 1) + b"x" + h2(6, 500) + b"x")
    assert r1.feed(h1_ + shared) == r2.feed(h2_ + shared) == [msg(6, 5000, 9, 1, p)]


def test_continuation_depends_on_extended_field():
    # Past 2**24 ms a fmt 0 header is extended but a fmt 2 delta is not, so the repeated field
    # differs and the extended field must be part of a fan-out sharing key.
    ts = 0x01000005
    p = pattern(1000)
    w1, w2 = ChunkWriter(300), ChunkWriter(300)
    w2.write(6, ts - 10, 9, 1, b"x")
    _, ext1 = w1.header(6, ts, 9, 1, len(p))
    _, ext2 = w2.header(6, ts, 9, 1, len(p))
    assert (ext1, ext2) == (ts.to_bytes(4, "big"), None)
    assert continuation(p, 300, 6, ext1) != continuation(p, 300, 6, ext2)


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 2000)), min_size=1, max_size=6),
    st.one_of(st.integers(3, 63), st.integers(64, 319), st.integers(320, 65599)),
    st.integers(1, 700),
)
def test_continuation_is_write_after_header(items, csid, chunk_size):
    # write() == header() + continuation() for every header the writer can choose.
    w_write, w_header = ChunkWriter(chunk_size), ChunkWriter(chunk_size)
    for ts, n in items:
        p = pattern(n, ts)
        h, ext = w_header.header(csid, ts, 9, 1, n)
        assert w_write.write(csid, ts, 9, 1, p) == h + continuation(p, chunk_size, csid, ext)


# -- property tests ---------------------------------------------------------------------------------

CSIDS = st.one_of(st.integers(3, 63), st.integers(64, 319), st.integers(320, 65599))
# Types 1 and 2 act on the reader; they get their own tests.
TYPES = st.integers(3, 255)


@st.composite
def message_lists(draw, max_payload=3000):
    csids = draw(st.lists(CSIDS, min_size=1, max_size=3, unique=True))
    stream_ids = draw(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=3))
    msgs = []
    ts = {c: draw(st.integers(0, 0xFFFFFFFF)) for c in csids}
    for _ in range(draw(st.integers(1, 12))):
        c = draw(st.sampled_from(csids))
        step = draw(
            st.one_of(
                st.sampled_from([0, 20, 23, 33, 40]),
                st.integers(0, 0xFFFFFFFF),
                st.integers(0xFFFFF0, 0x1000010),
            )
        )
        ts[c] = (ts[c] + step) & 0xFFFFFFFF if draw(st.booleans()) else draw(st.integers(0, 0xFFFFFFFF))
        size = draw(st.sampled_from([0, 1, 10, 127, 128, 129, 300]) | st.integers(0, max_payload))
        payload = draw(st.binary(min_size=size, max_size=size))
        # Reuse a few shapes so that fmt 1/2/3 headers are exercised, not only fmt 0.
        msgs.append(
            msg(c, ts[c], draw(st.sampled_from([8, 9, 20]) | TYPES), draw(st.sampled_from(stream_ids)), payload)
        )
    return msgs


def splits(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    out, prev = [], 0
    for c in cuts + [len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


CHUNK_SIZES = st.sampled_from([1, 2, 3, 4, 5, 64, 128, 4096, MAX_CHUNK_SIZE]) | st.integers(1, 5000)


@SETTINGS
@given(message_lists(), CHUNK_SIZES, st.data())
def test_roundtrip_random_messages(msgs, chunk_size, data):
    w = ChunkWriter(chunk_size)
    wire = b"".join(w.write(m.csid, m.timestamp, m.type_id, m.stream_id, m.payload) for m in msgs)
    r = ChunkReader(chunk_size=chunk_size)
    out = []
    for part in splits(data.draw, wire):
        out += r.feed(part)
    assert out == msgs
    assert (r.partial_bytes, r.partial_csids, r._buf) == (0, 0, b"")


@SETTINGS
@given(message_lists(max_payload=1500), CHUNK_SIZES, st.data())
def test_roundtrip_after_set_chunk_size(msgs, chunk_size, data):
    # The writer announces its size first (at the default size), as a real peer does.
    w = ChunkWriter()
    wire = w.write(2, 0, 1, 0, struct.pack(">I", chunk_size))
    w.set_chunk_size(chunk_size)
    wire += b"".join(w.write(m.csid, m.timestamp, m.type_id, m.stream_id, m.payload) for m in msgs)
    r = ChunkReader()
    out = []
    for part in splits(data.draw, wire):
        out += r.feed(part)
    assert out[0] == msg(2, 0, 1, 0, struct.pack(">I", chunk_size))
    assert out[1:] == msgs
    assert r.chunk_size == chunk_size


def chunks_of(w: ChunkWriter, m: RawMessage) -> list[bytes]:
    """The chunks of one message, cut by hand (header + first piece, then fmt 3 separators)."""
    cs = w.chunk_size
    h, ext = w.header(m.csid, m.timestamp, m.type_id, m.stream_id, len(m.payload))
    p = m.payload
    out = [h + p[:cs]]
    for off in range(cs, len(p), cs):
        out.append(bh(3, m.csid) + (ext or b"") + p[off : off + cs])
    return out


@SETTINGS
@given(st.data())
def test_interleaved_writers(data):
    cs = data.draw(st.sampled_from([1, 7, 64, 128, 1000]))
    csids = data.draw(st.lists(CSIDS, min_size=2, max_size=2, unique=True))
    streams = []
    for c in csids:
        msgs = data.draw(message_lists(max_payload=1200))
        streams.append([msg(c, m.timestamp, m.type_id, m.stream_id, m.payload) for m in msgs])
    queues = []
    for msgs in streams:
        w, check = ChunkWriter(cs), ChunkWriter(cs)
        chunks = []
        for m in msgs:
            mine = chunks_of(w, m)
            assert b"".join(mine) == check.write(m.csid, m.timestamp, m.type_id, m.stream_id, m.payload)
            chunks += mine
        queues.append(chunks)
    wire = []
    while queues[0] or queues[1]:
        i = data.draw(st.sampled_from([k for k in (0, 1) if queues[k]]))
        wire.append(queues[i].pop(0))
    r = ChunkReader(chunk_size=cs)
    out = r.feed(b"".join(wire))
    for c, msgs in zip(csids, streams, strict=False):
        assert [m for m in out if m.csid == c] == msgs
    assert len(out) == sum(map(len, streams))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.data())
def test_random_bytes_raise_only_remote_protocol_errors(blob, data):
    prefix = data.draw(st.sampled_from([b"", set_chunk_size(3), h0(4, 0, 40, 9, 1)]))
    r = ChunkReader(chunk_size=data.draw(st.sampled_from([1, 4, 16])), max_message_size=64,
                    max_partial_bytes=100, max_partial_csids=3)
    try:
        for part in splits(data.draw, prefix + blob):
            for m in r.feed(part):
                assert len(m.payload) <= 64
    except RemoteProtocolError:
        pass
    assert len(r._buf) <= 64 + 18


def test_large_pending_chunk_is_not_reparsed_per_segment():
    # A 1 MiB chunk arriving in TCP-sized pieces: the reader must learn how many bytes the chunk
    # needs and hold pieces untouched until then (re-joining and re-parsing the growing tail on
    # every segment is quadratic: a 16 MiB chunk would cost ~90 GB of copying).
    w = ChunkWriter(128)
    setup = w.write(2, 0, 1, 0, (1 << 20).to_bytes(4, "big"))
    w.set_chunk_size(1 << 20)
    payload = pattern(1 << 20)
    data = w.write(6, 0, 9, 1, payload)
    r = ChunkReader()
    assert r.feed(setup) and r.chunk_size == 1 << 20
    assert r.feed(data[:1460]) == []
    assert r._need == len(data)  # header + whole payload
    pieces_before = r._pieces
    assert r.feed(data[1460:2920]) == []
    assert r._pieces[0] is pieces_before[0]  # held, not re-joined
    assert r.unparsed_bytes == 2920
    out = []
    for i in range(2920, len(data), 1460):
        out += r.feed(data[i : i + 1460])
    assert [m.payload for m in out] == [payload] and r.unparsed_bytes == 0
