"""Tests for rtmpserver.codec.messages.

Message bodies are written out by hand from the RTMP 1.0 specification (sections 5.4, 6.2, 7.1)
and the AMF0/AMF3 specifications, so the expected bytes do not come from the encoders under test.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.codec import messages as m
from rtmpserver.codec.amftypes import ECMAArray
from rtmpserver.codec.chunk import RawMessage
from rtmpserver.errors import (
    AMFDecodeError,
    LocalProtocolError,
    MessageError,
    RemoteProtocolError,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raw(type_id: int, payload: bytes, *, timestamp: int = 0, stream_id: int = 0, csid: int = 3) -> RawMessage:
    return RawMessage(csid, timestamp, type_id, stream_id, payload)


# -- hand-written AMF0 (AMF0 spec section 2) and AMF3 (AMF3 spec section 3) ------------------------


def a_num(v: float) -> bytes:
    return b"\x00" + struct.pack(">d", v)


def a_bool(v: bool) -> bytes:
    return b"\x01" + bytes([v])


def a_str(s: str) -> bytes:
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def a_key(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def a_obj(**kv: bytes) -> bytes:
    return b"\x03" + b"".join(a_key(k) + v for k, v in kv.items()) + b"\x00\x00\x09"


def a_ecma(**kv: bytes) -> bytes:
    return b"\x08" + struct.pack(">I", len(kv)) + b"".join(a_key(k) + v for k, v in kv.items()) + b"\x00\x00\x09"


A_NULL = b"\x05"


def a3_str(s: str) -> bytes:
    """AVM+ switch (0x11) followed by an AMF3 string (0x06, U29 length << 1 | 1)."""
    b = s.encode()
    assert len(b) < 64
    return b"\x11\x06" + bytes([len(b) << 1 | 1]) + b


def a3_int(v: int) -> bytes:
    assert 0 <= v < 128
    return b"\x11\x04" + bytes([v])


A3_NULL = b"\x11\x01"


CONNECT_BODY = (
    a_str("connect") + a_num(1) + a_obj(app=a_str("live"), tcUrl=a_str("rtmp://h/live"), fpad=a_bool(False))
)


# -- protocol control messages (section 5.4) ------------------------------------------------------

CONTROL = [
    (1, b"\x00\x00\x10\x00", m.SetChunkSize(4096)),
    (1, b"\x7f\xff\xff\xff", m.SetChunkSize(0x7FFFFFFF)),
    (2, b"\x00\x00\x00\x06", m.Abort(6)),
    (3, b"\x00\x98\x96\x80", m.Acknowledgement(10_000_000)),
    (3, b"\xff\xff\xff\xff", m.Acknowledgement(0xFFFFFFFF)),
    (5, b"\x00\x26\x25\xa0", m.WindowAcknowledgementSize(2_500_000)),
    (6, b"\x00\x26\x25\xa0\x00", m.SetPeerBandwidth(2_500_000, 0)),
    (6, b"\x00\x26\x25\xa0\x01", m.SetPeerBandwidth(2_500_000, 1)),
    (6, b"\x00\x26\x25\xa0\x02", m.SetPeerBandwidth(2_500_000, 2)),
]


@pytest.mark.parametrize("type_id,body,expected", CONTROL)
def test_control_decode_encode(type_id, body, expected):
    assert m.decode(raw(type_id, body, csid=2)) == expected
    assert m.encode(expected) == (type_id, body)


@pytest.mark.parametrize("type_id,size", [(1, 4), (2, 4), (3, 4), (5, 4), (6, 5)])
def test_control_short_body(type_id, size):
    for n in range(size):
        with pytest.raises(MessageError, match=f"{n}-byte body"):
            m.decode(raw(type_id, b"\x01" * n))


def test_set_chunk_size_top_bit_ignored():
    # Bit 31 must be 0 (section 5.4.1); a peer that sets it gets the low 31 bits.
    assert m.decode(raw(1, b"\x80\x00\x10\x00")) == m.SetChunkSize(4096)


@pytest.mark.parametrize("size", [0, -1, 0x80000000])
def test_set_chunk_size_encode_range(size):
    with pytest.raises(LocalProtocolError):
        m.encode(m.SetChunkSize(size))


def test_acknowledgement_encode_wraps():
    assert m.encode(m.Acknowledgement(0x1_0000_0005)) == (3, b"\x00\x00\x00\x05")


# -- user control events (section 6.2 / 7.1.7) ------------------------------------------------------

EVENTS = [
    (b"\x00\x00" + b"\x00\x00\x00\x01", m.UserControl.stream_begin(1), 0),
    (b"\x00\x01" + b"\x00\x00\x00\x02", m.UserControl.stream_eof(2), 1),
    (b"\x00\x02" + b"\x00\x00\x00\x03", m.UserControl.stream_dry(3), 2),
    (b"\x00\x03" + b"\x00\x00\x00\x01" + b"\x00\x00\x0b\xb8", m.UserControl.set_buffer_length(1, 3000), 3),
    (b"\x00\x04" + b"\x00\x00\x00\x05", m.UserControl.stream_is_recorded(5), 4),
    (b"\x00\x06" + b"\x12\x34\x56\x78", m.UserControl.ping_request(0x12345678), 6),
    (b"\x00\x07" + b"\xff\xff\xff\xff", m.UserControl.ping_response(0xFFFFFFFF), 7),
]


@pytest.mark.parametrize("body,expected,event", EVENTS)
def test_user_control_events(body, expected, event):
    decoded = m.decode(raw(4, body, csid=2))
    assert decoded == expected
    assert decoded.event == event
    assert m.encode(expected) == (4, body)


def test_set_buffer_length_fields():
    msg = m.decode(raw(4, b"\x00\x03\x00\x00\x00\x07\x00\x01\x00\x00"))
    assert (msg.event, msg.value, msg.buffer_ms) == (m.UserControlEvent.SET_BUFFER_LENGTH, 7, 0x10000)


@pytest.mark.parametrize("n", range(10))
def test_set_buffer_length_short(n):
    # The event type is 2 bytes, stream id 4 and buffer length 4: 10 bytes in all.
    body = (b"\x00\x03" + b"\x00" * 8)[:n]
    if n < 2:
        match = "User Control message"
    else:
        match = "SetBufferLength"
    with pytest.raises(MessageError, match=match):
        m.decode(raw(4, body))


@pytest.mark.parametrize("event", [0, 1, 2, 4, 6, 7])
@pytest.mark.parametrize("n", range(6))
def test_user_control_short(event, n):
    with pytest.raises(MessageError):
        m.decode(raw(4, struct.pack(">HI", event, 1)[:n]))


def test_user_control_unknown_event_passed_up():
    # Events such as 31/32 (SWF verification) are not fatal.
    assert m.decode(raw(4, b"\x00\x1f\x00\x00\x00\x09")) == m.UserControl(31, 9)
    assert m.decode(raw(4, b"\x00\x20")) == m.UserControl(32, 0)
    assert m.encode(m.UserControl(32, 9)) == (4, b"\x00\x20\x00\x00\x00\x09")


def test_ping_factories_mask_to_32_bits():
    assert m.UserControl.ping_request(0x1_0000_0001).value == 1
    assert m.UserControl.ping_response(-1).value == 0xFFFFFFFF


# -- audio, video, shared objects, unknown -------------------------------------------------------------


def test_audio_video_passed_through():
    a = m.decode(raw(8, b"\xaf\x01abc", timestamp=77, stream_id=1))
    v = m.decode(raw(9, b"\x17\x01\x00\x00\x00xyz", timestamp=78, stream_id=1))
    assert a == m.AudioMessage(77, 1, b"\xaf\x01abc")
    assert v == m.VideoMessage(78, 1, b"\x17\x01\x00\x00\x00xyz")
    assert m.encode(a) == (8, b"\xaf\x01abc")
    assert m.encode(v) == (9, b"\x17\x01\x00\x00\x00xyz")
    assert m.decode(raw(8, b"")) == m.AudioMessage(0, 0, b"")


@pytest.mark.parametrize("type_id,amf3", [(19, False), (16, True)])
def test_shared_object_carried(type_id, amf3):
    msg = m.decode(raw(type_id, b"\x00\x03abc", stream_id=4))
    assert msg == m.SharedObjectMessage(4, b"\x00\x03abc", amf3)
    assert m.encode(msg) == (type_id, b"\x00\x03abc")


@pytest.mark.parametrize("type_id", [0, 7, 10, 21, 23, 255])
def test_unknown_type_carried(type_id):
    msg = m.decode(raw(type_id, b"zz", timestamp=5, stream_id=2))
    assert msg == m.UnknownMessage(type_id, 2, b"zz", 5)
    assert m.encode(msg) == (type_id, b"zz")


def test_encode_rejects_other_objects():
    with pytest.raises(LocalProtocolError):
        m.encode(object())


# -- commands (section 7.1.1, 7.2) ---------------------------------------------------------------------


def test_command_amf0():
    msg = m.decode(raw(20, CONNECT_BODY, timestamp=9))
    assert msg == m.CommandMessage(
        0, "connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False}, [], timestamp=9
    )
    assert type(msg.transaction_id) is float


def test_command_arguments():
    body = a_str("publish") + a_num(5) + A_NULL + a_str("cam") + a_str("live")
    msg = m.decode(raw(20, body, stream_id=1))
    assert (msg.stream_id, msg.name, msg.transaction_id, msg.command_object, msg.arguments) == (
        1, "publish", 5.0, None, ["cam", "live"]
    )
    assert m.encode(msg) == (20, body)


def test_command_name_and_transaction_id_only():
    msg = m.decode(raw(20, a_str("pause") + a_num(0)))
    assert (msg.command_object, msg.arguments) == (None, [])


def test_command_amf3_leading_zero_byte():
    # Type 17 bodies start with a format byte 0x00; the values are AMF0 (section 7.1.1).
    msg = m.decode(raw(17, b"\x00" + CONNECT_BODY))
    assert msg == m.CommandMessage(
        0, "connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False}, [], amf3=True
    )
    assert m.encode(msg) == (17, b"\x00" + CONNECT_BODY)


def test_command_amf3_values_behind_avmplus_switch():
    body = b"\x00" + a3_str("play") + a_num(4) + A3_NULL + a3_str("cam") + a3_int(100)
    msg = m.decode(raw(17, body, stream_id=1))
    assert (msg.name, msg.transaction_id, msg.command_object, msg.arguments, msg.amf3) == (
        "play", 4.0, None, ["cam", 100], True
    )


def test_command_amf3_without_format_byte():
    msg = m.decode(raw(17, a_str("connect") + a_num(1)))
    assert (msg.name, msg.amf3) == ("connect", True)


@pytest.mark.parametrize(
    "body,match",
    [
        (b"", "0 values"),
        (a_str("connect"), "1 values"),
        (a_num(1) + a_num(1), "command name is float"),
        (A_NULL + a_num(1), "command name is NoneType"),
        (a_str("connect") + a_str("1"), "transaction id is str"),
        (a_str("connect") + a_bool(True), "transaction id is bool"),
        (a_str("connect") + A_NULL, "transaction id is NoneType"),
    ],
)
@pytest.mark.parametrize("type_id", [20, 17])
def test_command_bad_shape(body, match, type_id):
    if type_id == 17:
        body = b"\x00" + body
    with pytest.raises(MessageError, match=match):
        m.decode(raw(type_id, body))


@pytest.mark.parametrize(
    "body",
    [
        CONNECT_BODY[:-1],  # object end marker cut
        a_str("connect")[:-2],
        a_str("connect") + b"\x00\x3f",  # truncated number
        a_str("connect") + b"\x04",  # reserved movieclip marker
        b"\x00" + a_str("connect") + a_num(1),  # type 20 has no format byte
    ],
)
def test_command_malformed_amf(body):
    with pytest.raises(AMFDecodeError, match="command"):
        m.decode(raw(20, body))


def test_command_depth_bound():
    nested = a_str("x")
    for _ in range(10):
        nested = a_obj(k=nested)
    body = a_str("connect") + a_num(1) + nested
    assert m.decode(raw(20, body), max_amf_depth=11).name == "connect"
    with pytest.raises(AMFDecodeError):
        m.decode(raw(20, body), max_amf_depth=5)


def test_command_payload_bytes():
    assert m.command_payload("connect", 1, {"app": "live"}) == a_str("connect") + a_num(1) + a_obj(app=a_str("live"))
    assert m.command_payload("_result", 4, None, 1) == a_str("_result") + a_num(4) + A_NULL + a_num(1)


def test_payloads_never_use_amf0_references():
    # librtmp (OBS, rtmpdump) and FFmpeg do not read AMF0 references (marker 0x07): an object
    # that appears twice in one reply is written out twice.
    info = {"code": "NetStream.Play.Start"}
    assert m.command_payload("onStatus", 0, info, info) == (
        a_str("onStatus") + a_num(0) + a_obj(code=a_str("NetStream.Play.Start")) * 2
    )
    assert m.data_payload(info, [info]) == (
        a_obj(code=a_str("NetStream.Play.Start")) + b"\x0a\x00\x00\x00\x01" + a_obj(code=a_str("NetStream.Play.Start"))
    )
    msg = m.CommandMessage(0, "_result", 1, info, [info])
    assert b"\x07\x00" not in m.encode(msg)[1]


def test_command_encode_ignores_timestamp_and_stream_id():
    # Those travel in the chunk header; encode() returns the body only.
    msg = m.CommandMessage(3, "closeStream", 0, None, [], timestamp=50)
    assert m.encode(msg) == (20, a_str("closeStream") + a_num(0) + A_NULL)


COMMAND_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4),
    max_leaves=10,
)


@SETTINGS
@given(
    st.text(max_size=30),
    st.floats(allow_nan=False, allow_infinity=False),
    COMMAND_VALUES,
    st.lists(COMMAND_VALUES, max_size=4),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_command_roundtrip(name, tid, obj, args, amf3, stream_id):
    msg = m.CommandMessage(stream_id, name, tid, obj, args, amf3=amf3)
    type_id, body = m.encode(msg)
    assert m.decode(raw(type_id, body, stream_id=stream_id)) == msg


# -- data messages (section 7.1.2) --------------------------------------------------------------------

METADATA = a_str("@setDataFrame") + a_str("onMetaData") + a_ecma(width=a_num(320), stereo=a_bool(True))


def test_data_message_amf0():
    msg = m.decode(raw(18, METADATA, timestamp=0, stream_id=1))
    assert msg == m.DataMessage(0, 1, ["@setDataFrame", "onMetaData", {"width": 320.0, "stereo": True}], METADATA)
    assert type(msg.values[2]) is ECMAArray  # must survive re-sending as an ECMA array
    assert m.encode(msg) == (18, METADATA)


def test_data_message_amf3():
    body = b"\x00" + a_str("onTextData") + a3_str("hi")
    msg = m.decode(raw(15, body, timestamp=3, stream_id=1))
    assert (msg.values, msg.payload, msg.amf3, msg.timestamp) == (["onTextData", "hi"], body, True, 3)
    assert m.encode(msg) == (15, body)


def test_data_message_empty_and_malformed():
    assert m.decode(raw(18, b"")).values == []
    with pytest.raises(AMFDecodeError, match="data message"):
        m.decode(raw(18, METADATA[:-3]))


def test_data_payload_bytes():
    assert m.data_payload("|RtmpSampleAccess", True, True) == a_str("|RtmpSampleAccess") + a_bool(True) + a_bool(True)


# -- aggregate messages (section 7.1.6) -----------------------------------------------------------------


def flv_tag(tag_type: int, ts: int, body: bytes) -> bytes:
    """FLV tag (type, 24-bit size, 24-bit timestamp, 8-bit extension, 24-bit stream id 0) + back-pointer."""
    return (
        bytes([tag_type]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24])
        + b"\x00\x00\x00" + body + (11 + len(body)).to_bytes(4, "big")
    )


def test_aggregate_split_with_rebased_timestamps():
    meta = a_str("onCuePoint") + a_obj(name=a_str("c"))
    body = (
        flv_tag(9, 100, b"\x17\x01\x00\x00\x00frame0")
        + flv_tag(8, 110, b"\xaf\x01aac")
        + flv_tag(18, 120, meta)
        + flv_tag(9, 133, b"\x27\x01\x00\x00\x00frame1")
    )
    out = m.decode(raw(22, body, timestamp=5000, stream_id=1))
    assert out == [
        m.VideoMessage(5000, 1, b"\x17\x01\x00\x00\x00frame0"),
        m.AudioMessage(5010, 1, b"\xaf\x01aac"),
        m.DataMessage(5020, 1, ["onCuePoint", {"name": "c"}], meta),
        m.VideoMessage(5033, 1, b"\x27\x01\x00\x00\x00frame1"),
    ]


def test_aggregate_extended_tag_timestamps_and_wrap():
    # The FLV timestamp's extension byte is its top 8 bits; rebasing is modulo 2**32.
    body = flv_tag(8, 0x01000000, b"a") + flv_tag(8, 0x01000040, b"b")
    out = m.decode(raw(22, body, timestamp=0xFFFFFFE0, stream_id=1))
    assert [x.timestamp for x in out] == [0xFFFFFFE0, 0x20]


def test_aggregate_first_tag_need_not_match_message_timestamp():
    body = flv_tag(8, 0, b"a") + flv_tag(9, 40, b"\x17v")
    assert [x.timestamp for x in m.split_aggregate(raw(22, body, timestamp=1000))] == [1000, 1040]


def test_aggregate_empty():
    assert m.decode(raw(22, b"")) == []


@pytest.mark.parametrize(
    "body,match",
    [
        (flv_tag(8, 0, b"abc")[:-1], "aggregate"),  # back-pointer cut
        (flv_tag(8, 0, b"abc")[:10], "aggregate"),  # tag header cut
        (flv_tag(8, 0, b"abc")[:-4] + (13).to_bytes(4, "big"), "back-pointer"),
        (flv_tag(20, 0, a_str("x") + a_num(0)), "type 20"),
        (flv_tag(18, 0, b"\x02\x00\x05ab"), "aggregate"),  # malformed AMF in a data tag
    ],
)
def test_aggregate_malformed(body, match):
    with pytest.raises(RemoteProtocolError, match=match):
        m.decode(raw(22, body))


def test_aggregate_malformed_is_message_error():
    with pytest.raises(MessageError):
        m.decode(raw(22, flv_tag(8, 0, b"abc")[:-1]))


# -- fuzz -----------------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 16, 17, 18, 19, 20, 22, 7, 99]), st.binary(max_size=80))
def test_random_bodies_raise_only_remote_protocol_errors(type_id, body):
    try:
        m.decode(raw(type_id, body), max_amf_depth=8)
    except RemoteProtocolError:
        pass


@SETTINGS
@given(st.sampled_from([15, 17, 18, 20]), st.binary(max_size=60))
def test_random_amf_after_valid_prefix(type_id, tail):
    prefix = b"\x00" if type_id in (15, 17) else b""
    try:
        m.decode(raw(type_id, prefix + a_str("connect") + a_num(1) + tail), max_amf_depth=8)
    except RemoteProtocolError:
        pass


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([8, 9]), st.integers(0, 2**32 - 1), st.binary(max_size=40)), max_size=5),
       st.integers(0, 2**32 - 1))
def test_aggregate_roundtrip(tags, ts):
    body = b"".join(flv_tag(t, tts, p) for t, tts, p in tags)
    out = m.decode(raw(22, body, timestamp=ts, stream_id=1))
    assert [(type(x), x.payload) for x in out] == [
        (m.AudioMessage if t == 8 else m.VideoMessage, p) for t, _, p in tags
    ]
    if tags:
        first = tags[0][1]
        assert [x.timestamp for x in out] == [(ts + tts - first) % 2**32 for _, tts, _ in tags]
