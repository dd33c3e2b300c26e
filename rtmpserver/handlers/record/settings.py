"""``record.*`` settings of one application."""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rtmpserver.handlers.record.paths import PLACEHOLDERS, render_path, template_root
from rtmpserver.media.flvwriter import MAX_INDEX
from rtmpserver.settings import Invalid, Section, choice, integer, seconds

__all__ = ["MODES", "RecordSettings", "parse_settings"]

MODES = ("all", "audio", "video", "keyframes", "off", "manual")



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


def _path_template(base_dir: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        expected = "a file path template using only the placeholders {app}, {name} and {time}"
        if not text or "\x00" in text:
            raise Invalid(expected)
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError:
            raise Invalid(f"{expected} (unbalanced braces; write {{{{ or }}}} for a literal brace)") from None
        for _, field_name, spec, conversion in fields:
            if field_name is None:
                continue
            if field_name not in PLACEHOLDERS or spec or conversion:
                raise Invalid(expected)
        if text.endswith(("/", os.sep)):
            raise Invalid(f"{expected} (it names a directory)")
        # Not normalised here: "{name}/.." would collapse to nothing and hide the placeholder.
        path = os.path.join(base_dir, text)
        root = template_root(path)
        if os.path.commonpath([root, render_path(path, "app", "name", 0)]) != root:
            raise Invalid(f"{expected}, whose files stay inside {root} ('..' after a placeholder leaves it)")
        return path

    return convert


def parse_settings(settings: Mapping[str, str], context: Any) -> RecordSettings:
    """Check ``record.*``; relative paths are resolved against the config file's directory."""
    section = Section.for_handler("record", settings, context)
    keys: dict[str, Callable[[str], Any]] = {
        "path": _path_template(section.base_dir),
        "mode": choice(*MODES),
        "max_size": integer(0, 2**50),
        "max_duration": seconds(allow_zero=True),
        "max_frames": integer(0, 2**40),
        "max_index": integer(0, MAX_INDEX),
    }
    section.check_known(keys)
    result = RecordSettings(**{key: section.get(key, convert) for key, convert in keys.items() if key in section})
    if result.mode != "off" and not result.path:
        raise section.error(
            "path",
            "expected a file path template such as /var/rec/{app}/{name}-{time}.flv (required unless record.mode = off)",
            "",
        )
    return result
