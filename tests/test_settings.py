"""rtmpserver.settings: the converters and error format shared by config.py and every handler."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rtmpserver import settings as s
from rtmpserver.errors import ConfigError


def context(path="/etc/rtmp/server.ini", app="live"):
    return SimpleNamespace(server=SimpleNamespace(path=path), app=SimpleNamespace(name=app))


@pytest.mark.parametrize("convert, good, bad", [
    (s.integer(1, 9), {"1": 1, "9": 9, "09": 9}, ["0", "10", "-1", "+1", "1.0", "1e0", "", " 1", "\u00b2", "\u0661"]),
    (s.size(1, 1024), {"1024": 1024}, ["1k", "1025"]),
    (s.seconds(), {"0.5": 0.5, ".5": 0.5, "2.": 2.0, "30": 30.0}, ["0", "-1", "1e1", "inf", "nan", "", "1,5"]),
    (s.seconds(allow_zero=True), {"0": 0.0}, ["-0.1"]),
    (s.seconds(0.5, 60.0), {"0.5": 0.5, "60": 60.0}, ["0.4", "60.1"]),
    (s.seconds(high=300.0), {"300": 300.0}, ["300.5", "0"]),
    (s.boolean, {"yes": True, "On": True, "TRUE": True, "1": True, "no": False, "off": False, "0": False}, ["y", "2", ""]),
    (s.choice("reject", "auto"), {"auto": "auto"}, ["Auto", "x", ""]),
    (s.choice("POST", "GET", ignore_case=True), {"post": "POST", "Get": "GET"}, ["put"]),
    (s.words(), {"a, b c": ("a", "b", "c")}, ["", " , ", "a a"]),
    (s.url(), {"http://h/x": "http://h/x", "https://h:8443/": "https://h:8443/"},
     ["ftp://h/", "http://", "http://u:p@h/", "http://h:0/", "http://h/#f", "http://h /", "http://\u00e9/", "http://h:99999/"]),
])
def test_converters(convert, good, bad):
    for text, value in good.items():
        assert convert(text) == value
    for text in bad:
        with pytest.raises(s.Invalid):
            convert(text)


def test_expectation_texts():
    for convert, text in [
        (s.integer(1, 9), "an integer from 1 to 9"),
        (s.size(1, 9), "a size in bytes from 1 to 9"),
        (s.seconds(), "a number of seconds > 0"),
        (s.seconds(allow_zero=True), "a number of seconds >= 0"),
        (s.seconds(0.5, 60.0), "a number of seconds from 0.5 to 60"),
        (s.seconds(high=300.0), "a number of seconds > 0 and <= 300"),
        (s.boolean, "yes/no, true/false, on/off or 1/0"),
        (s.choice("a", "b"), "one of a | b"),
    ]:
        with pytest.raises(s.Invalid) as e:
            convert("bogus")
        assert str(e.value) == text


def test_section_error_format_and_defaults():
    section = s.Section.for_handler("hls", {"fragment": " 0 ", "window": "3"}, context())
    assert section.get("window", s.integer(1, 100)) == 3
    assert section.get("endlist", s.boolean, "yes") is True
    assert section.get("linger", s.seconds()) is None
    with pytest.raises(ConfigError) as e:
        section.get("fragment", s.seconds(0.5, 60.0))
    assert str(e.value) == "/etc/rtmp/server.ini: [app:live] hls.fragment: expected a number of seconds from 0.5 to 60, got '0'"


def test_unknown_keys_get_a_suggestion_and_never_their_value():
    section = s.Section("x.ini: [limits]", {"idle_timout": "TopSecret"})
    with pytest.raises(ConfigError) as e:
        section.check_known(["idle_timeout", "ping_interval"])
    assert str(e.value) == "x.ini: [limits] idle_timout: unknown key (did you mean 'idle_timeout'?)"
    with pytest.raises(ConfigError, match=r"zzz: unknown key \(known keys: a, b\)$"):
        s.Section("x.ini: [limits]", {"zzz": "1"}).check_known(["a"], extra=["b"])


def test_secret_values_are_never_shown():
    section = s.Section.for_handler("auth", {"secret": "TopSecretKey"}, context())
    message = str(section.error("secret", "expected at least 16 characters", secret=True))
    assert "TopSecretKey" not in message and "a value of 12 characters" in message


def test_show_quotes_one_line_escaped_and_cut():
    assert s.show("a\x1bb") == "'a\\x1bb'"
    assert s.show("allow publish all,\n   deny play all") == "'allow publish all, deny play all'"
    assert s.show("x" * 100) == "'" + "x" * 57 + "...'"


def test_paths_are_relative_to_the_config_file_and_files_are_read_bounded(tmp_path):
    (tmp_path / "small").write_bytes(b"12345")
    (tmp_path / "big").write_bytes(b"x" * 11)
    section = s.Section.for_handler("auth", {"a": "small", "b": "big", "c": "missing", "d": str(tmp_path / "small")},
                                    context(path=str(tmp_path / "server.ini")))
    assert section.path("a") == str(tmp_path / "small")
    assert section.path("d") == str(tmp_path / "small")
    assert section.read("a", limit=10) == (str(tmp_path / "small"), b"12345")
    with pytest.raises(ConfigError, match=r"auth\.b: .*big is larger than 10 bytes$"):
        section.read("b", limit=10)
    with pytest.raises(ConfigError, match=r"auth\.c: cannot read .*missing: No such file"):
        section.read("c")
    with pytest.raises(s.FileTooLarge):
        s.read_bounded(str(tmp_path / "big"), 10)


def test_convert_applies_defaults_and_refuses_unknown_keys():
    schema = {"gop_cache": (s.boolean, "yes"), "timeout": (s.seconds(), "10")}
    assert s.Section("f: [app:x]", {"timeout": "2"}).convert(schema) == {"gop_cache": True, "timeout": 2.0}
    with pytest.raises(ConfigError, match=r"^f: \[app:x\] handlers: unknown key"):
        s.Section("f: [app:x]", {"handlers": "live"}).convert(schema)
    assert s.Section("f: [app:x]", {"handlers": "live"}).convert(schema, extra=["handlers"])["timeout"] == 10.0
