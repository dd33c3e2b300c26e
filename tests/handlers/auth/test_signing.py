"""Signed URLs: format, known answers, expiry, tampering, bind_ip."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs

from rtmpserver.handlers.auth import sign_url, signed_string
from tests.handlers.auth.helpers import (
    NOW,
    SECRET,
    Env,
    accepted,
    log_text,
    play_request,
    publish_request,
    refused,
)


def signed(query: str) -> dict:
    return dict(p.split("=", 1) for p in query.split("&"))


def test_signed_string_is_documented_format():
    assert signed_string("publish", "live", "cam", 1700000000) == "publish/live/cam?expires=1700000000"
    assert signed_string("play", "live", "cam", 5, "::1") == "play/live/cam?expires=5&ip=::1"


def test_sign_url_known_answer():
    # Computed outside Python, from the text docs/handlers.md says is signed:
    # printf %s 'publish/live/cam?expires=1700000000' | openssl dgst -sha256 -hmac 's3cret-s3cret-s3cret'
    expected = "e3ec5d08b02b2f1dcc2b9ab3668c5d87ad82cc1bd618f0c3e1e20eff8437b4ff"
    assert sign_url(SECRET, "live", "cam", 1700000000) == f"expires=1700000000&sign={expected}"


def test_valid_signature_accepted_and_sign_not_passed_on(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    passed = accepted(h.publish, publish_request("cam", {**args, "x": "1"}))
    assert passed.name == "cam"
    assert dict(passed.args) == {"expires": str(NOW + 60), "x": "1"}


def test_signature_in_the_connect_url(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    accepted(h.publish, publish_request("cam", connect_args=args))


def test_expiry_boundary(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 10))
    env.clock.advance(10)
    accepted(h.publish, publish_request("cam", args))  # valid up to and including second `expires`
    env.clock.advance(0.5)
    with capturedLogs() as events:
        refused(h.publish, publish_request("cam", args))
    assert "expired" in log_text(events)


def test_expired_signature_refused(env):
    h = env.build(play="signed", publish="none", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW - 1, action="play"))
    e = refused(h.play, play_request("cam", args), "NetStream.Play.Failed")
    assert "signed URL" in e.description


def test_tampered_signatures_refused(env):
    h = env.build(publish="signed", secret=SECRET)
    good = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    sig = good["sign"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    refused(h.publish, publish_request("cam", {**good, "sign": flipped}))
    refused(h.publish, publish_request("cam", {**good, "expires": str(NOW + 3600)}))  # extended expiry
    refused(h.publish, publish_request("cam2", good))  # another stream
    refused(h.publish, publish_request("cam", good, app="other"))  # another app
    refused(h.publish, publish_request("cam", signed(sign_url("another-secret-value", "live", "cam", NOW + 60))))


def test_play_signature_cannot_publish(env):
    h = env.build(publish="signed", play="signed", secret=SECRET)
    play_args = signed(sign_url(SECRET, "live", "cam", NOW + 60, action="play"))
    accepted(h.play, play_request("cam", play_args))
    refused(h.publish, publish_request("cam", play_args))


def test_malformed_signature_arguments(env):
    h = env.build(publish="signed", secret=SECRET)
    good = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    with capturedLogs() as events:
        refused(h.publish, publish_request("cam"))
        refused(h.publish, publish_request("cam", {"sign": good["sign"]}))
        refused(h.publish, publish_request("cam", {**good, "expires": "-5"}))
        refused(h.publish, publish_request("cam", {**good, "expires": "1e10"}))
        refused(h.publish, publish_request("cam", {**good, "sign": "zz"}))
        refused(h.publish, publish_request("cam", {**good, "sign": good["sign"][:-2]}))
    text = log_text(events)
    assert "no ?sign=" in text and "malformed ?expires=" in text and "malformed ?sign=" in text


def test_hex_case_and_base64url_signatures(env):
    h = env.build(publish="signed", secret=SECRET)
    good = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    accepted(h.publish, publish_request("cam", {**good, "sign": good["sign"].upper()}))
    raw = bytes.fromhex(good["sign"])
    b64 = base64.urlsafe_b64encode(raw).decode()
    accepted(h.publish, publish_request("cam", {**good, "sign": b64.rstrip("=")}))
    accepted(h.publish, publish_request("cam", {**good, "sign": b64}))


def test_bind_ip(env):
    h = env.build(publish="signed", secret=SECRET, bind_ip="yes")
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60, ip="192.0.2.10"))
    accepted(h.publish, publish_request("cam", args, host="192.0.2.10"))
    accepted(h.publish, publish_request("cam", args, host="::ffff:192.0.2.10"))  # dual-stack listener
    refused(h.publish, publish_request("cam", args, host="192.0.2.11"))
    refused(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60)), host="192.0.2.10"))
    refused(h.publish, publish_request("cam", args, host="not-an-address"))
    v6 = signed(sign_url(SECRET, "live", "cam", NOW + 60, ip="2001:DB8:0::1"))
    accepted(h.publish, publish_request("cam", v6, host="2001:db8::1"))


def test_signature_not_bound_to_ip_works_from_anywhere(env):
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", "cam", NOW + 60))
    accepted(h.publish, publish_request("cam", args, host="198.51.100.1"))
    refused(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60, ip="198.51.100.1"))))


def test_secret_file(env):
    (env.dir / "secret").write_text(SECRET + "\n")
    h = env.build(publish="signed", secret_file="secret")
    accepted(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60))))


def test_key_or_signature(env):
    h = env.build(publish="key signed", publish_keys="key1", secret=SECRET)
    accepted(h.publish, publish_request("key1"))
    accepted(h.publish, publish_request("cam", signed(sign_url(SECRET, "live", "cam", NOW + 60))))
    e = refused(h.publish, publish_request("cam"))
    assert e.description == "Publishing needs a valid stream key or a valid signed URL."


@settings(max_examples=100, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="?"), min_size=1, max_size=40),
    ttl=st.integers(0, 10**6),
    position=st.integers(0, 63),
)
def test_signature_roundtrip_and_any_one_digit_changed(tmp_path_factory, name, ttl, position):
    env = Env(tmp_path_factory.mktemp("sig"))
    h = env.build(publish="signed", secret=SECRET)
    args = signed(sign_url(SECRET, "live", name, NOW + ttl))
    accepted(h.publish, publish_request(name, args))
    sig = args["sign"]
    changed = sig[:position] + format((int(sig[position], 16) + 1) % 16, "x") + sig[position + 1 :]
    refused(h.publish, publish_request(name, {**args, "sign": changed}))


def test_sign_url_validates_its_arguments():
    with pytest.raises(ValueError):
        sign_url(SECRET, "live", "cam", NOW, action="record")
    with pytest.raises(ValueError):
        sign_url(SECRET, "live", "cam", NOW, ip="example.org")
    assert sign_url(SECRET, "live", "cam", NOW, ip="::ffff:1.2.3.4") == sign_url(SECRET, "live", "cam", NOW, ip="1.2.3.4")
