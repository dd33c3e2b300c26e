"""Tests for rtmpserver.codec.handshake.

The captures in tests/data/ (see its README.md) are real FFmpeg <-> nginx-rtmp traffic; they
check our digest arithmetic against two independent implementations.  The digest oracle below
is written out again here from the FFmpeg/librtmp description rather than taken from the module under test.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.codec.handshake import C1_SIZE, ClientHandshake, ServerHandshake
from rtmpserver.errors import HandshakeError, LocalProtocolError

DATA = Path(__file__).resolve().parent.parent / "data"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAIL = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
FP_KEY = b"Genuine Adobe Flash Player 001" + TAIL
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + TAIL


# -- independent oracle ------------------------------------------------------------------------

def sha(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes, schema: int) -> int:
    pos = 8 if schema == 0 else 772
    return sum(packet[pos : pos + 4]) % 728 + pos + 4


def embedded_digest(packet: bytes, key: bytes, schema: int) -> bytes | None:
    off = digest_offset(packet, schema)
    digest = packet[off : off + 32]
    if sha(key, packet[:off] + packet[off + 32 :]) == digest:
        return digest
    return None


def signed_by(packet: bytes, peer_digest: bytes, full_key: bytes) -> bool:
    return sha(sha(full_key, peer_digest), packet[:-32]) == packet[-32:]


# -- helpers -----------------------------------------------------------------------------------

class Rand:
    """Deterministic stand-in for os.urandom, recording what it handed out."""

    def __init__(self, seed: int = 0, scripted: list[bytes] | None = None) -> None:
        self._rng = random.Random(seed)
        self._scripted = list(scripted or [])
        self.calls: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        if self._scripted:
            data = self._scripted.pop(0)
            assert len(data) == n, (len(data), n)
            return data
        return self._rng.randbytes(n)


def capture(name: str) -> tuple[bytes, bytes]:
    return (DATA / f"{name}.c2s.bin").read_bytes(), (DATA / f"{name}.s2c.bin").read_bytes()


def feed(hs, chunks) -> bytes:
    return b"".join(hs.receive(c) for c in chunks)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def run_pair(client: ClientHandshake, server: ServerHandshake, after_c2: bytes = b"") -> None:
    s_out = server.receive(client.start())
    c2 = client.receive(s_out)
    assert client.complete
    server.receive(c2 + after_c2)
    assert server.complete


# -- real captures ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ffmpeg-publish", "ffmpeg-play"])
def test_ffmpeg_c1_is_a_digest_handshake(name):
    c2s, _ = capture(name)
    server = ServerHandshake(random_bytes=Rand(), uptime_ms=lambda: 1234)
    out = server.receive(c2s[: 1 + C1_SIZE])
    assert server.client_version == 3
    assert server.digest_schema == 0  # FFmpeg writes its C1 digest at the position-8 layout
    assert server.client_c1_version == (9, 0, 124, 2)
    assert not server.complete
    assert len(out) == 1 + 2 * C1_SIZE and out[0] == 3
    s1, s2 = out[1 : 1 + C1_SIZE], out[1 + C1_SIZE :]
    assert struct.unpack(">I", s1[:4])[0] == 1234
    assert s1[4] >= 3  # FFmpeg only treats a server as complex when this byte is >= 3
    assert embedded_digest(s1, FMS_KEY[:36], 0) is not None
    client_digest = embedded_digest(c2s[1 : 1 + C1_SIZE], FP_KEY[:30], 0)
    assert client_digest is not None and signed_by(s2, client_digest, FMS_KEY)


@pytest.mark.parametrize("name", ["ffmpeg-publish", "ffmpeg-play"])
def test_ffmpeg_whole_connection_leaves_chunk_stream_in_unused(name):
    c2s, _ = capture(name)
    server = ServerHandshake(random_bytes=Rand())
    server.receive(c2s)
    assert server.complete
    assert server.unused == c2s[1 + 2 * C1_SIZE :]
    assert server.unused[0] == 0x03  # fmt 0 basic header on csid 3: the connect command


@pytest.mark.parametrize("name", ["ffmpeg-publish", "ffmpeg-play"])
def test_our_s2_equals_nginx_s2_for_the_same_random_bytes(name):
    c2s, s2c = capture(name)
    nginx_s2 = s2c[1 + C1_SIZE : 1 + 2 * C1_SIZE]
    rand = Rand(scripted=[bytes(C1_SIZE - 8), nginx_s2[:-32]])
    out = ServerHandshake(random_bytes=rand).receive(c2s[: 1 + C1_SIZE])
    assert out[1 + C1_SIZE :] == nginx_s2


def ffmpeg_like_client(c2s: bytes, c2_random: bytes | None = None) -> ClientHandshake:
    """A ClientHandshake fed FFmpeg's own random bytes, so its C1 must come out byte-identical."""
    c1 = c2s[1 : 1 + C1_SIZE]
    scripted = [c1[8:]] + ([c2_random] if c2_random is not None else [])
    return ClientHandshake(
        random_bytes=Rand(scripted=scripted), uptime_ms=lambda: 0, version=(9, 0, 124, 2)
    )


@pytest.mark.parametrize("name", ["ffmpeg-publish", "ffmpeg-play"])
def test_client_validates_nginx_s0s1s2(name):
    c2s, s2c = capture(name)
    client = ffmpeg_like_client(c2s)
    assert client.start() == c2s[: 1 + C1_SIZE]  # the digest we insert is the one FFmpeg inserted
    c2 = client.receive(s2c)
    assert client.complete
    assert client.server_version == 3
    assert client.digest_schema == 0
    assert client.unused == s2c[1 + 2 * C1_SIZE :]
    server_digest = embedded_digest(s2c[1 : 1 + C1_SIZE], FMS_KEY[:36], 0)
    assert signed_by(c2, server_digest, FP_KEY)


def test_client_c2_equals_ffmpeg_play_c2():
    # When playing, FFmpeg answers a complex S1 with a signed C2 (when publishing it echoes S1).
    c2s, s2c = capture("ffmpeg-play")
    ffmpeg_c2 = c2s[1 + C1_SIZE : 1 + 2 * C1_SIZE]
    client = ffmpeg_like_client(c2s, c2_random=ffmpeg_c2[:-32])
    client.start()
    assert client.receive(s2c) == ffmpeg_c2


def test_client_rejects_nginx_s2_for_another_c1():
    _, s2c = capture("ffmpeg-publish")
    client = ClientHandshake(random_bytes=Rand(7))
    client.start()
    with pytest.raises(HandshakeError, match="S2 at offset 1537"):
        client.receive(s2c)


# -- own client <-> own server ----------------------------------------------------------------

@pytest.mark.parametrize("schema", [0, 1])
def test_complex_pair(schema):
    client = ClientHandshake(random_bytes=Rand(1), schema=schema)
    server = ServerHandshake(random_bytes=Rand(2))
    c0c1 = client.start()
    assert embedded_digest(c0c1[1:], FP_KEY[:30], schema) is not None
    assert embedded_digest(c0c1[1:], FP_KEY[:30], 1 - schema) is None
    s_out = server.receive(c0c1)
    assert server.digest_schema == schema
    assert embedded_digest(s_out[1 : 1 + C1_SIZE], FMS_KEY[:36], schema) is not None  # answered in kind
    c2 = client.receive(s_out)
    assert client.complete and client.digest_schema == schema
    assert server.receive(c2 + b"connect") == b""
    assert server.complete and server.unused == b"connect"


def test_simple_pair_echoes():
    client = ClientHandshake(random_bytes=Rand(1), uptime_ms=lambda: 99, complex=False)
    server = ServerHandshake(random_bytes=Rand(2), uptime_ms=lambda: 5)
    c0c1 = client.start()
    assert c0c1[5:9] == b"\0\0\0\0" and c0c1[1:5] == struct.pack(">I", 99)
    s_out = server.receive(c0c1)
    assert server.digest_schema is None
    s1, s2 = s_out[1 : 1 + C1_SIZE], s_out[1 + C1_SIZE :]
    assert s1[4:8] == b"\0\0\0\0" and s1[:4] == struct.pack(">I", 5)
    assert s2 == c0c1[1:]
    c2 = client.receive(s_out)
    assert c2 == s1 and client.complete and client.digest_schema is None
    server.receive(c2)
    assert server.complete and server.unused == b""


def test_complex_client_accepts_simple_server():
    client = ClientHandshake(random_bytes=Rand(1))
    server_s1 = bytes(8) + Rand(3)(C1_SIZE - 8)
    client.start()
    c2 = client.receive(b"\x03" + server_s1 + Rand(4)(C1_SIZE))
    assert c2 == server_s1 and client.complete and client.digest_schema is None


def test_client_treats_s1_version_below_3_as_simple():
    client = ClientHandshake(random_bytes=Rand(1))
    client.start()
    s1 = bytes(4) + bytes([2, 9, 9, 9]) + Rand(3)(C1_SIZE - 8)
    assert client.receive(b"\x03" + s1) == s1


def test_client_rejects_complex_s1_without_digest():
    client = ClientHandshake(random_bytes=Rand(1))
    client.start()
    s1 = bytes(4) + bytes([5, 0, 3, 1]) + Rand(3)(C1_SIZE - 8)
    with pytest.raises(HandshakeError, match="S1 at offset 1"):
        client.receive(b"\x03" + s1)


def test_client_rejects_tampered_s2():
    client = ClientHandshake(random_bytes=Rand(1))
    out = bytearray(ServerHandshake(random_bytes=Rand(2)).receive(client.start()))
    out[-1] ^= 1
    with pytest.raises(HandshakeError, match="S2"):
        client.receive(bytes(out))
    assert not client.complete


def test_s2_is_sent_before_c2():
    server = ServerHandshake(random_bytes=Rand())
    out = server.receive(ClientHandshake(random_bytes=Rand(1)).start())
    assert len(out) == 1 + 2 * C1_SIZE and not server.complete


def test_server_stays_quiet_until_c1_is_complete():
    server = ServerHandshake(random_bytes=Rand())
    c0c1 = ClientHandshake(random_bytes=Rand(1)).start()
    assert server.receive(c0c1[:-1]) == b""
    assert len(server.receive(c0c1[-1:])) == 1 + 2 * C1_SIZE


def test_random_and_time_are_injected():
    rand = Rand()
    server = ServerHandshake(random_bytes=rand, uptime_ms=lambda: 2**32 + 7)
    out = server.receive(ClientHandshake(random_bytes=Rand(1)).start())
    assert rand.calls == [C1_SIZE - 8, C1_SIZE - 32]
    assert out[1:5] == struct.pack(">I", 7)  # 32-bit field wraps


# -- versions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 2, 32, ord("G"), ord("P"), 0x80, 255])
@pytest.mark.parametrize("side", ["server", "client"])
def test_bad_version_rejected_on_first_byte(version, side):
    if side == "server":
        hs = ServerHandshake(random_bytes=Rand())
    else:
        hs = ClientHandshake(random_bytes=Rand())
        hs.start()
    with pytest.raises(HandshakeError, match=f"version byte {version} is not RTMP"):
        hs.receive(bytes([version]))


def test_bad_version_messages_name_the_likely_cause():
    with pytest.raises(HandshakeError, match="HTTP"):
        ServerHandshake(random_bytes=Rand()).receive(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HandshakeError, match="TLS"):
        ServerHandshake(random_bytes=Rand()).receive(b"\x16\x03\x01\x02\x00")


def test_tls_client_hello_detected_across_reads():
    # 0x16 (22) lies inside the tolerated 4-31 range; only the TLS record's next byte (major
    # version 3) tells a ClientHello from an odd RTMP version, so one byte alone must not decide.
    server = ServerHandshake(random_bytes=Rand())
    assert server.receive(b"\x16") == b""
    with pytest.raises(HandshakeError, match="TLS"):
        server.receive(b"\x03\x01")
    client = ClientHandshake(random_bytes=Rand())
    client.start()
    with pytest.raises(HandshakeError, match="TLS"):
        client.receive(b"\x16\x03")


@pytest.mark.parametrize("version", [3, 4, 6, 8, 0x16, 31])
def test_versions_3_to_31_answered_with_3(version):
    c0c1 = ClientHandshake(random_bytes=Rand(1), uptime_ms=lambda: 0).start()
    assert c0c1[1] == 0  # so 0x16 is not followed by 0x03
    server = ServerHandshake(random_bytes=Rand())
    out = server.receive(bytes([version]) + c0c1[1:])
    assert out[0] == 3 and server.client_version == version
    assert server.digest_schema == 0


# -- digest fallback --------------------------------------------------------------------------

def test_corrupted_digest_falls_back_to_simple():
    c0c1 = bytearray(ClientHandshake(random_bytes=Rand(1)).start())
    off = 1 + digest_offset(bytes(c0c1[1:]), 0)
    c0c1[off + 5] ^= 0x40
    server = ServerHandshake(random_bytes=Rand())
    out = server.receive(bytes(c0c1))
    assert server.digest_schema is None
    assert out[5:9] == b"\0\0\0\0"  # simple S1
    assert out[1 + C1_SIZE :] == bytes(c0c1[1:])  # S2 echoes C1


def test_corruption_outside_the_digest_also_falls_back():
    c0c1 = bytearray(ClientHandshake(random_bytes=Rand(1)).start())
    c0c1[-1] ^= 1  # covered by the HMAC (the schema-0 digest never reaches the last byte)
    server = ServerHandshake(random_bytes=Rand())
    server.receive(bytes(c0c1))
    assert server.digest_schema is None


def test_zero_version_field_means_simple_even_with_a_valid_digest():
    # Rebuild a C1 that has a valid digest but zero version bytes: the digest must be ignored.
    c1 = bytearray(bytes(4) + bytes(4) + Rand(5)(C1_SIZE - 8))
    off = digest_offset(bytes(c1), 0)
    c1[off : off + 32] = sha(FP_KEY[:30], bytes(c1[:off] + c1[off + 32 :]))
    assert embedded_digest(bytes(c1), FP_KEY[:30], 0) is not None
    server = ServerHandshake(random_bytes=Rand())
    out = server.receive(b"\x03" + bytes(c1))
    assert server.digest_schema is None and out[1 + C1_SIZE :] == bytes(c1)


def test_nonzero_version_without_digest_is_simple():
    c1 = bytes(4) + bytes([1, 2, 3, 4]) + Rand(9)(C1_SIZE - 8)
    server = ServerHandshake(random_bytes=Rand())
    out = server.receive(b"\x03" + c1)
    assert server.digest_schema is None and server.client_c1_version == (1, 2, 3, 4)
    assert out[1 + C1_SIZE :] == c1


# -- splits -----------------------------------------------------------------------------------

def server_transcript(chunks):
    server = ServerHandshake(random_bytes=Rand(2), uptime_ms=lambda: 3)
    out = feed(server, chunks)
    return out, server.complete, server.unused, server.digest_schema


def client_transcript(chunks, complex_=True):
    client = ClientHandshake(random_bytes=Rand(1), complex=complex_)
    client.start()
    out = feed(client, chunks)
    return out, client.complete, client.unused, client.digest_schema


def _server_input(complex_: bool, tail: bytes) -> bytes:
    client = ClientHandshake(random_bytes=Rand(1), complex=complex_)
    c0c1 = client.start()
    c2 = client.receive(ServerHandshake(random_bytes=Rand(2), uptime_ms=lambda: 3).receive(c0c1))
    return c0c1 + c2 + tail


def _client_input(tail: bytes) -> bytes:
    return ServerHandshake(random_bytes=Rand(2)).receive(
        ClientHandshake(random_bytes=Rand(1)).start()
    ) + tail


AFTER_C2 = bytes(range(256)) * 2


@pytest.mark.parametrize("complex_", [True, False])
def test_server_byte_by_byte(complex_):
    data = _server_input(complex_, AFTER_C2)
    whole = server_transcript([data])
    assert whole[1] and whole[2] == AFTER_C2
    assert server_transcript([data[i : i + 1] for i in range(len(data))]) == whole


def test_client_byte_by_byte():
    data = _client_input(AFTER_C2)
    whole = client_transcript([data])
    assert whole[1] and whole[2] == AFTER_C2 and whole[3] == 0
    assert client_transcript([data[i : i + 1] for i in range(len(data))]) == whole


def test_ffmpeg_capture_byte_by_byte_up_to_connect():
    c2s, _ = capture("ffmpeg-publish")
    data = c2s[:4000]
    assert server_transcript([data[i : i + 1] for i in range(len(data))]) == server_transcript([data])


@SETTINGS
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
       complex_=st.booleans())
def test_server_any_split(cuts, complex_):
    data = _server_input(complex_, AFTER_C2)
    assert server_transcript(split(data, cuts)) == server_transcript([data])


@SETTINGS
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_client_any_split(cuts):
    data = _client_input(AFTER_C2)
    assert client_transcript(split(data, cuts)) == client_transcript([data])


def test_receive_after_complete_appends_to_unused():
    server = ServerHandshake(random_bytes=Rand())
    server.receive(_server_input(True, b"ab"))
    assert server.receive(b"cd") == b"" and server.unused == b"abcd"
    client = ClientHandshake(random_bytes=Rand(1))
    client.start()
    client.receive(_client_input(b"x"))
    assert client.receive(b"y") == b"" and client.unused == b"xy"


def test_empty_receive_is_harmless():
    server = ServerHandshake(random_bytes=Rand())
    assert server.receive(b"") == b"" and not server.complete


# -- garbage ----------------------------------------------------------------------------------

@SETTINGS
@given(data=st.binary(max_size=4000), first=st.integers(0, 255))
def test_server_garbage_raises_only_handshake_error(data, first):
    server = ServerHandshake(random_bytes=Rand())
    try:
        server.receive(bytes([first]) + data)
    except HandshakeError:
        assert not (3 <= first <= 31) or data[:1] == b"\x03" and first == 0x16


@SETTINGS
@given(data=st.binary(max_size=4000), first=st.integers(0, 255), version_byte=st.integers(0, 255))
def test_client_garbage_raises_only_handshake_error(data, first, version_byte):
    client = ClientHandshake(random_bytes=Rand(1))
    client.start()
    # Put an arbitrary first S1 version byte in place so both the simple and complex paths run.
    payload = bytearray(bytes([first]) + data)
    if len(payload) > 5:
        payload[5] = version_byte
    try:
        client.receive(bytes(payload))
    except HandshakeError:
        pass


# -- misuse -----------------------------------------------------------------------------------

def test_client_misuse_is_local_error():
    client = ClientHandshake(random_bytes=Rand())
    with pytest.raises(LocalProtocolError):
        client.receive(b"\x03")
    client.start()
    with pytest.raises(LocalProtocolError):
        client.start()
    with pytest.raises(LocalProtocolError):
        ClientHandshake(version=(0, 0, 0, 0))
    with pytest.raises(LocalProtocolError):
        ClientHandshake(schema=2)


def test_short_random_source_is_local_error():
    server = ServerHandshake(random_bytes=lambda n: b"\0")
    with pytest.raises(LocalProtocolError):
        server.receive(_server_input(False, b""))


def test_server_with_the_system_random_source_answers_ffmpeg_with_fresh_valid_s1_and_s2():
    c2s, _ = capture("ffmpeg-play")
    outs = [ServerHandshake().receive(c2s[: 1 + C1_SIZE]) for _ in range(2)]
    client_digest = embedded_digest(c2s[1 : 1 + C1_SIZE], FP_KEY[:30], 0)
    for out in outs:
        s1, s2 = out[1 : 1 + C1_SIZE], out[1 + C1_SIZE :]
        assert len(s2) == C1_SIZE and embedded_digest(s1, FMS_KEY[:36], 0) is not None
        assert signed_by(s2, client_digest, FMS_KEY)
        assert s1[8:600] != s2[8:600]  # S2's random bytes are not S1's
    assert outs[0][9:] != outs[1][9:]
