"""Handler discovery as Twisted plugins, third-party plugins, and chain building from config."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
from twisted.internet.task import Clock

import rtmpserver.plugins
from rtmpserver import apps
from rtmpserver import config as configmod
from rtmpserver.errors import ConfigError
from rtmpserver.hub import Hub

THIRD_PARTY = textwrap.dedent(
    '''
    """A third party's handler, shipped in its own distribution."""
    from twisted.plugin import IPlugin
    from zope.interface import implementer
    from rtmpserver.errors import ConfigError, Rejected
    from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory

    CALLS = []

    @implementer(IAppHandler)
    class Gate:
        def __init__(self, word):
            self.word = word
        def connect(self, request, proceed):
            return proceed(request)
        def publish(self, request, proceed):
            CALLS.append(("publish", request.name))
            if request.args.get("word") != self.word:
                raise Rejected("NetStream.Publish.Denied", "say the word")
            return proceed(request)
        def play(self, request, proceed):
            return proceed(request)
        def close_stream(self, event):
            CALLS.append(("closed", event.name))

    @implementer(IPlugin, IAppHandlerFactory)
    class GateFactory:
        name = "gate"
        description = "a test gate"
        def build(self, settings, context):
            unknown = set(settings) - {"word"}
            if unknown:
                raise ConfigError(f"{context.server.path}: [app:{context.app.name}] gate.{unknown.pop()}: unknown key")
            return Gate(settings.get("word", "please"))

    gate = GateFactory()
    '''
)


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A directory on sys.path holding rtmpserver/plugins/acme_gate.py and no __init__.py."""
    plugdir = tmp_path / "site" / "rtmpserver" / "plugins"
    plugdir.mkdir(parents=True)
    (plugdir / "acme_gate.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # The package's __path__ is computed at import; recompute it as a fresh interpreter would.
    saved = list(rtmpserver.plugins.__path__)
    importlib.reload(rtmpserver.plugins)
    yield plugdir
    rtmpserver.plugins.__path__[:] = saved
    sys.modules.pop("rtmpserver.plugins.acme_gate", None)


def cfg(app_lines: str):
    return configmod.parse(f"[server]\nlisten = tcp:1935\n[app:live]\n{app_lines}\n", "x.ini")


def test_builtin_live_is_discovered():
    assert "live" in apps.discover()


def test_third_party_plugin_is_discovered_configured_and_called(third_party):
    found = apps.discover()
    assert "gate" in found
    chains = apps.build_chains(cfg("handlers = gate, live\ngate.word = sesame"), Hub(), Clock())
    chain = chains["live"]
    assert [n for n, _ in chain.handlers] == ["gate", "live"]
    mod = sys.modules["rtmpserver.plugins.acme_gate"]
    from rtmpserver import testing

    ok, no = [], []
    chain.run("publish", testing.publish_request("cam", args={"word": "sesame"}), lambda r: "went live").addBoth(ok.append)
    chain.run("publish", testing.publish_request("cam"), lambda r: "went live").addBoth(no.append)
    assert ok == ["went live"]
    assert no[0].value.code == "NetStream.Publish.Denied"
    assert mod.CALLS == [("publish", "cam"), ("publish", "cam")]


def test_third_party_settings_are_validated_by_the_plugin(third_party):
    with pytest.raises(ConfigError, match=r"x.ini: \[app:live\] gate.colour: unknown key"):
        apps.build_chains(cfg("handlers = gate\ngate.colour = red"), Hub(), Clock())


def test_missing_handler_stops_startup_with_a_clear_message():
    with pytest.raises(ConfigError, match=r"x.ini: \[app:live\] handlers: no handler named 'nosuch' is installed"):
        apps.build_chains(cfg("handlers = nosuch"), Hub(), Clock())


def test_live_must_be_last():
    with pytest.raises(ConfigError, match="'live' must be the last handler"):
        apps.build_chains(cfg("handlers = live, nosuch"), Hub(), Clock())


def test_live_is_appended_when_absent(third_party):
    chains = apps.build_chains(cfg("handlers = gate"), Hub(), Clock())
    assert [n for n, _ in chains["live"].handlers] == ["gate", "live"]


def test_broken_plugin_is_reported_not_hidden(tmp_path, monkeypatch):
    plugdir = tmp_path / "site" / "rtmpserver" / "plugins"
    plugdir.mkdir(parents=True)
    (plugdir / "broken_one.py").write_text(
        textwrap.dedent(
            """
            from twisted.plugin import IPlugin
            from zope.interface import implementer
            from rtmpserver.interfaces import IAppHandlerFactory

            @implementer(IPlugin, IAppHandlerFactory)
            class Half:
                name = "half"
                # no description, no build(): verifyObject must catch it
            half = Half()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    saved = list(rtmpserver.plugins.__path__)
    importlib.reload(rtmpserver.plugins)
    try:
        with pytest.raises(ConfigError, match="handler 'half' is broken"):
            apps.build_chains(cfg("handlers = half"), Hub(), Clock())
    finally:
        rtmpserver.plugins.__path__[:] = saved
        sys.modules.pop("rtmpserver.plugins.broken_one", None)


def test_handler_that_builds_a_non_handler_is_refused():
    class Bad:
        name = "bad"
        description = "builds junk"

        def build(self, settings, context):
            return object()

    from zope.interface import directlyProvides

    from rtmpserver.interfaces import IAppHandlerFactory

    f = Bad()
    directlyProvides(f, IAppHandlerFactory)
    with pytest.raises(ConfigError, match="not an IAppHandler"):
        apps.build_chains(cfg("handlers = bad"), Hub(), Clock(), factories={"bad": f, **apps.discover()})


def test_record_done_reaches_notify_in_the_same_app(tmp_path):
    chains = apps.build_chains(
        cfg(f"handlers = notify, record, live\nnotify.on_record_done = http://127.0.0.1:9/done\n"
            f"record.path = {tmp_path}/{{app}}/{{name}}-{{time}}.flv"),
        Hub(), Clock(),
    )
    handlers = dict(chains["live"].handlers)
    assert handlers["notify"].recording_done in handlers["record"].on_record_done


def test_plugin_module_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch):
    """getPlugins only logs such a module; the config error must say which one failed and why."""
    plugdir = tmp_path / "site" / "rtmpserver" / "plugins"
    plugdir.mkdir(parents=True)
    (plugdir / "acme_needs_dep.py").write_text(
        "import acme_dependency_that_is_not_installed  # noqa: F401\n"
        "from twisted.plugin import IPlugin\n"
        "needs = None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    saved = list(rtmpserver.plugins.__path__)
    importlib.reload(rtmpserver.plugins)
    errors = []
    from twisted.logger import globalLogPublisher

    def observe(event):
        if event.get("log_failure") is not None and "acme_needs_dep" in str(event.get("module", "")):
            errors.append(event["log_failure"].getTraceback())

    globalLogPublisher.addObserver(observe)
    try:
        found = apps.discover()
        assert found.import_errors == {
            "rtmpserver.plugins.acme_needs_dep": "ModuleNotFoundError: No module named 'acme_dependency_that_is_not_installed'"
        }
        with pytest.raises(ConfigError) as info:
            apps.build_chains(cfg("handlers = needs"), Hub(), Clock())
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith("x.ini: [app:live] handlers: no handler named 'needs' is installed (installed: ")
        assert message.endswith(
            "; plugin module rtmpserver.plugins.acme_needs_dep failed to import: "
            "ModuleNotFoundError: No module named 'acme_dependency_that_is_not_installed'"
        )
        assert errors and "acme_needs_dep.py" in errors[0]  # the traceback is in the log
    finally:
        globalLogPublisher.removeObserver(observe)
        rtmpserver.plugins.__path__[:] = saved
        sys.modules.pop("rtmpserver.plugins.acme_needs_dep", None)


def test_no_import_errors_when_every_plugin_loads():
    assert apps.discover().import_errors == {}


def test_optional_interfaces_are_verified_when_a_handler_loads():
    from zope.interface import implementer

    from rtmpserver.interfaces import IAppHandler, IRecordingSource

    @implementer(IAppHandler, IRecordingSource)
    class Claims:  # says it is a recording source but has no add_observer
        def connect(self, request, proceed):
            return proceed(request)

        publish = play = connect

        def close_stream(self, event):
            return None

    class Factory:
        name = "claims"

        def build(self, settings, context):
            return Claims()

    with pytest.raises(ConfigError, match="'claims' built an object that is not an IRecordingSource"):
        apps.build_chains(cfg("handlers = claims"), Hub(), Clock(), factories={"claims": Factory(), **apps.discover()})
