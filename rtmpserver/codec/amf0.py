"""AMF0 encoder and decoder (Adobe "Action Message Format -- AMF 0", 2006), sans-IO.

Every RTMP command (type 20) and data message (type 18) body is a run of AMF0 values; type 17/15
bodies are the same after their leading format byte, with values that may switch to AMF3.

Python value mapping (types without a built-in counterpart live in ``amftypes``)::

    AMF0                        decodes to                   encoded from
    number          0x00        float                        float; int a double holds exactly
    boolean         0x01        bool                         bool
    string          0x02        str                          str of at most 65535 UTF-8 bytes
    object          0x03        dict                         dict
    null            0x05        None                         None
    undefined       0x06        UNDEFINED                    UNDEFINED
    reference       0x07        the referenced object        an object seen before (by identity)
    ECMA array      0x08        ECMAArray (dict subclass)    ECMAArray
    strict array    0x0A        list                         list, tuple
    date            0x0B        AMFDate(ms, timezone)        AMFDate, datetime.datetime
    long string     0x0C        str                          str longer than 65535 UTF-8 bytes
    unsupported     0x0D        UNSUPPORTED                  UNSUPPORTED
    XML document    0x0F        XMLDocument (str subclass)   XMLDocument
    typed object    0x10        TypedObject(name, members)   TypedObject
    AVM+ switch     0x11        the AMF3 value that follows  AMF3-only types: XML, ByteArray,
                                (see ``amf3``)               bytes, bytearray, memoryview,
                                                             Vector*, Dictionary, AMF3Array,
                                                             registered Externalizable types

Movieclip (0x04) and recordset (0x0E) are "reserved, not supported" (spec 2.6, 2.16) and
decode as errors, as does an object-end marker (0x09) outside an object.

References (spec 2.9): anonymous objects, typed objects, ECMA arrays and strict arrays are
numbered in the order they start; the encoder writes a second occurrence of the same Python
object (by identity) as a reference, which is also how a cycle is written, and the decoder
resolves a reference to an object still being read to that very object.  librtmp (and so
OBS, GStreamer, rtmpdump) refuses references: ``encode(..., references=False)`` writes repeats
in full and refuses cycles instead.  The 16-bit index reaches 65535 objects; later objects are
always written inline.  Writing repeats in full can grow a value that shares objects deeply
without bound, so the encoder stops at 0xFFFFFF bytes, the largest RTMP message or FLV tag body.

The AMF3 reference tables behind AVM+ switches are shared by all values of one ``encode`` or
``decode`` call (one message), as PyAMF and Red5 do.

Bounds: lengths and counts are checked against the bytes actually present before anything is
allocated; reference indexes against the table; ``max_depth`` (default 64) bounds nesting and
``max_elements`` (default 100 000) the number of values in one message.  Every problem raises
``AMFDecodeError`` (a ``RemoteProtocolError``) naming the offset.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable, Iterable
from typing import Any

from rtmpserver.codec import amf3
from rtmpserver.codec._reader import AMFReader
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
    _Sentinel,
)
from rtmpserver.errors import AMFDecodeError, AMFEncodeError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ELEMENTS",
    "Decoder",
    "Encoder",
    "encode",
    "decode",
    "decode_value",
]

DEFAULT_MAX_DEPTH = amf3.DEFAULT_MAX_DEPTH
DEFAULT_MAX_ELEMENTS = amf3.DEFAULT_MAX_ELEMENTS

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")
_STRING_HEAD = struct.Struct(">BH")
_NUMBER = struct.Struct(">Bd")
_unpack_double = _DOUBLE.unpack_from

_NUMBER_M = 0x00
_BOOLEAN_M = 0x01
_STRING_M = 0x02
_OBJECT_M = 0x03
_NULL_M = 0x05
_UNDEFINED_M = 0x06
_REFERENCE_M = 0x07
_ECMA_ARRAY_M = 0x08
_OBJECT_END_M = 0x09
_STRICT_ARRAY_M = 0x0A
_DATE_M = 0x0B
_LONG_STRING_M = 0x0C
_UNSUPPORTED_M = 0x0D
_XML_DOCUMENT_M = 0x0F
_TYPED_OBJECT_M = 0x10
_AVMPLUS_M = 0x11

_OBJECT_END = b"\x00\x00\x09"

# Largest RTMP message body (24-bit length, RTMP spec 5.3.1.2) and FLV tag body (UI24 DataSize).
_MAX_OUTPUT = 0xFFFFFF


class Decoder(AMFReader):
    """Reads AMF0 values from ``data`` starting at ``offset``, keeping the reference tables.

    One Decoder is one reference context (one message).  After an ``AMFDecodeError`` its
    position and tables are unspecified; start a new one.
    """

    _FORMAT = "AMF0"

    __slots__ = ("_refs", "_amf3", "_externalizables")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        externalizables: Iterable[amf3.Externalizable] = (),
    ) -> None:
        super().__init__(data, offset, max_depth=max_depth, max_elements=max_elements)
        self._refs: list[Any] = []
        self._amf3: amf3.Decoder | None = None
        self._externalizables = tuple(externalizables)

    def read_all(self) -> list:
        """Every value from the current position to the end of the data."""
        values = []
        while self.offset < self._end:
            values.append(self.read_value())
        return values

    # -- primitives ---------------------------------------------------------------------------

    def _short_utf8(self, what: str) -> str:
        # Hot path (every command name and property key): one bounds check, one slice.
        data = self._data
        off = self.offset
        start = off + 2
        if start <= self._end:
            stop = start + (data[off] << 8 | data[off + 1])
            if stop <= self._end:
                self.offset = stop
                try:
                    return data[start:stop].decode("utf-8")
                except UnicodeDecodeError as e:
                    raise AMFDecodeError(f"{what} at offset {start} is not valid UTF-8 (byte {start + e.start})") from None
        return self._utf8(_U16.unpack_from(data, self._take(2, f"{what} length"))[0], what)

    def _long_utf8(self, what: str) -> str:
        return self._utf8(_U32.unpack_from(self._data, self._take(4, f"{what} length"))[0], what)

    # -- values ---------------------------------------------------------------------------------

    def _read(self) -> Any:
        off = self.offset
        if off >= self._end:
            raise AMFDecodeError(f"truncated AMF0 data: type marker expected at offset {off}")
        marker = self._data[off]
        self.offset = off + 1
        self._budget -= 1
        if self._budget < 0:
            raise AMFDecodeError(f"more than {self.max_elements} AMF values in one message (offset {off})")
        reader = _READERS[marker] if marker < len(_READERS) else None
        if reader is None:
            raise AMFDecodeError(f"{_BAD_MARKERS.get(marker, 'unknown AMF0 type marker')} 0x{marker:02x} at offset {off}")
        return reader(self)

    def _read_number(self) -> float:
        off = self.offset
        if off + 8 > self._end:
            self._take(8, "number")  # raises with the details
        self.offset = off + 8
        return _unpack_double(self._data, off)[0]

    def _read_boolean(self) -> bool:
        return self._data[self._take(1, "boolean")] != 0

    def _read_string(self) -> str:
        return self._short_utf8("string")

    def _read_properties(self, obj: dict, start: int) -> None:
        # Spec 2.5: object-property* then UTF-8-empty followed by object-end-marker.
        self._enter(start)
        data = self._data
        read = self._read
        while True:
            key = self._short_utf8("property name")
            if not key:
                off = self.offset
                if off >= self._end:
                    raise AMFDecodeError(f"truncated AMF0 data: object-end marker expected at offset {off}")
                if data[off] != _OBJECT_END_M:
                    raise AMFDecodeError(
                        f"empty property name at offset {off - 2} is not followed by the object-end marker "
                        f"(found 0x{data[off]:02x})"
                    )
                self.offset = off + 1
                break
            obj[key] = read()
        self._depth -= 1

    def _read_object(self) -> dict:
        obj: dict = {}
        self._refs.append(obj)
        self._read_properties(obj, self.offset - 1)
        return obj

    def _read_null(self) -> None:
        return None

    def _read_undefined(self) -> Any:
        return UNDEFINED

    def _read_reference(self) -> Any:
        start = self.offset - 1
        idx = _U16.unpack_from(self._data, self._take(2, "reference"))[0]
        refs = self._refs
        if idx >= len(refs):
            raise AMFDecodeError(f"reference {idx} at offset {start}, but only {len(refs)} objects were sent")
        return refs[idx]

    def _read_ecma_array(self) -> ECMAArray:
        start = self.offset - 1
        # The associative count is only a hint: FMS and others write 0 and rely on object-end.
        self._take(4, "ECMA array count")
        obj = ECMAArray()
        self._refs.append(obj)
        self._read_properties(obj, start)
        return obj

    def _read_object_end(self) -> Any:
        raise AMFDecodeError(f"object-end marker outside an object at offset {self.offset - 1}")

    def _read_strict_array(self) -> list:
        start = self.offset - 1
        n = _U32.unpack_from(self._data, self._take(4, "strict array count"))[0]
        # Each element takes at least its marker byte: refuse impossible counts up front.
        left = self._end - self.offset
        if n > left:
            raise AMFDecodeError(f"strict array at offset {start} claims {n} elements but only {left} bytes are left")
        items: list = []
        self._refs.append(items)
        self._enter(start)
        read = self._read
        append = items.append
        for _ in range(n):
            append(read())
        self._depth -= 1
        return items

    def _read_date(self) -> AMFDate:
        ms, tz = _DATE.unpack_from(self._data, self._take(10, "date"))
        return AMFDate(ms, tz)

    def _read_long_string(self) -> str:
        return self._long_utf8("long string")

    def _read_unsupported(self) -> Any:
        return UNSUPPORTED

    def _read_xml_document(self) -> XMLDocument:
        return XMLDocument(self._long_utf8("XML document"))

    def _read_typed_object(self) -> TypedObject:
        start = self.offset - 1
        obj = TypedObject(self._short_utf8("class name"))
        self._refs.append(obj)
        self._read_properties(obj, start)
        return obj

    def _read_avmplus(self) -> Any:
        # Spec 3.1: the next value is AMF3.  The AMF3 decoder works on the same buffer and
        # carries on with our depth and element budget.
        d3 = self._amf3
        if d3 is None:
            d3 = self._amf3 = amf3.Decoder(
                self._data,
                max_depth=self.max_depth,
                max_elements=self.max_elements,
                externalizables=self._externalizables,
            )
        d3.offset = self.offset
        d3._depth = self._depth
        d3._budget = self._budget
        value = d3._read()
        self.offset = d3.offset
        self._budget = d3._budget
        return value


_READERS: tuple[Callable[[Decoder], Any] | None, ...] = (
    Decoder._read_number,
    Decoder._read_boolean,
    Decoder._read_string,
    Decoder._read_object,
    None,  # movieclip
    Decoder._read_null,
    Decoder._read_undefined,
    Decoder._read_reference,
    Decoder._read_ecma_array,
    Decoder._read_object_end,
    Decoder._read_strict_array,
    Decoder._read_date,
    Decoder._read_long_string,
    Decoder._read_unsupported,
    None,  # recordset
    Decoder._read_xml_document,
    Decoder._read_typed_object,
    Decoder._read_avmplus,
)

_BAD_MARKERS = {
    0x04: "reserved, unsupported AMF0 movieclip marker",
    0x0E: "reserved, unsupported AMF0 recordset marker",
}


def _utf8_bytes(s: str, what: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise AMFEncodeError(f"{what} {s[:40]!r} cannot be encoded as UTF-8: {e.reason}") from None


# Property names as written (U16 length + UTF-8), by name: commands use a small vocabulary
# ("level", "code", "description", ...), so most names are encoded once per process. Bounded: past
# _NAMES_MAX distinct names the rest are encoded on each use.
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 1024


def _property_name(key: Any) -> bytes:
    if not isinstance(key, str):
        raise AMFEncodeError(f"object key {key!r} is not a string")
    data = _utf8_bytes(key, "property name")
    n = len(data)
    if not n:
        # UTF-8-empty is the start of the object-end sequence (spec 2.5).
        raise AMFEncodeError("AMF0 objects cannot have an empty-string key")
    if n > 0xFFFF:
        raise AMFEncodeError(f"property name of {n} UTF-8 bytes exceeds the AMF0 limit of 65535")
    head = _U16.pack(n) + data
    if type(key) is str and len(_NAMES) < _NAMES_MAX and n <= 64:
        _NAMES[key] = head
    return head


class Encoder:
    """Writes AMF0 values into one buffer; all values written share one reference context."""

    __slots__ = ("_buf", "_refs", "_keep", "_count", "_active", "references", "_amf3", "_externalizables", "_ext_types")

    def __init__(self, *, references: bool = True, externalizables: Iterable[amf3.Externalizable] = ()) -> None:
        self._buf = bytearray()
        # id(object) -> reference index; ``_keep`` holds the objects so their ids stay unique.
        self._refs: dict[int, int] = {}
        self._keep: list[Any] = []
        self._count = 0
        self._active: set[int] = set()
        self.references = references
        self._amf3: amf3.Encoder | None = None
        if externalizables:
            self._externalizables = tuple(externalizables)
            self._ext_types = tuple(e.python_type for e in self._externalizables)
        else:  # every command and data message the server sends
            self._externalizables = self._ext_types = ()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def write_value(self, value: Any) -> None:
        try:
            self._write(value)
        except RecursionError:
            raise AMFEncodeError("value nested too deeply to encode") from None

    def _write(self, value: Any) -> None:
        if self._ext_types and isinstance(value, self._ext_types):
            self._write_avmplus(value)
            return
        writer = _WRITERS.get(type(value))
        if writer is None:
            writer = _writer_for_subclass(value)
        writer(self, value)

    def _begin(self, value: Any) -> bool:
        """Write a reference and return True if ``value`` was written before; else number it."""
        key = id(value)
        if self.references:
            idx = self._refs.get(key)
            if idx is not None:
                self._buf.append(_REFERENCE_M)
                self._buf += _U16.pack(idx)
                return True
        if key in self._active:
            raise AMFEncodeError(
                f"{type(value).__name__} contains itself; AMF0 can only write that as a reference "
                "(references=True, and at most 65536 objects before it)"
            )
        if len(self._buf) > _MAX_OUTPUT:
            raise AMFEncodeError(f"AMF0 output exceeds {_MAX_OUTPUT} bytes, the largest RTMP message body")
        idx = self._count
        self._count = idx + 1
        if self.references and idx <= 0xFFFF:
            self._refs[key] = idx
            self._keep.append(value)
        return False

    def _write_number(self, value: float) -> None:
        self._buf += _NUMBER.pack(_NUMBER_M, value)

    def _write_int(self, value: int) -> None:
        try:
            f = float(value)
        except OverflowError:
            raise AMFEncodeError(f"integer {value} is too large for an AMF0 number") from None
        if int(f) != value:
            raise AMFEncodeError(f"integer {value} has no exact AMF0 number (double) representation")
        self._write_number(f)

    def _write_bool(self, value: bool) -> None:
        self._buf.append(_BOOLEAN_M)
        self._buf.append(1 if value else 0)

    def _write_str(self, value: str) -> None:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            data = _utf8_bytes(value, "string")  # raises AMFEncodeError
        n = len(data)
        if n <= 0xFFFF:
            self._buf += _STRING_HEAD.pack(_STRING_M, n)
        else:
            # Spec 2.14: long string for anything that needs more than 65535 bytes.
            if n > 0xFFFFFFFF:
                raise AMFEncodeError(f"string of {n} UTF-8 bytes exceeds the AMF0 limit")
            self._buf.append(_LONG_STRING_M)
            self._buf += _U32.pack(n)
        self._buf += data

    def _write_xml_document(self, value: XMLDocument) -> None:
        data = _utf8_bytes(value, "XML document")
        if len(data) > 0xFFFFFFFF:
            raise AMFEncodeError(f"XML document of {len(data)} UTF-8 bytes exceeds the AMF0 limit")
        self._buf.append(_XML_DOCUMENT_M)
        self._buf += _U32.pack(len(data))
        self._buf += data

    def _write_sentinel(self, value: _Sentinel) -> None:
        if value is UNDEFINED:
            self._buf.append(_UNDEFINED_M)
        elif value is UNSUPPORTED:
            self._buf.append(_UNSUPPORTED_M)
        else:  # pragma: no cover - only the two sentinels exist
            raise AMFEncodeError(f"cannot encode {value!r}")

    def _write_null(self, value: None) -> None:
        self._buf.append(_NULL_M)

    def _write_properties(self, value: dict) -> None:
        key_id = id(value)
        self._active.add(key_id)
        buf = self._buf
        write = self._write
        names = _NAMES
        for key, item in value.items():
            head = names.get(key) if type(key) is str else None
            if head is None:
                head = _property_name(key)
            buf += head
            write(item)
        buf += _OBJECT_END
        self._active.discard(key_id)

    def _write_object(self, value: dict) -> None:
        if self._begin(value):
            return
        self._buf.append(_OBJECT_M)
        self._write_properties(value)

    def _write_ecma_array(self, value: ECMAArray) -> None:
        if self._begin(value):
            return
        self._buf.append(_ECMA_ARRAY_M)
        self._buf += _U32.pack(len(value))
        self._write_properties(value)

    def _write_typed_object(self, value: TypedObject) -> None:
        if self._begin(value):
            return
        data = _utf8_bytes(value.class_name, "class name")
        if len(data) > 0xFFFF:
            raise AMFEncodeError(f"class name of {len(data)} UTF-8 bytes exceeds the AMF0 limit of 65535")
        self._buf.append(_TYPED_OBJECT_M)
        self._buf += _U16.pack(len(data))
        self._buf += data
        self._write_properties(value)

    def _write_strict_array(self, value: list | tuple) -> None:
        if self._begin(value):
            return
        n = len(value)
        if n > 0xFFFFFFFF:
            raise AMFEncodeError(f"strict array of {n} items exceeds the AMF0 limit")
        self._buf.append(_STRICT_ARRAY_M)
        self._buf += _U32.pack(n)
        key_id = id(value)
        self._active.add(key_id)
        write = self._write
        for item in value:
            write(item)
        self._active.discard(key_id)

    def _write_date(self, value: AMFDate | _dt.datetime) -> None:
        if not isinstance(value, AMFDate):
            value = AMFDate.from_datetime(value)
        self._buf.append(_DATE_M)
        try:
            self._buf += _DATE.pack(value.ms, value.timezone)
        except struct.error as e:
            raise AMFEncodeError(f"cannot encode {value!r}: {e}") from None

    def _write_avmplus(self, value: Any) -> None:
        # Spec 3.1: AMF0 has no such type, so switch to AMF3 for this one value.
        enc = self._amf3
        if enc is None:
            enc = self._amf3 = amf3.Encoder(externalizables=self._externalizables, buffer=self._buf)
        self._buf.append(_AVMPLUS_M)
        enc._write(value)


_WRITERS: dict[type, Callable[[Encoder, Any], None]] = {
    float: Encoder._write_number,
    int: Encoder._write_int,
    bool: Encoder._write_bool,
    str: Encoder._write_str,
    type(None): Encoder._write_null,
    _Sentinel: Encoder._write_sentinel,
    dict: Encoder._write_object,
    ECMAArray: Encoder._write_ecma_array,
    TypedObject: Encoder._write_typed_object,
    list: Encoder._write_strict_array,
    tuple: Encoder._write_strict_array,
    AMFDate: Encoder._write_date,
    _dt.datetime: Encoder._write_date,
    XMLDocument: Encoder._write_xml_document,
    XML: Encoder._write_avmplus,
    ByteArray: Encoder._write_avmplus,
    bytes: Encoder._write_avmplus,
    bytearray: Encoder._write_avmplus,
    memoryview: Encoder._write_avmplus,
    VectorInt: Encoder._write_avmplus,
    VectorUInt: Encoder._write_avmplus,
    VectorDouble: Encoder._write_avmplus,
    VectorObject: Encoder._write_avmplus,
    Dictionary: Encoder._write_avmplus,
    AMF3Array: Encoder._write_avmplus,
}

# Most specific first: bool before int, the wrappers before their base types.
_SUBCLASS_ORDER = (
    bool,
    int,
    float,
    XMLDocument,
    XML,
    str,
    TypedObject,
    ECMAArray,
    dict,
    VectorInt,
    VectorUInt,
    VectorDouble,
    VectorObject,
    list,
    tuple,
    AMFDate,
    _dt.datetime,
    ByteArray,
    bytes,
    bytearray,
    memoryview,
    Dictionary,
    AMF3Array,
)


def _writer_for_subclass(value: Any) -> Callable[[Encoder, Any], None]:
    for cls in _SUBCLASS_ORDER:
        if isinstance(value, cls):
            return _WRITERS[cls]
    raise AMFEncodeError(f"cannot encode a {type(value).__name__} value in AMF0")


def encode(*values: Any, references: bool = True, externalizables: Iterable[amf3.Externalizable] = ()) -> bytes:
    """AMF0 bytes of ``values`` in order, sharing one reference context (one message body)."""
    encoder = Encoder(references=references, externalizables=externalizables)
    write = encoder._write
    try:
        for value in values:
            write(value)
    except RecursionError:
        raise AMFEncodeError("value nested too deeply to encode") from None
    return encoder.getvalue()


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    externalizables: Iterable[amf3.Externalizable] = (),
) -> list:
    """Every AMF0 value in ``data``, in order; the data must end exactly after the last one."""
    return Decoder(data, max_depth=max_depth, max_elements=max_elements, externalizables=externalizables).read_all()


def decode_value(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    externalizables: Iterable[amf3.Externalizable] = (),
) -> tuple[Any, int]:
    """``(value, offset after it)`` for the AMF0 value at ``offset``, with a fresh reference context.

    Use a ``Decoder`` when later values may refer back to earlier ones.
    """
    decoder = Decoder(data, offset, max_depth=max_depth, max_elements=max_elements, externalizables=externalizables)
    return decoder.read_value(), decoder.offset
