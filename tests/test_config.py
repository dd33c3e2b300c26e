"""Tests for rtmpserver.config: the documented defaults, every rejection path, TLS listener checks."""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString

from rtmpserver import config
from rtmpserver.config import AppConfig, ConfigError, Limits, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = "[server]\nlisten = tcp:1935\n[app:live]\n"


def make_cert(directory: Path, stem: str = "server", *, combined: bool = False,
              encrypted: bool = False) -> tuple[Path, Path]:
    """Write a self-signed localhost key and certificate (EC P-256: fast to generate)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption = (serialization.BestAvailableEncryption(b"secret") if encrypted
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_path = directory / f"{stem}.key"
    cert_path = directory / f"{stem}.crt"
    if combined:
        key_path = directory / f"{stem}.pem"
        key_path.write_bytes(key_pem + cert_pem)
        return key_path, key_path
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(cert_pem)
    return key_path, cert_path


def write(directory: Path, text: str, name: str = "server.ini") -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def error_of(text: str, path: str = "etc/server.ini") -> str:
    with pytest.raises(ConfigError) as info:
        config.parse(text, path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# --- defaults -----------------------------------------------------------------------------------


def test_default_limits_are_the_documented_ones():
    assert config.default_limits() == Limits(
        handshake_timeout=5.0, idle_timeout=60.0, ping_interval=15.0, max_message_size=16777215,
        max_partial_bytes=33554432, max_partial_csids=64, max_amf_depth=32,
        max_streams_per_connection=8, max_stream_name_length=256, max_connections=10000,
        max_connections_per_ip=1000, ping_timeout=10.0, send_timeout=15.0, max_pending_per_ip=16,
    )


def test_default_app_is_the_documented_one():
    assert config.default_app("x") == AppConfig(
        name="x", handlers=("live",), gop_cache=True, gop_cache_max_frames=600,
        gop_cache_max_bytes=16777216, publisher_clash="auto", publisher_stale_timeout=5.0,
        player_backlog_bytes=4194304, player_backlog_time=3.0, write_merge_ms=0.0,
    )


def test_minimal_file_gets_every_default():
    cfg = config.parse(MINIMAL, "x.ini")
    assert cfg.path == "x.ini"
    assert cfg.listen == ("tcp:1935",)
    assert (cfg.name, cfg.out_chunk_size, cfg.window_ack_size, cfg.peer_bandwidth, cfg.access_log) == (
        "rtmpserver", 4096, 2500000, 2500000, True)
    assert cfg.limits == config.default_limits()
    assert dict(cfg.apps) == {"live": config.default_app("live")}
    assert isinstance(cfg.limits.idle_timeout, float)


def test_config_is_immutable():
    cfg = config.parse(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.apps["other"] = config.default_app("other")  # type: ignore[index]
    hash(cfg)  # apps is left out of the hash


def test_dataclasses_and_schema_agree():
    names = lambda cls: tuple(f.name for f in dataclasses.fields(cls))  # noqa: E731
    assert names(Limits) == tuple(config._LIMIT_KEYS)
    assert names(AppConfig) == ("name", *config._APP_KEYS, "handler_settings")
    assert names(ServerConfig) == ("path", "listen", *config._SERVER_KEYS, "limits", "apps", "http")


def test_every_value_is_set():
    text = """
[server]
listen = tcp:1
name = edge-1
out_chunk_size = 60000
window_ack_size = 5000000
peer_bandwidth = 1000
access_log = off
[limits]
handshake_timeout = 2.5
idle_timeout = 20
ping_interval = 0
max_message_size = 1000
max_partial_bytes = 1000
max_partial_csids = 3
max_amf_depth = 4
max_streams_per_connection = 5
max_stream_name_length = 6
max_connections = 7
max_connections_per_ip = 8
[app:b]
handlers = live, access,auth
gop_cache = false
gop_cache_max_frames = 9
gop_cache_max_bytes = 10
publisher_clash = reject
publisher_stale_timeout = .5
player_backlog_bytes = 11
player_backlog_time = 12.
write_merge_ms = 2.5
[app:a]
"""
    cfg = config.parse(text)
    assert (cfg.name, cfg.out_chunk_size, cfg.window_ack_size, cfg.peer_bandwidth, cfg.access_log) == (
        "edge-1", 60000, 5000000, 1000, False)
    assert cfg.limits == Limits(2.5, 20.0, 0.0, 1000, 1000, 3, 4, 5, 6, 7, 8)
    assert list(cfg.apps) == ["b", "a"]  # file order
    assert cfg.apps["b"] == AppConfig("b", ("live", "access", "auth"), False, 9, 10, "reject", 0.5, 11,
                                      12.0, 2.5)
    assert cfg.apps["a"] == config.default_app("a")


@pytest.mark.parametrize("text,value", [
    ("yes", True), ("YES", True), ("true", True), ("on", True), ("1", True),
    ("no", False), ("False", False), ("off", False), ("0", False),
])
def test_booleans(text, value):
    assert config.parse(MINIMAL + f"gop_cache = {text}\n").apps["live"].gop_cache is value


def test_inline_and_full_line_comments():
    text = """
# comment
[server]                ; comment after a header
listen = tcp:1935       ; first
;        tcp:1936       ; commented out inside the list
         tcp:1937       # second
name = a;b              ; ';' without a space before it is part of the value
[app:live]              # comment
"""
    cfg = config.parse(text)
    assert cfg.listen == ("tcp:1935", "tcp:1937")
    assert cfg.name == "a;b"


# --- the example files --------------------------------------------------------------------------


def test_example_config_parses_to_defaults():
    cfg = config.load(str(ROOT / "etc" / "server.ini"))
    assert cfg.listen == ("tcp:1935",)  # what `make run` starts
    assert cfg.limits == config.default_limits()
    assert dict(cfg.apps) == {"live": config.default_app("live")}
    assert dataclasses.replace(cfg, path="", listen=(), http={}) == dataclasses.replace(
        config.parse(MINIMAL), path="", listen=())
    # The HTTP section listens on loopback only, with every key at its default.
    http = cfg.http["main"]
    assert http.listen == ("tcp:8080:interface=127.0.0.1",)
    defaults = {k: conv(d) for k, (conv, d) in config._HTTP_KEYS.items()}
    assert {k: getattr(http, k) for k in defaults} == defaults


def test_example_config_shows_every_key():
    ini = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read(ROOT / "etc" / "server.ini")
    assert set(ini["server"]) == {"listen", *config._SERVER_KEYS}
    assert set(ini["limits"]) == set(config._LIMIT_KEYS)
    assert set(ini["app:live"]) == set(config._APP_KEYS)
    for section, keys in [("server", config._SERVER_KEYS), ("limits", config._LIMIT_KEYS),
                          ("app:live", config._APP_KEYS)]:
        for key, (_, default) in keys.items():
            assert ini[section][key] == default, (section, key)


def test_example_config_rtmps_line_works_once_uncommented(tmp_path):
    """The commented-out RTMPS listener is right: with etc/README.md's certificate in place it loads."""
    example = (ROOT / "etc" / "server.ini").read_text()
    assert "\n;        ssl:1936:" in example
    etc = tmp_path / "etc"
    make_cert(etc / "certs")
    path = write(etc, example.replace("\n;        ssl:1936:", "\n         ssl:1936:"))
    cfg = config.load(path)
    assert cfg.listen == (
        "tcp:1935",
        f"ssl:1936:privateKey={etc}/certs/server.key:certKey={etc}/certs/server.crt",
    )


def test_etc_readme_makes_the_certificate_the_example_expects():
    readme = (ROOT / "etc" / "README.md").read_text()
    assert "-keyout etc/certs/server.key" in readme
    assert "-out etc/certs/server.crt" in readme
    assert "-nodes" in readme  # an encrypted key would be rejected (no passphrase prompt)


def test_spec_example_verbatim(tmp_path):
    """The example of the config spec (notes/config.md), inline comments and all."""
    text = r"""[server]
; listeners: Twisted endpoint strings, one per line. Relative file paths inside ssl: strings are relative
; to the directory of the config file.
listen = tcp:1935
         ssl:1936:privateKey=certs/server.key:certKey=certs/server.crt
; ^ both plain tcp:, tcp6:, ssl: forms; IPv6 e.g. tcp6:1935:interface=\:\:1
name = rtmpserver              ; server name in logs/stat
out_chunk_size = 4096          ; chunk size we send to clients (1..16777215)
window_ack_size = 2500000      ; WindowAckSize we announce
peer_bandwidth = 2500000       ; SetPeerBandwidth we announce (limit type dynamic)
access_log = yes               ; one access-log event per session

[limits]
handshake_timeout = 5          ; seconds to complete the handshake
idle_timeout = 60              ; seconds without any received byte before closing (players also get pings)
ping_interval = 15             ; seconds of silence before a PingRequest; 0 = off
max_message_size = 16777215    ; largest message accepted (bytes, 1..16777215)
max_partial_bytes = 33554432   ; total bytes held in partial messages per connection
max_partial_csids = 64         ; chunk stream ids with a message in flight per connection
max_amf_depth = 32             ; AMF nesting depth in commands
max_streams_per_connection = 8 ; createStream per connection
max_stream_name_length = 256   ; publish/play names (bytes)
max_connections = 10000        ; total
max_connections_per_ip = 1000

[app:live]                     ; one section per application; the name after 'app:' is the app name in the URL
handlers = live                ; handler chain (plugins issue); for now only 'live' exists
gop_cache = yes                ; send late joiners the frames since the latest keyframe
gop_cache_max_frames = 600     ; bound on cached frames (audio+video messages)
gop_cache_max_bytes = 16777216 ; bound on cached bytes
publisher_clash = auto         ; reject | takeover | auto (take over if the old publisher sent nothing for publisher_stale_timeout or is closing)
publisher_stale_timeout = 5    ; seconds
player_backlog_bytes = 4194304 ; per-player buffered bytes before inter-frames are dropped
player_backlog_time = 3        ; seconds of media a player may lag before drop + resync at the next keyframe
write_merge_ms = 0             ; merged-write tick: 0 = write each message at once, N = flush every N ms
"""
    make_cert(tmp_path / "certs")
    cfg = config.load(write(tmp_path, text))
    assert cfg.listen[1] == (f"ssl:1936:privateKey={tmp_path}/certs/server.key"
                             f":certKey={tmp_path}/certs/server.crt")
    assert cfg.limits == config.default_limits()
    assert dict(cfg.apps) == {"live": config.default_app("live")}


def test_docs_describe_every_key_with_its_default():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", docs, re.MULTILINE))
    assert "| `listen` | (required) |" in docs
    expected = {**{k: d for keys in (config._SERVER_KEYS, config._LIMIT_KEYS,
                                                   config._APP_KEYS, config._HTTP_KEYS) for k, (_, d) in keys.items()}}
    del expected["token"]  # empty by default: documented as "(empty)"
    assert "| `token` | (empty) |" in docs
    assert rows == expected


# --- rejections: file and INI structure ---------------------------------------------------------


def test_spec_message_format():
    assert error_of(MINIMAL + "[limits]\nidle_timeout = abc\n") == (
        "etc/server.ini: [limits] idle_timeout: expected a number of seconds > 0, got 'abc'")


def test_unreadable_file(tmp_path):
    missing = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigError, match=re.escape(f"{missing}: cannot read config file: No such file")):
        config.load(missing)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: cannot read config file")):
        config.load(str(tmp_path))


def test_unreadable_permissions(tmp_path, monkeypatch):
    # chmod 0 does not stop root (CI runs as root), so the OS refusal is simulated where the
    # file is opened (rtmpserver.settings.read_bounded): what is checked is that the OS's reason reaches the message.
    path = write(tmp_path, MINIMAL)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(config._settings, "open", refuse, raising=False)  # rtmpserver.settings reads it
    with pytest.raises(ConfigError, match=re.escape(f"{path}: cannot read config file: Permission denied")):
        config.load(str(path))


def test_not_utf8_and_too_large(tmp_path):
    path = tmp_path / "bad.ini"
    path.write_bytes(b"[server]\nname = \xff\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: config file is not UTF-8 text (bad byte at offset 16)")):
        config.load(str(path))
    path.write_bytes(b";" * (config._MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        config.load(str(path))


def test_load_accepts_utf8_bom(tmp_path):
    path = tmp_path / "bom.ini"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert config.load(str(path)).listen == ("tcp:1935",)


@pytest.mark.parametrize("text,expected", [
    ("[servre]\n", "[servre]: unknown section (expected [server], [limits], [app:NAME] or [http:NAME])"),
    ("[Server]\n", "[Server]: unknown section"),
    ("[DEFAULT]\nname = x\n", "[DEFAULT]: unknown section"),
    ("[app:]\n", "[app:]: the application name after 'app:' must be"),
    ("[app:a/b]\n", "[app:a/b]: the application name"),
    ("[server]\n[server]\n", "[server]: section appears twice (line 2)"),
    ("[limits]\nidle_timeout = 1\nidle_timeout = 2\n", "[limits] idle_timeout: key appears twice (line 3)"),
    ("name = x\n", "line 1: 'name = x' comes before any [section] header"),
    ("[limits]\nidle_timeout\n", "[limits] line 2: expected 'key = value', got 'idle_timeout'"),
    ("[limits]\nidle_timout = 1\n", "[limits] idle_timout: unknown key (did you mean 'idle_timeout'?)"),
    ("[limits]\nIdle_Timeout = 1\n", "[limits] Idle_Timeout: unknown key"),
    ("[server]\nlistne = tcp:1\n", "[server] listne: unknown key (did you mean 'listen'?)"),
    ("[app:live]\ngop = yes\n", "[app:live] gop: unknown key"),
    ("[limits]\nzzz = 1\n", "[limits] zzz: unknown key (known keys: handshake_timeout, "),
])
def test_structure_errors(text, expected):
    message = error_of(text)
    assert message.startswith("etc/server.ini: " + expected.split(":")[0])
    assert expected in message


def test_missing_listener():
    assert error_of("[app:live]\n") == "etc/server.ini: [server] listen: at least one listener is required"
    assert error_of("[server]\nlisten =\n[app:live]\n").endswith("[server] listen: at least one listener is required")
    assert error_of("[server]\nname = x\n[app:live]\n").endswith("[server] listen: at least one listener is required")


def test_missing_app():
    assert error_of("[server]\nlisten = tcp:1\n") == (
        "etc/server.ini: no [app:NAME] section: at least one application is required")


# --- rejections: values --------------------------------------------------------------------------

SECTION_OF = {**{k: "server" for k in config._SERVER_KEYS}, **{k: "limits" for k in config._LIMIT_KEYS},
              **{k: "app:live" for k in config._APP_KEYS}}


def with_value(key: str, value: str) -> str:
    return ("[server]\nlisten = tcp:1935\n[limits]\n[app:live]\n"
            .replace(f"[{SECTION_OF[key]}]\n", f"[{SECTION_OF[key]}]\n{key} = {value}\n"))


@pytest.mark.parametrize("key,value,expectation", [
    ("out_chunk_size", "0", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "16777216", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "4k", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "-1", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "+5", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "1.5", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "0x10", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "1_000", "a size in bytes from 1 to 16777215"),
    ("out_chunk_size", "\u0661\u0662", "a size in bytes from 1 to 16777215"),  # Arabic-Indic digits
    ("out_chunk_size", "", "a size in bytes from 1 to 16777215"),
    ("window_ack_size", "2147483648", "a size in bytes from 1 to 2147483647"),
    ("peer_bandwidth", "0", "a size in bytes from 1 to 2147483647"),
    ("access_log", "maybe", "yes/no, true/false, on/off or 1/0"),
    ("name", "", "a non-empty printable name of at most 256 characters"),
    ("name", "x" * 257, "a non-empty printable name of at most 256 characters"),
    ("handshake_timeout", "0", "a number of seconds > 0"),
    ("handshake_timeout", "-1", "a number of seconds > 0"),
    ("idle_timeout", "inf", "a number of seconds > 0"),
    ("idle_timeout", "nan", "a number of seconds > 0"),
    ("idle_timeout", "1e3", "a number of seconds > 0"),
    ("idle_timeout", "9" * 400, "a number of seconds > 0"),  # float() would say inf
    ("idle_timeout", "10s", "a number of seconds > 0"),
    ("ping_interval", "-0.5", "a number of seconds >= 0"),
    ("max_message_size", "16777216", "a size in bytes from 1 to 16777215"),
    ("max_message_size", "0", "a size in bytes from 1 to 16777215"),
    ("max_partial_bytes", "0", "a size in bytes from 1 to 1099511627776"),
    ("max_partial_csids", "0", "an integer from 1 to 65598"),
    ("max_partial_csids", "65599", "an integer from 1 to 65598"),
    ("max_amf_depth", "0", "an integer from 1 to 256"),
    ("max_amf_depth", "257", "an integer from 1 to 256"),
    ("max_streams_per_connection", "0", "an integer from 1 to 65535"),
    ("max_stream_name_length", "65536", "a size in bytes from 1 to 65535"),
    ("max_connections", "0", "an integer from 1 to 10000000"),
    ("max_connections_per_ip", "0", "an integer from 1 to 10000000"),
    ("handlers", "", "a comma-separated list of handler names"),
    ("handlers", "live, 9x", "a comma-separated list of handler names ('9x' is not a name)"),
    ("handlers", "live,live", "each handler once ('live' is listed twice)"),
    ("gop_cache", "2", "yes/no, true/false, on/off or 1/0"),
    ("gop_cache_max_frames", "0", "an integer from 1 to 10000000"),
    ("gop_cache_max_bytes", "0", "a size in bytes from 1 to 1099511627776"),
    ("publisher_clash", "kick", "one of reject | takeover | auto"),
    ("publisher_clash", "Auto", "one of reject | takeover | auto"),
    ("publisher_stale_timeout", "0", "a number of seconds > 0"),
    ("player_backlog_bytes", "0", "a size in bytes from 1 to 1099511627776"),
    ("player_backlog_time", "0", "a number of seconds > 0"),
    ("write_merge_ms", "1001", "a number of milliseconds from 0 to 1000"),
    ("write_merge_ms", "-1", "a number of milliseconds from 0 to 1000"),
])
def test_bad_values_name_file_section_key_and_value(key, value, expectation):
    message = error_of(with_value(key, value))
    shown = value if len(value) <= 60 else value[:57] + "..."
    assert message == f"etc/server.ini: [{SECTION_OF[key]}] {key}: expected {expectation}, got '{shown}'"


def test_control_characters_are_escaped_in_messages():
    message = error_of(with_value("name", "a\x1bb"))
    assert "got 'a\\x1bb'" in message


@pytest.mark.parametrize("key,value,parsed", [
    ("out_chunk_size", "1", 1), ("out_chunk_size", "16777215", 16777215),
    ("max_amf_depth", "256", 256), ("ping_interval", "0", 0.0), ("write_merge_ms", "1000", 1000.0),
    ("max_message_size", "0016", 16),
])
def test_range_edges_are_accepted(key, value, parsed):
    cfg = config.parse(with_value(key, value))
    owner = {"server": cfg, "limits": cfg.limits, "app:live": cfg.apps.get("live")}[SECTION_OF[key]]
    assert getattr(owner, key) == parsed


def test_ping_interval_must_be_below_idle_timeout():
    text = with_value("idle_timeout", "60").replace("[limits]\n", "[limits]\nping_interval = 60\n")
    assert error_of(text) == (
        "etc/server.ini: [limits] ping_interval: expected 0 or less than idle_timeout (60), got 60")
    assert config.parse(text.replace("ping_interval = 60", "ping_interval = 0")).limits.ping_interval == 0
    assert config.parse(text.replace("ping_interval = 60", "ping_interval = 59.5")).limits.ping_interval == 59.5


def test_cross_check_says_when_the_other_value_is_a_default():
    assert error_of(with_value("idle_timeout", "15")) == (
        "etc/server.ini: [limits] ping_interval: expected 0 or less than idle_timeout (15), "
        "got 15 (the default)")


def test_partial_bytes_must_hold_one_message():
    text = with_value("max_message_size", "1000").replace("[limits]\n", "[limits]\nmax_partial_bytes = 999\n")
    assert error_of(text) == (
        "etc/server.ini: [limits] max_partial_bytes: expected at least max_message_size (1000), got 999")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_value_is_accepted_or_a_config_error(value):
    for key in ("idle_timeout", "out_chunk_size", "handlers", "gop_cache", "name"):
        try:
            config.parse(with_value(key, value), "etc/server.ini")
        except ConfigError as e:
            assert str(e).startswith("etc/server.ini: [")  # names a section at least


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("[]=:;#\\ \nabclistenserverapptcp6ssl01:"), max_size=80))
def test_any_file_is_accepted_or_a_config_error(text):
    try:
        config.parse(text)
    except ConfigError as e:
        assert str(e).startswith("<string>: ")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=16777215))
def test_integers_round_trip(n):
    assert config.parse(with_value("out_chunk_size", str(n))).out_chunk_size == n


# --- listeners ------------------------------------------------------------------------------------


def listen(*lines: str) -> str:
    return "[server]\nlisten = " + "\n         ".join(lines) + "\n[app:live]\n"


@pytest.mark.parametrize("written,canonical", [
    ("tcp:1935", "tcp:1935"),
    ("TCP:1935", "tcp:1935"),
    ("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1"),
    ("tcp:port=1935:backlog=10", "tcp:1935:backlog=10"),
    ("tcp:1935:127.0.0.1:10", "tcp:1935:interface=127.0.0.1:backlog=10"),  # Twisted's positional order
    ("tcp6:1935", "tcp6:1935"),
    (r"tcp6:1935:interface=\:\:1", r"tcp6:1935:interface=\:\:1"),
    (r"tcp6:1935:5:\:\:", r"tcp6:1935:backlog=5:interface=\:\:"),
    (r"tcp:1935:interface=\:\:1", r"tcp:1935:interface=\:\:1"),
    (r"tcp6:1935:interface=fe80\:\:1%lo", r"tcp6:1935:interface=fe80\:\:1%lo"),
])
def test_listeners_are_checked_and_canonical(written, canonical):
    cfg = config.parse(listen(written))
    assert cfg.listen == (canonical,)
    serverFromString(object(), canonical)  # Twisted reads the canonical form


def test_ipv6_listener_binds_the_ipv6_address():
    (endpoint,) = config.parse(listen(r"tcp6:1935:interface=\:\:1")).listen
    built = serverFromString(object(), endpoint)
    assert built._interface == "::1"
    assert built._port == 1935


@pytest.mark.parametrize("written,expected", [
    ("udp:1935", "expected an endpoint starting with tcp:, tcp6: or ssl:"),
    ("unix:/tmp/s", "expected an endpoint starting with tcp:, tcp6: or ssl:"),
    ("1935", "expected an endpoint starting with tcp:, tcp6: or ssl:"),
    ("port=1:tcp", "expected an endpoint starting with tcp:, tcp6: or ssl:"),
    ("tcp", "a port number is required"),
    ("tcp:interface=127.0.0.1", "a port number is required"),
    ("tcp:", "port: expected a number from 0 to 65535, got ''"),
    ("tcp:65536", "port: expected a number from 0 to 65535, got '65536'"),
    ("tcp:http", "port: expected a number from 0 to 65535, got 'http'"),
    ("tcp:-1", "port: expected a number from 0 to 65535"),
    ("tcp:1:backlog=0", "backlog: expected a number from 1 to 65535, got '0'"),
    ("tcp:1:backlog=x", "backlog: expected a number from 1 to 65535, got 'x'"),
    ("tcp:1:interface=localhost", "interface: expected an IPv4 or IPv6 address"),
    ("tcp:1:interface=1.2.3", "interface: expected an IPv4 or IPv6 address"),
    ("tcp:1:bogus=1", "unknown parameter 'bogus' (known: port, interface, backlog)"),
    ("tcp:1:privateKey=x", "unknown parameter 'privateKey'"),
    ("tcp:1:a:b:c", "too many ':'-separated arguments"),
    ("tcp:1:port=2", "parameter 'port' given twice"),
    ("tcp6:1935:interface=::1", r"parameter 'interface' given twice (write IPv6 addresses with escaped colons: interface=\:\:1)"),
    ("tcp:1\\", "ends with a lone backslash"),
    ("ssl:1936", "an ssl listener needs privateKey=<file> (and certKey=<file>)"),
    ("ssl:1936:privateKey=", "privateKey: expected a file name, got ''"),
])
def test_bad_listeners(written, expected):
    message = error_of(listen(written))
    assert message.startswith(f"etc/server.ini: [server] listen: '{written}': ")
    assert message.endswith(expected) or expected in message


def test_duplicate_listener():
    message = error_of(listen("tcp:1935", "tcp:port=1935"))
    assert message == "etc/server.ini: [server] listen: 'tcp:port=1935': listed twice"


# --- TLS listeners --------------------------------------------------------------------------------


def ssl_line(key: str, cert: str | None = None) -> str:
    return f"ssl:1936:privateKey={key}" + (f":certKey={cert}" if cert is not None else "")


def test_relative_tls_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    key, cert = make_cert(etc / "certs")
    path = write(etc, listen("tcp:1935", ssl_line("certs/server.key", "certs/../certs/server.crt")))
    monkeypatch.chdir(tmp_path)  # the current directory must not matter
    cfg = config.load(path)
    assert cfg.listen[1] == f"ssl:1936:privateKey={key}:certKey={cert}"
    # The same file given by a relative path resolves the same way.
    assert config.load("etc/server.ini").listen == cfg.listen


def test_absolute_tls_paths_stay(tmp_path):
    key, cert = make_cert(tmp_path / "elsewhere")
    (tmp_path / "conf").mkdir()
    cfg = config.load(write(tmp_path / "conf", listen(ssl_line(str(key), str(cert)))))
    assert cfg.listen == (f"ssl:1936:privateKey={key}:certKey={cert}",)


def test_parse_without_file_resolves_against_the_current_directory(tmp_path, monkeypatch):
    key, cert = make_cert(tmp_path / "certs")
    monkeypatch.chdir(tmp_path)
    cfg = config.parse(listen(ssl_line("certs/server.key", "certs/server.crt")))
    assert cfg.listen == (f"ssl:1936:privateKey={key}:certKey={cert}",)


def test_colons_in_paths_are_escaped_again(tmp_path):
    directory = tmp_path / "a:b"
    key, cert = make_cert(directory / "certs")
    cfg = config.load(write(directory, listen(ssl_line("certs/server.key", "certs/server.crt"))))
    escaped = str(directory).replace(":", "\\:")
    assert cfg.listen == (f"ssl:1936:privateKey={escaped}/certs/server.key:certKey={escaped}/certs/server.crt",)
    endpoint = serverFromString(object(), cfg.listen[0])
    assert isinstance(endpoint, SSL4ServerEndpoint)


def test_tls_endpoint_serves_the_configured_certificate(tmp_path):
    key, cert = make_cert(tmp_path / "certs")
    cfg = config.load(write(tmp_path, listen(ssl_line("certs/server.key", "certs/server.crt") + ":interface=127.0.0.1")))
    endpoint = serverFromString(object(), cfg.listen[0])
    served = endpoint._sslContextFactory.certificate.to_cryptography()
    assert served == x509.load_pem_x509_certificate(cert.read_bytes())
    assert endpoint._interface == "127.0.0.1"


def test_combined_pem_in_private_key_only(tmp_path):
    pem, _ = make_cert(tmp_path, combined=True)
    cfg = config.load(write(tmp_path, listen("ssl:1936:privateKey=server.pem")))
    assert cfg.listen == (f"ssl:1936:privateKey={pem}",)


def test_missing_key_file(tmp_path):
    make_cert(tmp_path / "certs")
    path = write(tmp_path, listen(ssl_line("certs/nope.key", "certs/server.crt")))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value) == (
        f"{path}: [server] listen: 'ssl:1936:privateKey=certs/nope.key:certKey=certs/server.crt': "
        f"privateKey: cannot read {tmp_path}/certs/nope.key: No such file or directory")


def test_missing_cert_file(tmp_path):
    make_cert(tmp_path / "certs")
    path = write(tmp_path, listen(ssl_line("certs/server.key", "certs/nope.crt")))
    with pytest.raises(ConfigError, match=re.escape(
            f"[server] listen: 'ssl:1936:privateKey=certs/server.key:certKey=certs/nope.crt': "
            f"certKey: cannot read {tmp_path}/certs/nope.crt: No such file or directory")):
        config.load(path)


def test_garbage_key(tmp_path):
    make_cert(tmp_path / "certs")
    (tmp_path / "certs" / "server.key").write_text("not a key\n")
    path = write(tmp_path, listen(ssl_line("certs/server.key", "certs/server.crt")))
    with pytest.raises(ConfigError, match=re.escape(
            f"{path}: [server] listen: 'ssl:1936:privateKey=certs/server.key:certKey=certs/server.crt': "
            f"privateKey: {tmp_path}/certs/server.key is not a PEM private key (")):
        config.load(path)


def test_garbage_cert(tmp_path):
    make_cert(tmp_path / "certs")
    (tmp_path / "certs" / "server.crt").write_bytes(b"\x00\x01garbage")
    path = write(tmp_path, listen(ssl_line("certs/server.key", "certs/server.crt")))
    with pytest.raises(ConfigError, match=re.escape(
            f"certKey: {tmp_path}/certs/server.crt is not a PEM certificate (")):
        config.load(path)


def test_cert_given_as_key_is_not_a_key(tmp_path):
    make_cert(tmp_path / "certs")
    path = write(tmp_path, listen(ssl_line("certs/server.crt", "certs/server.crt")))
    with pytest.raises(ConfigError, match="privateKey: .*server.crt is not a PEM private key"):
        config.load(path)


def test_key_and_cert_mismatch(tmp_path):
    make_cert(tmp_path / "certs", "one")
    make_cert(tmp_path / "certs", "two")
    path = write(tmp_path, listen(ssl_line("certs/one.key", "certs/two.crt")))
    with pytest.raises(ConfigError, match=re.escape(
            f"{path}: [server] listen: 'ssl:1936:privateKey=certs/one.key:certKey=certs/two.crt': "
            f"privateKey: {tmp_path}/certs/one.key does not match the certificate in {tmp_path}/certs/two.crt (")):
        config.load(path)


def test_encrypted_key_is_refused_without_prompting(tmp_path):
    make_cert(tmp_path / "certs", encrypted=True)
    path = write(tmp_path, listen(ssl_line("certs/server.key", "certs/server.crt")))
    with pytest.raises(ConfigError, match="privateKey: .*server.key is encrypted; use an unencrypted key"):
        config.load(path)


def test_directory_as_key(tmp_path):
    path = write(tmp_path, listen(ssl_line(".", "x.crt")))
    with pytest.raises(ConfigError, match=re.escape(f"privateKey: cannot read {tmp_path}: ")):
        config.load(path)


def test_extra_cert_chain(tmp_path):
    key, cert = make_cert(tmp_path)
    base = ssl_line("server.key", "server.crt")
    with pytest.raises(ConfigError, match="extraCertChain: cannot read .*chain.pem: No such file"):
        config.load(write(tmp_path, listen(base + ":extraCertChain=chain.pem")))
    (tmp_path / "chain.pem").write_text("nothing here\n")
    with pytest.raises(ConfigError, match="extraCertChain: .*chain.pem holds no PEM certificate"):
        config.load(write(tmp_path, listen(base + ":extraCertChain=chain.pem")))
    _, other = make_cert(tmp_path, "ca")
    cfg = config.load(write(tmp_path, listen(base + ":extraCertChain=ca.crt")))
    assert cfg.listen == (f"ssl:1936:privateKey={key}:certKey={cert}:extraCertChain={other}",)


def test_dh_parameters_must_be_readable(tmp_path):
    make_cert(tmp_path)
    with pytest.raises(ConfigError, match="dhParameters: cannot read .*dh.pem"):
        config.load(write(tmp_path, listen(ssl_line("server.key", "server.crt") + ":dhParameters=dh.pem")))


@pytest.mark.parametrize("method", ["NO_SUCH_METHOD", "TLSv1_METHOD", "TLS_METHOD"])
def test_sslmethod_is_a_config_error(tmp_path, method):
    # The TLS versions are fixed (rtmpserver/tls.py); any sslmethod is refused in one line.
    make_cert(tmp_path)
    path = write(tmp_path, listen(ssl_line("server.key", "server.crt") + f":sslmethod={method}"))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: [server] listen: 'ssl:1936:") + ".*sslmethod: not supported") as e:
        config.load(path)
    assert "\n" not in str(e.value)


def test_handler_settings_are_grouped_by_handler():
    cfg = config.parse(MINIMAL.replace("[app:live]", "[app:live]\nhandlers = auth, live\nauth.keys = a b\nauth.mode = static"))
    assert dict(cfg.apps["live"].handler_settings["auth"]) == {"keys": "a b", "mode": "static"}


def test_setting_for_a_handler_not_in_the_chain_is_an_error():
    with pytest.raises(ConfigError, match=r"\[app:live\] record.path: setting for handler 'record'"):
        config.parse(MINIMAL.replace("[app:live]", "[app:live]\nrecord.path = /tmp"))


HTTP = MINIMAL + "[http:main]\n"


def test_http_section_defaults_and_ipv6_loopback():
    cfg = config.parse(HTTP + "listen = tcp:8080:interface=127.0.0.1\n  tcp6:8081:interface=\\:\\:1\n")
    h = cfg.http["main"]
    assert h.listen == ("tcp:8080:interface=127.0.0.1", "tcp6:8081:interface=\\:\\:1")
    assert (h.hls, h.flv, h.stat, h.api, h.metrics, h.control, h.token) == (True, True, True, True, True, False, "")


def test_http_admin_on_public_listener_needs_a_token():
    with pytest.raises(ConfigError, match=r"\[http:main\] token: stat/api/metrics/control on a listener that is not loopback-only"):
        config.parse(HTTP + "listen = tcp:8080\n")
    cfg = config.parse(HTTP + "listen = tcp:8080\ntoken = 0123456789abcdef0123\n")
    assert cfg.http["main"].token == "0123456789abcdef0123"
    # Media only on a public listener needs no token.
    config.parse(HTTP + "listen = tcp:8080\nstat = no\napi = no\nmetrics = no\n")


@pytest.mark.parametrize("body, message", [
    ("", r"\[http:main\] listen: at least one listener is required"),
    ("listen = tcp:8080:interface=127.0.0.1\ntoken = short\n", r"\[http:main\] token: expected a secret of at least 16"),
    ("listen = tcp:8080:interface=127.0.0.1\nhsl = yes\n", r"\[http:main\] hsl: unknown key \(did you mean 'hls'\?\)"),
    ("listen = udp:8080\n", r"\[http:main\] listen: 'udp:8080': expected an endpoint"),
])
def test_http_section_errors(body, message):
    with pytest.raises(ConfigError, match=message):
        config.parse(HTTP + body)


def test_workers_key():
    assert config.parse(MINIMAL).workers == 1
    assert config.parse(MINIMAL.replace("[app:live]", "workers = 4\n[app:live]")).workers == 4
    auto = config.parse(MINIMAL.replace("[app:live]", "workers = auto\n[app:live]")).workers
    assert auto == max(1, min(256, __import__("os").cpu_count() or 1))
    for bad in ("0", "257", "-1", "two", "1.5"):
        message = error_of(MINIMAL.replace("[app:live]", f"workers = {bad}\n[app:live]"))
        assert message.endswith(f"[server] workers: expected auto or an integer from 1 to 256, got '{bad}'"), message
