"""Typed settings: one set of converters and one error format for the config file and handlers.

``rtmpserver.config`` reads ``[server]``, ``[limits]``, ``[app:NAME]`` and ``[http:NAME]`` with
these converters, and every handler reads its ``NAME.key`` settings with them, so a value means
the same everywhere: numbers are plain decimals (no sign, exponent, ``inf`` or ``nan``), booleans
are yes/no, true/false, on/off or 1/0 (any case), a relative path is relative to the config file.
Every mistake is a ``ConfigError`` naming file, section and key::

    etc/server.ini: [app:live] hls.fragment: expected a number of seconds from 0.5 to 60, got '0'
    etc/server.ini: [limits] idle_timout: unknown key (did you mean 'idle_timeout'?)

A converter takes the value's text (stripped) and returns the value or raises ``Invalid`` with
what was expected; ``Section`` turns that into the message.  docs/plugins.md shows a handler
factory using it.  This module imports only the standard library and ``rtmpserver.errors``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from rtmpserver.errors import ConfigError

__all__ = [
    "Invalid",
    "Section",
    "FileTooLarge",
    "boolean",
    "choice",
    "integer",
    "number",
    "path",
    "printable",
    "read_bounded",
    "seconds",
    "show",
    "size",
    "suggest",
    "url",
    "words",
]

T = TypeVar("T")
Converter = Callable[[str], Any]

# A settings file (config, key list, users, secret) is a few kilobytes; the bound keeps a wrong
# path (/dev/zero, a video) from eating memory.
DEFAULT_FILE_LIMIT = 1 << 20

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
# No sign, no exponent, no inf/nan: a setting is a plain decimal (docs/configuration.md "Types").
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}
_LIST_SEPARATOR = re.compile(r"[,\s]+")


class Invalid(ValueError):
    """A value that does not fit its key; ``str(e)`` says what was expected (``"an integer from 1 to 9"``)."""


class FileTooLarge(OSError):
    """``read_bounded``: the file holds more than the limit."""


# --- converters ---------------------------------------------------------------------------------


def integer(low: int, high: int, unit: str = "an integer") -> Callable[[str], int]:
    """Digits only, ``low <= value <= high``: ``expected an integer from 1 to 9``."""
    expectation = f"{unit} from {low} to {high}"

    def convert(text: str) -> int:
        if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
            raise Invalid(expectation)
        return int(text)

    return convert


def size(low: int, high: int) -> Callable[[str], int]:
    """A number of bytes (digits only): ``expected a size in bytes from 1 to 16777215``."""
    return integer(low, high, "a size in bytes")


def number(expectation: str, low: float = 0.0, high: float | None = None, allow_low: bool = True) -> Callable[[str], float]:
    """A plain decimal in ``[low, high]`` (``(low, high]`` when ``allow_low`` is false)."""

    def convert(text: str) -> float:
        if not _DECIMAL.fullmatch(text):
            raise Invalid(expectation)
        value = float(text)
        if not math.isfinite(value) or value < low or (value == low and not allow_low):
            raise Invalid(expectation)
        if high is not None and value > high:
            raise Invalid(expectation)
        return value

    return convert


def seconds(low: float = 0.0, high: float | None = None, allow_zero: bool = False, unit: str = "seconds") -> Callable[[str], float]:
    """A duration: ``> 0`` by default; ``allow_zero`` for ``>= 0``; ``low`` and ``high`` bound it."""
    if low > 0:
        expectation = f"a number of {unit} from {low:g} to {high:g}" if high is not None else f"a number of {unit} >= {low:g}"
        return number(expectation, low, high)
    expectation = f"a number of {unit} {'>=' if allow_zero else '>'} 0"
    if high is not None:
        expectation += f" and <= {high:g}"
    return number(expectation, 0.0, high, allow_low=allow_zero)


def boolean(text: str) -> bool:
    """yes/no, true/false, on/off or 1/0, in any case."""
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise Invalid("yes/no, true/false, on/off or 1/0") from None


def choice(*choices: str, ignore_case: bool = False, expectation: str | None = None) -> Callable[[str], str]:
    """One of ``choices`` (returned as listed): ``expected one of reject | takeover | auto``."""
    expected = expectation or f"one of {' | '.join(choices)}"
    by_text = {(c.lower() if ignore_case else c): c for c in choices}

    def convert(text: str) -> str:
        found = by_text.get(text.lower() if ignore_case else text)
        if found is None:
            raise Invalid(expected)
        return found

    return convert


def printable(max_length: int = 256, allow_empty: bool = False) -> Callable[[str], str]:
    """Printable text of at most ``max_length`` characters."""
    expected = f"{'a' if allow_empty else 'a non-empty'} printable name of at most {max_length} characters"

    def convert(text: str) -> str:
        if (not text and not allow_empty) or len(text) > max_length or not text.isprintable():
            raise Invalid(expected)
        return text

    return convert


def words(item: Callable[[str], T] | None = None, what: str = "names", unique: bool = True,
          allow_empty: bool = False) -> Callable[[str], tuple]:
    """A list separated by commas and/or white space, each item checked by ``item`` (which may
    raise Invalid); order is kept."""

    def convert(text: str) -> tuple:
        parts = [w for w in _LIST_SEPARATOR.split(text) if w]
        if not parts and not allow_empty:
            raise Invalid(f"a comma-separated list of {what}")
        out = []
        for w in parts:
            if item is not None:
                try:
                    out.append(item(w))
                except Invalid as e:
                    raise Invalid(f"a comma-separated list of {what} ({w!r}: expected {e})") from None
            else:
                out.append(w)
        if unique:
            seen: set = set()
            for w in parts:
                if w in seen:
                    raise Invalid(f"each of the {what} once ({w!r} is listed twice)")
                seen.add(w)
        return tuple(out)

    return convert


def path(base_dir: str) -> Callable[[str], str]:
    """A file name; a relative one is taken relative to ``base_dir`` (the config file's directory)."""

    def convert(text: str) -> str:
        if not text or "\x00" in text:
            raise Invalid("a file name")
        return os.path.join(base_dir, text)

    return convert


def url(schemes: Iterable[str] = ("http", "https")) -> Callable[[str], str]:
    """An absolute URL an HTTP client can call: ASCII, no spaces, a host, a valid port, no
    ``user:password@`` and no ``#fragment``."""
    allowed = tuple(s.lower() for s in schemes)
    kind = " or ".join(f"{s}://" for s in allowed)

    def convert(text: str) -> str:
        if not text.isascii():
            raise Invalid(f"an {kind} URL in ASCII (percent-encode other characters)")
        if any(c.isspace() or not c.isprintable() for c in text):
            raise Invalid(f"an {kind} URL without spaces or control characters")
        try:
            parts = urlsplit(text)
            port = parts.port  # ValueError for a non-numeric or out-of-range port
        except ValueError:
            raise Invalid(f"an {kind} URL with a valid host and port") from None
        if parts.scheme.lower() not in allowed:
            raise Invalid(f"an {kind} URL")
        if not parts.hostname:
            raise Invalid(f"an {kind} URL with a host")
        if "@" in parts.netloc:
            raise Invalid(f"an {kind} URL without user:password@ (it would not be sent)")
        if port == 0:
            raise Invalid(f"an {kind} URL with a port from 1 to 65535")
        if parts.fragment or text.endswith("#"):
            raise Invalid(f"an {kind} URL without a #fragment")
        return text

    return convert


# --- messages -----------------------------------------------------------------------------------


def show(text: str, limit: int = 60) -> str:
    """Quote a value for a one-line message: as written (no repr doubling of backslashes), a
    multi-line value on one line, control characters escaped, long values cut."""
    if "\n" in text:
        text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return f"'{text}'"


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else `` (known keys: a, b, c)``."""
    known = list(candidates)
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


# --- files --------------------------------------------------------------------------------------


def read_bounded(filename: str, limit: int = DEFAULT_FILE_LIMIT) -> bytes:
    """The bytes of a small file; ``OSError`` when it cannot be read, ``FileTooLarge`` when it
    holds more than ``limit`` bytes (only ``limit + 1`` bytes are ever read)."""
    with open(filename, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{filename} is larger than {limit} bytes")
    return data


# --- sections -----------------------------------------------------------------------------------


class Section:
    """The settings of one config section, or of one handler in an ``[app:NAME]`` section.

    ``where`` is ``"<file>: [<section>]"``; ``prefix`` is put before each key in messages
    (``"hls."`` for a handler's keys).  ``base_dir`` resolves relative file names.
    """

    def __init__(self, where: str, items: Mapping[str, str], prefix: str = "", base_dir: str | None = None) -> None:
        self.where = where
        self.items = dict(items)
        self.prefix = prefix
        self.base_dir = base_dir if base_dir is not None else os.getcwd()

    @classmethod
    def for_handler(cls, name: str, settings: Mapping[str, str], context: Any) -> Section:
        """The ``NAME.*`` settings a handler factory's ``build(settings, context)`` receives."""
        config_path = context.server.path
        base_dir = os.getcwd() if config_path == "<string>" else os.path.dirname(os.path.abspath(config_path))
        return cls(f"{config_path}: [app:{context.app.name}]", settings, f"{name}.", base_dir)

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def raw(self, key: str, default: str = "") -> str:
        """The stripped text of ``key`` as written (``default`` when absent)."""
        return self.items.get(key, default).strip()

    def key(self, key: str) -> str:
        """``key`` as the user wrote it: ``hls.fragment``."""
        return f"{self.prefix}{key}"

    def error(self, key: str, problem: str, value: str | None = None, secret: bool = False) -> ConfigError:
        """``<file>: [<section>] <prefix><key>: <problem>, got '<value>'``.  A secret's value is
        never shown (the message goes to the terminal and to logs), only its length."""
        if value is None:
            value = self.raw(key)
        shown = f"a value of {len(value)} characters (not shown: it is secret)" if secret else show(value)
        return ConfigError(f"{self.where} {self.key(key)}: {problem}, got {shown}")

    def problem(self, key: str, problem: str) -> ConfigError:
        """``<file>: [<section>] <prefix><key>: <problem>`` (no value)."""
        return ConfigError(f"{self.where} {self.key(key)}: {problem}")

    def check_known(self, known: Iterable[str], extra: Iterable[str] = ()) -> None:
        """Refuse keys outside ``known`` (and ``extra``, keys read elsewhere). The value of an
        unknown key is not shown: it may be a secret under a misspelt name."""
        candidates = [*known, *extra]
        for key in self.items:
            if key not in candidates:
                raise self.problem(key, f"unknown key{suggest(key, candidates)}")

    def get(self, key: str, convert: Callable[[str], T], default: str | None = None, secret: bool = False) -> T:
        """``convert`` applied to ``key``'s text, or to ``default`` (the text a user would write)
        when it is absent; None when both are."""
        if key not in self.items:
            return None if default is None else convert(default)  # type: ignore[return-value]
        text = self.raw(key)
        try:
            return convert(text)
        except Invalid as e:
            raise self.error(key, f"expected {e}", text, secret=secret) from None

    def convert(self, schema: Mapping[str, tuple[Callable[[str], Any], str]], extra: Iterable[str] = ()) -> dict[str, Any]:
        """Every key of ``schema`` (key -> (converter, default text)), unknown keys refused."""
        self.check_known(schema, extra)
        return {key: self.get(key, conv, default) for key, (conv, default) in schema.items()}

    def path(self, key: str) -> str:
        """``key`` as a file name, relative ones resolved against ``base_dir``."""
        return self.get(key, path(self.base_dir))

    def read(self, key: str, limit: int = DEFAULT_FILE_LIMIT) -> tuple[str, bytes]:
        """(file name, bytes) of the file ``key`` names, read with a bound."""
        filename = self.path(key)
        try:
            return filename, read_bounded(filename, limit)
        except FileTooLarge as e:
            raise self.problem(key, str(e)) from None
        except OSError as e:
            raise self.problem(key, f"cannot read {filename}: {e.strerror or e}") from None
