"""``hls.path``: one stream's HLS playlist and segments as files, for nginx or a CDN to serve.

The segmenter (``rtmpserver.media.hls``) calls back in the order a directory needs: a segment is
written before the playlist that names it, and removed only after it left the playlist and its
grace period (RFC 8216 6.2.2).  Every file is written to a hidden temporary name in the same
directory and renamed over the final one (``os.replace``, atomic on POSIX), so a web server
never serves half a segment or half a playlist.  Disk use is bounded per handler
(``hls.max_disk_bytes``): a segment that would exceed the budget is not written, counted and
logged, and players get 404 for it instead of the disk filling up.

Writes are small and local, done in the reactor thread like the recorder's; the playlist on disk
is a classic one (segments only): a plain web server cannot answer LL-HLS blocking requests, so
low latency is served from memory by the HTTP listener.
"""

from __future__ import annotations

import os

from twisted.logger import Logger

from rtmpserver.handlers.record.paths import sanitize

__all__ = ["DiskBudget", "HLSDirectory", "safe_name"]


def safe_name(text: str) -> bool:
    """True when ``text`` can be one file name component as it is (no renaming needed)."""
    return bool(text) and sanitize(text) == text


class DiskBudget:
    """Bytes of segments on disk for all streams of one handler."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class HLSDirectory:
    """Files of one stream under ``root/<app>/``: ``<name>.m3u8``, segments, init segments."""

    _log = Logger()

    def __init__(self, root: str, app: str, name: str, budget: DiskBudget,
                 file_mode: int = 0o640, dir_mode: int = 0o750) -> None:  # fmt: skip
        self.dir = os.path.join(root, sanitize(app))
        self.name = name
        self.budget = budget
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.sizes: dict[str, int] = {}  # file name -> bytes counted in the budget
        self.skipped = 0
        self.errors = 0
        self.segmenter = None
        os.makedirs(self.dir, mode=dir_mode, exist_ok=True)
        os.chmod(self.dir, dir_mode)  # makedirs' mode is subject to the umask

    def attach(self, segmenter) -> None:
        self.segmenter = segmenter
        segmenter.on_segment_added = self.segment_added
        segmenter.on_segment_removed = self.segment_removed
        segmenter.on_playlist_changed = self.playlist_changed
        segmenter.on_init_added = self.init_added

    def detach(self) -> None:
        seg = self.segmenter
        if seg is not None:
            seg.on_segment_added = seg.on_segment_removed = seg.on_playlist_changed = seg.on_init_added = None
        self.segmenter = None

    # -- segmenter callbacks --------------------------------------------------------------------

    def segment_added(self, sequence: int, data: bytes) -> None:
        self._store(self.segmenter.segment_uri(sequence), data)

    def init_added(self, map_id: int, data: bytes) -> None:
        self._store(self.segmenter.map_uri(map_id), data)

    def segment_removed(self, sequence: int) -> None:
        self._remove(self.segmenter.segment_uri(sequence))
        if self.segmenter is not None:
            # Init segments the segmenter forgot are not named by any playlist any more.
            for filename in [f for f in self.sizes if f.endswith(".mp4")]:
                map_id = filename[len(self.name) + 5 : -4]
                if map_id.isdigit() and self.segmenter.init_segment(int(map_id)) is None:
                    self._remove(filename)

    def playlist_changed(self, text: str) -> None:
        self._write(self.name + ".m3u8", text.encode())

    # -- files --------------------------------------------------------------------------------

    def _store(self, filename: str, data: bytes) -> None:
        budget = self.budget
        if budget.used + len(data) > budget.limit:
            self.skipped += 1
            if self.skipped <= 3 or self.skipped % 100 == 0:
                self._log.warn("hls {dir}/{file}: not written, hls.max_disk_bytes ({limit}) reached ({n} so far)",
                               dir=self.dir, file=filename, limit=budget.limit, n=self.skipped)  # fmt: skip
            return
        if self._write(filename, data):
            budget.used += len(data) - self.sizes.get(filename, 0)
            self.sizes[filename] = len(data)

    def _write(self, filename: str, data: bytes) -> bool:
        final = os.path.join(self.dir, filename)
        tmp = os.path.join(self.dir, f".{filename}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), self.file_mode)  # fmt: skip
            try:
                os.fchmod(fd, self.file_mode)  # the umask does not decide what the web server may read
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, final)
            return True
        except OSError as e:
            self.errors += 1
            if self.errors <= 3:
                self._log.error("hls {file}: cannot write: {error}", file=final, error=e.strerror or e)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False

    def _remove(self, filename: str) -> None:
        size = self.sizes.pop(filename, None)
        if size is None:
            return
        self.budget.used -= size
        try:
            os.unlink(os.path.join(self.dir, filename))
        except FileNotFoundError:
            pass
        except OSError as e:
            self._log.warn("hls {file}: cannot remove: {error}", file=filename, error=e.strerror or e)

    def remove_all(self) -> None:
        """The stream is forgotten: its files go, playlist first (no one is sent to a gone segment)."""
        self.detach()
        try:
            os.unlink(os.path.join(self.dir, self.name + ".m3u8"))
        except OSError:
            pass
        for filename in list(self.sizes):
            self._remove(filename)
