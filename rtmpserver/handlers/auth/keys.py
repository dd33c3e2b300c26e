"""Stream keys: key files, key entries and the store the handler checks them against."""

from __future__ import annotations

import hmac

from rtmpserver.handlers.auth._common import (
    _KEY,
    _STREAM_NAME,
    _digest,
)
from rtmpserver.handlers.auth.files import (
    FileProblem,
    WatchedFile,
    _lines,
)


def parse_keys_file(text: str, path: str, allow_name: bool = True) -> list[tuple[bytes, str | None]]:
    """One key per line, or (publish keys) ``NAME:KEY`` to publish under NAME; ``#`` starts a
    comment line."""
    entries: list[tuple[bytes, str | None]] = []
    seen: set[bytes] = set()
    for n, line in _lines(text):
        try:
            digest, name = _parse_key_entry(line, allow_name)
        except ValueError as e:
            raise FileProblem(f"{path}:{n}: {e}") from None
        if digest in seen:
            raise FileProblem(f"{path}:{n}: this key appears on an earlier line too")
        seen.add(digest)
        entries.append((digest, name))
    return entries


def _parse_key_entry(item: str, allow_name: bool) -> tuple[bytes, str | None]:
    """``KEY`` or ``NAME:KEY``; the error never contains the key itself."""
    name = None
    key = item
    if ":" in item:
        if not allow_name:
            raise ValueError("expected a key (letters, digits, '-', '_', '.', '~'), found ':'")
        name, _, key = item.partition(":")
        if not _STREAM_NAME.fullmatch(name):
            raise ValueError(f"expected NAME:KEY with a stream name of letters, digits and ._~@+/- , got name {name[:40]!r}")
    if not _KEY.fullmatch(key):
        raise ValueError(f"a key must be 1-512 letters, digits, '-', '_', '.' or '~' (this one has {len(key)} characters)")
    return _digest(key), name


class KeyStore:
    """The keys accepted for one action: static entries plus key files, in a fixed order."""

    def __init__(self, static: list[tuple[bytes, str | None]], files: list[WatchedFile]) -> None:
        self.static = static
        self.files = files

    def __bool__(self) -> bool:
        return bool(self.static or self.files)

    def lookup(self, presented: str) -> tuple[bool, str | None]:
        """(matched, stream name the key publishes under or None).

        Every entry is compared, without stopping at the first match, so the time taken does not
        say where (or whether) the key was found.
        """
        d = _digest(presented)
        found = False
        name: str | None = None
        entries = list(self.static)
        for f in self.files:
            entries.extend(f.current())
        for digest, mapped in entries:
            if hmac.compare_digest(digest, d) and not found:
                found, name = True, mapped
        return found, name
