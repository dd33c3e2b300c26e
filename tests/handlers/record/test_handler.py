"""The record handler: publish starts recorders per mode, manual start/stop, done callbacks."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from rtmpserver.errors import Rejected
from rtmpserver.handlers.record import (
    RecordHandler,
)
from rtmpserver.hub import Hub
from rtmpserver.media.flv import (
    is_video_keyframe,
)
from rtmpserver.requests import HandlerContext, PublishRequest
from tests.handlers.record.helpers import (
    AUDIO_PER_LOOP,
    KEYS_PER_LOOP,
    VIDEO_PER_LOOP,
    Pub,
    check_file_start,
    media,
    metadata_of,
    record_stream,
    send_headers,
    send_loops,
    settings_for,
    tags_of,
)

# --- modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["audio", "video", "keyframes"])
def test_mode_filters(tmp_path, mode):
    rec, _ = record_stream(tmp_path, loops=2, mode=mode)
    tags = tags_of(rec.paths[0])
    flags = Path(rec.paths[0]).read_bytes()[4]
    meta = metadata_of(tags)
    if mode == "audio":
        check_file_start(tags, video=False)
        assert flags == 4 and {t.type for t in tags[1:]} == {8}
        assert len(media(tags, 8)) == 2 * AUDIO_PER_LOOP and meta["hasVideo"] is False
    else:
        check_file_start(tags, audio=False)
        assert flags == 1 and {t.type for t in tags[1:]} == {9}
        assert meta["hasAudio"] is False and "audiocodecid" not in meta
        video = media(tags, 9)
        if mode == "video":
            assert len(video) == 2 * VIDEO_PER_LOOP
        else:
            assert len(video) == 2 * KEYS_PER_LOOP and all(is_video_keyframe(t.payload) for t in video)
            assert meta["keyframes"]["filepositions"] == [t.offset for t in video]


def fake_session():
    return types.SimpleNamespace(id=1, peer="127.0.0.1:5000", host="127.0.0.1")


def publish_request(name="cam", mode="live"):
    return PublishRequest(app="live", name=name, mode=mode, args={"k": "v"}, session=fake_session())


def make_handler(tmp_path, mode="all", **kw):
    hub = Hub()
    ctx = HandlerContext(app=types.SimpleNamespace(name="live"), server=types.SimpleNamespace(path="<string>"), hub=hub, clock=Clock())
    return RecordHandler(settings_for(tmp_path, mode=mode, **kw), ctx), hub


def publish_through(handler, hub, request):
    """What the chain does: the hook proceeds, the server goes live, proceed's Deferred fires."""
    calls = []
    stream = hub.get_or_create("live", request.name)

    def proceed(req):
        calls.append(req)
        stream.start(Pub(), 0.0)
        return defer.succeed(stream)

    result = handler.publish(request, proceed)
    assert len(calls) == 1 and calls[0] is request
    return stream, result


@pytest.mark.parametrize("mode", ["all", "audio", "video", "keyframes"])
def test_publish_starts_a_recorder(tmp_path, mode):
    handler, hub = make_handler(tmp_path, mode)
    done = []
    handler.on_record_done.append(done.append)
    request = publish_request()
    stream, result = publish_through(handler, hub, request)
    assert result.result is stream
    rec = handler.recorders["cam"]
    assert rec in stream.sinks and rec.mode == mode
    send_headers(stream)
    send_loops(stream, 1)
    stream.stop()
    assert rec not in stream.sinks and "cam" not in handler.recorders
    assert [d.path for d in done] == rec.paths and done[0].session is request.session and done[0].args == {"k": "v"}
    assert hub.get("live", "cam") is None  # nothing keeps the stream alive


@pytest.mark.parametrize("client_mode", ["record", "append"])
def test_off_and_manual_do_not_record_even_if_the_client_asks(tmp_path, client_mode):
    for mode in ("off", "manual"):
        handler, hub = make_handler(tmp_path, mode)
        stream, _ = publish_through(handler, hub, publish_request(mode=client_mode))
        send_headers(stream)
        send_loops(stream, 1)
        stream.stop()
        assert handler.recorders == {}
    assert not (tmp_path / "rec").exists()


def test_manual_start_and_stop(tmp_path):
    handler, hub = make_handler(tmp_path, "manual")
    with pytest.raises(LookupError):
        handler.start("cam")
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    rec = handler.start("cam")
    assert handler.start(stream) is rec  # already recording: the same recorder
    assert rec.mode == "all"
    send_loops(stream, 1, first=1)
    path = handler.stop("cam")
    assert path == rec.paths[0] and rec not in stream.sinks
    assert handler.stop("cam") is None
    tags = tags_of(path)
    check_file_start(tags)  # started from the cached GOP
    send_loops(stream, 1, first=2)  # the stream goes on, unrecorded
    assert len(rec.paths) == 1
    stream.stop()


def test_manual_start_refused_when_off(tmp_path):
    handler, hub = make_handler(tmp_path, "off")
    stream, _ = publish_through(handler, hub, publish_request())
    with pytest.raises(ValueError):
        handler.start(stream)


def test_rejected_later_in_the_chain_records_nothing(tmp_path):
    handler, hub = make_handler(tmp_path)

    def proceed(req):
        return defer.fail(Rejected("NetStream.Publish.Denied", "no"))

    d = handler.publish(publish_request(), proceed)
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(Rejected)
    assert handler.recorders == {}


def test_a_new_publisher_gets_a_new_file(tmp_path):
    handler, hub = make_handler(tmp_path)
    for _ in range(2):
        stream, _ = publish_through(handler, hub, publish_request())
        send_headers(stream)
        send_loops(stream, 1)
        stream.stop()
    assert len(list((tmp_path / "rec" / "live").iterdir())) == 2


def test_stop_all_finishes_files(tmp_path):
    handler, hub = make_handler(tmp_path)
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    rec = handler.recorders["cam"]
    handler.stop_all()
    assert metadata_of(tags_of(rec.paths[0]))["duration"] > 0.9
    stream.stop()


def test_failing_done_callback_is_logged_and_harmless(tmp_path):
    handler, hub = make_handler(tmp_path)
    seen = []

    def broken(done):
        raise RuntimeError("notify is down")

    handler.on_record_done += [broken, seen.append]
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    with capturedLogs() as logs:
        stream.stop()
    assert len(seen) == 1
    assert any("record done callback failed" in e.get("log_format", "") for e in logs)


def test_record_done_is_logged_with_fields(tmp_path):
    with capturedLogs() as logs:
        rec, done = record_stream(tmp_path, loops=1)
    events = [e for e in logs if e.get("log_format", "").startswith("record done")]
    assert len(events) == 1
    e = events[0]
    assert (e["app"], e["name"], e["path"], e["size"], e["reason"]) == ("live", "cam", rec.paths[0], done[0].size, "stopped")


def test_server_stop_finishes_open_files_with_reason_shutdown(tmp_path):
    from zope.interface.verify import verifyObject

    from rtmpserver.interfaces import (
        IHandlerService,
        IRecordingController,
        IRecordingSource,
    )

    handler, hub = make_handler(tmp_path)
    for iface in (IHandlerService, IRecordingController, IRecordingSource):
        verifyObject(iface, handler)
    done = []
    handler.on_record_done.append(done.append)
    stream, _ = publish_through(handler, hub, publish_request())
    send_headers(stream)
    send_loops(stream, 1)
    assert handler.start_service() is None
    assert handler.stop_service() is None
    assert [d.reason for d in done] == ["shutdown"]
    assert metadata_of(tags_of(done[0].path))["duration"] > 0.9
    stream.stop()
