"""Key and user files that are re-read when they change."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from rtmpserver.handlers.auth._common import (
    MAX_FILE_BYTES,
)
from rtmpserver.settings import FileTooLarge, read_bounded


class FileProblem(Exception):
    """A key or users file that cannot be used; the message names file and line."""


class WatchedFile:
    """A small file parsed at startup and again whenever its mtime, size or inode changes.

    Operators rotate keys by editing the file; replacing it atomically (write, then rename) is
    what makes a half-written file impossible.  A file that disappears or stops parsing revokes
    everything it held (fail closed) until it is fixed, and the problem is logged once.
    """

    _log = Logger()

    def __init__(self, path: str, parse: Callable[[str, str], Any], empty: Any) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._stamp: tuple | None = None
        self.value: Any = empty
        self.broken: str | None = None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def _read(self) -> Any:
        try:
            data = read_bounded(self.path, MAX_FILE_BYTES)
        except FileTooLarge:
            raise FileProblem(f"{self.path}: larger than {MAX_FILE_BYTES} bytes") from None
        except OSError as e:
            raise FileProblem(f"{self.path}: cannot read: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FileProblem(f"{self.path}: not UTF-8 text (bad byte at offset {e.start})") from None
        return self._parse(text, self.path)

    def load(self) -> None:
        """First load: problems raise FileProblem (the caller turns it into a ConfigError)."""
        self._stamp = self._stat()
        self.value = self._read()
        self.broken = None

    def current(self) -> Any:
        stamp = self._stat()
        if stamp == self._stamp and stamp is not None:
            return self.value
        self._stamp = stamp
        try:
            if stamp is None:
                raise FileProblem(f"{self.path}: cannot read: file not found")
            self.value = self._read()
        except FileProblem as e:
            self.value = self._empty
            if str(e) != self.broken:
                self._log.error("{problem}; everything it held is refused until it is fixed", problem=str(e))
            self.broken = str(e)
            return self.value
        if self.broken:
            self._log.info("{path} is usable again", path=self.path)
        else:
            self._log.info("{path} changed; reloaded", path=self.path)
        self.broken = None
        return self.value


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line
