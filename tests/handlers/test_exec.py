"""The exec handler without real processes: argv templates, supervision, limits, what it refuses to load."""

from __future__ import annotations

import pytest
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from rtmpserver import testing
from rtmpserver.errors import ConfigError
from rtmpserver.handlers.exec import Command
from rtmpserver.handlers.record.recorder import RecordingDone
from rtmpserver.hub import Hub


class FakeProcess:
    pids = iter(range(1000, 100000))

    def __init__(self, proto, argv):
        self.proto = proto
        self.argv = argv
        self.pid = next(self.pids)
        self.signals = []
        self.stdin_closed = False

    def closeStdin(self):
        self.stdin_closed = True

    def signalProcess(self, sig):
        self.signals.append(sig)

    def exit(self, code=0, sig=None):
        self.proto.processEnded(Failure(error.ProcessTerminated(code if sig is None else None, sig)))


def load(settings, clock=None, hub=None):
    clock = clock or Clock()
    hub = hub or Hub()
    h = testing.load_handler("exec", settings, clock=clock, hub=hub)
    spawned = []

    def spawn(proto, program, argv, env):
        p = FakeProcess(proto, argv)
        proto.makeConnection(p)
        spawned.append(p)
        return p

    h.spawn = spawn
    return h, clock, hub, spawned


def publish(h, hub, clock, name="cam"):
    live = hub.get_or_create("live", name)
    live.start(object(), 0.0)
    out = testing.run_hook(h, testing.publish_request(name), clock=clock, final=lambda req: live)
    assert out.proceeded
    return live


def test_argv_is_split_once_and_names_stay_one_argument():
    c = Command("ffmpeg -i 'rtmp://127.0.0.1/{app}/{name}' -f flv rtmp://h/out/{name}_720p", ("app", "name"))
    evil = "x; rm -rf / $(id) `id` 'q' a b"
    argv = c.argv({"app": "live", "name": evil})
    assert argv[1:] == ["-i", f"rtmp://127.0.0.1/live/{evil}", "-f", "flv", f"rtmp://h/out/{evil}_720p"]
    assert argv[0].endswith("/ffmpeg") and c.label == "ffmpeg"
    assert Command("echo {name}", ("name",)).argv({"name": "{app}"}) == [Command("echo", ()).program, "{app}"]


@pytest.mark.parametrize("text, message", [
    ("", "empty command"),
    ("echo 'unterminated", "cannot split"),
    ("echo {nam}", "unknown field"),
    ("echo {name!r}", "only {name} can be filled in"),
    ("{name} -x", "the program itself cannot be a template"),
    ("no-such-program-here {name}", "not found"),
])
def test_bad_commands(text, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Command(text, ("name",))


def test_one_process_per_stream_and_command_stopped_when_the_publisher_leaves():
    h, clock, hub, spawned = load({"publish": "echo a {name}\necho b {app}/{name}", "grace": "2"})
    live = publish(h, hub, clock)
    assert [p.argv[1:] for p in spawned] == [["a", "cam"], ["b", "live/cam"]]
    assert all(p.stdin_closed for p in spawned)
    rows = h.monitor_rows(clock.seconds())
    assert [(r["role"], r["name"], r["program"], r["state"], r["restarts"]) for r in rows] == [("publish", "cam", "echo", "running", 0)] * 2
    live.stop()
    testing.close_stream(h, testing.stream_closed("cam", role="publisher"))
    assert [p.signals for p in spawned] == [["TERM"], ["TERM"]]
    spawned[0].exit(sig=15)
    clock.advance(2.1)
    assert spawned[1].signals == ["TERM", "KILL"]  # the second ignored SIGTERM for the whole grace
    spawned[1].exit(sig=9)
    assert h.monitor_rows(clock.seconds()) == []


def test_restarts_back_off_while_the_stream_is_live():
    h, clock, hub, spawned = load({"publish": "echo {name}", "backoff_initial": "1", "backoff_max": "8"})
    publish(h, hub, clock)
    delays = []
    for _ in range(6):
        n = len(spawned)
        spawned[-1].exit(1)
        waited = 0.0
        while len(spawned) == n:
            clock.advance(0.25)
            waited += 0.25
        delays.append(waited)
    assert delays == [1, 2, 4, 8, 8, 8]
    row = h.monitor_rows(clock.seconds())[0]
    assert row["restarts"] == 6 and row["last_exit"] == "exit 1" and row["state"] == "running"
    # A run as long as backoff_max counts as healthy: the next failure waits backoff_initial again.
    clock.advance(8)
    spawned[-1].exit(1)
    clock.advance(1)
    assert len(spawned) == 8


def test_stop_during_backoff_and_service_stop_waits_for_every_process():
    h, clock, hub, spawned = load({"publish": "echo {name}", "grace": "1"})
    publish(h, hub, clock, "a")
    publish(h, hub, clock, "b")
    spawned[0].exit(1)  # "a" now waits to restart
    d = h.stop_service()
    fired = []
    d.addCallback(fired.append)
    clock.advance(5)
    assert len(spawned) == 2 and not fired  # "a" was not restarted; "b" got TERM then KILL
    assert spawned[1].signals == ["TERM", "KILL"]
    spawned[1].exit(sig=9)
    assert fired and h.monitor_rows(clock.seconds()) == []


def test_shutdown_brings_sigkill_within_the_servers_shutdown_bound():
    h, clock, hub, spawned = load({"publish": "echo {name}", "grace": "30"})
    live = publish(h, hub, clock)
    live.stop()
    testing.close_stream(h, testing.stream_closed("cam", role="publisher"))  # sessions end first: TERM
    clock.advance(1)
    h.stop_service()
    clock.advance(2.9)
    assert spawned[0].signals == ["TERM"]
    clock.advance(0.2)
    assert spawned[0].signals == ["TERM", "KILL"]


def test_max_processes_and_names_starting_with_a_dash():
    h, clock, hub, spawned = load({"publish": "echo {name}", "max_processes": "2"})
    for name in ("a", "b", "c", "-x"):
        publish(h, hub, clock, name)
    assert [p.argv[1] for p in spawned] == ["a", "b"]


def test_pull_runs_a_source_on_demand_until_the_last_player_left():
    h, clock, hub, spawned = load({"pull": "echo {app} {name}", "linger": "3"})
    view = testing.session_view(id=7)
    assert testing.run_hook(h, testing.play_request("demo", session=view), clock=clock).proceeded
    assert testing.run_hook(h, testing.play_request("demo", session=testing.session_view(id=8)), clock=clock).proceeded
    assert [p.argv[1:] for p in spawned] == [["live", "demo"]]
    assert h.monitor_rows(0)[0]["role"] == "pull"
    testing.close_stream(h, testing.stream_closed("demo", role="player", session=view))
    testing.close_stream(h, testing.stream_closed("demo", role="player", session=testing.session_view(id=8)))
    clock.advance(2.9)
    assert spawned[0].signals == []
    clock.advance(0.2)
    assert spawned[0].signals == ["TERM"]


def test_record_done_runs_once_per_file():
    h, clock, hub, spawned = load({"record_done": "echo {path} {dirname} {basename} {app} {name}"})
    h.recording_done(RecordingDone(app="live", name="cam", path="/rec/cam-1.flv", size=1, duration=1.0, reason="stopped",
                                   session=None, args={}))
    assert [p.argv[1:] for p in spawned] == [["/rec/cam-1.flv", "/rec", "cam-1.flv", "live", "cam"]]
    spawned[0].exit(0)
    clock.advance(100)
    assert len(spawned) == 1 and h.monitor_rows(0) == []


def test_output_is_logged_by_line_with_the_stream_name():
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        h, clock, hub, spawned = load({"publish": "echo {name}"})
        publish(h, hub, clock)
        proto = spawned[0].proto
        proto.childDataReceived(2, b"frame=  1 fps\rframe=  2 fps\r")
        proto.childDataReceived(1, b"hello ")
        proto.childDataReceived(1, b"world\n" + b"x" * 5000)
        for _ in range(300):
            proto.childDataReceived(2, b"spam\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e["line"] for e in events if "line" in e and e.get("name") == "cam"]
    assert lines[:4] == ["frame=  1 fps", "frame=  2 fps", "hello world", "x" * 2000]
    assert len(lines) <= 101  # bounded: a chatty program cannot flood the log


@pytest.mark.parametrize("settings, message", [
    ({}, "nothing to run"),
    ({"publish": "echo {nam}"}, "exec.publish: expected a command line"),
    ({"record_done": "echo {path} {size}"}, "exec.record_done: expected"),
    ({"publish": "echo", "grace": "0"}, "exec.grace"),
    ({"publish": "echo", "max_processes": "0"}, "exec.max_processes"),
    ({"publish": "echo", "backoff_initial": "9", "backoff_max": "1"}, "exec.backoff_max"),
])
def test_bad_settings_stop_startup(settings, message):
    with pytest.raises(ConfigError, match=message):
        testing.load_handler("exec", settings)
