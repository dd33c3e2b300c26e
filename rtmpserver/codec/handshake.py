"""RTMP handshake, sans-IO, for both ends of a connection.

The handshake is three fixed-size packets each way (C0/C1/C2 from the client, S0/S1/S2 from the
server; RTMP specification 1.0, section 5.2).  On top of the plain exchange, Flash Player 9 and
every mainstream client since (FFmpeg, OBS, librtmp) embed an HMAC-SHA256 digest in C1 -- the
"complex" handshake -- and Flash-era players refuse H.264/AAC from a server that does not answer
in kind.  The complex scheme is not in the specification; the facts used here are what FFmpeg
(libavformat/rtmpproto.c) and librtmp (handshake.h) send and check.

Both classes only turn bytes into bytes.  They never look at a clock or a socket: the caller owns
the transport and must bound the handshake with a timeout (docs/architecture.md, "Rules we keep", 3); a peer that stops
sending half-way leaves the object waiting forever.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable

from rtmpserver.errors import HandshakeError, LocalProtocolError

__all__ = [
    "C1_SIZE",
    "RTMP_VERSION",
    "ClientHandshake",
    "ServerHandshake",
]

RTMP_VERSION = 3
C1_SIZE = 1536  # also the size of C2, S1 and S2

#: The public 32-byte constant that follows both key prefixes (as FFmpeg and librtmp use it).
_KEY_TAIL = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
#: Flash Player key: its 30-byte prefix signs C1, the full 62 bytes derive the C2 signing key.
FP_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
FP_KEY_PREFIX_LEN = 30
#: Flash Media Server key: its 36-byte prefix signs S1, the full 68 bytes derive the S2 signing key.
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
FMS_KEY_PREFIX_LEN = 36

#: Version field of our S1.  FFmpeg only checks the server's digest when the first byte is >= 3
#: (rtmpproto.c, rtmp_handshake), so it must stay >= 3 for clients to treat us as complex.
SERVER_VERSION = (5, 0, 3, 1)

_DIGEST_LEN = 32
#: Where the four offset bytes sit for each digest schema.  The digest itself starts at
#: (sum of those four bytes) % 728 + position + 4.  Schema 0 is what FFmpeg and librtmp put in
#: C1 and what nginx-rtmp puts in S1; schema 1 is the alternative layout some clients use.  (SRS
#: numbers the two layouts the other way round; FFmpeg's and librtmp's order is the one used here.)
_SCHEMA_OFFSET_POS = (8, 772)


#: HMAC-SHA256 states with the four constant keys already absorbed: ``copy()`` of one costs less
#: than keying a new HMAC (two SHA-256 blocks) on every handshake.
_KEYED = {
    key: hmac.new(key, None, hashlib.sha256)
    for key in (FP_KEY[:FP_KEY_PREFIX_LEN], FP_KEY, FMS_KEY[:FMS_KEY_PREFIX_LEN], FMS_KEY)
}


def _hmac(key: bytes, data: bytes, more: bytes = b"") -> bytes:
    """HMAC-SHA256 of ``data + more`` (without joining them)."""
    keyed = _KEYED.get(key)
    h = keyed.copy() if keyed is not None else hmac.new(key, None, hashlib.sha256)
    h.update(data)
    if more:
        h.update(more)
    return h.digest()


def _digest_offset(packet: bytes, schema: int) -> int:
    pos = _SCHEMA_OFFSET_POS[schema]
    return sum(packet[pos : pos + 4]) % 728 + pos + 4


def _find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """Return (schema, digest) of the first schema whose embedded digest verifies, else None.

    A random C1 matches either schema with probability 2**-256, so the order tried is irrelevant.
    """
    view = memoryview(packet)
    for schema in (0, 1):
        off = _digest_offset(packet, schema)
        embedded = packet[off : off + _DIGEST_LEN]
        expected = _hmac(key, view[:off], view[off + _DIGEST_LEN :])
        if hmac.compare_digest(embedded, expected):
            return schema, embedded
    return None


def _insert_digest(packet: bytearray, key: bytes, schema: int) -> bytes:
    off = _digest_offset(packet, schema)
    digest = _hmac(key, bytes(packet[:off]), bytes(packet[off + _DIGEST_LEN :]))
    packet[off : off + _DIGEST_LEN] = digest
    return digest


def _signed_response(random_bytes: Callable[[int], bytes], peer_digest: bytes, full_key: bytes, body: bytes = b"") -> bytes:
    """C2/S2 of the complex handshake: random bytes whose last 32 are an HMAC proving that we saw
    the peer's digest (FFmpeg rtmpproto.c and nginx-rtmp ngx_rtmp_handshake.c build it so).
    ``body``: those random bytes when the caller already has them."""
    if not body:
        body = _random(random_bytes, C1_SIZE - _DIGEST_LEN)
    return body + _hmac(_hmac(full_key, peer_digest), body)


def _verify_signed_response(packet: bytes, own_digest: bytes, full_key: bytes) -> bool:
    expected = _hmac(_hmac(full_key, own_digest), packet[:-_DIGEST_LEN])
    return hmac.compare_digest(packet[-_DIGEST_LEN:], expected)


def _random(random_bytes: Callable[[int], bytes], n: int) -> bytes:
    data = bytes(random_bytes(n))
    if len(data) != n:
        raise LocalProtocolError(f"random_bytes({n}) returned {len(data)} bytes")
    return data


def _check_version(buf: bytes | bytearray, who: str) -> bool:
    """Check a C0/S0 version byte (RTMP specification 1.0, section 5.2.2); return False while more bytes are needed.

    3 is RTMP and 4-31 are tolerated (answered with 3); anything else is not RTMP and the caller
    should close (or hand over to RTMPT).  One exception inside 4-31: 0x16 followed by 0x03 is a
    TLS record header (handshake content type, major version 3), i.e. an RTMPS client on a plain
    port.  Accepting it would leave that client waiting for a ServerHello until the caller's
    timeout, so it is refused at once (the versions seen in practice are 3, and 6 or 8 for RTMPE).
    """
    version = buf[0]
    if version == 0x16:
        if len(buf) < 2:
            return False
        if buf[1] == 0x03:
            raise HandshakeError(
                f"{who} at offset 0: bytes 16 03 are a TLS record header, not RTMP "
                "(TLS client on a plain RTMP port?)"
            )
    if 3 <= version <= 31:
        return True
    if 0x20 <= version <= 0x7E:
        hint = f" ({chr(version)!r}: looks like text, e.g. an HTTP request)"
    else:
        hint = ""
    raise HandshakeError(f"{who} at offset 0: version byte {version} is not RTMP (expected 3){hint}")


def _header(time_ms: int, version: tuple[int, int, int, int]) -> bytes:
    return struct.pack(">I4B", time_ms & 0xFFFFFFFF, *version)


class ServerHandshake:
    """Server end: consume C0+C1(+C2), answer S0+S1+S2 in one piece.

    S2 goes out together with S1 as soon as C1 is complete; waiting for C2 first would deadlock
    clients that wait for S2 before sending C2 (librtmp and some Flash-era players).  C2 is read and
    dropped without checks: clients disagree on what they put there -- FFmpeg echoes S1 when
    publishing but sends a signed random block when playing (rtmpproto.c checks the server's
    digest only when ``is_input``; see tests/data/ffmpeg-*.c2s.bin) -- and nginx-rtmp does not
    check it either.
    """

    client_version: int
    digest_schema: int | None

    def __init__(
        self,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        uptime_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        self._random_bytes = random_bytes
        self._uptime_ms = uptime_ms
        self._buf = bytearray()
        self._answered = False
        self.complete = False
        self.unused = b""
        self.client_version = 0
        self.digest_schema = None
        #: C1 bytes 4..7 as sent (zero for a simple handshake, the Flash Player version otherwise).
        self.client_c1_version: tuple[int, int, int, int] = (0, 0, 0, 0)

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the client; return bytes to send (S0+S1+S2 once C0+C1 are in, else b'').

        Bytes arriving after C2 are kept in ``unused``: clients commonly send C2 and the first
        chunk (connect) in one TCP segment.  Feeding more after completion appends to ``unused``.
        """
        if self.complete:
            self.unused += bytes(data)
            return b""
        self._buf += data
        out = b""
        if not self._answered:
            if not self._buf:
                return b""
            self.client_version = self._buf[0]
            if not _check_version(self._buf, "C0") or len(self._buf) < 1 + C1_SIZE:
                return b""
            c1 = bytes(self._buf[1 : 1 + C1_SIZE])
            del self._buf[: 1 + C1_SIZE]
            out = self._answer(c1)
            self._answered = True
        if len(self._buf) >= C1_SIZE:
            self.unused = bytes(self._buf[C1_SIZE:])
            self._buf = bytearray()
            self.complete = True
        return out

    def _answer(self, c1: bytes) -> bytes:
        self.client_c1_version = tuple(c1[4:8])  # type: ignore[assignment]
        found = None
        if c1[4:8] != b"\0\0\0\0":
            found = _find_digest(c1, FP_KEY[:FP_KEY_PREFIX_LEN])
        s0 = bytes([RTMP_VERSION])
        if found is None:
            # Simple handshake (spec 5.2.3): S1 with a zero version field, S2 echoes C1.
            self.digest_schema = None
            s1 = _header(self._uptime_ms(), (0, 0, 0, 0)) + _random(self._random_bytes, C1_SIZE - 8)
            return s0 + s1 + c1
        schema, client_digest = found
        self.digest_schema = schema
        s1 = bytearray(_header(self._uptime_ms(), SERVER_VERSION))
        s2_body = b""
        if self._random_bytes is os.urandom:
            # The random bytes of S1 and of S2 from one system call instead of two.
            block = os.urandom(2 * C1_SIZE - 8 - _DIGEST_LEN)
            s1 += block[: C1_SIZE - 8]
            s2_body = block[C1_SIZE - 8 :]
        else:
            s1 += _random(self._random_bytes, C1_SIZE - 8)
        _insert_digest(s1, FMS_KEY[:FMS_KEY_PREFIX_LEN], schema)
        s2 = _signed_response(self._random_bytes, client_digest, FMS_KEY, s2_body)
        return s0 + bytes(s1) + s2


class ClientHandshake:
    """Client end: send C0+C1, answer S1 with C2, check S2.

    With ``complex=True`` C1 carries a digest in ``schema`` (default 0, what FFmpeg and librtmp
    send).  Like FFmpeg
    (rtmpproto.c, rtmp_handshake) we take the server to be complex when the first byte of its S1
    version field is >= 3; it must then carry a valid digest in S1 and sign S2 with our C1 digest,
    otherwise HandshakeError.  Any other server is answered simply (C2 echoes S1) and its S2 is
    not checked: librtmp only warns about a bad echo, and servers differ in how they fill it.

    C2 is returned as soon as S1 is complete, without waiting for S2 (spec 5.2.4 only makes the
    client wait for S1), so a server that holds S2 back cannot deadlock us.
    """

    def __init__(
        self,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        uptime_ms: Callable[[], int] = lambda: 0,
        complex: bool = True,  # noqa: A002 -- the public API name
        version: tuple[int, int, int, int] = (10, 0, 32, 18),
        schema: int = 0,
    ) -> None:
        if complex and not any(version):
            raise LocalProtocolError("a complex handshake needs a non-zero C1 version field")
        if schema not in (0, 1):
            raise LocalProtocolError(f"digest schema must be 0 or 1, not {schema!r}")
        self._schema = schema
        self._random_bytes = random_bytes
        self._uptime_ms = uptime_ms
        self._complex = complex
        self._version = tuple(version)
        self._buf = bytearray()
        self._c1: bytes | None = None
        self._c1_digest = b""
        self._sent_c2 = False
        self._server_signed = False
        self.complete = False
        self.unused = b""
        self.server_version = 0
        #: Schema of the server's S1 digest; None when the server answered with a simple handshake.
        self.digest_schema: int | None = None

    def start(self) -> bytes:
        """Return C0+C1; call once, before feeding any server bytes."""
        if self._c1 is not None:
            raise LocalProtocolError("ClientHandshake.start() called twice")
        version = self._version if self._complex else (0, 0, 0, 0)
        c1 = bytearray(_header(self._uptime_ms(), version))  # type: ignore[arg-type]
        c1 += _random(self._random_bytes, C1_SIZE - 8)
        if self._complex:
            self._c1_digest = _insert_digest(c1, FP_KEY[:FP_KEY_PREFIX_LEN], self._schema)
        self._c1 = bytes(c1)
        return bytes([RTMP_VERSION]) + self._c1

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the server; return C2 once S0+S1 are in, else b''."""
        if self._c1 is None:
            raise LocalProtocolError("ClientHandshake.receive() before start()")
        if self.complete:
            self.unused += bytes(data)
            return b""
        self._buf += data
        out = b""
        if not self._sent_c2:
            if not self._buf:
                return b""
            self.server_version = self._buf[0]
            if not _check_version(self._buf, "S0") or len(self._buf) < 1 + C1_SIZE:
                return b""
            s1 = bytes(self._buf[1 : 1 + C1_SIZE])
            del self._buf[: 1 + C1_SIZE]
            out = self._answer(s1)
            self._sent_c2 = True
        if len(self._buf) >= C1_SIZE:
            s2 = bytes(self._buf[:C1_SIZE])
            if self._server_signed and not _verify_signed_response(s2, self._c1_digest, FMS_KEY):
                raise HandshakeError(
                    f"S2 at offset {1 + C1_SIZE}: signature does not match our C1 digest"
                )
            self.unused = bytes(self._buf[C1_SIZE:])
            self._buf = bytearray()
            self.complete = True
        return out

    def _answer(self, s1: bytes) -> bytes:
        if not self._complex or s1[4] < 3:
            return s1  # simple: C2 echoes S1
        found = _find_digest(s1, FMS_KEY[:FMS_KEY_PREFIX_LEN])
        if found is None:
            raise HandshakeError(
                f"S1 at offset 1: version field {tuple(s1[4:8])} claims a complex handshake "
                "but no valid server digest was found in either schema"
            )
        self.digest_schema, server_digest = found
        self._server_signed = True
        return _signed_response(self._random_bytes, server_digest, FP_KEY)
