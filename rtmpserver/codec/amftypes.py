"""Python values for the AMF types that have no exact built-in counterpart.

Shared by ``amf0`` and ``amf3`` so that a value decoded from one encoding can be written in the
other (an AMF0 command may switch to AMF3 mid-message, AMF0 spec section 3.1).  The full mapping
between Python and AMF is documented in ``rtmpserver.codec.amf0`` and ``rtmpserver.codec.amf3``.

Two kinds of wrapper live here:

- wrappers that only choose an encoding (``ECMAArray``, ``XMLDocument``, ``XML``, ``ByteArray``)
  compare equal to their base type, because the content is all there is;
- wrappers that carry more than their base type (``TypedObject``'s class name, a vector's
  ``fixed`` flag, ``AMF3Array``'s two parts, ``Dictionary``'s non-hashable keys, ``AMFDate``'s
  time zone) compare equal only to the same wrapper with the same extra data.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "UNDEFINED",
    "UNSUPPORTED",
    "ECMAArray",
    "TypedObject",
    "AMF3Array",
    "XMLDocument",
    "XML",
    "AMFDate",
    "ByteArray",
    "VectorInt",
    "VectorUInt",
    "VectorDouble",
    "VectorObject",
    "Dictionary",
]


class _Sentinel:
    """A named singleton; falsy like None because ActionScript treats undefined as false."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        # Pickle and copy by name, so the singleton stays a singleton.
        return self._name

    def __copy__(self) -> _Sentinel:
        return self

    def __deepcopy__(self, memo: dict) -> _Sentinel:
        return self


#: ActionScript ``undefined`` (AMF0 marker 0x06, AMF3 marker 0x00); ``None`` is ``null``.
UNDEFINED = _Sentinel("UNDEFINED")
#: AMF0 "unsupported" marker 0x0D (AMF0 spec 2.15), kept so such bytes re-encode unchanged.
UNSUPPORTED = _Sentinel("UNSUPPORTED")


class ECMAArray(dict):
    """An AMF0 ECMA array (associative array) rather than an anonymous object.

    FFmpeg and FMLE send ``onMetaData`` as an ECMA array; a server that relays metadata should
    hand it on in the form it arrived, so the distinction survives a decode/encode round trip.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ECMAArray({dict.__repr__(self)})"


class TypedObject(dict):
    """An object with a class alias (AMF0 typed object 0x10, AMF3 object with a class name).

    The members are the dict items.  ``sealed_names`` and ``dynamic`` describe the AMF3 traits
    the object was (or should be) written with; they do not take part in equality.  With
    ``sealed_names=None`` the AMF3 encoder writes every member as sealed and the object as not
    dynamic, which is how an ActionScript class instance is serialized.
    """

    __slots__ = ("class_name", "sealed_names", "dynamic")

    def __init__(
        self,
        class_name: str,
        members: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        /,
        *,
        sealed_names: Iterable[str] | None = None,
        dynamic: bool = False,
    ) -> None:
        dict.__init__(self, members)
        self.class_name = class_name
        self.sealed_names = None if sealed_names is None else tuple(sealed_names)
        self.dynamic = dynamic

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedObject):
            return self.class_name == other.class_name and dict.__eq__(self, other)
        if isinstance(other, dict):
            return False
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TypedObject({self.class_name!r}, {dict.__repr__(self)})"


class AMF3Array:
    """An AMF3 array with an associative part (AMF3 spec 3.11).

    An AMF3 array with only a dense part decodes to a plain ``list``; this class exists for the
    arrays that also carry string keys, which a list cannot hold.
    """

    __slots__ = ("dense", "assoc")

    def __init__(self, dense: Iterable[Any] = (), assoc: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self.dense: list = list(dense)
        self.assoc: dict = dict(assoc)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AMF3Array):
            return self.dense == other.dense and self.assoc == other.assoc
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AMF3Array({self.dense!r}, {self.assoc!r})"


class XMLDocument(str):
    """Legacy ``flash.xml.XMLDocument`` text (AMF0 marker 0x0F, AMF3 marker 0x07)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"XMLDocument({str.__repr__(self)})"


class XML(str):
    """E4X ``XML`` text (AMF3 marker 0x0B; AMF0 has no such type and switches to AMF3)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"XML({str.__repr__(self)})"


class ByteArray(bytes):
    """``flash.utils.ByteArray`` (AMF3 marker 0x0C).

    The encoders also accept plain ``bytes``/``bytearray``; the decoder always returns this type.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ByteArray({bytes.__repr__(self)})"


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


@dataclass(frozen=True, slots=True)
class AMFDate:
    """A date as it travels: milliseconds since the Unix epoch (UTC) as a double.

    ``timezone`` is the AMF0 S16 field (AMF0 spec 2.13, "reserved, should be 0"); it is kept so
    that bytes from peers that fill it in re-encode unchanged.  AMF3 dates have no such field.
    """

    ms: float
    timezone: int = 0

    def to_datetime(self) -> _dt.datetime:
        """Aware UTC datetime; ValueError when the date is NaN or outside datetime's range."""
        if not math.isfinite(self.ms):
            raise ValueError(f"AMF date {self.ms!r} has no datetime equivalent")
        try:
            return _EPOCH + _dt.timedelta(milliseconds=self.ms)
        except OverflowError:
            raise ValueError(f"AMF date {self.ms!r} ms is outside the datetime range") from None

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> AMFDate:
        """A naive datetime is taken to be UTC, like ActionScript's ``Date.UTC``."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return cls((value - _EPOCH) // _dt.timedelta(microseconds=1) / 1000.0)


class _Vector(list):
    """An AMF3 ``Vector.<T>`` (AMF3 spec 3.15); ``fixed`` is ActionScript's fixed-length flag."""

    __slots__ = ("fixed",)

    def __init__(self, items: Iterable[Any] = (), fixed: bool = False) -> None:
        list.__init__(self, items)
        self.fixed = fixed

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return type(other) is type(self) and self._extra() == other._extra() and list.__eq__(self, other)  # type: ignore[attr-defined]
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def _extra(self) -> tuple:
        return (self.fixed,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list.__repr__(self)}, fixed={self.fixed!r})"


class VectorInt(_Vector):
    """``Vector.<int>``: signed 32-bit items."""

    __slots__ = ()


class VectorUInt(_Vector):
    """``Vector.<uint>``: unsigned 32-bit items."""

    __slots__ = ()


class VectorDouble(_Vector):
    """``Vector.<Number>``: double items."""

    __slots__ = ()


class VectorObject(_Vector):
    """``Vector.<T>`` of objects; ``type_name`` is T's class name, ``"*"`` for any type."""

    __slots__ = ("type_name",)

    def __init__(self, items: Iterable[Any] = (), fixed: bool = False, type_name: str = "*") -> None:
        _Vector.__init__(self, items, fixed)
        self.type_name = type_name

    def _extra(self) -> tuple:
        return (self.fixed, self.type_name)

    def __repr__(self) -> str:
        return f"VectorObject({list.__repr__(self)}, fixed={self.fixed!r}, type_name={self.type_name!r})"


class Dictionary:
    """``flash.utils.Dictionary`` (AMF3 spec 3.16).

    Its keys may be objects (dicts, lists), which Python cannot hash, so the entries are kept as
    an ordered list of ``(key, value)`` pairs in ``pairs``.
    """

    __slots__ = ("pairs", "weak_keys")

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = (), weak_keys: bool = False) -> None:
        if isinstance(items, Mapping):
            items = items.items()
        self.pairs: list[tuple[Any, Any]] = [(k, v) for k, v in items]
        self.weak_keys = weak_keys

    def __len__(self) -> int:
        return len(self.pairs)

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dictionary):
            return self.weak_keys == other.weak_keys and self.pairs == other.pairs
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Dictionary({self.pairs!r}, weak_keys={self.weak_keys!r})"
