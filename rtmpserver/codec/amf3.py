"""AMF3 encoder and decoder (Adobe "AMF 3 Specification", January 2013), sans-IO.

RTMP carries AMF3 in type 15/16/17 messages and after the AMF0 AVM+ marker 0x11 (AMF0 spec 3.1),
which is how Flash Player sends command arguments once ``objectEncoding`` is 3.

Python value mapping (types without a built-in counterpart live in ``amftypes``)::

    AMF3                          decodes to                 encoded from
    undefined       0x00          UNDEFINED                  UNDEFINED
    null            0x01          None                       None
    false/true      0x02/0x03     bool                       bool
    integer         0x04          int (signed 29-bit)        int in [-2**28, 2**28 - 1]
    double          0x05          float                      float; int outside that range
    string          0x06          str                        str
    XMLDocument     0x07          XMLDocument (str)          XMLDocument
    date            0x08          AMFDate (timezone 0)       AMFDate, datetime.datetime
    array           0x09          list (dense part only)     list, tuple
                                  AMF3Array(dense, assoc)    AMF3Array, ECMAArray (assoc only)
    object          0x0A          dict (anonymous)           dict
                                  TypedObject (class alias)  TypedObject
                                  reader's value             a registered Externalizable type
    XML             0x0B          XML (str)                  XML
    ByteArray       0x0C          ByteArray (bytes)          ByteArray, bytes, bytearray, memoryview
    Vector.<int>    0x0D          VectorInt                  VectorInt
    Vector.<uint>   0x0E          VectorUInt                 VectorUInt
    Vector.<Number> 0x0F          VectorDouble               VectorDouble
    Vector.<T>      0x10          VectorObject               VectorObject
    Dictionary      0x11          Dictionary                 Dictionary

An ``int`` that a double cannot hold exactly raises ``AMFEncodeError`` rather than being rounded.
An anonymous object with sealed members (which no Flash class produces) decodes to a plain dict
and is written back as dynamic.  A ``TypedObject`` remembers the traits it was read with
(``sealed_names``, ``dynamic``) so that it is written back with the same traits.

References (spec 2.2, 3.8, 3.12): strings are referenced by value, objects by identity (the same
Python object written twice becomes a reference, which is also how cycles are written), traits
by (class name, dynamic, sealed names).  The decoder resolves a reference to an object that is
still being read (a cycle) to that very object.

Bounds: every length and count is checked against the bytes actually left before anything is
allocated, every reference index against its table; ``max_depth`` (default 64) bounds nesting
and ``max_elements`` (default 100 000) the number of values one decode may produce, so a
hostile message cannot expand into much more memory than it occupies.  Every problem with the
input raises ``AMFDecodeError`` carrying the offset where it was found.

Externalizable objects (``IExternalizable``, spec 3.12) serialize their own body in a format
only their class knows; they can be read only when an ``Externalizable`` reader/writer pair is
registered for their class alias, otherwise decoding stops with a clear error.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from rtmpserver.codec._reader import DEFAULT_MAX_DEPTH, DEFAULT_MAX_ELEMENTS, AMFReader
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
    "INTEGER_MIN",
    "INTEGER_MAX",
    "Externalizable",
    "Decoder",
    "Encoder",
    "encode",
    "decode",
    "decode_value",
    "encode_u29",
]


#: Range of the AMF3 integer type: a U29 read as two's complement (spec 3.6).
INTEGER_MIN = -(1 << 28)
INTEGER_MAX = (1 << 28) - 1

_U29_MAX = (1 << 29) - 1
# Lengths and counts share their U29 with a 1-bit flag (spec 1.3.1, 3.8 ...).
_LENGTH_MAX = (1 << 28) - 1

_DOUBLE = struct.Struct(">d")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")

_UNDEFINED_M = 0x00
_NULL_M = 0x01
_FALSE_M = 0x02
_TRUE_M = 0x03
_INTEGER_M = 0x04
_DOUBLE_M = 0x05
_STRING_M = 0x06
_XML_DOC_M = 0x07
_DATE_M = 0x08
_ARRAY_M = 0x09
_OBJECT_M = 0x0A
_XML_M = 0x0B
_BYTE_ARRAY_M = 0x0C
_VECTOR_INT_M = 0x0D
_VECTOR_UINT_M = 0x0E
_VECTOR_DOUBLE_M = 0x0F
_VECTOR_OBJECT_M = 0x10
_DICTIONARY_M = 0x11


class Externalizable(NamedTuple):
    """How to read and write one ``IExternalizable`` class alias.

    ``read(decoder)`` is called after the object's traits and returns the value; it reads the
    body with the decoder's ``read_*`` methods (the counterparts of ActionScript's IDataInput,
    ``read_value`` being ``readObject``).  ``write(encoder, value)`` is called for values whose
    type is ``python_type`` (or a subclass) and writes the body with the ``write_*`` methods.
    """

    class_name: str
    python_type: type
    read: Callable[[Decoder], Any]
    write: Callable[[Encoder, Any], None]


class _Traits(NamedTuple):
    class_name: str
    sealed: tuple[str, ...]
    dynamic: bool
    externalizable: bool


# Stands in the object table for an externalizable object whose reader has not returned yet.
_PENDING = object()


def encode_u29(value: int) -> bytes:
    """The variable-length U29 form of ``value`` (0 <= value < 2**29), spec 1.3.1."""
    if value < 0x80:
        if value < 0:
            raise AMFEncodeError(f"U29 cannot hold the negative value {value}")
        return bytes((value,))
    if value < 0x4000:
        return bytes((value >> 7 | 0x80, value & 0x7F))
    if value < 0x200000:
        return bytes((value >> 14 | 0x80, (value >> 7) & 0x7F | 0x80, value & 0x7F))
    if value <= _U29_MAX:
        return bytes((value >> 22 | 0x80, (value >> 15) & 0x7F | 0x80, (value >> 8) & 0x7F | 0x80, value & 0xFF))
    raise AMFEncodeError(f"U29 cannot hold {value} (maximum {_U29_MAX})")


_SMALL_U29 = [bytes((i,)) for i in range(0x80)]


class Decoder(AMFReader):
    """Reads AMF3 values from ``data`` starting at ``offset``, keeping the three reference tables.

    One Decoder is one reference context: values read one after another share their string,
    object and traits tables, as the values of one RTMP message do.  After an ``AMFDecodeError``
    the decoder's position and tables are unspecified; start a new one.
    """

    _FORMAT = "AMF3"

    __slots__ = ("_strings", "_objects", "_traits", "_ext")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        externalizables: Iterable[Externalizable] = (),
    ) -> None:
        super().__init__(data, offset, max_depth=max_depth, max_elements=max_elements)
        self._strings: list[str] = []
        self._objects: list[Any] = []
        self._traits: list[_Traits] = []
        self._ext = {e.class_name: e for e in externalizables}

    # -- IDataInput counterparts, for Externalizable readers -----------------------------------

    def read_bytes(self, n: int) -> bytes:
        off = self._take(n, f"{n} raw bytes")
        return self._data[off : off + n]

    def read_u8(self) -> int:
        return self._data[self._take(1, "a byte")]

    def read_u16(self) -> int:
        return _U16.unpack_from(self._data, self._take(2, "a U16"))[0]

    def read_u32(self) -> int:
        return _U32.unpack_from(self._data, self._take(4, "a U32"))[0]

    def read_i32(self) -> int:
        return _I32.unpack_from(self._data, self._take(4, "an S32"))[0]

    def read_double(self) -> float:
        return _DOUBLE.unpack_from(self._data, self._take(8, "a double"))[0]

    def read_utf(self) -> str:
        """U16-length-prefixed UTF-8, like IDataInput.readUTF."""
        return self._utf8(self.read_u16(), "UTF string")

    def read_u29(self) -> int:
        return self._u29()

    # -- primitives ---------------------------------------------------------------------------

    def _u29(self) -> int:
        # Spec 1.3.1: up to three 7-bit groups with a continuation bit, then a full 8-bit byte.
        data = self._data
        off = self.offset
        end = self._end
        if off < end:
            b = data[off]
            if b < 0x80:
                self.offset = off + 1
                return b
        start = off
        n = 0
        for _ in range(3):
            if off >= end:
                raise AMFDecodeError(f"truncated U29 at offset {start}")
            b = data[off]
            off += 1
            if b < 0x80:
                self.offset = off
                return n << 7 | b
            n = n << 7 | (b & 0x7F)
        if off >= end:
            raise AMFDecodeError(f"truncated U29 at offset {start}")
        self.offset = off + 1
        return n << 8 | data[off]

    def _read_string(self) -> str:
        start = self.offset
        u = self._u29()
        if not u & 1:
            idx = u >> 1
            strings = self._strings
            if idx >= len(strings):
                raise AMFDecodeError(f"string reference {idx} at offset {start}, but only {len(strings)} strings were sent")
            return strings[idx]
        n = u >> 1
        if not n:
            return ""  # spec 3.8: the empty string is never sent by reference
        s = self._utf8(n, "string")
        self._strings.append(s)
        return s

    def _object_ref(self, u: int, start: int) -> Any:
        idx = u >> 1
        objects = self._objects
        if idx >= len(objects):
            raise AMFDecodeError(f"object reference {idx} at offset {start}, but only {len(objects)} objects were sent")
        obj = objects[idx]
        if obj is _PENDING:
            raise AMFDecodeError(
                f"object reference {idx} at offset {start} points into an externalizable object still being read"
            )
        return obj

    # -- values ---------------------------------------------------------------------------------

    def _read(self) -> Any:
        off = self.offset
        if off >= self._end:
            raise AMFDecodeError(f"truncated AMF3 data: type marker expected at offset {off}")
        marker = self._data[off]
        self.offset = off + 1
        self._budget -= 1
        if self._budget < 0:
            raise AMFDecodeError(f"more than {self.max_elements} AMF values in one message (offset {off})")
        if marker > _DICTIONARY_M:
            raise AMFDecodeError(f"unknown AMF3 type marker 0x{marker:02x} at offset {off}")
        return _READERS[marker](self)

    def _read_undefined(self) -> Any:
        return UNDEFINED

    def _read_null(self) -> None:
        return None

    def _read_false(self) -> bool:
        return False

    def _read_true(self) -> bool:
        return True

    def _read_integer(self) -> int:
        u = self._u29()
        return u - (1 << 29) if u & 0x10000000 else u

    def _read_double(self) -> float:
        return _DOUBLE.unpack_from(self._data, self._take(8, "double"))[0]

    def _read_string_value(self) -> str:
        return self._read_string()

    def _read_text(self, cls: type) -> Any:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        value = cls(self._utf8(u >> 1, cls.__name__))
        self._objects.append(value)
        return value

    def _read_xml_document(self) -> XMLDocument:
        return self._read_text(XMLDocument)

    def _read_xml(self) -> XML:
        return self._read_text(XML)

    def _read_date(self) -> AMFDate:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        value = AMFDate(_DOUBLE.unpack_from(self._data, self._take(8, "date"))[0])
        self._objects.append(value)
        return value

    def _read_array(self) -> list | AMF3Array:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        n = u >> 1
        # Keys only touch the string table, so the array can be registered after the first key.
        key = self._read_string()
        self._enter(start)
        if key:
            array = AMF3Array()
            self._objects.append(array)
            assoc = array.assoc
            read = self._read
            read_key = self._read_string
            while key:
                assoc[key] = read()
                key = read_key()
            dense = array.dense
        else:
            dense = []
            self._objects.append(dense)
            array = dense
        self._count(n, 1, "array", start)
        read = self._read
        append = dense.append
        for _ in range(n):
            append(read())
        self._depth -= 1
        return array

    def _read_traits(self, u: int, start: int) -> _Traits:
        if not u & 2:
            idx = u >> 2
            traits = self._traits
            if idx >= len(traits):
                raise AMFDecodeError(f"traits reference {idx} at offset {start}, but only {len(traits)} traits were sent")
            return traits[idx]
        if u & 4:
            t = _Traits(self._read_string(), (), False, True)
        else:
            count = u >> 4
            # Each sealed member costs at least one byte for its name and one for its value.
            self._count(count, 2, "object traits", start)
            class_name = self._read_string()
            read_key = self._read_string
            t = _Traits(class_name, tuple([read_key() for _ in range(count)]), bool(u & 8), False)
        self._traits.append(t)
        return t

    def _read_object(self) -> Any:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        traits = self._read_traits(u, start)
        self._enter(start)
        if traits.externalizable:
            ext = self._ext.get(traits.class_name)
            if ext is None:
                raise AMFDecodeError(
                    f"object at offset {start} is an externalizable {traits.class_name!r}, whose body only that "
                    "class can read; no amf3.Externalizable is registered for it"
                )
            slot = len(self._objects)
            self._objects.append(_PENDING)
            value = ext.read(self)
            self._objects[slot] = value
            self._depth -= 1
            return value
        obj: dict
        if traits.class_name:
            obj = TypedObject(traits.class_name, sealed_names=traits.sealed, dynamic=traits.dynamic)
        else:
            obj = {}
        self._objects.append(obj)
        read = self._read
        sealed = traits.sealed
        if sealed:
            self._count(len(sealed), 1, "sealed members", start)
            for name in sealed:
                obj[name] = read()
        if traits.dynamic:
            read_key = self._read_string
            key = read_key()
            while key:
                obj[key] = read()
                key = read_key()
        self._depth -= 1
        return obj

    def _read_byte_array(self) -> ByteArray:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        n = u >> 1
        off = self._take(n, "ByteArray")
        value = ByteArray(self._data[off : off + n])
        self._objects.append(value)
        return value

    def _read_number_vector(self, cls: type, code: str, size: int) -> Any:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        n = u >> 1
        fixed = self._data[self._take(1, "vector fixed flag")]
        off = self._take(n * size, cls.__name__)
        self._spend(n, start)
        value = cls(struct.unpack_from(f">{n}{code}", self._data, off), bool(fixed))
        self._objects.append(value)
        return value

    def _read_vector_int(self) -> VectorInt:
        return self._read_number_vector(VectorInt, "i", 4)

    def _read_vector_uint(self) -> VectorUInt:
        return self._read_number_vector(VectorUInt, "I", 4)

    def _read_vector_double(self) -> VectorDouble:
        return self._read_number_vector(VectorDouble, "d", 8)

    def _read_vector_object(self) -> VectorObject:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        n = u >> 1
        fixed = self._data[self._take(1, "vector fixed flag")]
        type_name = self._read_string()
        self._count(n, 1, "Vector.<Object>", start)
        vector = VectorObject(fixed=bool(fixed), type_name=type_name)
        self._objects.append(vector)
        self._enter(start)
        read = self._read
        append = vector.append
        for _ in range(n):
            append(read())
        self._depth -= 1
        return vector

    def _read_dictionary(self) -> Dictionary:
        start = self.offset - 1
        u = self._u29()
        if not u & 1:
            return self._object_ref(u, start)
        n = u >> 1
        weak = self._data[self._take(1, "dictionary weak-keys flag")]
        self._count(n, 2, "Dictionary", start)
        d = Dictionary(weak_keys=bool(weak))
        self._objects.append(d)
        self._enter(start)
        read = self._read
        append = d.pairs.append
        for _ in range(n):
            key = read()
            append((key, read()))
        self._depth -= 1
        return d


_READERS = (
    Decoder._read_undefined,
    Decoder._read_null,
    Decoder._read_false,
    Decoder._read_true,
    Decoder._read_integer,
    Decoder._read_double,
    Decoder._read_string_value,
    Decoder._read_xml_document,
    Decoder._read_date,
    Decoder._read_array,
    Decoder._read_object,
    Decoder._read_xml,
    Decoder._read_byte_array,
    Decoder._read_vector_int,
    Decoder._read_vector_uint,
    Decoder._read_vector_double,
    Decoder._read_vector_object,
    Decoder._read_dictionary,
)


def _utf8_bytes(s: str, what: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise AMFEncodeError(f"{what} {s[:40]!r} cannot be encoded as UTF-8: {e.reason}") from None


def _exact_double(value: int) -> float:
    try:
        f = float(value)
    except OverflowError:
        raise AMFEncodeError(f"integer {value} is too large for an AMF number") from None
    if int(f) != value:
        raise AMFEncodeError(f"integer {value} has no exact AMF number (double) representation")
    return f


class Encoder:
    """Writes AMF3 values into one buffer, keeping the three reference tables across values.

    ``buffer`` lets the AMF0 encoder share its output (AVM+ switches write in place).  After an
    ``AMFEncodeError`` the output is incomplete; start a new encoder.
    """

    __slots__ = ("_buf", "_strings", "_objects", "_keep", "_traits", "_ext")

    def __init__(self, *, externalizables: Iterable[Externalizable] = (), buffer: bytearray | None = None) -> None:
        self._buf = bytearray() if buffer is None else buffer
        self._strings: dict[str, int] = {}
        # id(object) -> index; ``_keep`` holds the objects so their ids cannot be reused meanwhile.
        self._objects: dict[int, int] = {}
        self._keep: list[Any] = []
        self._traits: dict[tuple, int] = {}
        self._ext = {e.python_type: e for e in externalizables}

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def write_value(self, value: Any) -> None:
        """Append ``value`` (``writeObject`` for externalizable writers)."""
        try:
            self._write(value)
        except RecursionError:
            raise AMFEncodeError("value nested too deeply to encode") from None

    # -- IDataOutput counterparts, for Externalizable writers ----------------------------------

    def write_bytes(self, data: bytes) -> None:
        self._buf += data

    def write_u8(self, value: int) -> None:
        self._pack(_U8, value)

    def write_u16(self, value: int) -> None:
        self._pack(_U16, value)

    def write_u32(self, value: int) -> None:
        self._pack(_U32, value)

    def write_i32(self, value: int) -> None:
        self._pack(_I32, value)

    def write_double(self, value: float) -> None:
        self._pack(_DOUBLE, value)

    def write_utf(self, value: str) -> None:
        data = _utf8_bytes(value, "string")
        self._pack(_U16, len(data))
        self._buf += data

    def write_u29(self, value: int) -> None:
        self._buf += encode_u29(value)

    def _pack(self, s: struct.Struct, value: Any) -> None:
        try:
            self._buf += s.pack(value)
        except struct.error as e:
            raise AMFEncodeError(f"cannot pack {value!r}: {e}") from None

    # -- values ---------------------------------------------------------------------------------

    def _write(self, value: Any) -> None:
        if self._ext:
            for cls in type(value).__mro__:
                ext = self._ext.get(cls)
                if ext is not None:
                    self._write_externalizable(ext, value)
                    return
        writer = _WRITERS.get(type(value))
        if writer is None:
            writer = _writer_for_subclass(value)
        writer(self, value)

    def _write_string(self, s: str) -> None:
        if not s:
            self._buf.append(0x01)
            return
        strings = self._strings
        idx = strings.get(s)
        if idx is not None:
            self._buf += encode_u29(idx << 1)
            return
        data = _utf8_bytes(s, "string")
        if len(data) > _LENGTH_MAX:
            raise AMFEncodeError(f"string of {len(data)} UTF-8 bytes exceeds the AMF3 limit of {_LENGTH_MAX}")
        strings[s] = len(strings)
        self._buf += encode_u29(len(data) << 1 | 1)
        self._buf += data

    def _write_key(self, key: Any, what: str) -> None:
        if not isinstance(key, str):
            raise AMFEncodeError(f"{what} key {key!r} is not a string")
        if not key:
            # The empty string ends the dynamic members / associative part (spec 3.11, 3.12).
            raise AMFEncodeError(f"{what} cannot have an empty-string key in AMF3")
        self._write_string(key)

    def _reference(self, value: Any) -> bool:
        """Write a reference and return True if ``value`` was written before; else register it."""
        objects = self._objects
        key = id(value)
        idx = objects.get(key)
        if idx is not None:
            self._buf += encode_u29(idx << 1)
            return True
        objects[key] = len(self._keep)
        self._keep.append(value)
        return False

    def _write_length(self, n: int, what: str) -> None:
        if n > _LENGTH_MAX:
            raise AMFEncodeError(f"{what} of {n} items exceeds the AMF3 limit of {_LENGTH_MAX}")
        self._buf += encode_u29(n << 1 | 1)

    def _write_undefined(self, value: _Sentinel) -> None:
        if value is UNDEFINED:
            self._buf.append(_UNDEFINED_M)
        elif value is UNSUPPORTED:
            raise AMFEncodeError("AMF3 has no 'unsupported' type (it is AMF0 only)")
        else:  # pragma: no cover - only the two sentinels exist
            raise AMFEncodeError(f"cannot encode {value!r}")

    def _write_null(self, value: None) -> None:
        self._buf.append(_NULL_M)

    def _write_bool(self, value: bool) -> None:
        self._buf.append(_TRUE_M if value else _FALSE_M)

    def _write_int(self, value: int) -> None:
        if INTEGER_MIN <= value <= INTEGER_MAX:
            self._buf.append(_INTEGER_M)
            self._buf += _SMALL_U29[value] if 0 <= value < 0x80 else encode_u29(value & _U29_MAX)
        else:
            self._buf.append(_DOUBLE_M)
            self._buf += _DOUBLE.pack(_exact_double(value))

    def _write_float(self, value: float) -> None:
        self._buf.append(_DOUBLE_M)
        self._buf += _DOUBLE.pack(value)

    def _write_str(self, value: str) -> None:
        self._buf.append(_STRING_M)
        self._write_string(value)

    def _write_text(self, marker: int, value: str) -> None:
        self._buf.append(marker)
        if self._reference(value):
            return
        data = _utf8_bytes(value, type(value).__name__)
        self._write_length(len(data), type(value).__name__)
        self._buf += data

    def _write_xml_document(self, value: XMLDocument) -> None:
        self._write_text(_XML_DOC_M, value)

    def _write_xml(self, value: XML) -> None:
        self._write_text(_XML_M, value)

    def _write_date(self, value: AMFDate | _dt.datetime) -> None:
        self._buf.append(_DATE_M)
        if self._reference(value):
            return
        ms = value.ms if isinstance(value, AMFDate) else AMFDate.from_datetime(value).ms
        self._buf.append(0x01)
        self._pack(_DOUBLE, ms)

    def _write_list(self, value: list | tuple) -> None:
        self._buf.append(_ARRAY_M)
        if self._reference(value):
            return
        self._write_length(len(value), "array")
        self._buf.append(0x01)  # empty associative part
        write = self._write
        for item in value:
            write(item)

    def _write_amf3_array(self, value: AMF3Array) -> None:
        self._write_mixed_array(value, value.dense, value.assoc)

    def _write_ecma_array(self, value: ECMAArray) -> None:
        self._write_mixed_array(value, (), value)

    def _write_mixed_array(self, value: Any, dense: Any, assoc: dict) -> None:
        self._buf.append(_ARRAY_M)
        if self._reference(value):
            return
        self._write_length(len(dense), "array")
        write = self._write
        for key, item in assoc.items():
            self._write_key(key, "associative array")
            write(item)
        self._buf.append(0x01)
        for item in dense:
            write(item)

    def _write_traits(self, class_name: str, sealed: tuple, dynamic: bool, externalizable: bool) -> None:
        key = (class_name, dynamic, sealed, externalizable)
        idx = self._traits.get(key)
        if idx is not None:
            self._buf += encode_u29(idx << 2 | 0x01)
            return
        self._traits[key] = len(self._traits)
        if externalizable:
            self._buf.append(0x07)
            self._write_string(class_name)
            return
        if len(sealed) >= 1 << 25:
            raise AMFEncodeError(f"{len(sealed)} sealed members exceed the AMF3 traits limit")
        self._buf += encode_u29(len(sealed) << 4 | (0x08 if dynamic else 0) | 0x03)
        self._write_string(class_name)
        for name in sealed:
            if not isinstance(name, str):
                raise AMFEncodeError(f"sealed member name {name!r} of {class_name!r} is not a string")
            self._write_string(name)

    def _write_dict(self, value: dict) -> None:
        self._buf.append(_OBJECT_M)
        if self._reference(value):
            return
        self._write_traits("", (), True, False)
        write = self._write
        for key, item in value.items():
            self._write_key(key, "object")
            write(item)
        self._buf.append(0x01)

    def _write_typed_object(self, value: TypedObject) -> None:
        self._buf.append(_OBJECT_M)
        if self._reference(value):
            return
        if value.sealed_names is None:
            sealed, dynamic = tuple(value), False
        else:
            sealed, dynamic = value.sealed_names, value.dynamic
        self._write_traits(value.class_name, sealed, dynamic, False)
        write = self._write
        for name in sealed:
            try:
                item = value[name]
            except KeyError:
                raise AMFEncodeError(f"{value.class_name!r} object has no value for sealed member {name!r}") from None
            write(item)
        if len(value) == len(sealed) and value.sealed_names is None:
            extra: list = []  # every member was written as sealed
        else:
            names = set(sealed)
            extra = [key for key in value if key not in names]
        if dynamic:
            for key in extra:
                self._write_key(key, f"{value.class_name!r} object")
                write(value[key])
            self._buf.append(0x01)
        elif extra:
            raise AMFEncodeError(
                f"{value.class_name!r} object is not dynamic but has members {extra!r} outside its sealed traits"
            )

    def _write_externalizable(self, ext: Externalizable, value: Any) -> None:
        self._buf.append(_OBJECT_M)
        if self._reference(value):
            return
        self._write_traits(ext.class_name, (), False, True)
        ext.write(self, value)

    def _write_bytes(self, value: bytes | bytearray | memoryview) -> None:
        self._buf.append(_BYTE_ARRAY_M)
        if self._reference(value):
            return
        data = value if isinstance(value, bytes) else bytes(value)
        self._write_length(len(data), "ByteArray")
        self._buf += data

    def _write_number_vector(self, marker: int, code: str, value: list) -> None:
        self._buf.append(marker)
        if self._reference(value):
            return
        n = len(value)
        self._write_length(n, type(value).__name__)
        self._buf.append(1 if value.fixed else 0)  # type: ignore[attr-defined]
        try:
            self._buf += struct.pack(f">{n}{code}", *value)
        except struct.error as e:
            raise AMFEncodeError(f"{type(value).__name__} item out of range or of the wrong type: {e}") from None

    def _write_vector_int(self, value: VectorInt) -> None:
        self._write_number_vector(_VECTOR_INT_M, "i", value)

    def _write_vector_uint(self, value: VectorUInt) -> None:
        self._write_number_vector(_VECTOR_UINT_M, "I", value)

    def _write_vector_double(self, value: VectorDouble) -> None:
        self._write_number_vector(_VECTOR_DOUBLE_M, "d", value)

    def _write_vector_object(self, value: VectorObject) -> None:
        self._buf.append(_VECTOR_OBJECT_M)
        if self._reference(value):
            return
        self._write_length(len(value), "VectorObject")
        self._buf.append(1 if value.fixed else 0)
        self._write_string(value.type_name)
        write = self._write
        for item in value:
            write(item)

    def _write_dictionary(self, value: Dictionary) -> None:
        self._buf.append(_DICTIONARY_M)
        if self._reference(value):
            return
        self._write_length(len(value.pairs), "Dictionary")
        self._buf.append(1 if value.weak_keys else 0)
        write = self._write
        for key, item in value.pairs:
            write(key)
            write(item)


_WRITERS: dict[type, Callable[[Encoder, Any], None]] = {
    _Sentinel: Encoder._write_undefined,
    type(None): Encoder._write_null,
    bool: Encoder._write_bool,
    int: Encoder._write_int,
    float: Encoder._write_float,
    str: Encoder._write_str,
    XMLDocument: Encoder._write_xml_document,
    XML: Encoder._write_xml,
    AMFDate: Encoder._write_date,
    _dt.datetime: Encoder._write_date,
    list: Encoder._write_list,
    tuple: Encoder._write_list,
    AMF3Array: Encoder._write_amf3_array,
    ECMAArray: Encoder._write_ecma_array,
    dict: Encoder._write_dict,
    TypedObject: Encoder._write_typed_object,
    bytes: Encoder._write_bytes,
    bytearray: Encoder._write_bytes,
    memoryview: Encoder._write_bytes,
    ByteArray: Encoder._write_bytes,
    VectorInt: Encoder._write_vector_int,
    VectorUInt: Encoder._write_vector_uint,
    VectorDouble: Encoder._write_vector_double,
    VectorObject: Encoder._write_vector_object,
    Dictionary: Encoder._write_dictionary,
}

# Most specific first: bool before int, the str/dict/list wrappers before their base types.
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
    AMF3Array,
    AMFDate,
    _dt.datetime,
    bytes,
    bytearray,
    memoryview,
    Dictionary,
)


def _writer_for_subclass(value: Any) -> Callable[[Encoder, Any], None]:
    for cls in _SUBCLASS_ORDER:
        if isinstance(value, cls):
            return _WRITERS[cls]
    raise AMFEncodeError(f"cannot encode a {type(value).__name__} value in AMF3")


def encode(value: Any, *, externalizables: Iterable[Externalizable] = ()) -> bytes:
    """AMF3 bytes of one value (fresh reference tables)."""
    encoder = Encoder(externalizables=externalizables)
    encoder.write_value(value)
    return encoder.getvalue()


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    externalizables: Iterable[Externalizable] = (),
) -> Any:
    """The single AMF3 value that makes up ``data``; trailing bytes are an error."""
    decoder = Decoder(data, max_depth=max_depth, max_elements=max_elements, externalizables=externalizables)
    value = decoder.read_value()
    if not decoder.at_end:
        raise AMFDecodeError(f"{len(data) - decoder.offset} bytes left over after the AMF3 value at offset {decoder.offset}")
    return value


def decode_value(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    externalizables: Iterable[Externalizable] = (),
) -> tuple[Any, int]:
    """``(value, offset after it)`` for the AMF3 value at ``offset``, with fresh reference tables.

    Use a ``Decoder`` instead when several values must share reference tables.
    """
    decoder = Decoder(data, offset, max_depth=max_depth, max_elements=max_elements, externalizables=externalizables)
    return decoder.read_value(), decoder.offset
