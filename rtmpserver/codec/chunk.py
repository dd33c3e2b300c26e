"""RTMP chunk stream (RTMP 1.0 specification, section 5.3), sans-IO.

``ChunkReader`` turns any split of received bytes into complete messages; ``ChunkWriter`` turns
messages into chunk bytes with header compression.  For fan-out the writer is split in two: a
per-connection first-chunk ``header()`` (it depends on what that connection sent last on the chunk
stream) and ``continuation()``, the payload with its fmt-3 separators, which depends only on
(payload, chunk size, csid, extended timestamp) and so is produced once and shared by every player.
"""

from __future__ import annotations

import struct

from rtmpserver.errors import ChunkStreamError, LimitExceeded, LocalProtocolError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_MESSAGE_LENGTH",
    "MAX_CHUNK_SIZE",
    "CSID_CONTROL",
    "CSID_COMMAND",
    "CSID_DATA",
    "CSID_AUDIO",
    "CSID_VIDEO",
    "RawMessage",
    "ChunkReader",
    "ChunkWriter",
    "basic_header",
    "continuation",
]

DEFAULT_CHUNK_SIZE = 128
# The message length field is 24 bits, so no message (and no useful chunk) is larger (section 5.3.1.2).
MAX_MESSAGE_LENGTH = 0xFFFFFF
MAX_CHUNK_SIZE = 0xFFFFFF
_EXTENDED = 0xFFFFFF
_MASK32 = 0xFFFFFFFF

# Chunk stream ids we use when sending; the protocol only fixes 2 for control (section 5.4).
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_DATA = 5
CSID_AUDIO = 6
CSID_VIDEO = 7

# Smaller chunks of a message in flight are coalesced into one bytearray (see _InState.parts).
_COALESCE = 128

_TYPE_SET_CHUNK_SIZE = 1
_TYPE_ABORT = 2

_U32 = struct.Struct(">I")
_U56 = struct.Struct(">Q")  # timestamp (24) + length (24) + type id (8), packed in one go; first byte dropped
_SID = struct.Struct("<I")  # message stream id: little-endian (section 5.3.1.2.1)


class RawMessage:
    """One complete RTMP message as the chunk layer sees it: header fields and payload bytes."""

    __slots__ = ("csid", "timestamp", "type_id", "stream_id", "payload")

    def __init__(self, csid: int, timestamp: int, type_id: int, stream_id: int, payload: bytes) -> None:
        self.csid = csid
        self.timestamp = timestamp
        self.type_id = type_id
        self.stream_id = stream_id
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawMessage):
            return NotImplemented
        return (self.csid, self.timestamp, self.type_id, self.stream_id, self.payload) == (
            other.csid,
            other.timestamp,
            other.type_id,
            other.stream_id,
            other.payload,
        )

    def __repr__(self) -> str:
        return (
            f"RawMessage(csid={self.csid}, timestamp={self.timestamp}, type_id={self.type_id}, "
            f"stream_id={self.stream_id}, payload=<{len(self.payload)} bytes>)"
        )


class _InState:
    """What the reader remembers per chunk stream id: the last header and the message in flight."""

    __slots__ = ("timestamp", "delta", "length", "type_id", "stream_id", "ext", "parts", "remaining")

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        # The 4-byte extended timestamp field of the last fmt 0/1/2 header, or None when it had none.
        self.ext: bytes | None = None
        # Payload of the message in flight.  Pieces of at least _COALESCE bytes are kept as they
        # came; smaller ones are appended to a bytearray at the end of the list.  A piece costs
        # ~120 bytes besides its payload (object header, list slot, and at completion the buffer
        # descriptor b"".join needs), which at chunk size 1 was ~90x the payload.
        self.parts: list[bytes | bytearray] = []
        self.remaining = 0  # payload bytes still expected for the message in flight; 0 = none in flight


class ChunkReader:
    """Reassembles messages from chunks.

    Set Chunk Size and Abort take effect inside the reader as soon as they complete (the very next
    chunk may depend on them) and are also returned, so the caller can see them.

    Bounds: ``max_message_size`` (largest accepted message length), ``max_partial_bytes`` (payload
    bytes held across all incomplete messages), ``max_partial_csids`` (chunk streams with a message
    in flight).  The unparsed tail is bounded by one chunk, i.e. by the chunk size the peer set,
    which itself is bounded by ``max_message_size`` for any chunk we would wait for.

    Memory is proportional to the counted bytes whatever the chunk size: chunks of at least
    ``_COALESCE`` bytes are held as they came (~120 bytes of overhead each, so under 2x), smaller
    ones are coalesced into one ``bytearray`` (over-allocated by at most 1/8).  Incomplete
    messages thus take under ``2 * max_partial_bytes``, and completing a message briefly needs
    one more copy of it.
    """

    def __init__(
        self,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_message_size: int = MAX_MESSAGE_LENGTH,
        max_partial_bytes: int = 32 * 1024 * 1024,
        max_partial_csids: int = 64,
    ) -> None:
        if not 1 <= max_message_size <= MAX_MESSAGE_LENGTH:
            raise LocalProtocolError(f"max_message_size must be 1..{MAX_MESSAGE_LENGTH}")
        self.chunk_size = chunk_size
        self.max_message_size = max_message_size
        self.max_partial_bytes = max_partial_bytes
        self.max_partial_csids = max_partial_csids
        self.bytes_received = 0  # total bytes fed; the caller acknowledges from this (section 5.4.3)
        # Received bytes not parsed yet, kept as pieces: joining them on every feed would copy a
        # large pending chunk again for each TCP segment (quadratic in the chunk size).
        self._pieces: list[bytes] = []
        self._held = 0
        self._need = 0  # total held bytes needed before parsing can make progress
        self._states: dict[int, _InState] = {}
        self._partial_bytes = 0
        self._partial_csids = 0

    def feed(self, data: bytes) -> list[RawMessage]:
        """Consume ``data``; return every message completed by it, in order of completion."""
        self.bytes_received += len(data)
        if not data:
            return []
        self._pieces.append(bytes(data))
        self._held += len(data)
        if self._held < self._need:
            return []  # the chunk being waited for is still incomplete: nothing to parse yet
        base = self.bytes_received - self._held  # stream offset of buf[0], for error messages
        buf = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        need = 0
        out: list[RawMessage] = []
        pos = 0
        done = 0  # end of the last complete chunk; everything after it is parsed again next time
        end = len(buf)
        states = self._states
        while pos < end:
            # Parse one chunk into locals; state changes only once the whole chunk is here, so an
            # incomplete chunk is simply parsed again from its start when more bytes arrive.
            start = pos
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            pos += 1
            if csid == 0:
                if pos + 1 > end:
                    break
                csid = buf[pos] + 64
                pos += 1
            elif csid == 1:
                if pos + 2 > end:
                    break
                csid = buf[pos] + (buf[pos + 1] << 8) + 64
                pos += 2

            st = states.get(csid)
            if st is None and fmt != 0:
                raise ChunkStreamError(
                    f"chunk fmt {fmt} on chunk stream {csid} at byte {base + start} "
                    "with no previous header on that chunk stream"
                )
            if fmt == 0:
                if pos + 11 > end:
                    break
                ts = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                type_id = buf[pos + 6]
                stream_id = buf[pos + 7] | (buf[pos + 8] << 8) | (buf[pos + 9] << 16) | (buf[pos + 10] << 24)
                pos += 11
                ext = None
                if ts == _EXTENDED:
                    if pos + 4 > end:
                        break
                    ext = buf[pos : pos + 4]
                    ts = _U32.unpack(ext)[0]
                    pos += 4
                # Section 5.3.1.2.4: a type 3 chunk after a type 0 one reuses its timestamp as delta.
                delta = ts
                new = True
            elif fmt == 3:
                ext = st.ext
                if ext is not None:
                    # FFmpeg, librtmp and FMS repeat the extended timestamp on type 3 chunks, some
                    # encoders do not: take the 4 bytes only when they repeat the value (FFmpeg reads them the same way).
                    if pos + 4 > end:
                        # Fewer than 4 bytes here: wait only if they could still be the start of
                        # the repeated field; otherwise they are payload (a short last chunk from
                        # an encoder that does not repeat it must not be held back).
                        if ext.startswith(buf[pos:end]):
                            break
                    elif buf[pos : pos + 4] == ext:
                        pos += 4
                new = not st.remaining
                delta = st.delta
                ts = (st.timestamp + delta) & _MASK32 if new else st.timestamp
                length = st.length
                type_id = st.type_id
                stream_id = st.stream_id
            else:
                if fmt == 1:
                    if pos + 7 > end:
                        break
                    delta = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                    length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                    type_id = buf[pos + 6]
                    pos += 7
                else:
                    if pos + 3 > end:
                        break
                    delta = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                    length = st.length
                    type_id = st.type_id
                    pos += 3
                ext = None
                if delta == _EXTENDED:
                    if pos + 4 > end:
                        break
                    ext = buf[pos : pos + 4]
                    delta = _U32.unpack(ext)[0]
                    pos += 4
                ts = (st.timestamp + delta) & _MASK32
                stream_id = st.stream_id
                new = True

            if new:
                if st is not None and st.remaining:
                    raise ChunkStreamError(
                        f"chunk fmt {fmt} on chunk stream {csid} at byte {base + start} starts a new "
                        f"message while {st.remaining} bytes of the previous one are still due"
                    )
                if length > self.max_message_size:
                    raise LimitExceeded(
                        f"message of {length} bytes (type {type_id}) on chunk stream {csid} at byte "
                        f"{base + start} exceeds the limit of {self.max_message_size} bytes"
                    )
                if length > self.chunk_size and self._partial_csids >= self.max_partial_csids:
                    raise LimitExceeded(
                        f"more than {self.max_partial_csids} chunk streams with a message in flight "
                        f"(chunk stream {csid} at byte {base + start})"
                    )
                remaining = length
            else:
                remaining = st.remaining
            n = remaining if remaining < self.chunk_size else self.chunk_size
            if pos + n > end:
                need = pos + n - done
                break

            # The whole chunk is here: commit.
            if st is None:
                st = states[csid] = _InState()
            if new:
                st.timestamp = ts
                st.delta = delta
                st.length = length
                st.type_id = type_id
                st.stream_id = stream_id
                st.ext = ext
            if new and n == remaining:
                # Whole message in one chunk: the common case for audio and commands.
                payload = buf[pos : pos + n]
                pos += n
                st.remaining = 0
            else:
                if self._partial_bytes + n > self.max_partial_bytes:
                    raise LimitExceeded(
                        f"incomplete messages would hold {self._partial_bytes + n} bytes, over the "
                        f"limit of {self.max_partial_bytes} (chunk stream {csid} at byte {base + start})"
                    )
                if new:
                    self._partial_csids += 1
                parts = st.parts  # empty whenever no message is in flight
                if n >= _COALESCE or n == remaining:
                    # A full-size chunk, or the last one (joined right below, never held).
                    parts.append(buf[pos : pos + n])
                elif parts and type(parts[-1]) is bytearray:
                    parts[-1] += buf[pos : pos + n]
                else:
                    parts.append(bytearray(buf[pos : pos + n]))
                pos += n
                self._partial_bytes += n
                st.remaining = remaining - n
                if st.remaining:
                    done = pos
                    continue
                payload = b"".join(st.parts)
                st.parts = []
                self._partial_bytes -= st.length
                self._partial_csids -= 1
            done = pos
            msg = RawMessage(csid, st.timestamp, st.type_id, st.stream_id, payload)
            out.append(msg)
            if st.type_id <= _TYPE_ABORT:
                self._control(msg)
        if done < end:
            rest = buf[done:]
            self._pieces = [rest]
            self._held = len(rest)
            # A payload wait knows its size; a header wait needs at least one more byte.
            self._need = need if need > len(rest) else len(rest) + 1
        else:
            self._pieces = []
            self._held = 0
            self._need = 0
        return out

    @property
    def unparsed_bytes(self) -> int:
        """Bytes received but not yet parsed (at most one chunk and its header)."""
        return self._held

    @property
    def _buf(self) -> bytes:
        return b"".join(self._pieces)

    def _control(self, msg: RawMessage) -> None:
        """Apply Set Chunk Size and Abort at once (sections 5.4.1, 5.4.2)."""
        if msg.type_id == _TYPE_SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise ChunkStreamError(f"Set Chunk Size with a {len(msg.payload)}-byte body, expected 4")
            size = _U32.unpack_from(msg.payload)[0] & 0x7FFFFFFF  # bit 31 must be 0
            if size == 0:
                raise ChunkStreamError("Set Chunk Size of 0; the smallest legal chunk size is 1")
            # A message can never exceed 0xFFFFFF bytes, so a larger chunk size means the same.
            self.chunk_size = min(size, MAX_CHUNK_SIZE)
        elif msg.type_id == _TYPE_ABORT:
            if len(msg.payload) < 4:
                raise ChunkStreamError(f"Abort with a {len(msg.payload)}-byte body, expected 4")
            csid = _U32.unpack_from(msg.payload)[0]
            st = self._states.get(csid)
            if st is not None and st.remaining:
                self._partial_bytes -= st.length - st.remaining
                self._partial_csids -= 1
                st.parts = []
                st.remaining = 0

    @property
    def partial_bytes(self) -> int:
        """Payload bytes currently held in incomplete messages."""
        return self._partial_bytes

    @property
    def partial_csids(self) -> int:
        return self._partial_csids


def basic_header(fmt: int, csid: int) -> bytes:
    """The 1-, 2- or 3-byte basic header (section 5.3.1.1)."""
    if 2 <= csid <= 63:
        return bytes((fmt << 6 | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 64 <= csid <= 65599:
        c = csid - 64
        return bytes((fmt << 6 | 1, c & 0xFF, c >> 8))
    raise LocalProtocolError(f"chunk stream id {csid} outside 2..65599")


# Basic headers of chunk stream ids 2..63 (one byte), per fmt: a lookup instead of a call per message.
_BASIC = [[bytes((fmt << 6 | csid,)) for csid in range(64)] for fmt in range(4)]


def continuation(payload: bytes, chunk_size: int, csid: int, ext: bytes | None = None) -> bytes:
    """``payload`` with a fmt 3 chunk header before every chunk after the first.

    ``ext`` is the 4-byte extended timestamp field of the message's first header, repeated on
    every type 3 chunk as FFmpeg, librtmp and FMS expect.  The result depends only on its
    arguments, so fan-out computes it once per (chunk size, csid) and shares it.
    """
    n = len(payload)
    if n <= chunk_size:
        return payload
    sep = basic_header(3, csid)
    if ext is not None:
        sep += ext
    parts = [payload[:chunk_size]]
    for off in range(chunk_size, n, chunk_size):
        parts.append(sep)
        parts.append(payload[off : off + chunk_size])
    return b"".join(parts)


class _OutState:
    __slots__ = ("timestamp", "delta", "length", "type_id", "stream_id")

    def __init__(self, timestamp: int, delta: int | None, length: int, type_id: int, stream_id: int) -> None:
        self.timestamp = timestamp
        self.delta = delta
        self.length = length
        self.type_id = type_id
        self.stream_id = stream_id


class ChunkWriter:
    """Produces chunk bytes for one connection, compressing headers against what it sent last.

    Header choice: fmt 0 for the first message on a chunk stream, a new message stream id or a
    timestamp that goes backwards; fmt 1 when length or type changed; fmt 2 when only the delta
    changed; fmt 3 when the delta repeats.  After a fmt 0 header we never use fmt 3 for the next
    message, because readers disagree on what delta that implies.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._states: dict[int, _OutState] = {}

    def set_chunk_size(self, size: int) -> None:
        """Use ``size`` for everything written from now on (after sending Set Chunk Size)."""
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise LocalProtocolError(f"chunk size {size} outside 1..{MAX_CHUNK_SIZE}")
        self.chunk_size = size

    def header(self, csid: int, timestamp: int, type_id: int, stream_id: int, length: int) -> tuple[bytes, bytes | None]:
        """First-chunk header for a message; returns (header bytes, extended timestamp field or None)."""
        if length > MAX_MESSAGE_LENGTH:
            raise LocalProtocolError(f"message of {length} bytes exceeds {MAX_MESSAGE_LENGTH}")
        timestamp &= _MASK32
        st = self._states.get(csid)
        if st is None or st.stream_id != stream_id:
            fmt = 0
        else:
            delta = (timestamp - st.timestamp) & _MASK32
            if delta >= 0x80000000:  # went backwards (compared modulo 2^32)
                fmt = 0
            elif st.length != length or st.type_id != type_id:
                fmt = 1
            elif st.delta != delta:
                fmt = 2
            else:
                fmt = 3
        if fmt == 0:
            field = timestamp
            if st is None:
                self._states[csid] = _OutState(timestamp, None, length, type_id, stream_id)
            else:
                st.timestamp, st.delta, st.length, st.type_id, st.stream_id = timestamp, None, length, type_id, stream_id
        else:
            field = delta
            st.timestamp = timestamp
            st.delta = delta
            st.length = length
            st.type_id = type_id
        if field >= _EXTENDED:
            ext = _U32.pack(field)
            ts24 = _EXTENDED
        else:
            ext = None
            ts24 = field
        bh = _BASIC[fmt][csid] if 2 <= csid < 64 else basic_header(fmt, csid)
        if fmt == 3:
            h = bh
        elif fmt == 1:
            h = bh + _U56.pack(ts24 << 32 | length << 8 | type_id)[1:]
        elif fmt == 2:
            h = bh + _U32.pack(ts24)[1:]
        else:
            h = bh + _U56.pack(ts24 << 32 | length << 8 | type_id)[1:] + _SID.pack(stream_id & _MASK32)
        if ext is not None:
            h += ext
        return h, ext

    def write(self, csid: int, timestamp: int, type_id: int, stream_id: int, payload: bytes) -> bytes:
        """Complete chunk bytes of one message."""
        h, ext = self.header(csid, timestamp, type_id, stream_id, len(payload))
        return h + continuation(payload, self.chunk_size, csid, ext)
