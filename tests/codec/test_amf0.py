"""AMF0 codec: spec byte vectors, real FFmpeg/nginx-rtmp messages, references, AVM+ switch, bounds.

Expected bytes are built by hand from the AMF0 specification's grammar (2006), never produced by
our encoder.  Real messages come from the captures in tests/data (see tests/data/README.md).
"""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtmpserver.codec import amf0, amf3
from rtmpserver.codec.amftypes import (
    UNDEFINED,
    UNSUPPORTED,
    XML,
    AMF3Array,
    AMFDate,
    ByteArray,
    Dictionary,
    ECMAArray,
    TypedObject,
    VectorInt,
    VectorObject,
    XMLDocument,
)
from rtmpserver.errors import AMFDecodeError, AMFEncodeError, RemoteProtocolError
from tests.codec.test_amf3 import (
    PROPERTY,
    amf3_only_containers,
    amf3_only_leaves,
    amf3_values,
    assert_same,
    names,
    short_text,
)

DATA = Path(__file__).resolve().parent.parent / "data"


# -- hand-built AMF0 from the grammar (spec section 2) --------------------------------------------


def num(x: float) -> bytes:
    return b"\x00" + struct.pack(">d", x)


def utf8(s: str) -> bytes:  # UTF-8 with a U16 byte-length header (spec 1.3.1)
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def string(s: str) -> bytes:
    return b"\x02" + utf8(s)


def obj(*pairs: tuple[str, bytes]) -> bytes:
    return b"\x03" + b"".join(utf8(k) + v for k, v in pairs) + b"\x00\x00\x09"


def test_ffmpeg_connect_command_by_hand():
    # FFmpeg 6.1 (Lavf61.1.100) publishing to rtmp://127.0.0.1:1935/live (libavformat/rtmpproto.c).
    body = (
        string("connect")
        + num(1.0)
        + obj(
            ("app", string("live")),
            ("type", string("nonprivate")),
            ("flashVer", string("FMLE/3.0 (compatible; Lavf61.1.100)")),
            ("tcUrl", string("rtmp://127.0.0.1:1935/live")),
        )
    )
    assert body[:13] == bytes.fromhex("02 0007 636f6e6e656374 00 3ff0")
    values = [
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; Lavf61.1.100)",
            "tcUrl": "rtmp://127.0.0.1:1935/live",
        },
    ]
    decoded = amf0.decode(body)
    assert_same(decoded, values)
    assert amf0.encode(*values) == body


def _chunk_stream_messages(stream: bytes):
    """(type id, body) of each complete message in one direction of a capture.

    Just enough of the chunk stream (RTMP spec 5.3) for these captures: basic headers of every
    size, fmt 0-3, Set Chunk Size; no extended timestamps occur in them.
    """
    off = 3073  # C0/S0 + C1/S1 + C2/S2
    chunk_size = 128
    state: dict[int, list] = {}
    while off < len(stream):
        fmt, csid = stream[off] >> 6, stream[off] & 0x3F
        off += 1
        if csid == 0:
            csid, off = 64 + stream[off], off + 1
        elif csid == 1:
            csid, off = 64 + stream[off] + 256 * stream[off + 1], off + 2
        st_ = state.setdefault(csid, [0, 0, b""])  # length, type, partial body
        if fmt in (0, 1):
            st_[0] = int.from_bytes(stream[off + 3 : off + 6], "big")
            st_[1] = stream[off + 6]
            off += 11 if fmt == 0 else 7
        elif fmt == 2:
            off += 3
        n = min(chunk_size, st_[0] - len(st_[2]))
        if off + n > len(stream):
            return
        st_[2] += stream[off : off + n]
        off += n
        if len(st_[2]) == st_[0]:
            body, st_[2] = st_[2], b""
            if st_[1] == 1:
                chunk_size = struct.unpack(">I", body)[0]
            yield st_[1], body


def _captured_amf0_messages():
    out = []
    for name in ("ffmpeg-publish.c2s", "ffmpeg-publish.s2c", "ffmpeg-play.c2s", "ffmpeg-play.s2c"):
        for type_id, body in _chunk_stream_messages((DATA / f"{name}.bin").read_bytes()):
            if type_id in (18, 20):
                out.append(pytest.param(body, id=f"{name}-{len(out)}"))
    return out


CAPTURED = _captured_amf0_messages()


def test_captures_hold_the_expected_commands():
    decoded = [amf0.decode(p.values[0]) for p in CAPTURED]
    first_words = [d[0] for d in decoded]
    assert first_words.count("connect") == 2
    assert "@setDataFrame" in first_words and "onMetaData" in first_words and "_result" in first_words
    connect = decoded[first_words.index("connect")]
    assert connect[2]["flashVer"] == "FMLE/3.0 (compatible; Lavf59.27.100)"
    metadata = next(d for d in decoded if d[0] == "@setDataFrame")
    assert type(metadata[2]) is ECMAArray and metadata[2]["videocodecid"] == 7.0
    result = decoded[first_words.index("_result")]
    assert result[3]["code"] == "NetConnection.Connect.Success"


@pytest.mark.parametrize("body", CAPTURED)
def test_real_messages_decode_and_reencode_identically(body):
    assert amf0.encode(*amf0.decode(body)) == body


# -- each type (spec 2.2 - 2.18) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value,data",
    [
        (0.0, num(0.0)),
        (1.0, bytes.fromhex("00 3ff0000000000000")),
        (-2.5, bytes.fromhex("00 c004000000000000")),
        (True, b"\x01\x01"),
        (False, b"\x01\x00"),
        ("", b"\x02\x00\x00"),
        ("hello", b"\x02\x00\x05hello"),
        ("é", b"\x02\x00\x02\xc3\xa9"),
        ({}, b"\x03\x00\x00\x09"),
        ({"a": 1.0}, b"\x03\x00\x01a" + num(1.0) + b"\x00\x00\x09"),
        (None, b"\x05"),
        (UNDEFINED, b"\x06"),
        (ECMAArray(a="b"), b"\x08\x00\x00\x00\x01\x00\x01a\x02\x00\x01b\x00\x00\x09"),
        ([], b"\x0a\x00\x00\x00\x00"),
        ([1.0, "a"], b"\x0a\x00\x00\x00\x02" + num(1.0) + b"\x02\x00\x01a"),
        (AMFDate(1.5e12), b"\x0b" + struct.pack(">d", 1.5e12) + b"\x00\x00"),
        (AMFDate(0.0, -60), b"\x0b" + bytes(8) + b"\xff\xc4"),
        (UNSUPPORTED, b"\x0d"),
        (XMLDocument("<a/>"), b"\x0f\x00\x00\x00\x04<a/>"),
        (TypedObject("Foo", {"a": None}), b"\x10\x00\x03Foo\x00\x01a\x05\x00\x00\x09"),
        (TypedObject("", {}), b"\x10\x00\x00\x00\x00\x09"),
    ],
)
def test_known_vectors(value, data):
    assert amf0.encode(value) == data
    assert_same(amf0.decode(data), [value])


def test_int_is_a_number():
    assert amf0.encode(3) == num(3.0)
    assert amf0.encode(True) == b"\x01\x01"  # bool is not taken for an int
    with pytest.raises(AMFEncodeError, match="exact"):
        amf0.encode(2**53 + 1)
    with pytest.raises(AMFEncodeError):
        amf0.encode(10**400)


def test_boolean_nonzero_is_true():
    assert amf0.decode(b"\x01\x02") == [True]


def test_ecma_array_count_is_only_a_hint():
    # FMS-style: count 0, entries up to the object-end marker.
    data = b"\x08\x00\x00\x00\x00\x00\x01a" + num(1.0) + b"\x00\x00\x09"
    assert_same(amf0.decode(data), [ECMAArray(a=1.0)])
    assert amf0.decode(b"\x08\xff\xff\xff\xff\x00\x00\x09") == [ECMAArray()]


@pytest.mark.parametrize(
    "text,marker",
    [("a" * 0xFFFF, 0x02), ("a" * 0x10000, 0x0C), ("é" * 0x8000, 0x0C), ("é" * 0x7FFF + "a", 0x02)],
)
def test_long_string_used_beyond_65535_utf8_bytes(text, marker):
    data = amf0.encode(text)
    n = len(text.encode())
    if marker == 0x02:
        assert data == b"\x02" + n.to_bytes(2, "big") + text.encode()
    else:
        assert data == b"\x0c" + n.to_bytes(4, "big") + text.encode()
    assert amf0.decode(data) == [text]


def test_long_string_decodes_even_when_short():
    assert_same(amf0.decode(b"\x0c\x00\x00\x00\x02hi"), ["hi"])


def test_datetime_helpers():
    when = dt.datetime(2021, 6, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
    (decoded,) = amf0.decode(amf0.encode(when))
    assert decoded == AMFDate(1622548800250.0, 0)
    assert decoded.to_datetime() == when
    assert AMFDate.from_datetime(when.replace(tzinfo=None)) == decoded  # naive means UTC
    with pytest.raises(ValueError):
        AMFDate(float("nan")).to_datetime()
    with pytest.raises(ValueError):
        AMFDate(1e300).to_datetime()
    with pytest.raises(AMFEncodeError):
        amf0.encode(AMFDate(0.0, 40000))


# -- references (spec 2.9) ----------------------------------------------------------------------


def test_same_object_twice_becomes_a_reference():
    shared = {"x": 1.0}
    data = amf0.encode([shared, shared], shared)
    # strict array = object 0, shared = object 1
    inner = b"\x03\x00\x01x" + num(1.0) + b"\x00\x00\x09"
    assert data == b"\x0a\x00\x00\x00\x02" + inner + b"\x07\x00\x01" + b"\x07\x00\x01"
    lst, again = amf0.decode(data)
    assert lst[0] is lst[1] is again
    assert amf0.encode(lst, again) == data


def test_equal_but_distinct_objects_are_written_twice():
    data = amf0.encode({"x": 1.0}, {"x": 1.0})
    assert b"\x07" not in data
    a, b = amf0.decode(data)
    assert a == b and a is not b


@pytest.mark.parametrize("make", [dict, ECMAArray, lambda: TypedObject("T"), list])
def test_cycles(make):
    container = make()
    if isinstance(container, list):
        container.append(container)
    else:
        container["me"] = container
    data = amf0.encode(container)
    assert data.endswith(b"\x07\x00\x00" + (b"" if isinstance(container, list) else b"\x00\x00\x09"))
    (decoded,) = amf0.decode(data)
    assert (decoded[0] if isinstance(decoded, list) else decoded["me"]) is decoded
    assert amf0.encode(decoded) == data


def test_references_can_be_turned_off():
    shared = {"x": 1.0}
    data = amf0.encode([shared, shared], references=False)
    assert b"\x07" not in data
    a, b = amf0.decode(data)[0]
    assert a == b and a is not b
    loop: list = []
    loop.append(loop)
    with pytest.raises(AMFEncodeError, match="contains itself"):
        amf0.encode(loop, references=False)


def test_deeply_shared_value_cannot_blow_up_the_output():
    # 2**60 copies of a 60 000-byte string when written in full; 60 references when shared.
    value: list = ["x" * 60_000]
    for _ in range(60):
        value = [value, value]
    data = amf0.encode(value)
    assert len(data) == 60 * 8 + 5 + 3 + 60_000
    (decoded,) = amf0.decode(data)
    assert decoded[0] is decoded[1]
    with pytest.raises(AMFEncodeError, match="exceeds 16777215 bytes"):
        amf0.encode(value, references=False)


def test_reference_table_beyond_16_bits():
    objects = [{} for _ in range(0x10001)]
    # the list is object 0, so objects[-1] is object 0x10001: no 16-bit index reaches it
    data = amf0.encode(objects + [objects[-1], objects[0]])
    assert data.endswith(b"\x03\x00\x00\x09" + b"\x07\x00\x01")
    (decoded,) = amf0.decode(data)
    assert decoded[-1] is decoded[0]
    assert decoded[-2] is not decoded[-3]
    assert amf0.encode(decoded) == data


@pytest.mark.parametrize(
    "data",
    [b"\x07\x00\x00", b"\x03\x00\x01a\x07\x00\x01\x00\x00\x09", b"\x0a\x00\x00\x00\x01\x07\xff\xff", b"\x07\x00"],
)
def test_reference_indexes_checked(data):
    with pytest.raises(AMFDecodeError, match="reference"):
        amf0.decode(data)


def test_reference_to_object_being_read_is_a_cycle():
    data = b"\x03\x00\x04self\x07\x00\x00\x00\x00\x09"
    (decoded,) = amf0.decode(data)
    assert decoded["self"] is decoded


def test_date_strings_and_amf3_values_are_not_numbered():
    # Only objects, typed objects and arrays take reference indexes (spec 2.9).
    data = (
        b"\x0a\x00\x00\x00\x04"
        + b"\x0b" + bytes(10)
        + b"\x11\x09\x01\x01"  # AMF3 empty array
        + b"\x03\x00\x00\x09"
        + b"\x07\x00\x01"
    )
    (decoded,) = amf0.decode(data)
    assert decoded[3] is decoded[2] == {}


# -- AVM+ switch (spec 3.1) ---------------------------------------------------------------------


def test_avmplus_switch_for_a_single_value():
    assert amf0.decode(b"\x11\x04\x05" + num(2.0)) == [5, 2.0]
    assert amf0.decode(b"\x11\x06\x07abc") == ["abc"]


def test_amf3_tables_shared_across_switches_in_one_message():
    data = b"\x11\x06\x07abc" + b"\x11\x06\x00"
    assert amf0.decode(data) == ["abc", "abc"]
    # ...but decode_value starts a fresh context
    with pytest.raises(AMFDecodeError, match="string reference 0"):
        amf0.decode_value(data, 6)


@pytest.mark.parametrize(
    "value,amf3_hex",
    [
        (XML("<x/>"), "0b093c782f3e"),
        (ByteArray(b"\x00\x01"), "0c050001"),
        (b"\x00\x01", "0c050001"),
        (VectorInt([1], False), "0d030000000001"),
        (Dictionary([], False), "110100"),
        (AMF3Array([], {"a": 1}), "0901036104010" + "1"),
        (VectorObject([], False, ""), "10010001"),
    ],
)
def test_amf3_only_types_switch_to_amf3(value, amf3_hex):
    data = amf0.encode(value)
    assert data == b"\x11" + bytes.fromhex(amf3_hex)
    (decoded,) = amf0.decode(data)
    assert decoded == value
    assert amf0.encode(decoded) == data


def test_amf3_inside_amf0_object_and_back():
    value = {"blob": ByteArray(b"z"), "list": [XML("a"), XML("b")], "n": 1.0}
    data = amf0.encode(value)
    assert data == (
        b"\x03"
        + utf8("blob") + b"\x11\x0c\x03z"
        + utf8("list") + b"\x0a\x00\x00\x00\x02" + b"\x11\x0b\x03a" + b"\x11\x0b\x03b"
        + utf8("n") + num(1.0)
        + b"\x00\x00\x09"
    )
    assert_same(amf0.decode(data), [value])


def test_type_17_style_body():
    # Flash Player with objectEncoding 3: AMF0 name and transaction id, AMF3 arguments.
    body = string("connect") + num(1.0) + b"\x11\x0a\x0b\x01\x07app\x06\x09live\x01"
    assert amf0.decode(body) == ["connect", 1.0, {"app": "live"}]


def test_externalizable_after_avmplus_switch():
    class Collection(list):
        pass

    ext = amf3.Externalizable(
        "flex.messaging.io.ArrayCollection",
        Collection,
        lambda d: Collection(d.read_value()),
        lambda e, v: e.write_value(list(v)),
    )
    data = amf0.encode("x", Collection([1]), externalizables=[ext])
    assert data[4] == 0x11
    decoded = amf0.decode(data, externalizables=[ext])
    assert decoded == ["x", [1]] and type(decoded[1]) is Collection
    with pytest.raises(AMFDecodeError, match="externalizable"):
        amf0.decode(data)


# -- bounds ---------------------------------------------------------------------------------------


def nested_arrays(depth: int) -> bytes:
    return b"\x0a\x00\x00\x00\x01" * depth + b"\x05"


def nested_objects(depth: int) -> bytes:
    return b"\x03\x00\x01a" * depth + b"\x05" + b"\x00\x00\x09" * depth


def test_max_depth_default_and_keyword():
    assert amf0.DEFAULT_MAX_DEPTH == 64
    for nested in (nested_arrays, nested_objects):
        amf0.decode(nested(64))
        with pytest.raises(AMFDecodeError, match="deeper than 64"):
            amf0.decode(nested(65))
        amf0.decode(nested(5), max_depth=5)
        with pytest.raises(AMFDecodeError, match="deeper than 5"):
            amf0.decode(nested(6), max_depth=5)


def test_depth_carries_across_the_avmplus_switch():
    data = nested_arrays(3)[:-1] + b"\x11" + b"\x09\x03\x01" * 2 + b"\x01"
    amf0.decode(data, max_depth=5)
    with pytest.raises(AMFDecodeError, match="deeper than 4"):
        amf0.decode(data, max_depth=4)


def test_deep_input_never_raises_recursion_error():
    with pytest.raises(AMFDecodeError, match="deeper than 64"):
        amf0.decode(nested_arrays(100_000))
    with pytest.raises(AMFDecodeError, match="nested too deeply"):
        amf0.decode(nested_objects(100_000), max_depth=10**9)


def test_deep_value_encode_is_an_encode_error():
    deep: dict = {}
    for _ in range(100_000):
        deep = {"a": deep}
    with pytest.raises(AMFEncodeError, match="nested too deeply"):
        amf0.encode(deep)


def test_strict_array_count_never_trusted():
    data = b"\x0a\xff\xff\xff\xff" + b"\x05" * 5  # 4 294 967 295 elements claimed, 10 bytes given
    with pytest.raises(AMFDecodeError, match="claims 4294967295 elements but only 5 bytes"):
        amf0.decode(data)


@pytest.mark.parametrize(
    "data,what",
    [
        (b"\x02\xff\xffab", "string needs 65535 bytes at offset 3"),
        (b"\x0c\xff\xff\xff\xffab", "long string needs 4294967295 bytes"),
        (b"\x0f\x00\x00\x01\x00ab", "XML document needs 256 bytes"),
        (b"\x10\xff\xffab", "class name needs"),
        (b"\x03\xff\xffab", "property name needs"),
        (b"\x00\x00\x00", "number needs 8 bytes at offset 1, only 2 left"),
        (b"\x0b" + bytes(9), "date needs 10 bytes"),
        (b"\x01", "boolean needs 1"),
        (b"\x08\x00\x00", "ECMA array count"),
    ],
)
def test_lengths_never_trusted(data, what):
    with pytest.raises(AMFDecodeError, match=what):
        amf0.decode(data)


def test_max_elements_default_and_keyword():
    assert amf0.DEFAULT_MAX_ELEMENTS == 100_000
    data = amf0.encode([None] * 10)
    amf0.decode(data, max_elements=11)
    with pytest.raises(AMFDecodeError, match="more than 10 AMF values"):
        amf0.decode(data, max_elements=10)
    with pytest.raises(AMFDecodeError, match="more than 100000"):
        amf0.decode(b"\x05" * 100_001)
    # AMF3 values behind a switch draw on the same budget
    with pytest.raises(AMFDecodeError, match="more than 4"):
        amf0.decode(b"\x05\x05" + b"\x11\x09\x05\x01\x01\x01", max_elements=4)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"\x04", "movieclip marker 0x04 at offset 0"),
        (b"\x0e", "recordset marker 0x0e at offset 0"),
        (b"\x09", "object-end marker outside an object at offset 0"),
        (b"\x05\x12", "unknown AMF0 type marker 0x12 at offset 1"),
        (b"\xff", "unknown AMF0 type marker 0xff"),
        (b"\x02\x00\x02\xc3\x28", "not valid UTF-8"),
        (b"\x03\x00\x00\x05", "empty property name at offset 1 is not followed by the object-end marker"),
        (b"\x03\x00\x01a\x05", "property name length needs 2 bytes at offset 5"),
        (b"\x0a\x00\x00\x00\x01", "claims 1 elements but only 0 bytes"),
        (b"\x0a\x00\x00\x00\x02\x05\x02", "string length needs 2 bytes at offset 7"),
        (b"\x03\x00\x00", "object-end marker expected at offset 3"),
    ],
)
def test_malformed(data, message):
    with pytest.raises(AMFDecodeError, match=message):
        amf0.decode(data)


def test_every_truncation_is_a_decode_error():
    shared = {"k": "v"}
    value = [
        {"a": 1.5, "b": [True, None, UNDEFINED, shared, shared]},
        ECMAArray(x=AMFDate(2.0, 1)),
        TypedObject("T", {"s": "t" * 300}),
        XMLDocument("<d/>"),
        "x" * 70_000,
        ByteArray(b"yz"),
    ]
    data = amf0.encode(value)
    for cut in list(range(300)) + list(range(len(data) - 200, len(data))):
        with pytest.raises(AMFDecodeError):
            amf0.decode_value(data[:cut])


def test_decode_value_and_decoder_offsets():
    data = string("a") + num(2.0)
    assert amf0.decode_value(data) == ("a", 4)
    assert amf0.decode_value(data, 4) == (2.0, 13)
    with pytest.raises(AMFDecodeError, match="offset 13"):
        amf0.decode_value(data, 13)
    decoder = amf0.Decoder(data)
    assert decoder.read_value() == "a" and not decoder.at_end
    assert decoder.read_value() == 2.0 and decoder.at_end
    assert amf0.decode(bytearray(data)) == amf0.decode(memoryview(data)) == ["a", 2.0]


# -- encoder refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,message",
    [
        ({"": 1.0}, "empty-string key"),
        ({1: 1.0}, "not a string"),
        ({"k" * 0x10000: 1.0}, "property name of 65536"),
        (TypedObject("C" * 0x10000), "class name of 65536"),
        ("\udc80", "UTF-8"),
        ({1, 2}, "set"),
        (object(), "object"),
        ({"x": [{1}]}, "set"),
    ],
)
def test_encode_refusals(value, message):
    with pytest.raises(AMFEncodeError, match=message):
        amf0.encode(value)


def test_property_names_encode_the_same_from_the_name_table_and_the_table_is_bounded():
    class Name(str):
        pass

    obj = {"level": "status", "n\u00e9": 1.0, Name("sub"): True}
    expected = (b"\x03" + b"\x00\x05level" + b"\x02\x00\x06status" + b"\x00\x03n\xc3\xa9" + num(1.0)
                + b"\x00\x03sub\x01\x01" + b"\x00\x00\x09")
    assert amf0.encode(obj) == expected
    assert amf0.encode(obj) == expected  # second time from the table
    assert all(type(k) is str for k in amf0._NAMES)
    for i in range(amf0._NAMES_MAX + 10):
        assert amf0.decode(amf0.encode({f"key{i}": 1.0})) == [{f"key{i}": 1.0}]
    assert len(amf0._NAMES) <= amf0._NAMES_MAX
    for bad, message in (({"": 1.0}, "empty-string key"), ({1: 1.0}, "not a string")):
        with pytest.raises(AMFEncodeError, match=message):
            amf0.encode(bad)


def test_sequences_and_subclasses():
    import collections
    import enum

    class Mode(enum.IntEnum):
        LIVE = 1

    ordered = collections.OrderedDict(a=1.0)
    assert amf0.encode((1.0, 2.0)) == amf0.encode([1.0, 2.0])
    assert amf0.encode(ordered) == amf0.encode({"a": 1.0})
    assert amf0.encode(Mode.LIVE) == num(1.0)
    assert amf0.encode(bytearray(b"a")) == b"\x11\x0c\x03a"


# -- properties -----------------------------------------------------------------------------------


def amf0_values(allow_nan=False):
    """Values in the form the AMF0 decoder returns them, including AMF3-only islands."""
    doubles = st.floats(allow_nan=allow_nan)
    island_values = amf3_values(allow_nan, max_leaves=4)
    leaves = st.one_of(
        st.sampled_from([None, UNDEFINED, UNSUPPORTED, True, False]),
        doubles,
        short_text,
        st.builds(AMFDate, doubles, st.integers(-0x8000, 0x7FFF)),
        short_text.map(XMLDocument),
        amf3_only_leaves(allow_nan),
        amf3_only_containers(island_values),
    )

    def containers(children):
        return st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(names, children, max_size=4),
            st.dictionaries(names, children, max_size=4).map(ECMAArray),
            st.builds(TypedObject, st.text(max_size=6), st.dictionaries(names, children, max_size=4)),
        )

    return st.recursive(leaves, containers, max_leaves=16)


@PROPERTY
@given(st.lists(amf0_values(), max_size=3))
def test_round_trip(values):
    data = amf0.encode(*values)
    decoded = amf0.decode(data)
    assert_same(decoded, values)
    assert decoded == values
    assert amf0.encode(*decoded) == data


@PROPERTY
@given(st.lists(amf0_values(allow_nan=True), max_size=3))
def test_round_trip_bytes_including_nan(values):
    data = amf0.encode(*values)
    assert amf0.encode(*amf0.decode(data)) == data


@PROPERTY
@given(amf0_values(), st.integers(1, 3))
def test_shared_objects_stay_shared(value, copies):
    data = amf0.encode(*([value] * (copies + 1)))
    decoded = amf0.decode(data)
    # AMF0 numbers its objects and arrays; AMF3 islands share one AMF3 context per message.
    if isinstance(value, (list, dict, AMF3Array, Dictionary, ByteArray, XML)):
        assert all(item is decoded[0] for item in decoded)
    assert amf0.encode(*decoded) == data


@PROPERTY
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_errors(data):
    try:
        amf0.decode(data)
    except AMFDecodeError as e:
        assert isinstance(e, RemoteProtocolError)


@PROPERTY
@given(amf0_values(allow_nan=True), st.data())
def test_mutated_encodings_raise_only_decode_errors(value, data):
    encoded = bytearray(amf0.encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    try:
        amf0.decode(bytes(encoded[:cut]), max_depth=8)
    except AMFDecodeError:
        pass
