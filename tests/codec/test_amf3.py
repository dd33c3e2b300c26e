"""AMF3 codec: spec byte vectors, reference tables, bounds, externalizables and round trips.

Expected bytes are written out from the AMF 3 specification's grammar (January 2013), never
produced by our encoder.  ``assert_same`` and the strategies are shared with test_amf0.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rtmpserver.codec import amf3
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
    VectorDouble,
    VectorInt,
    VectorObject,
    VectorUInt,
    XMLDocument,
)
from rtmpserver.errors import AMFDecodeError, AMFEncodeError, RemoteProtocolError

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers shared with test_amf0 ----------------------------------------------------------------


def assert_same(got, want, path="value", _memo=None):
    """Exact structural equality: same types, same key order, NaN == NaN, -0.0 != 0.0.

    ``==`` is too lenient for round trips (ECMAArray == dict, 1 == 1.0, ByteArray == bytes), and
    cannot follow cycles; this follows the shape of ``want`` and pairs cycles by identity.
    """
    memo = {} if _memo is None else _memo
    key = (id(got), id(want))
    if key in memo:
        return
    assert type(got) is type(want), f"{path}: got {type(got).__name__}, want {type(want).__name__}"
    if isinstance(want, float):
        if math.isnan(want):
            assert math.isnan(got), f"{path}: {got!r} is not NaN"
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        memo[key] = True
        if isinstance(want, TypedObject):
            assert got.class_name == want.class_name, f"{path}: class {got.class_name!r} != {want.class_name!r}"
        assert list(got) == list(want), f"{path}: keys {list(got)!r} != {list(want)!r}"
        for k in want:
            assert_same(got[k], want[k], f"{path}[{k!r}]", memo)
    elif isinstance(want, list):
        memo[key] = True
        if isinstance(want, (VectorInt, VectorUInt, VectorDouble, VectorObject)):
            assert got.fixed == want.fixed, f"{path}: fixed {got.fixed} != {want.fixed}"
        if isinstance(want, VectorObject):
            assert got.type_name == want.type_name, f"{path}: type {got.type_name!r} != {want.type_name!r}"
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            assert_same(g, w, f"{path}[{i}]", memo)
    elif isinstance(want, AMF3Array):
        memo[key] = True
        assert_same(got.dense, want.dense, f"{path}.dense", memo)
        assert_same(got.assoc, want.assoc, f"{path}.assoc", memo)
    elif isinstance(want, Dictionary):
        memo[key] = True
        assert got.weak_keys == want.weak_keys, f"{path}: weak_keys differ"
        assert len(got.pairs) == len(want.pairs), f"{path}: {len(got.pairs)} != {len(want.pairs)} pairs"
        for i, ((gk, gv), (wk, wv)) in enumerate(zip(got.pairs, want.pairs, strict=False)):
            assert_same(gk, wk, f"{path}.key{i}", memo)
            assert_same(gv, wv, f"{path}.value{i}", memo)
    elif isinstance(want, AMFDate):
        assert_same(got.ms, want.ms, f"{path}.ms", memo)
        assert got.timezone == want.timezone, f"{path}: timezone {got.timezone} != {want.timezone}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


names = st.text(min_size=1, max_size=6)
short_text = st.text(max_size=10)


def _typed(args):
    class_name, members, n_sealed, mode = args
    if mode == 0:
        return TypedObject(class_name, members)  # every member sealed, not dynamic
    keys = list(members)
    n_sealed = min(n_sealed, len(keys))
    return TypedObject(class_name, members, sealed_names=keys[:n_sealed], dynamic=mode == 2 or n_sealed < len(keys))


def typed_objects(children, class_names=names):
    return st.tuples(class_names, st.dictionaries(names, children, max_size=4), st.integers(0, 4), st.integers(0, 2)).map(
        _typed
    )


def amf3_only_leaves(allow_nan=False):
    """Leaves that only AMF3 can express (AMF0 writes them after an AVM+ switch)."""
    doubles = st.floats(allow_nan=allow_nan)
    return st.one_of(
        short_text.map(XML),
        st.binary(max_size=12).map(ByteArray),
        st.builds(VectorInt, st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4), st.booleans()),
        st.builds(VectorUInt, st.lists(st.integers(0, 2**32 - 1), max_size=4), st.booleans()),
        st.builds(VectorDouble, st.lists(doubles, max_size=4), st.booleans()),
    )


def amf3_only_containers(children):
    return st.one_of(
        st.builds(AMF3Array, st.lists(children, max_size=3), st.dictionaries(names, children, min_size=1, max_size=3)),
        st.builds(VectorObject, st.lists(children, max_size=3), st.booleans(), short_text),
        st.builds(Dictionary, st.lists(st.tuples(children, children), max_size=3), st.booleans()),
    )


def amf3_values(allow_nan=False, max_leaves=16):
    """Values in the form the AMF3 decoder returns them (so they must round-trip exactly)."""
    doubles = st.floats(allow_nan=allow_nan)
    leaves = st.one_of(
        st.sampled_from([UNDEFINED, None, True, False]),
        st.integers(amf3.INTEGER_MIN, amf3.INTEGER_MAX),
        doubles,
        short_text,
        short_text.map(XMLDocument),
        doubles.map(AMFDate),
        amf3_only_leaves(allow_nan),
    )

    def containers(children):
        return st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(names, children, max_size=4),
            typed_objects(children),
            amf3_only_containers(children),
        )

    return st.recursive(leaves, containers, max_leaves=max_leaves)


# -- U29 (spec 1.3.1) ---------------------------------------------------------------------------

U29_VECTORS = [
    (0x00, "00"),
    (0x7F, "7f"),
    (0x80, "8100"),
    (0x3FFF, "ff7f"),
    (0x4000, "818000"),
    (0x1FFFFF, "ffff7f"),
    (0x200000, "80c08000"),
    (0x1FFFFFFF, "ffffffff"),
]


@pytest.mark.parametrize("value,hexbytes", U29_VECTORS)
def test_u29_spec_forms(value, hexbytes):
    assert amf3.encode_u29(value).hex() == hexbytes
    decoder = amf3.Decoder(bytes.fromhex(hexbytes))
    assert decoder.read_u29() == value
    assert decoder.at_end


def test_u29_fourth_byte_carries_eight_bits():
    # Only the first three bytes have a continuation bit; the fourth is all value.
    assert amf3.Decoder(bytes.fromhex("808080ff")).read_u29() == 0xFF
    assert amf3.Decoder(bytes.fromhex("c0808001")).read_u29() == 0x10000001


@pytest.mark.parametrize("hexbytes", ["", "80", "ff80", "ffffff"])
def test_truncated_u29(hexbytes):
    with pytest.raises(AMFDecodeError, match="truncated U29 at offset 1"):
        amf3.decode(bytes.fromhex("04" + hexbytes))


@pytest.mark.parametrize("value", [-1, 1 << 29])
def test_u29_out_of_range_refused(value):
    with pytest.raises(AMFEncodeError):
        amf3.encode_u29(value)


@pytest.mark.parametrize(
    "value,hexbytes",
    [
        (0, "0400"),
        (1, "0401"),
        (0x80, "048100"),
        (-1, "04ffffffff"),
        (amf3.INTEGER_MAX, "04bfffffff"),
        (amf3.INTEGER_MIN, "04c0808000"),
        (-0x80, "04ffffff80"),
        # Outside the signed 29-bit range an int becomes a double (spec 3.6).
        (amf3.INTEGER_MAX + 1, "0541b0000000000000"),
        (amf3.INTEGER_MIN - 1, "05c1b0000001000000"),
    ],
)
def test_integer_vectors(value, hexbytes):
    assert amf3.encode(value).hex() == hexbytes
    decoded = amf3.decode(bytes.fromhex(hexbytes))
    assert decoded == value
    assert type(decoded) is (int if amf3.INTEGER_MIN <= value <= amf3.INTEGER_MAX else float)


def test_int_without_exact_double_refused():
    with pytest.raises(AMFEncodeError, match="exact"):
        amf3.encode(2**53 + 1)
    with pytest.raises(AMFEncodeError):
        amf3.encode(10**400)


# -- simple types and known vectors -------------------------------------------------------------


@pytest.mark.parametrize(
    "value,hexbytes",
    [
        (UNDEFINED, "00"),
        (None, "01"),
        (False, "02"),
        (True, "03"),
        (1.5, "053ff8000000000000"),
        (-0.0, "058000000000000000"),
        ("", "0601"),
        ("abc", "0607616263"),
        ("é", "0605c3a9"),
        (XMLDocument("<a/>"), "07093c612f3e"),
        (XML("<b/>"), "0b093c622f3e"),
        (AMFDate(0.0), "08010000000000000000"),
        (AMFDate(1.0), "08013ff0000000000000"),
        (ByteArray(b"\x01\x02"), "0c050102"),
        ([], "090101"),
        ([1, "a"], "09050104010603" + "61"),
        (AMF3Array([1], {"a": 2}), "0903036104020104" + "01"),
        ({}, "0a0b0101"),
        ({"a": 1}, "0a0b01036104010" + "1"),
        (TypedObject("Foo", {"x": 1}), "0a1307466f6f03780401"),
        (TypedObject("Dyn", {"x": 1, "y": 2}, sealed_names=["x"], dynamic=True), "0a1b0744796e0378040103790402" + "01"),
        (VectorInt([1, -1], True), "0d050100000001ffffffff"),
        (VectorUInt([0xFFFFFFFF], False), "0e0300ffffffff"),
        (VectorDouble([1.0], False), "0f03003ff0000000000000"),
        (VectorObject(["a"], False, "String"), "1003000d" "537472696e67" "060361"),
        (Dictionary([("k", 1)], weak_keys=False), "110300060" + "36b0401"),
        (Dictionary([], weak_keys=True), "110101"),
    ],
)
def test_known_vectors(value, hexbytes):
    data = bytes.fromhex(hexbytes)
    assert amf3.encode(value) == data
    assert_same(amf3.decode(data), value)


def test_bytes_like_values_become_byte_arrays():
    for raw in (b"xy", bytearray(b"xy"), memoryview(b"xy")):
        data = amf3.encode(raw)
        assert data == bytes.fromhex("0c057879")
        assert_same(amf3.decode(data), ByteArray(b"xy"))


def test_tuple_is_a_dense_array_and_ecma_array_an_associative_one():
    assert amf3.encode((1, 2)) == amf3.encode([1, 2])
    data = amf3.encode(ECMAArray(a=1))
    assert data == bytes.fromhex("0901036104010" + "1")
    assert_same(amf3.decode(data), AMF3Array([], {"a": 1}))


def test_datetime_is_written_as_date():
    import datetime as dt

    when = dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    decoded = amf3.decode(amf3.encode(when))
    assert decoded == AMFDate(1577934245678.0)
    assert decoded.to_datetime() == when


def test_int_enum_is_an_integer():
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    assert amf3.encode(Level.HIGH) == bytes.fromhex("0403")


# -- reference tables ---------------------------------------------------------------------------


def test_string_table_by_value_and_empty_string_never_referenced():
    data = amf3.encode(["", "", "a", "a", XML("a")])
    # The XML text does not go through the string table: it is an object (spec 3.13).
    assert data == bytes.fromhex("090b01" "0601" "0601" "060361" "0600" "0b0361")
    assert amf3.decode(data) == ["", "", "a", "a", "a"]


def test_keys_and_class_names_share_the_string_table():
    data = amf3.encode([{"Foo": "x"}, TypedObject("Foo", {"x": "Foo"})])
    assert data == bytes.fromhex(
        "0905" "01"
        "0a0b01" "07466f6f" "060378" "01"  # anonymous {Foo: "x"}: strings 0 "Foo", 1 "x"
        "0a13" "00" "02" "0600"  # traits: class "Foo" by ref 0, sealed "x" by ref 1; value "Foo"
    )
    assert amf3.decode(data) == [{"Foo": "x"}, TypedObject("Foo", {"x": "Foo"})]


def test_traits_referenced_by_class_and_layout():
    a, b = TypedObject("P", {"x": 1}), TypedObject("P", {"x": 2})
    data = amf3.encode([a, b, {"x": 3}, {"y": 4}])
    assert data == bytes.fromhex(
        "0909" "01"
        "0a" "13" "0350" "0378" "0401"  # traits 0 inline: class "P", one sealed member "x"
        "0a" "01" "0402"  # traits reference 0 (index << 2 | 0b01)
        "0a" "0b" "01" "02" "0403" "01"  # traits 1: anonymous dynamic; key "x" by string ref 1
        "0a" "05" "0379" "0404" "01"  # traits reference 1; key "y"
    )
    decoded = amf3.decode(data)
    assert decoded == [a, b, {"x": 3}, {"y": 4}]
    assert decoded[0].sealed_names == ("x",) and decoded[0].dynamic is False


def test_object_references_by_identity_and_cycles():
    shared = {"k": 1}
    data = amf3.encode([shared, shared, {"k": 1}])
    decoded = amf3.decode(data)
    assert decoded[0] is decoded[1]
    assert decoded[2] is not decoded[0]
    assert data.count(bytes.fromhex("0a02")) == 1  # reference to object index 1

    loop: list = []
    loop.append(loop)
    assert amf3.encode(loop) == bytes.fromhex("0903010900")
    decoded = amf3.decode(amf3.encode(loop))
    assert decoded[0] is decoded


@pytest.mark.parametrize(
    "make",
    [
        lambda: {},
        lambda: TypedObject("C"),
        lambda: AMF3Array([], {"a": 0}),
        lambda: VectorObject(),
        lambda: Dictionary(),
    ],
)
def test_self_containing_objects(make):
    obj = make()
    if isinstance(obj, dict):
        obj["me"] = obj
        get = lambda o: o["me"]  # noqa: E731
    elif isinstance(obj, AMF3Array):
        obj.dense.append(obj)
        get = lambda o: o.dense[0]  # noqa: E731
    elif isinstance(obj, list):
        obj.append(obj)
        get = lambda o: o[0]  # noqa: E731
    else:
        obj.pairs.append((obj, obj))
        get = lambda o: o.pairs[0][1]  # noqa: E731
    data = amf3.encode(obj)
    decoded = amf3.decode(data)
    assert get(decoded) is decoded
    assert amf3.encode(decoded) == data


def test_same_bytes_object_twice_is_one_byte_array():
    blob = bytes(range(5))
    decoded = amf3.decode(amf3.encode([blob, blob]))
    assert decoded[0] is decoded[1]


def test_decoder_keeps_tables_across_values():
    # Type 15/17 message bodies: several values share one context.
    encoder = amf3.Encoder()
    encoder.write_value("abc")
    encoder.write_value("abc")
    data = encoder.getvalue()
    assert data == bytes.fromhex("06076162630600")
    decoder = amf3.Decoder(data)
    assert [decoder.read_value(), decoder.read_value()] == ["abc", "abc"]
    assert decoder.at_end
    # decode_value starts a fresh context, so the second value alone is a dangling reference.
    value, offset = amf3.decode_value(data)
    assert (value, offset) == ("abc", 5)
    with pytest.raises(AMFDecodeError, match="string reference 0"):
        amf3.decode_value(data, 5)


@pytest.mark.parametrize(
    "hexbytes,message",
    [
        ("0600", "string reference 0"),
        ("0902" "01", "object reference 1"),
        ("0a01", "traits reference 0"),
        ("090301" "0a02", "object reference 1"),
        ("0800", "object reference 0"),
        ("0c00", "object reference 0"),
        ("1100", "object reference 0"),
        ("0d00", "object reference 0"),
        ("0b02", "object reference 1"),
    ],
)
def test_reference_indexes_checked(hexbytes, message):
    with pytest.raises(AMFDecodeError, match=message):
        amf3.decode(bytes.fromhex(hexbytes))


# -- externalizable objects ---------------------------------------------------------------------


class ArrayCollection(list):
    """flex.messaging.io.ArrayCollection: its readExternal reads one array with readObject."""


ARRAY_COLLECTION = amf3.Externalizable(
    "flex.messaging.io.ArrayCollection",
    ArrayCollection,
    lambda decoder: ArrayCollection(decoder.read_value()),
    lambda encoder, value: encoder.write_value(list(value)),
)

# 0a 07 <class name> <body: array [1, 2]>
_AC_NAME = b"flex.messaging.io.ArrayCollection"
ARRAY_COLLECTION_BYTES = b"\x0a\x07" + amf3.encode_u29(len(_AC_NAME) << 1 | 1) + _AC_NAME + bytes.fromhex("0905010401" "0402")


def test_externalizable_without_reader_is_a_clear_error():
    with pytest.raises(AMFDecodeError, match="externalizable 'flex.messaging.io.ArrayCollection'"):
        amf3.decode(ARRAY_COLLECTION_BYTES)


def test_externalizable_with_registered_reader_and_writer():
    value = amf3.decode(ARRAY_COLLECTION_BYTES, externalizables=[ARRAY_COLLECTION])
    assert type(value) is ArrayCollection and value == [1, 2]
    assert amf3.encode(value, externalizables=[ARRAY_COLLECTION]) == ARRAY_COLLECTION_BYTES
    # Second instance: traits by reference (index 0), body again.
    both = amf3.encode([value, ArrayCollection([3])], externalizables=[ARRAY_COLLECTION])
    decoded = amf3.decode(both, externalizables=[ARRAY_COLLECTION])
    assert decoded == [[1, 2], [3]] and all(type(v) is ArrayCollection for v in decoded)
    assert b"\x0a\x01\x09" in both


def test_externalizable_primitives():
    def write(encoder, value):
        encoder.write_u8(value[0])
        encoder.write_u16(value[1])
        encoder.write_u32(value[2])
        encoder.write_i32(value[3])
        encoder.write_double(value[4])
        encoder.write_utf(value[5])
        encoder.write_u29(value[6])
        encoder.write_bytes(value[7])

    def read(decoder):
        return Point(
            (
                decoder.read_u8(),
                decoder.read_u16(),
                decoder.read_u32(),
                decoder.read_i32(),
                decoder.read_double(),
                decoder.read_utf(),
                decoder.read_u29(),
                decoder.read_bytes(2),
            )
        )

    class Point(tuple):
        pass

    ext = amf3.Externalizable("Point", Point, read, write)
    value = Point((1, 2, 3, -4, 5.5, "é", 300, b"zz"))
    assert amf3.decode(amf3.encode(value, externalizables=[ext]), externalizables=[ext]) == value
    with pytest.raises(AMFEncodeError):
        amf3.encode(Point((256, 0, 0, 0, 0.0, "", 0, b"")), externalizables=[ext])
    truncated = amf3.encode(value, externalizables=[ext])[:-1]
    with pytest.raises(AMFDecodeError, match="raw bytes"):
        amf3.decode(truncated, externalizables=[ext])


def test_reference_into_unfinished_externalizable_refused():
    ext = amf3.Externalizable("Self", tuple, lambda decoder: decoder.read_value(), lambda e, v: None)
    data = b"\x0a\x07\x09Self" + b"\x0a\x00"  # body: reference to object 0, the one being read
    with pytest.raises(AMFDecodeError, match="still being read"):
        amf3.decode(data, externalizables=[ext])


# -- bounds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexbytes,what",
    [
        ("09ffffff7f" "01", "array"),  # 2**28 - 1 dense items, 0 bytes behind them
        ("0affffff73" + "01" * 5, "traits"),  # about 2**25 sealed members claimed
        ("0dffffff7f" "00" "0000", "VectorInt"),
        ("0fffffff7f" "00" "0000", "VectorDouble"),
        ("10ffffff7f" "00" "01" "0000", "Vector"),
        ("11ffffff7f" "00" "0000", "Dictionary"),
        ("06ffffff7f" "6162", "string"),
        ("0cffffff7f" "6162", "ByteArray"),
        ("07ffffff7f" "6162", "XMLDocument"),
    ],
)
def test_claimed_lengths_never_trusted(hexbytes, what):
    with pytest.raises(AMFDecodeError, match=what):
        amf3.decode(bytes.fromhex(hexbytes))


@pytest.mark.parametrize(
    "hexbytes,message",
    [
        ("0907" "01" "0101", "array at offset 0 claims 3 items but only 2 bytes"),
        ("1105" "00" "010101", "Dictionary at offset 0 claims 2 items but only 3 bytes"),
        ("0a33" "01" "0361" "0362", "object traits at offset 0 claims 3 items but only 5 bytes"),
        ("1007" "00" "01" "0101", r"Vector.<Object> at offset 0 claims 3 items but only 2 bytes"),
        # second object reuses traits with two sealed members but has one byte left for them
        ("0905" "01" "0a23" "0350" "0378" "0379" "0401" "0402" "0a01" "04", "sealed members at offset 15 claims 2"),
    ],
)
def test_counts_checked_at_the_boundary(hexbytes, message):
    # One byte short of the least the claimed items could take: refused before reading any.
    with pytest.raises(AMFDecodeError, match=message):
        amf3.decode(bytes.fromhex(hexbytes))


def nested_arrays(depth: int) -> bytes:
    return b"\x09\x03\x01" * depth + b"\x01"


def test_max_depth_default_and_keyword():
    assert amf3.DEFAULT_MAX_DEPTH == 64
    amf3.decode(nested_arrays(64))
    with pytest.raises(AMFDecodeError, match="deeper than 64"):
        amf3.decode(nested_arrays(65))
    amf3.decode(nested_arrays(3), max_depth=3)
    with pytest.raises(AMFDecodeError, match="deeper than 3"):
        amf3.decode(nested_arrays(4), max_depth=3)
    # objects, vectors and dictionaries count too
    for opener in (b"\x0a\x0b\x01\x03a", b"\x10\x03\x00\x01", b"\x11\x03\x00\x01"):
        with pytest.raises(AMFDecodeError, match="deeper than 2"):
            amf3.decode(opener * 3 + b"\x01\x01", max_depth=2)


def test_deep_input_never_raises_recursion_error():
    with pytest.raises(AMFDecodeError):
        amf3.decode(nested_arrays(100_000))
    with pytest.raises(AMFDecodeError, match="nested too deeply"):
        amf3.decode(nested_arrays(100_000), max_depth=10**9)


def test_deep_value_encode_is_an_encode_error():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(AMFEncodeError, match="nested too deeply"):
        amf3.encode(deep)


def test_max_elements_default_and_keyword():
    assert amf3.DEFAULT_MAX_ELEMENTS == 100_000
    data = amf3.encode([None] * 10)
    amf3.decode(data, max_elements=11)
    with pytest.raises(AMFDecodeError, match="more than 10 AMF values"):
        amf3.decode(data, max_elements=10)
    # numeric vector items count as values: they expand 4 bytes into a Python int each
    with pytest.raises(AMFDecodeError, match="more than 5"):
        amf3.decode(amf3.encode(VectorInt(range(10))), max_elements=5)
    # the default stops a message of 200 000 nulls
    with pytest.raises(AMFDecodeError, match="more than 100000"):
        amf3.decode(b"\x09" + amf3.encode_u29(200_000 << 1 | 1) + b"\x01" + b"\x01" * 200_000)


@pytest.mark.parametrize("marker", range(0x12, 0x100, 0x17))
def test_unknown_marker(marker):
    with pytest.raises(AMFDecodeError, match=f"0x{marker:02x} at offset 0"):
        amf3.decode(bytes([marker]))


def test_invalid_utf8_and_trailing_bytes():
    with pytest.raises(AMFDecodeError, match="UTF-8"):
        amf3.decode(b"\x06\x05\xc3\x28")
    with pytest.raises(AMFDecodeError, match="1 bytes left over"):
        amf3.decode(b"\x01\x01")
    with pytest.raises(AMFDecodeError, match="offset 0"):
        amf3.decode(b"")


def test_every_truncation_is_a_decode_error():
    value = [
        {"a": 1.5, "b": [XML("x"), ByteArray(b"yz")]},
        TypedObject("T", {"s": "t"}),
        AMF3Array([AMFDate(3.0)], {"k": VectorDouble([1.0])}),
        Dictionary([(1, VectorObject([None]))]),
        VectorInt([7]),
        VectorUInt([8]),
        XMLDocument("<d/>"),
        -300,
    ]
    data = amf3.encode(value)
    for cut in range(len(data)):
        with pytest.raises(AMFDecodeError):
            amf3.decode(data[:cut])


# -- encoder refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,message",
    [
        ({"": 1}, "empty-string key"),
        ({1: 1}, "not a string"),
        (AMF3Array([], {"": 1}), "empty-string key"),
        (TypedObject("T", {"a": 1, "b": 2}, sealed_names=["a"], dynamic=False), "outside its sealed traits"),
        (TypedObject("T", {"a": 1}, sealed_names=["a", "b"], dynamic=False), "sealed member 'b'"),
        (VectorInt([2**31]), "VectorInt"),
        (VectorUInt([-1]), "VectorUInt"),
        (VectorDouble(["x"]), "VectorDouble"),
        (UNSUPPORTED, "unsupported"),
        ({1, 2}, "set"),
        (object(), "object"),
        ("\ud800", "UTF-8"),
        (AMFDate("x"), "pack"),
    ],
)
def test_encode_refusals(value, message):
    with pytest.raises(AMFEncodeError, match=message):
        amf3.encode(value)


def test_offset_outside_data_is_local_misuse():
    from rtmpserver.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        amf3.Decoder(b"\x01", 2)


# -- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(amf3_values())
def test_round_trip(value):
    data = amf3.encode(value)
    decoded = amf3.decode(data)
    assert_same(decoded, value)
    assert decoded == value
    assert amf3.encode(decoded) == data


@PROPERTY
@given(amf3_values(allow_nan=True))
def test_round_trip_bytes_including_nan(value):
    data = amf3.encode(value)
    assert amf3.encode(amf3.decode(data)) == data


@PROPERTY
@given(amf3_values(), st.integers(0, 3))
def test_shared_objects_stay_shared(value, copies):
    assume(isinstance(value, (list, dict, AMF3Array, Dictionary, ByteArray, XML, XMLDocument, AMFDate)))
    data = amf3.encode([value] * (copies + 1))
    decoded = amf3.decode(data)
    assert all(item is decoded[0] for item in decoded)
    assert amf3.encode(decoded) == data


@PROPERTY
@given(st.integers(-(2**53), 2**53))
def test_integers(value):
    decoded = amf3.decode(amf3.encode(value))
    assert decoded == value
    assert type(decoded) is (int if amf3.INTEGER_MIN <= value <= amf3.INTEGER_MAX else float)


@PROPERTY
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_errors(data):
    try:
        amf3.decode(data)
    except AMFDecodeError as e:
        assert isinstance(e, RemoteProtocolError)


@PROPERTY
@given(amf3_values(allow_nan=True), st.data())
def test_mutated_encodings_raise_only_decode_errors(value, data):
    encoded = bytearray(amf3.encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    try:
        amf3.decode(bytes(encoded[:cut]), max_depth=8)
    except AMFDecodeError:
        pass
