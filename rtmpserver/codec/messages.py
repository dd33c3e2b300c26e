"""Typed RTMP messages (RTMP 1.0 specification, sections 5.4, 6 and 7), sans-IO.

``decode(raw)`` turns a ``RawMessage`` from the chunk layer into one of the classes below;
``encode(msg)`` gives back ``(type_id, payload)``.  Audio and video bodies are not looked into
here: they go to the hub as they are (``rtmpserver.media.flv`` reads their first bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from rtmpserver.codec import amf0
from rtmpserver.codec.chunk import RawMessage
from rtmpserver.errors import AMFDecodeError, FLVError, LocalProtocolError, MessageError

__all__ = [
    "MessageType",
    "UserControlEvent",
    "SetChunkSize",
    "Abort",
    "Acknowledgement",
    "WindowAcknowledgementSize",
    "SetPeerBandwidth",
    "UserControl",
    "AudioMessage",
    "VideoMessage",
    "DataMessage",
    "CommandMessage",
    "SharedObjectMessage",
    "UnknownMessage",
    "decode",
    "encode",
    "split_aggregate",
    "command_payload",
    "data_payload",
]


class MessageType(IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControlEvent(IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_U16U32 = struct.Struct(">HI")
_U16U32U32 = struct.Struct(">HII")
_U32U8 = struct.Struct(">IB")


@dataclass(frozen=True, slots=True)
class SetChunkSize:
    size: int


@dataclass(frozen=True, slots=True)
class Abort:
    csid: int


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    sequence_number: int


@dataclass(frozen=True, slots=True)
class WindowAcknowledgementSize:
    size: int


@dataclass(frozen=True, slots=True)
class SetPeerBandwidth:
    size: int
    limit_type: int  # 0 hard, 1 soft, 2 dynamic


@dataclass(frozen=True, slots=True)
class UserControl:
    """User Control event (section 6.2): ``value`` is the stream id, or the ping timestamp.

    ``buffer_ms`` is set for SetBufferLength only.
    """

    event: int
    value: int
    buffer_ms: int = 0

    @classmethod
    def stream_begin(cls, stream_id: int) -> UserControl:
        return cls(UserControlEvent.STREAM_BEGIN, stream_id)

    @classmethod
    def stream_eof(cls, stream_id: int) -> UserControl:
        return cls(UserControlEvent.STREAM_EOF, stream_id)

    @classmethod
    def stream_dry(cls, stream_id: int) -> UserControl:
        return cls(UserControlEvent.STREAM_DRY, stream_id)

    @classmethod
    def stream_is_recorded(cls, stream_id: int) -> UserControl:
        return cls(UserControlEvent.STREAM_IS_RECORDED, stream_id)

    @classmethod
    def set_buffer_length(cls, stream_id: int, buffer_ms: int) -> UserControl:
        return cls(UserControlEvent.SET_BUFFER_LENGTH, stream_id, buffer_ms)

    @classmethod
    def ping_request(cls, timestamp: int) -> UserControl:
        return cls(UserControlEvent.PING_REQUEST, timestamp & 0xFFFFFFFF)

    @classmethod
    def ping_response(cls, timestamp: int) -> UserControl:
        return cls(UserControlEvent.PING_RESPONSE, timestamp & 0xFFFFFFFF)


@dataclass(slots=True)
class AudioMessage:
    timestamp: int
    stream_id: int
    payload: bytes


@dataclass(slots=True)
class VideoMessage:
    timestamp: int
    stream_id: int
    payload: bytes


@dataclass(slots=True)
class DataMessage:
    """Data message (type 18, or 15 for AMF3): ``values`` decoded, ``payload`` kept for forwarding."""

    timestamp: int
    stream_id: int
    values: list
    payload: bytes
    amf3: bool = False


@dataclass(slots=True)
class CommandMessage:
    """Command message (type 20, or 17 for AMF3): name, transaction id, command object, arguments."""

    stream_id: int
    name: str
    transaction_id: float
    command_object: Any = None
    arguments: list = field(default_factory=list)
    amf3: bool = False
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class SharedObjectMessage:
    """Shared object messages are carried, not interpreted (no supported client needs them live)."""

    stream_id: int
    payload: bytes
    amf3: bool = False


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    type_id: int
    stream_id: int
    payload: bytes
    timestamp: int = 0


def _need(raw: RawMessage, n: int, what: str) -> None:
    if len(raw.payload) < n:
        raise MessageError(f"{what} message with a {len(raw.payload)}-byte body, expected {n} bytes")


def _amf_values(payload: bytes, what: str, max_depth: int) -> list:
    try:
        return amf0.decode(payload, max_depth=max_depth)
    except AMFDecodeError as e:
        raise AMFDecodeError(f"{what}: {e}") from None


def decode(raw: RawMessage, *, max_amf_depth: int = 32):
    """Typed message for ``raw``; raises MessageError/AMFDecodeError (RemoteProtocolError) on a bad body.

    Aggregate messages are returned as a list of the audio/video/data messages they carry.
    """
    t = raw.type_id
    p = raw.payload
    if t == 8:
        return AudioMessage(raw.timestamp, raw.stream_id, p)
    if t == 9:
        return VideoMessage(raw.timestamp, raw.stream_id, p)
    if t == 3:
        _need(raw, 4, "Acknowledgement")
        return Acknowledgement(_U32.unpack_from(p)[0])
    if t == 4:
        _need(raw, 2, "User Control")
        event = _U16.unpack_from(p)[0]
        if event == UserControlEvent.SET_BUFFER_LENGTH:
            _need(raw, 10, "User Control SetBufferLength")
            _, sid, ms = _U16U32U32.unpack_from(p)
            return UserControl(event, sid, ms)
        if event <= 7 and event != 5:
            _need(raw, 6, f"User Control event {event}")
            return UserControl(event, _U16U32.unpack_from(p)[1])
        # Unknown event types (e.g. 31/32 SWF verification) are passed up, not fatal.
        return UserControl(event, _U32.unpack_from(p, 2)[0] if len(p) >= 6 else 0)
    if t == 20 or t == 17:
        body = p
        if t == 17:
            # AMF3 commands carry a format byte 0 before AMF0 values that may switch to AMF3.
            if body[:1] == b"\x00":
                body = body[1:]
        values = _amf_values(body, "command", max_amf_depth)
        if len(values) < 2:
            raise MessageError(f"command message with {len(values)} values; need at least name and transaction id")
        name, tid = values[0], values[1]
        if not isinstance(name, str):
            raise MessageError(f"command name is {type(name).__name__}, expected a string")
        if isinstance(tid, bool) or not isinstance(tid, (int, float)):
            raise MessageError(f"command {name!r}: transaction id is {type(tid).__name__}, expected a number")
        return CommandMessage(
            raw.stream_id,
            name,
            float(tid),
            values[2] if len(values) > 2 else None,
            values[3:],
            amf3=(t == 17),
            timestamp=raw.timestamp,
        )
    if t == 18 or t == 15:
        body = p[1:] if t == 15 and p[:1] == b"\x00" else p
        return DataMessage(raw.timestamp, raw.stream_id, _amf_values(body, "data message", max_amf_depth), p, t == 15)
    if t == 1:
        _need(raw, 4, "Set Chunk Size")
        return SetChunkSize(_U32.unpack_from(p)[0] & 0x7FFFFFFF)
    if t == 2:
        _need(raw, 4, "Abort")
        return Abort(_U32.unpack_from(p)[0])
    if t == 5:
        _need(raw, 4, "Window Acknowledgement Size")
        return WindowAcknowledgementSize(_U32.unpack_from(p)[0])
    if t == 6:
        _need(raw, 5, "Set Peer Bandwidth")
        size, limit = _U32U8.unpack_from(p)
        return SetPeerBandwidth(size, limit)
    if t == 22:
        return split_aggregate(raw, max_amf_depth=max_amf_depth)
    if t == 19 or t == 16:
        return SharedObjectMessage(raw.stream_id, p, t == 16)
    return UnknownMessage(t, raw.stream_id, p, raw.timestamp)


def split_aggregate(raw: RawMessage, *, max_amf_depth: int = 32) -> list:
    """The audio/video/data messages inside an aggregate message (type 22).

    The body is a run of FLV tags with back-pointers; their timestamps are rebased so the first
    sub-message has the aggregate's own timestamp (as FMS and nginx-rtmp do).
    """
    from rtmpserver.media.flv import (
        parse_aggregate,  # media imports codec-level things only
    )

    try:
        tags = parse_aggregate(raw.payload)
    except FLVError as e:
        raise MessageError(f"aggregate message: {e}") from None
    out: list = []
    if not tags:
        return out
    first = tags[0].timestamp
    for tag in tags:
        ts = (raw.timestamp + tag.timestamp - first) & 0xFFFFFFFF
        if tag.type == 8:
            out.append(AudioMessage(ts, raw.stream_id, tag.payload))
        elif tag.type == 9:
            out.append(VideoMessage(ts, raw.stream_id, tag.payload))
        elif tag.type == 18:
            out.append(
                DataMessage(ts, raw.stream_id, _amf_values(tag.payload, "aggregate data tag", max_amf_depth), tag.payload)
            )
        else:
            raise MessageError(f"aggregate message carries an FLV tag of type {tag.type}")
    return out


def command_payload(name: str, transaction_id: float, command_object: Any = None, *arguments: Any) -> bytes:
    """AMF0 body of a command message."""
    # No AMF0 references: librtmp (OBS, rtmpdump) rejects them in replies.
    return amf0.encode(name, float(transaction_id), command_object, *arguments, references=False)


def data_payload(*values: Any) -> bytes:
    """AMF0 body of a data message."""
    return amf0.encode(*values, references=False)


def encode(msg) -> tuple[int, bytes]:
    """(type id, payload) of a typed message; out-of-range fields are our bug (LocalProtocolError)."""
    try:
        return _encode(msg)
    except struct.error as e:
        raise LocalProtocolError(f"cannot encode {msg!r}: {e}") from None


def _encode(msg) -> tuple[int, bytes]:
    if isinstance(msg, AudioMessage):
        return 8, msg.payload
    if isinstance(msg, VideoMessage):
        return 9, msg.payload
    if isinstance(msg, CommandMessage):
        body = command_payload(msg.name, msg.transaction_id, msg.command_object, *msg.arguments)
        return (17, b"\x00" + body) if msg.amf3 else (20, body)
    if isinstance(msg, DataMessage):
        return (15 if msg.amf3 else 18), msg.payload
    if isinstance(msg, UserControl):
        if msg.event == UserControlEvent.SET_BUFFER_LENGTH:
            return 4, _U16U32U32.pack(msg.event, msg.value, msg.buffer_ms)
        return 4, _U16U32.pack(msg.event, msg.value)
    if isinstance(msg, SetChunkSize):
        if not 1 <= msg.size <= 0x7FFFFFFF:
            raise LocalProtocolError(f"chunk size {msg.size} outside 1..0x7FFFFFFF")
        return 1, _U32.pack(msg.size)
    if isinstance(msg, Acknowledgement):
        return 3, _U32.pack(msg.sequence_number & 0xFFFFFFFF)
    if isinstance(msg, WindowAcknowledgementSize):
        return 5, _U32.pack(msg.size)
    if isinstance(msg, SetPeerBandwidth):
        return 6, _U32U8.pack(msg.size, msg.limit_type)
    if isinstance(msg, Abort):
        return 2, _U32.pack(msg.csid)
    if isinstance(msg, SharedObjectMessage):
        return (16 if msg.amf3 else 19), msg.payload
    if isinstance(msg, UnknownMessage):
        return msg.type_id, msg.payload
    raise LocalProtocolError(f"cannot encode {type(msg).__name__}")
