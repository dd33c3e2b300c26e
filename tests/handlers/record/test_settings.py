"""record.* settings: defaults, relative paths, errors naming file, section and key."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from rtmpserver import config as cfg
from rtmpserver.errors import ConfigError
from rtmpserver.handlers import record
from rtmpserver.handlers.record import (
    Recorder,
    RecordSettings,
)
from rtmpserver.hub import Hub
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory, IMediaSink
from rtmpserver.requests import HandlerContext
from tests.handlers.record.helpers import (
    settings_for,
)

# --- settings --------------------------------------------------------------------------------


def context_for(text: str, hub=None, clock=None, path="<string>"):
    config = cfg.parse("[server]\nlisten = tcp:1935\n[app:live]\nhandlers = record\n" + text, path)
    app = config.apps["live"]
    return dict(app.handler_settings.get("record", {})), HandlerContext(app=app, server=config, hub=hub, clock=clock or Clock())


def test_factory_and_handler_provide_their_interfaces(tmp_path):
    verifyObject(IAppHandlerFactory, record.factory)
    assert record.factory.name == "record"
    settings, ctx = context_for(f"record.path = {tmp_path}/{{name}}.flv\n")
    handler = record.factory.build(settings, ctx)
    verifyObject(IAppHandler, handler)
    verifyObject(IMediaSink, Recorder(settings_for(tmp_path), "live", "cam", Clock()))


def test_settings_defaults_and_values(tmp_path):
    settings, ctx = context_for(
        f"record.path = {tmp_path}/{{app}}/{{name}}-{{time}}.flv\nrecord.mode = keyframes\n"
        "record.max_size = 1000000\nrecord.max_duration = 2.5\nrecord.max_frames = 90\nrecord.max_index = 50\n"
    )
    s = record.parse_settings(settings, ctx)
    assert s == RecordSettings(f"{tmp_path}/{{app}}/{{name}}-{{time}}.flv", "keyframes", 1000000, 2.5, 90, 50)
    s = record.parse_settings({"path": "/r/{name}.flv"}, ctx)
    assert (s.mode, s.max_size, s.max_duration, s.max_frames, s.max_index) == ("all", 0, 0.0, 0, 10000)
    # mode off needs no path
    assert record.parse_settings({"mode": "off"}, ctx).mode == "off"


def test_relative_path_is_resolved_against_the_config_file(tmp_path):
    settings, ctx = context_for("record.path = rec/{name}.flv\n", path=str(tmp_path / "server.ini"))
    assert record.parse_settings(settings, ctx).path == str(tmp_path / "rec" / "{name}.flv")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("mode", "sometimes", "expected one of all | audio | video | keyframes | off | manual, got 'sometimes'"),
        ("max_size", "10M", "expected an integer from 0 to"),
        ("max_size", "-1", "expected an integer from 0 to"),
        ("max_frames", "1.5", "expected an integer from 0 to"),
        ("max_duration", "abc", "expected a number of seconds >= 0, got 'abc'"),
        ("max_index", "40001", "expected an integer from 0 to 40000, got '40001'"),
        ("path", "/r/{stream}.flv", "placeholders {app}, {name} and {time}, got '/r/{stream}.flv'"),
        ("path", "/r/{name!r}.flv", "placeholders"),
        ("path", "/r/{name:>9}.flv", "placeholders"),
        ("path", "/r/{name.flv", "unbalanced braces"),
        ("path", "/r/{name}/", "it names a directory"),
        ("path", "/r/{name}/../../etc/x.flv", "stay inside /r"),
    ],
)
def test_bad_settings_name_file_section_and_key(key, value, expected):
    settings, ctx = context_for("")
    settings = {"path": "/r/{name}.flv", key: value}
    with pytest.raises(ConfigError) as e:
        record.parse_settings(settings, ctx)
    assert str(e.value).startswith(f"<string>: [app:live] record.{key}: ")
    assert expected in str(e.value)


def test_unknown_key_and_missing_path():
    settings, ctx = context_for("")
    with pytest.raises(ConfigError, match=r"^<string>: \[app:live\] record\.maxsize: unknown key"):
        record.parse_settings({"path": "/r/x.flv", "maxsize": "1"}, ctx)
    with pytest.raises(ConfigError, match=r"^<string>: \[app:live\] record\.path: expected a file path template"):
        record.parse_settings({"mode": "all"}, ctx)


def test_config_file_with_record_settings_builds(tmp_path):
    from rtmpserver.apps import build_chains

    config = cfg.parse(
        f"[server]\nlisten = tcp:1935\n[app:live]\nhandlers = record\nrecord.path = {tmp_path}/{{name}}.flv\nrecord.mode = bogus\n"
    )
    with pytest.raises(ConfigError, match=r"record\.mode: expected one of"):
        build_chains(config, Hub(), Clock(), factories={"record": record.factory, "live": __import__("rtmpserver.handlers.live", fromlist=["factory"]).factory})
