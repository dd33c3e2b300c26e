"""What the AMF0 and AMF3 decoders share: the buffer, bounds-checked reads and the input bounds.

Both bound what one message may cost: ``max_depth`` (nesting) and ``max_elements`` (values in
one message, the "budget").  An AMF0 decoder hands the same buffer, depth and budget to an AMF3
decoder for AVM+ values, so the two keep these in the same fields.
"""

from __future__ import annotations

from typing import Any

from rtmpserver.errors import AMFDecodeError, LocalProtocolError

__all__ = ["AMFReader", "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_ELEMENTS"]

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ELEMENTS = 100_000


class AMFReader:
    """Base of ``amf0.Decoder`` and ``amf3.Decoder``: position, bounds and UTF-8 reads."""

    _FORMAT = "AMF"  # named in error messages

    __slots__ = ("_data", "_end", "offset", "max_depth", "max_elements", "_depth", "_budget")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if not 0 <= offset <= len(data):
            raise LocalProtocolError(f"offset {offset} outside data of {len(data)} bytes")
        self._data = data
        self._end = len(data)
        self.offset = offset
        self.max_depth = max_depth
        self.max_elements = max_elements
        self._depth = 0
        self._budget = max_elements

    @property
    def at_end(self) -> bool:
        return self.offset >= self._end

    def read_value(self) -> Any:
        """The next value; AMFDecodeError if it is malformed or the data ends inside it."""
        try:
            return self._read()
        except RecursionError:
            raise AMFDecodeError(f"{self._FORMAT} data nested too deeply for the interpreter near offset {self.offset}") from None

    def _read(self) -> Any:
        raise NotImplementedError

    # -- primitives ---------------------------------------------------------------------------

    def _take(self, n: int, what: str) -> int:
        """Advance over ``n`` bytes and return where they start (AMFDecodeError if they are not there)."""
        off = self.offset
        if n > self._end - off:
            raise AMFDecodeError(f"{what} needs {n} bytes at offset {off}, only {self._end - off} left")
        self.offset = off + n
        return off

    def _utf8(self, n: int, what: str) -> str:
        off = self._take(n, what)
        try:
            return self._data[off : off + n].decode("utf-8")
        except UnicodeDecodeError as e:
            raise AMFDecodeError(f"{what} at offset {off} is not valid UTF-8 (byte {off + e.start})") from None

    def _enter(self, start: int) -> None:
        """One level deeper (the caller decrements ``_depth`` when the value ends)."""
        self._depth += 1
        if self._depth > self.max_depth:
            raise AMFDecodeError(f"{self._FORMAT} value at offset {start} nested deeper than {self.max_depth} levels")

    def _spend(self, n: int, start: int) -> None:
        """``n`` more values read in this message."""
        self._budget -= n
        if self._budget < 0:
            raise AMFDecodeError(f"more than {self.max_elements} AMF values in one message (offset {start})")

    def _count(self, n: int, per_item: int, what: str, start: int) -> None:
        # Every item takes at least ``per_item`` bytes, so a count the input cannot hold is a lie;
        # refuse it before looping or allocating (a 10-byte message must not claim 2**28 items).
        left = self._end - self.offset
        if n * per_item > left:
            raise AMFDecodeError(f"{what} at offset {start} claims {n} items but only {left} bytes are left")
