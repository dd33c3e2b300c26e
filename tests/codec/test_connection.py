"""Tests for rtmpserver.codec.connection: two sans-IO connections talking in memory, and a real
FFmpeg publish (tests/data/ffmpeg-publish.c2s.bin, see tests/data/README.md) fed to a server."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmpserver.codec import messages as m
from rtmpserver.codec.chunk import MAX_CHUNK_SIZE
from rtmpserver.codec.connection import RTMPConnection, csid_for
from rtmpserver.codec.handshake import C1_SIZE
from rtmpserver.errors import LimitExceeded, RemoteProtocolError

DATA = Path(__file__).resolve().parent.parent / "data"
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_pair(seed: int = 1, **server_kw) -> tuple[RTMPConnection, RTMPConnection]:
    rnd = random.Random(seed)
    client = RTMPConnection(server=False, random_bytes=rnd.randbytes)
    server = RTMPConnection(server=True, random_bytes=rnd.randbytes, **server_kw)
    return client, server


def pump(a: RTMPConnection, b: RTMPConnection) -> tuple[list, list]:
    """Move bytes both ways until both are quiet; returns (messages a got, messages b got)."""
    got_a: list = []
    got_b: list = []
    while True:
        to_b = a.data_to_send()
        to_a = b.data_to_send()
        if not to_a and not to_b:
            return got_a, got_b
        if to_b:
            got_b += b.receive_data(to_b)
        if to_a:
            got_a += a.receive_data(to_a)


def connected(seed: int = 1, **server_kw) -> tuple[RTMPConnection, RTMPConnection]:
    client, server = make_pair(seed, **server_kw)
    client.initiate()
    assert pump(client, server) == ([], [])
    return client, server


def test_handshake_completes():
    client, server = make_pair()
    assert not client.handshake_complete and not server.handshake_complete
    client.initiate()
    c0c1 = client.data_to_send()
    assert len(c0c1) == 1 + C1_SIZE and c0c1[0] == 3
    assert server.receive_data(c0c1) == []
    s012 = server.data_to_send()
    assert len(s012) == 1 + 2 * C1_SIZE  # S0+S1+S2 at once, without waiting for C2
    assert client.receive_data(s012) == []
    assert client.handshake_complete
    c2 = client.data_to_send()
    assert len(c2) == C1_SIZE
    assert server.receive_data(c2) == []
    assert server.handshake_complete
    assert client.data_to_send() == server.data_to_send() == b""
    # Handshake bytes are not part of the chunk stream that acknowledgements count.
    assert client.reader.bytes_received == server.reader.bytes_received == 0
    assert client.bytes_sent == 1 + 2 * C1_SIZE and server.bytes_sent == 1 + 2 * C1_SIZE


def test_connect_arrives_typed_and_result_returns():
    client, server = connected()
    client.send_command("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"})
    _, got = pump(client, server)
    assert got == [m.CommandMessage(0, "connect", 1.0, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}, [])]
    server.send(m.WindowAcknowledgementSize(2_500_000))
    server.send(m.SetPeerBandwidth(2_500_000, 2))
    server.send_command("_result", 1, {"fmsVer": "FMS/3,0,1,123"}, {"code": "NetConnection.Connect.Success"})
    got, _ = pump(client, server)
    assert got == [
        m.WindowAcknowledgementSize(2_500_000),
        m.SetPeerBandwidth(2_500_000, 2),
        m.CommandMessage(0, "_result", 1.0, {"fmsVer": "FMS/3,0,1,123"}, [{"code": "NetConnection.Connect.Success"}]),
    ]
    assert client.peer_window_ack_size == 2_500_000


def test_command_on_message_stream():
    client, server = connected()
    client.send_command("publish", 5, None, "cam", "live", stream_id=1)
    _, got = pump(client, server)
    assert got == [m.CommandMessage(1, "publish", 5.0, None, ["cam", "live"])]


def test_acknowledgement_exactly_at_window():
    # 16 bytes of Window Ack Size plus 314 of the first audio message reach a 330-byte window.
    client, server = connected()
    server.send(m.WindowAcknowledgementSize(330))
    client.receive_data(server.data_to_send())
    assert client.data_to_send() == b""
    server.send(m.AudioMessage(0, 1, bytes(300)))
    client.receive_data(server.data_to_send())
    assert server.receive_data(client.data_to_send()) == [m.Acknowledgement(330)]


def test_amf3_command_over_the_wire():
    client, server = connected()
    client.send_command("createStream", 2, None, stream_id=0, amf3=True)
    _, got = pump(client, server)
    assert got == [m.CommandMessage(0, "createStream", 2.0, None, [], amf3=True)]


def test_media_and_data_keep_stream_id_and_timestamp():
    client, server = connected()
    client.send(m.DataMessage(0, 1, [], m.data_payload("@setDataFrame", "onMetaData", {"width": 320})))
    client.send(m.VideoMessage(40, 1, b"\x17\x00" + bytes(300)))
    client.send(m.AudioMessage(0x01000000, 1, b"\xaf\x01" + bytes(10)))
    _, got = pump(client, server)
    assert [type(x) for x in got] == [m.DataMessage, m.VideoMessage, m.AudioMessage]
    assert got[0].values == ["@setDataFrame", "onMetaData", {"width": 320.0}]
    assert (got[1].timestamp, got[1].stream_id, got[1].payload) == (40, 1, b"\x17\x00" + bytes(300))
    assert (got[2].timestamp, got[2].stream_id) == (0x01000000, 1)


def test_set_chunk_size_changes_both_sides():
    client, server = connected()
    client.send(m.SetChunkSize(4096))
    assert client.writer.chunk_size == 4096
    payload = b"\x27\x01" + bytes(2998)
    client.send(m.VideoMessage(0, 1, payload))
    wire = client.data_to_send()
    # Set Chunk Size (12-byte header + 4) then the video message as one chunk (12-byte header).
    assert len(wire) == 16 + 12 + 3000
    got = server.receive_data(wire)
    assert got == [m.SetChunkSize(4096), m.VideoMessage(0, 1, payload)]
    assert server.reader.chunk_size == 4096
    # Each direction has its own chunk size: the server still writes 128-byte chunks.
    server.send(m.VideoMessage(0, 1, payload))
    back = server.data_to_send()
    assert len(back) == 12 + 3000 + (3000 - 1) // 128
    assert client.receive_data(back) == [m.VideoMessage(0, 1, payload)]


def test_set_chunk_size_above_message_limit_clamps_writer():
    client, server = connected()
    client.send(m.SetChunkSize(0x7FFFFFFF))
    assert client.writer.chunk_size == MAX_CHUNK_SIZE
    client.send(m.AudioMessage(0, 1, bytes(70000)))
    _, got = pump(client, server)
    assert got == [m.SetChunkSize(0x7FFFFFFF), m.AudioMessage(0, 1, bytes(70000))]
    assert server.reader.chunk_size == MAX_CHUNK_SIZE


def test_acknowledgement_after_window():
    client, server = connected()
    server.send(m.WindowAcknowledgementSize(1000))
    sizes: list[int] = []
    acks: list[int] = []
    for k in range(11):
        if k:
            server.send(m.AudioMessage(k, 1, bytes(300)))
        wire = server.data_to_send()
        sizes.append(len(wire))
        client.receive_data(wire)
        out = client.data_to_send()
        if out:
            got = server.receive_data(out)
            assert got == [m.Acknowledgement(sum(sizes))]  # the total received so far
            acks.append(sum(sizes))
    # Window Ack Size 12 + 4; first audio fmt 0: 12 + 300 + 2 fmt-3 separators; then fmt 2 (new
    # delta 1): 4 + 302; then fmt 3 (same delta): 1 + 302.
    assert sizes == [16, 314, 306] + [303] * 8
    # Running totals 16, 330, 636, 939, 1242 (ack), 1545, 1848, 2151, 2454 (ack), 2757, 3060.
    assert acks == [1242, 2454]


def test_no_acknowledgement_without_window():
    client, server = connected()
    for k in range(20):
        server.send(m.VideoMessage(k, 1, bytes(1000)))
    client.receive_data(server.data_to_send())
    assert client.data_to_send() == b""


def test_data_after_c2_in_same_segment_is_not_lost():
    client, server = make_pair()
    client.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send_command("connect", 1, {"app": "live"})
    blob = client.data_to_send()  # C2 immediately followed by the connect chunk, as FFmpeg sends it
    assert len(blob) > C1_SIZE
    assert server.receive_data(blob) == [m.CommandMessage(0, "connect", 1.0, {"app": "live"}, [])]


@pytest.mark.parametrize("cut", [1, C1_SIZE - 1, C1_SIZE, C1_SIZE + 1, C1_SIZE + 5, -1])
def test_data_after_c2_any_split(cut):
    client, server = make_pair()
    client.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send_command("connect", 1, {"app": "live"})
    blob = client.data_to_send()
    got = server.receive_data(blob[:cut]) + server.receive_data(blob[cut:])
    assert got == [m.CommandMessage(0, "connect", 1.0, {"app": "live"}, [])]


def test_data_after_s2_in_same_segment_is_not_lost():
    client, server = make_pair()
    client.initiate()
    server.receive_data(client.data_to_send())
    server.send(m.WindowAcknowledgementSize(5_000_000))
    server.send(m.UserControl.stream_begin(0))
    blob = server.data_to_send()
    assert len(blob) > 1 + 2 * C1_SIZE
    assert client.receive_data(blob) == [m.WindowAcknowledgementSize(5_000_000), m.UserControl.stream_begin(0)]


def test_bytes_byte_by_byte():
    client, server = make_pair()
    client.initiate()
    client_out = client.data_to_send()
    for i in range(len(client_out)):
        assert server.receive_data(client_out[i : i + 1]) == []
    s = server.data_to_send()
    for i in range(len(s)):
        client.receive_data(s[i : i + 1])
    client.send_command("connect", 1, {"app": "live"})
    blob = client.data_to_send()
    got = []
    for i in range(len(blob)):
        got += server.receive_data(blob[i : i + 1])
    assert got == [m.CommandMessage(0, "connect", 1.0, {"app": "live"}, [])]


def test_aggregate_flattened():
    client, server = connected()
    tag = lambda t, ts, body: (  # noqa: E731 -- FLV tag + back-pointer, by hand
        bytes([t]) + len(body).to_bytes(3, "big") + ts.to_bytes(3, "big") + b"\x00\x00\x00\x00" + body
        + (11 + len(body)).to_bytes(4, "big")
    )
    client.send_raw(22, tag(9, 0, b"\x17\x01v") + tag(8, 20, b"\xaf\x01a"), stream_id=1, timestamp=500)
    _, got = pump(client, server)
    assert got == [m.VideoMessage(500, 1, b"\x17\x01v"), m.AudioMessage(520, 1, b"\xaf\x01a")]


def test_limits_passed_to_reader_and_decoder():
    client, server = connected(max_message_size=1000, max_amf_depth=3)
    client.send(m.AudioMessage(0, 1, bytes(1000)))
    _, got = pump(client, server)
    assert len(got) == 1
    client.send_command("connect", 1, {"a": {"b": {"c": {"d": 1}}}})
    with pytest.raises(RemoteProtocolError):
        pump(client, server)
    client, server = connected(max_message_size=1000)
    client.send(m.AudioMessage(0, 1, bytes(1001)))
    with pytest.raises(LimitExceeded):
        pump(client, server)
    client, server = connected(max_partial_csids=1, max_partial_bytes=300)
    client.send(m.AudioMessage(0, 1, bytes(200)))
    audio = client.data_to_send()
    client.send(m.VideoMessage(0, 1, bytes(200)))
    video = client.data_to_send()
    server.receive_data(audio[: 12 + 128])  # 128 bytes in flight on csid 6
    with pytest.raises(LimitExceeded, match="more than 1 chunk streams"):
        server.receive_data(video[: 12 + 128])  # a second chunk stream in flight: over
    client, server = connected(max_partial_bytes=300)
    for _ in range(3):
        client.send(m.AudioMessage(0, 1, bytes(1000)))
    with pytest.raises(LimitExceeded, match="limit of 300"):
        server.receive_data(client.data_to_send()[:12 + 128 + 1 + 128 + 1 + 128])


def test_csid_for():
    assert [csid_for(t) for t in (1, 2, 3, 4, 5, 6)] == [2] * 6
    assert (csid_for(8), csid_for(9), csid_for(18), csid_for(15), csid_for(20), csid_for(17)) == (6, 7, 5, 5, 3, 3)
    assert csid_for(22) == 3


def test_control_messages_go_on_csid_2_stream_0():
    client, server = connected()
    client.send(m.Acknowledgement(5))
    client.send(m.UserControl.ping_response(9))
    wire = client.data_to_send()
    raws = server.reader.feed(wire)
    assert [(r.csid, r.stream_id, r.type_id) for r in raws] == [(2, 0, 3), (2, 0, 4)]


@SETTINGS
@given(st.binary(max_size=400), st.integers(0, 3))
def test_random_chunk_bytes_raise_only_remote_protocol_errors(blob, seed):
    _, server = connected(seed, max_message_size=200, max_partial_bytes=300, max_partial_csids=4, max_amf_depth=4)
    try:
        server.receive_data(blob)
    except RemoteProtocolError:
        pass


# -- a real FFmpeg publish -------------------------------------------------------------------------


PUBLISH = DATA / "ffmpeg-publish.c2s.bin"


@pytest.fixture(scope="module")
def publish_capture() -> bytes:
    return PUBLISH.read_bytes()


def check_publish(got: list) -> None:
    commands = [(x.name, x.transaction_id, x.stream_id) for x in got if type(x) is m.CommandMessage]
    assert commands == [
        ("connect", 1.0, 0),
        ("releaseStream", 2.0, 0),
        ("FCPublish", 3.0, 0),
        ("createStream", 4.0, 0),
        ("publish", 5.0, 1),
        ("FCUnpublish", 6.0, 0),
        ("deleteStream", 7.0, 0),
    ]
    assert got[0].command_object["app"] == "live"
    assert got[0].command_object["tcUrl"] == "rtmp://127.0.0.1:19351/live"
    # FFmpeg announces 4096-byte chunks right after connect.
    assert got[1] == m.SetChunkSize(4096)
    assert [x.name for x in got[2:6]] == ["releaseStream", "FCPublish", "createStream", "publish"]
    assert got[5].arguments == ["cap", "live"]
    meta = got[6]
    assert type(meta) is m.DataMessage and meta.stream_id == 1
    assert meta.values[:2] == ["@setDataFrame", "onMetaData"]
    assert (meta.values[2]["width"], meta.values[2]["height"], meta.values[2]["videocodecid"]) == (320, 240, 7)
    media = got[7:-2]
    assert all(type(x) in (m.AudioMessage, m.VideoMessage) and x.stream_id == 1 for x in media)
    video = [x for x in media if type(x) is m.VideoMessage]
    audio = [x for x in media if type(x) is m.AudioMessage]
    # 2 s of 30 fps H.264: sequence header, 60 frames (keyframes every 30), end of sequence.
    assert len(video) == 62
    assert video[0].payload[:2] == b"\x17\x00" and video[-1].payload[:2] == b"\x17\x02"
    assert sum(x.payload[0] == 0x17 for x in video[1:-1]) == 2
    assert {x.payload[0] for x in video[1:-1]} == {0x17, 0x27}
    # AAC at 44.1 kHz: sequence header then about 2 * 44100 / 1024 frames.
    assert audio[0].payload[:2] == b"\xaf\x00"
    assert {x.payload[:2] for x in audio[1:]} == {b"\xaf\x01"}
    assert 87 <= len(audio) <= 90
    for kind in (video, audio):
        ts = [x.timestamp for x in kind]
        assert ts == sorted(ts) and ts[-1] < 2100


def test_ffmpeg_publish_in_one_piece(publish_capture):
    server = RTMPConnection(server=True)
    got = server.receive_data(publish_capture)
    check_publish(got)
    assert server.reader.bytes_received == len(publish_capture) - (1 + 2 * C1_SIZE)
    assert server.reader.partial_csids == 0
    assert len(server.data_to_send()) == 1 + 2 * C1_SIZE  # S0+S1+S2, and no acknowledgement


@SETTINGS
@given(st.data())
def test_ffmpeg_publish_random_splits(publish_capture, data):
    n = len(publish_capture)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=1, max_size=60)))
    # A few runs of tiny pieces too, so splits land inside headers and extended fields.
    server = RTMPConnection(server=True)
    got = []
    prev = 0
    for c in cuts + [n]:
        piece = publish_capture[prev:c]
        if data.draw(st.booleans()) and len(piece) < 5000:
            for i in range(0, len(piece), 3):
                got += server.receive_data(piece[i : i + 3])
        else:
            got += server.receive_data(piece)
        prev = c
    check_publish(got)


@pytest.mark.parametrize("name", ["publish", "play"])
def test_nginx_rtmp_answers_decode(name):
    # The server side of the captures: nginx-rtmp's control messages, results and (for play) media
    # in 4096-byte chunks.  The client handshake cannot be replayed (S2 is signed for FFmpeg's C1),
    # so the chunk stream is read from where it starts, after S0+S1+S2.
    from rtmpserver.codec.chunk import ChunkReader

    data = (DATA / f"ffmpeg-{name}.s2c.bin").read_bytes()
    reader = ChunkReader()
    got = []
    for i in range(1 + 2 * C1_SIZE, len(data), 1000):
        got += [m.decode(r) for r in reader.feed(data[i : i + 1000])]
    assert got[:3] == [m.WindowAcknowledgementSize(5_000_000), m.SetPeerBandwidth(5_000_000, 2), m.SetChunkSize(4096)]
    assert reader.chunk_size == 4096 and reader.partial_csids == 0
    connect_result = got[3]
    assert (connect_result.name, connect_result.transaction_id) == ("_result", 1.0)
    assert connect_result.arguments[0]["code"] == "NetConnection.Connect.Success"
    statuses = [x.arguments[0]["code"] for x in got if type(x) is m.CommandMessage and x.name == "onStatus"]
    if name == "publish":
        assert statuses == ["NetStream.Publish.Start", "NetStream.Unpublish.Success"]
    else:
        assert statuses == ["NetStream.Play.Start"]
        assert m.UserControl.stream_begin(1) in got and m.UserControl.stream_eof(1) in got
        data_msgs = [x.values[0] for x in got if type(x) is m.DataMessage]
        assert data_msgs == ["|RtmpSampleAccess", "onMetaData"]
        video = [x for x in got if type(x) is m.VideoMessage]
        assert video[0].payload[:2] == b"\x17\x00"  # a late player gets the sequence header first
        assert len(video) > 50 and sum(type(x) is m.AudioMessage for x in got) > 50
