"""Recording file names: the ``record.path`` template, with names that cannot leave its directory."""

from __future__ import annotations

import os
import re
import string
import time

__all__ = ["PLACEHOLDERS", "render_path", "sanitize", "template_root"]

# Leaves room for the time, a uniqueness counter and an extension within NAME_MAX (255).
_MAX_COMPONENT = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
PLACEHOLDERS = ("app", "name", "time")


def sanitize(text: str) -> str:
    """``text`` made safe as one file name component.

    Everything outside ``[A-Za-z0-9._-]`` (separators, NUL, non-ASCII) becomes ``_`` and leading
    dots go, so the result is never ``.``, ``..``, hidden, absolute or more than one component;
    an empty result is ``_``.  Two names may map to the same text: files are never overwritten
    (``render_path`` callers open with O_EXCL and add a counter), so that only affects naming.
    """
    safe = _UNSAFE.sub("_", text).lstrip(".")[:_MAX_COMPONENT]
    return safe or "_"


def render_path(template: str, app: str, name: str, when: float) -> str:
    """The path for a recording of ``app``/``name`` started at ``when`` (UTC seconds)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    return os.path.normpath(template.format(app=sanitize(app), name=sanitize(name), time=stamp))


def template_root(template: str) -> str:
    """The directory every rendering of ``template`` stays inside: the part before any placeholder."""
    literal = []
    for text, field_name, _, _ in string.Formatter().parse(template):
        literal.append(text)  # already unescaped: "{{" is "{" here
        if field_name is not None:
            break
    return os.path.dirname(os.path.normpath("".join(literal) + "x")) or os.sep
