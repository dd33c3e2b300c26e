"""``record.*`` settings of one application."""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rtmpserver.errors import ConfigError
from rtmpserver.handlers.record.paths import PLACEHOLDERS, render_path, template_root
from rtmpserver.media.flvwriter import MAX_INDEX

__all__ = ["MODES", "RecordSettings", "parse_settings"]

MODES = ("all", "audio", "video", "keyframes", "off", "manual")

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


@dataclass(frozen=True)
class RecordSettings:
    """``record.*`` of one application; 0 means "no bound" for the ``max_*`` splitting bounds."""

    path: str = ""  # absolute template with {app}, {name}, {time}
    mode: str = "all"
    max_size: int = 0  # bytes
    max_duration: float = 0.0  # seconds
    max_frames: int = 0  # video frames (audio frames in audio-only files)
    max_index: int = 10_000  # keyframes in the onMetaData index

    @property
    def root(self) -> str:
        return template_root(self.path)


class _Bad(Exception):
    pass


def _count(high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _DIGITS.fullmatch(text) or int(text) > high:
            raise _Bad(f"an integer from 0 to {high}")
        return int(text)

    return convert


def _seconds(text: str) -> float:
    if not _DECIMAL.fullmatch(text) or not math.isfinite(float(text)):
        raise _Bad("a number of seconds >= 0")
    return float(text)


def _mode(text: str) -> str:
    if text not in MODES:
        raise _Bad(f"one of {' | '.join(MODES)}")
    return text


def _path_template(base_dir: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        expected = "a file path template using only the placeholders {app}, {name} and {time}"
        if not text or "\x00" in text:
            raise _Bad(expected)
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError:
            raise _Bad(f"{expected} (unbalanced braces; write {{{{ or }}}} for a literal brace)") from None
        for _, field_name, spec, conversion in fields:
            if field_name is None:
                continue
            if field_name not in PLACEHOLDERS or spec or conversion:
                raise _Bad(expected)
        if text.endswith(("/", os.sep)):
            raise _Bad(f"{expected} (it names a directory)")
        # Not normalised here: "{name}/.." would collapse to nothing and hide the placeholder.
        path = os.path.join(base_dir, text)
        root = template_root(path)
        if os.path.commonpath([root, render_path(path, "app", "name", 0)]) != root:
            raise _Bad(f"{expected}, whose files stay inside {root} ('..' after a placeholder leaves it)")
        return path

    return convert


def parse_settings(settings: Mapping[str, str], context: Any) -> RecordSettings:
    """Check ``record.*``; relative paths are resolved against the config file's directory."""
    config_path = context.server.path
    base_dir = os.getcwd() if config_path == "<string>" else os.path.dirname(os.path.abspath(config_path))
    keys: dict[str, Callable[[str], Any]] = {
        "path": _path_template(base_dir),
        "mode": _mode,
        "max_size": _count(2**50),
        "max_duration": _seconds,
        "max_frames": _count(2**40),
        "max_index": _count(MAX_INDEX),
    }
    where = f"{config_path}: [app:{context.app.name}]"
    values: dict[str, Any] = {}
    for key, raw in settings.items():
        text = raw.strip()
        convert = keys.get(key)
        if convert is None:
            raise ConfigError(f"{where} record.{key}: unknown key (record has {', '.join(keys)})")
        try:
            values[key] = convert(text)
        except _Bad as e:
            raise ConfigError(f"{where} record.{key}: expected {e}, got '{text}'") from None
    result = RecordSettings(**values)
    if result.mode != "off" and not result.path:
        raise ConfigError(
            f"{where} record.path: expected a file path template such as "
            f"/var/rec/{{app}}/{{name}}-{{time}}.flv (required unless record.mode = off), got ''"
        )
    return result
