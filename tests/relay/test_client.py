"""RelaySession (sans-IO) against nginx-rtmp's recorded answers and hand-made server messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtmpserver.codec import amf0
from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection
from rtmpserver.codec.handshake import ClientHandshake
from rtmpserver.errors import LocalProtocolError, RemoteProtocolError
from rtmpserver.relay import client as rc
from rtmpserver.relay.url import parse_url
from tests.relay.helpers import Recorder

DATA = Path(__file__).resolve().parents[1] / "data"


def session(url="rtmp://127.0.0.1:19352/live/cap", mode=rc.PLAY, consumer=None, simple=True):
    phases, failures = [], []
    s = rc.RelaySession(
        parse_url(url), mode, consumer=consumer if consumer is not None else (Recorder() if mode == rc.PLAY else None),
        phase_changed=phases.append, failed=failures.append,
    )
    if simple:
        # nginx signed its S2 with FFmpeg's C1 digest: replaying it needs the simple handshake,
        # which takes any S2 (the complex one is covered by the live server tests).
        s.conn.handshake = ClientHandshake(complex=False)
    s.start()
    return s, phases, failures


def sent_messages(s) -> list:
    """What the session sent, decoded by a server-side codec."""
    srv = RTMPConnection(server=True)
    return srv.receive_data(s.data_to_send())


def test_play_replay_of_nginx():
    s, phases, failures = session()
    s.data_to_send()  # C0+C1
    s2c = (DATA / "ffmpeg-play.s2c.bin").read_bytes()
    # Feed in uneven pieces: the session must not care where TCP cut the stream.
    for i in range(0, len(s2c), 997):
        s.receive_data(s2c[i : i + 997])
    rec = s.consumer
    assert failures == []
    assert phases == [rc.CONNECTING, rc.STARTING, rc.PLAYING]
    assert s.stream_id == 1
    kinds = rec.kinds()
    assert kinds[0] == "started"
    assert kinds.count("metadata") == 1 and "data" not in kinds  # |RtmpSampleAccess is not stream data
    assert kinds.count("video") > 50 and kinds.count("audio") > 50
    first_video = next(e for e in rec.events if e[0] == "video")
    assert first_video[2][:2] == b"\x17\x00"  # AVC sequence header first
    assert "NetStream.Play.Start" in s.statuses


def test_play_sends_the_ffmpeg_command_sequence():
    s, _, _ = session("rtmp://origin/live/cam?token=t")
    srv = RTMPConnection(server=True)
    srv.receive_data(s.data_to_send())  # C0+C1
    s.receive_data(srv.data_to_send())  # S0+S1+S2
    msgs = srv.receive_data(s.data_to_send())
    connect = msgs[0]
    assert connect.name == "connect" and connect.transaction_id == 1.0
    obj = connect.command_object
    assert obj["app"] == "live" and obj["tcUrl"] == "rtmp://origin/live" and obj["objectEncoding"] == 0.0
    assert "avc1" in obj["fourCcList"] and obj["capabilities"] == 15.0
    srv.send_command("_result", 1.0, {"fmsVer": "FMS/3,0,1,123"}, {"level": "status", "code": "NetConnection.Connect.Success"})
    s.receive_data(srv.data_to_send())
    msgs = srv.receive_data(s.data_to_send())
    assert [type(x) for x in msgs[:2]] == [m.SetChunkSize, m.WindowAcknowledgementSize]
    assert msgs[0].size == 4096
    assert msgs[2].name == "createStream"
    srv.send_command("_result", msgs[2].transaction_id, None, 5.0)
    s.receive_data(srv.data_to_send())
    msgs = srv.receive_data(s.data_to_send())
    assert msgs[0].name == "play" and msgs[0].stream_id == 5 and msgs[0].arguments[:2] == ["cam?token=t", -1000.0]
    assert msgs[1] == m.UserControl(m.UserControlEvent.SET_BUFFER_LENGTH, 5, 1000)
    # a ping is answered
    srv.send(m.UserControl.ping_request(1234))
    s.receive_data(srv.data_to_send())
    assert srv.receive_data(s.data_to_send()) == [m.UserControl.ping_response(1234)]


def publish_session(url="rtmp://127.0.0.1:1935/live/cap"):
    s, phases, failures = session(url, mode=rc.PUBLISH)
    s.data_to_send()
    s.receive_data((DATA / "ffmpeg-publish.s2c.bin").read_bytes())
    return s, phases, failures


def test_publish_replay_of_nginx():
    s, phases, failures = publish_session()
    # The capture ends with Unpublish.Success (a status, not an error): we are still publishing.
    assert failures == [] and phases == [rc.CONNECTING, rc.STARTING, rc.PUBLISHING]
    assert s.stream_id == 1


def test_publish_command_sequence_and_media():
    s, _, _ = session("rtmp://origin/live/cam", mode=rc.PUBLISH)
    srv = RTMPConnection(server=True)
    srv.receive_data(s.data_to_send())
    s.receive_data(srv.data_to_send())
    connect = srv.receive_data(s.data_to_send())[0]
    assert connect.command_object["flashVer"].startswith("FMLE/3.0")
    srv.send_command("_result", 1.0, None, {"code": "NetConnection.Connect.Success"})
    s.receive_data(srv.data_to_send())
    msgs = srv.receive_data(s.data_to_send())
    assert [x.name for x in msgs[2:]] == ["releaseStream", "FCPublish", "createStream"]
    with pytest.raises(LocalProtocolError):
        s.send_video(0, b"\x17\x01")  # not publishing yet
    srv.send_command("_error", 2.0, None, {"code": "NetConnection.Call.Failed"})  # releaseStream unknown: fine
    srv.send_command("_result", 4.0, None, 1.0)
    s.receive_data(srv.data_to_send())
    pub = srv.receive_data(s.data_to_send())[0]
    assert pub.name == "publish" and pub.arguments == ["cam", "live"] and pub.stream_id == 1
    srv.send(m.CommandMessage(1, "onStatus", 0.0, None, [{"level": "status", "code": "NetStream.Publish.Start"}]))
    s.receive_data(srv.data_to_send())
    assert s.phase == rc.PUBLISHING
    meta = amf0.encode("onMetaData", {"width": 1.0})
    s.send_metadata(meta)
    s.send_video(40, b"\x17\x01" + b"v" * 9000)
    s.send_audio(41, b"\xaf\x01aa")
    got = srv.receive_data(s.data_to_send())
    assert got[0].values[:2] == ["@setDataFrame", "onMetaData"] and got[0].payload.endswith(meta)
    assert (got[1].timestamp, len(got[1].payload)) == (40, 9002)
    assert (got[2].timestamp, got[2].payload) == (41, b"\xaf\x01aa")


@pytest.mark.parametrize(
    "status",
    [
        {"level": "error", "code": "NetStream.Play.StreamNotFound", "description": "nope"},
        {"level": "error", "code": "NetStream.Play.Failed"},
        {"level": "status", "code": "NetStream.Play.Stop"},
    ],
)
def test_play_refusals_end_the_session(status):
    s, phases, failures = _playing()
    s.receive_data(_server_bytes(s, m.CommandMessage(1, "onStatus", 0.0, None, [status])))
    assert len(failures) == 1 and status["code"] in failures[0]
    assert s.phase == rc.CLOSED
    assert s.consumer.kinds()[-1] == "stopped"


def test_connect_error_fails():
    s, phases, failures = session()
    srv = _handshake(s)
    srv.send_command("_error", 1.0, None, {"level": "error", "code": "NetConnection.Connect.Rejected", "description": "go away"})
    s.receive_data(srv.data_to_send())
    assert failures == ["connect refused: NetConnection.Connect.Rejected go away"]


def test_unpublish_and_publish_notify_stop_and_restart_the_consumer():
    s, _, failures = _playing()
    rec = s.consumer
    srv = s._srv
    srv.send(m.VideoMessage(0, 1, b"\x17\x01a"))
    srv.send(m.CommandMessage(1, "onStatus", 0.0, None, [{"level": "status", "code": "NetStream.Play.UnpublishNotify"}]))
    srv.send(m.VideoMessage(10, 1, b"\x27\x01b"))  # between publishers: not delivered
    srv.send(m.CommandMessage(1, "onStatus", 0.0, None, [{"level": "status", "code": "NetStream.Play.PublishNotify"}]))
    srv.send(m.DataMessage(0, 1, ["@setDataFrame", "onMetaData", {}], amf0.encode("@setDataFrame", "onMetaData", {})))
    srv.send(m.DataMessage(5, 1, ["onCuePoint", {}], amf0.encode("onCuePoint", {})))
    srv.send(m.AudioMessage(20, 1, b"\xaf\x01c"))
    s.receive_data(srv.data_to_send())
    assert failures == []
    assert rec.kinds() == ["started", "video", "stopped", "started", "metadata", "data", "audio"]
    assert rec.events[4] == ("metadata", 0, amf0.encode("onMetaData", {}))


def test_stream_eof_and_stream_begin_stop_and_restart_the_consumer():
    """Servers that send no Publish/UnpublishNotify (nginx-rtmp's default, ours): user control events."""
    s, _, failures = _playing()
    rec = s.consumer
    srv = s._srv
    srv.send(m.VideoMessage(0, 1, b"\x17\x01a"))
    srv.send(m.UserControl.stream_eof(2))  # another stream id: not ours
    srv.send(m.UserControl.stream_eof(1))
    srv.send(m.VideoMessage(10, 1, b"\x27\x01b"))  # between publishers: not delivered
    srv.send(m.UserControl.stream_begin(1))
    srv.send(m.AudioMessage(20, 1, b"\xaf\x01c"))
    s.receive_data(srv.data_to_send())
    assert failures == []
    assert rec.kinds() == ["started", "video", "stopped", "started", "audio"]


def test_garbage_raises_remote_protocol_error():
    s, _, _ = _playing()
    bad = s._srv.writer.write(3, 0, 20, 0, b"\xff\xff\xff\xff")  # a command that is not AMF0
    with pytest.raises(RemoteProtocolError):
        s.receive_data(bad)


def test_connection_lost_tells_a_receiving_consumer_once():
    s, _, _ = _playing()
    s.connection_lost("connection reset")
    s.connection_lost("again")
    assert s.consumer.kinds() == ["started", "stopped"]
    assert s.failure == "connection reset"


def test_close_says_delete_stream():
    s, _, _ = _playing()
    s.close()
    names = [x.name for x in s._srv.receive_data(s.data_to_send()) if type(x) is m.CommandMessage]
    assert names == ["deleteStream"]


def test_mode_and_consumer_are_checked():
    with pytest.raises(LocalProtocolError):
        rc.RelaySession(parse_url("rtmp://h/a/b"), "pull")
    with pytest.raises(LocalProtocolError):
        rc.RelaySession(parse_url("rtmp://h/a/b"), rc.PLAY, consumer=object())


# -- helpers ----------------------------------------------------------------------------------------


def _handshake(s):
    srv = RTMPConnection(server=True)
    srv.receive_data(s.data_to_send())
    s.receive_data(srv.data_to_send())
    srv.receive_data(s.data_to_send())
    s._srv = srv
    return srv


def _server_bytes(s, msg):
    s._srv.send(msg)
    return s._srv.data_to_send()


def _playing():
    s, phases, failures = session(simple=False)
    srv = _handshake(s)
    srv.send_command("_result", 1.0, None, {"code": "NetConnection.Connect.Success"})
    s.receive_data(srv.data_to_send())
    srv.receive_data(s.data_to_send())
    srv.send_command("_result", 2.0, None, 1.0)
    s.receive_data(srv.data_to_send())
    srv.receive_data(s.data_to_send())
    srv.send(m.CommandMessage(1, "onStatus", 0.0, None, [{"level": "status", "code": "NetStream.Play.Start"}]))
    s.receive_data(srv.data_to_send())
    assert s.phase == rc.PLAYING
    return s, phases, failures
