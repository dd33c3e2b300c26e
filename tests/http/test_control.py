"""/control/record: recorders are found by IRecordingController, not by handler name."""

from __future__ import annotations

from zope.interface import implementer

from rtmpserver.chain import Chain
from rtmpserver.interfaces import IAppHandler, IRecording, IRecordingController
from tests.http.test_site import body, ctl, live_stream, make


@implementer(IRecording)
class Recording:
    def __init__(self, paths):
        self.paths = paths


@implementer(IAppHandler, IRecordingController)
class Tape:
    """A third-party recorder under a name of its own."""

    def __init__(self):
        self.calls = []

    def connect(self, request, proceed):
        return proceed(request)

    publish = play = connect

    def close_stream(self, event):
        return None

    def start(self, stream):
        self.calls.append(("start", stream.name))
        return Recording(["/rec/cam-1.flv", "/rec/cam-2.flv"])

    def stop(self, stream):
        self.calls.append(("stop", stream.name))
        if stream.name != "cam":
            raise LookupError("not recording")
        return "/rec/cam-2.flv"


def with_handlers(f, *handlers):
    old = f.chains["live"]
    f.chains["live"] = Chain("live", [*((f"h{i}", h) for i, h in enumerate(handlers)), *old.handlers], f.clock, 10.0)


def test_record_start_and_stop_reach_any_recording_controller():
    f, root = make()
    tape = Tape()
    with_handlers(f, tape)  # named "h0", not "record"
    live_stream(f)
    req = ctl(root, "control/record/start", {"app": "live", "name": "cam"})
    assert (req.responseCode or 200, body(req)) == (200, b"/rec/cam-2.flv")
    req = ctl(root, "control/record/stop", {"app": "live", "name": "cam"})
    assert (req.responseCode or 200, body(req)) == (200, b"/rec/cam-2.flv")
    assert tape.calls == [("start", "cam"), ("stop", "cam")]


def test_record_without_a_controller_is_404_and_refusals_are_409():
    f, root = make()
    live_stream(f)
    req = ctl(root, "control/record/start", {"app": "live", "name": "cam"})
    assert req.responseCode == 404 and body(req) == b"the app has no record handler\n"

    class Refusing(Tape):
        def start(self, stream):
            raise ValueError("recording is off for app live")

    with_handlers(f, Refusing())
    req = ctl(root, "control/record/start", {"app": "live", "name": "cam"})
    assert req.responseCode == 409 and body(req) == b"recording is off for app live\n"
