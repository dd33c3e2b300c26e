"""The auth handler: interfaces, static keys in the config."""

from __future__ import annotations

from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from rtmpserver.handlers.auth import factory
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory
from rtmpserver.requests import (
    ConnectRequest,
    SessionView,
)
from tests.handlers.auth.helpers import (
    FakeSession,
    accepted,
    log_text,
    play_request,
    publish_request,
    refused,
)


def test_factory_and_handler_provide_their_interfaces(env):
    verifyObject(IAppHandlerFactory, factory)
    assert factory.name == "auth"
    verifyObject(IAppHandler, env.build(publish_keys="k1"))


def test_connect_and_close_stream_pass_through(env):
    h = env.build(publish_keys="k1")
    req = ConnectRequest(app="live", tc_url="rtmp://x/live", page_url="", swf_url="", flash_ver="FMLE/3.0",
                         args={}, params={}, session=SessionView(FakeSession()))  # fmt: skip
    assert accepted(h.connect, req) is req
    assert h.close_stream(object()) is None


def test_stream_name_that_is_a_key_is_accepted_and_the_name_kept(env):
    h = env.build(publish_keys="key1 key2")
    req = publish_request("key2")
    assert accepted(h.publish, req) == req


def test_wrong_key_is_refused_before_anything_proceeds(env):
    h = env.build(publish_keys="key1, key2")
    e = refused(h.publish, publish_request("key3"))
    assert "stream key" in e.description
    refused(h.publish, publish_request("KEY1"))  # keys are case sensitive
    refused(h.publish, publish_request("key"))  # a prefix is not the key


def test_key_argument_keeps_the_name_and_is_not_passed_on(env):
    h = env.build(publish_keys="key1")
    passed = accepted(h.publish, publish_request("cam", {"key": "key1", "quality": "hd"}))
    assert passed.name == "cam"
    assert dict(passed.args) == {"quality": "hd"}
    passed = accepted(h.publish, publish_request("cam", {"token": "key1"}))
    assert passed.name == "cam" and dict(passed.args) == {}


def test_wrong_key_argument_is_refused_even_if_the_name_is_a_key(env):
    h = env.build(publish_keys="key1")
    refused(h.publish, publish_request("key1", {"key": "nope"}))
    refused(h.publish, publish_request("key1", {"key": ""}))


def test_key_in_the_connect_url(env):
    h = env.build(publish_keys="key1")
    passed = accepted(h.publish, publish_request("cam", connect_args={"key": "key1"}))
    assert passed.name == "cam"
    refused(h.publish, publish_request("cam", connect_args={"key": "key9"}))


def test_stream_keys_rename_the_stream(env):
    h = env.build(stream_keys="alice:key123, bob:key456")
    assert accepted(h.publish, publish_request("key123")).name == "alice"
    assert accepted(h.publish, publish_request("key456")).name == "bob"
    # A mapped key always publishes under its own name, whatever name came with it.
    assert accepted(h.publish, publish_request("whatever", {"key": "key123"})).name == "alice"
    # The name alone is not a key.
    refused(h.publish, publish_request("alice"))


def test_stream_keys_and_plain_keys_together(env):
    h = env.build(stream_keys="alice:key123", publish_keys="open1")
    assert accepted(h.publish, publish_request("key123")).name == "alice"
    assert accepted(h.publish, publish_request("open1")).name == "open1"


def test_keys_never_appear_in_logs(env):
    h = env.build(stream_keys="alice:SeCrEtKeY123", publish_keys="PlainKey777")
    with capturedLogs() as events:
        accepted(h.publish, publish_request("SeCrEtKeY123"))
        accepted(h.publish, publish_request("PlainKey777"))
        accepted(h.publish, publish_request("cam", {"key": "PlainKey777"}))
        refused(h.publish, publish_request("SeCrEtKeY124"))
        refused(h.publish, publish_request("cam", {"key": "SeCrEtKeY124"}))
    text = log_text(events)
    assert "SeCrEtKeY12" not in text and "PlainKey777" not in text, text
    assert "alice" in text and "192.0.2.10:40000" in text
    assert "refused by auth" in text and "wrong key" in text


def test_play_is_open_by_default(env):
    h = env.build(publish_keys="key1")
    req = play_request("cam")
    assert accepted(h.play, req) is req


def test_play_keys_come_from_arguments_only(env):
    h = env.build(publish_keys="key1", play="key", play_keys="watch1")
    passed = accepted(h.play, play_request("cam", {"key": "watch1"}))
    assert passed.name == "cam" and dict(passed.args) == {}
    accepted(h.play, play_request("cam", connect_args={"token": "watch1"}))
    refused(h.play, play_request("watch1"), "NetStream.Play.Failed")  # the name is the stream to watch
    refused(h.play, play_request("cam", {"key": "key1"}), "NetStream.Play.Failed")  # a publish key is not a play key


def test_publish_none_play_key(env):
    h = env.build(publish="none", play="key", play_keys="watch1")
    req = publish_request("anything")
    assert accepted(h.publish, req) is req
    refused(h.play, play_request("cam"), "NetStream.Play.Failed")
