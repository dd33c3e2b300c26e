"""Random access to an FLV file for recorded playback, sans-IO.

``media.flv.FLVReader`` is push-based (it is fed a stream); playback needs the opposite: open a
file, read its onMetaData, jump to the keyframe before a time and read tags from there. This reads
through an injected ``read_at(offset, size) -> bytes`` (a short result means end of file), one tag
at a time, so memory stays bounded by ``max_tag_size`` whatever the file's size.

Seeking uses the ``keyframes`` object of onMetaData (``times`` in seconds, ``filepositions`` in
bytes, as our recorder, yamdi and FFmpeg's ``-flvflags add_keyframe_index`` write it) when it is
present, consistent and points at video keyframe tags; otherwise it scans tag headers forward
from the start (13 bytes read per tag, never the bodies), remembering the keyframes found so a
later seek continues from where the scan stopped. Audio-only files get a seek point per second.

AMF0 decoding lives in rtmpserver.codec, which media does not import: the caller passes
``decode_script(payload) -> list`` (e.g. ``lambda b: amf0.Decoder(b).read_all()``) to read
onMetaData; without it there is no metadata and seeking always scans.

A truncated last tag (a recording still being written, or cut short) ends the tag stream quietly;
a malformed tag header raises FLVError.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any

from rtmpserver.errors import FLVError, RemoteProtocolError
from rtmpserver.media.flv import (
    DEFAULT_MAX_TAG_SIZE,
    FLV_HEADER_SIZE,
    TAG_AUDIO,
    TAG_HEADER_SIZE,
    TAG_SCRIPT,
    TAG_VIDEO,
    FLVTag,
    _parse_tag_header,
    audio_info,
    video_info,
)

__all__ = ["FLVFile", "DEFAULT_HEAD_TAGS"]

ReadAt = Callable[[int, int], bytes]

# How many tags at the start are searched for onMetaData and the sequence headers.
DEFAULT_HEAD_TAGS = 64
_AUDIO_SEEK_STEP_MS = 1000
# Tags read backwards from the end for the duration of a file without onMetaData duration.
_TAIL_TAGS = 16
_U32 = struct.Struct(">I")


class FLVFile:
    """An FLV file opened for playback.

    Attributes: ``has_audio``/``has_video`` (header flags), ``data_offset`` (first tag),
    ``metadata`` (onMetaData as decoded, {} if absent or no decoder), ``metadata_payload`` (its raw
    AMF0 body or None), ``video_header``/``audio_header`` (first sequence header tags or None),
    ``start_ms`` (timestamp of the first audio/video tag that is not a sequence header), ``duration_ms``, ``indexed`` (True when
    the onMetaData keyframe index is used for seeking).
    """

    def __init__(
        self,
        read_at: ReadAt,
        size: int,
        *,
        decode_script: Callable[[bytes], list] | None = None,
        max_tag_size: int = DEFAULT_MAX_TAG_SIZE,
        head_tags: int = DEFAULT_HEAD_TAGS,
    ) -> None:
        self._read_at = read_at
        self.size = size
        self.max_tag_size = max_tag_size
        head = read_at(0, FLV_HEADER_SIZE)
        if len(head) < FLV_HEADER_SIZE or head[:3] != b"FLV":
            raise FLVError(f"not an FLV file: starts with {bytes(head[:3])!r}")
        if head[3] != 1:
            raise FLVError(f"unsupported FLV version {head[3]} at offset 3")
        header_size = _U32.unpack_from(head, 5)[0]
        if header_size < FLV_HEADER_SIZE or header_size > size:
            raise FLVError(f"FLV header size {header_size} at offset 5 is out of range")
        self.has_audio = bool(head[4] & 4)
        self.has_video = bool(head[4] & 1)
        self.data_offset = header_size + 4  # after PreviousTagSize0
        self.metadata: dict[str, Any] = {}
        self.metadata_payload: bytes | None = None
        self.video_header: FLVTag | None = None
        self.audio_header: FLVTag | None = None
        self.start_ms = 0
        self.indexed = False
        # Seek points (ms, tag offset); filled from onMetaData or by scanning.
        self._times = array("q")
        self._positions = array("Q")
        self._scanned_to = self.data_offset  # next tag offset the scan would read
        self._scan_done = False
        self._read_head(decode_script, head_tags)
        self.duration_ms = self._find_duration()

    # ------------------------------------------------------------------ tags

    def tag_at(self, offset: int) -> FLVTag | None:
        """The tag whose header starts at ``offset``; None at end of file or if it is truncated."""
        head = self._read_at(offset, TAG_HEADER_SIZE)
        if len(head) < TAG_HEADER_SIZE:
            return None
        tag_type, size, ts = _parse_tag_header(head, 0, self.max_tag_size, "FLV", offset)
        if offset + TAG_HEADER_SIZE + size > self.size:
            return None
        body = self._read_at(offset + TAG_HEADER_SIZE, size) if size else b""
        if len(body) < size:
            return None
        return FLVTag(tag_type, ts, body, offset)

    def next_offset(self, tag: FLVTag) -> int:
        """Offset of the tag after ``tag`` (its body and back-pointer skipped)."""
        return tag.offset + TAG_HEADER_SIZE + len(tag.payload) + 4

    def tags(self, offset: int | None = None) -> Iterator[FLVTag]:
        """Tags from ``offset`` (default: the first) to the end of the file, one read each."""
        pos = self.data_offset if offset is None else offset
        while True:
            tag = self.tag_at(pos)
            if tag is None:
                return
            yield tag
            pos = self.next_offset(tag)

    def _header_at(self, offset: int) -> tuple[int, int, int, bytes] | None:
        """(type, size, timestamp, first two body bytes) without reading the body."""
        head = self._read_at(offset, TAG_HEADER_SIZE + 2)
        if len(head) < TAG_HEADER_SIZE:
            return None
        tag_type, size, ts = _parse_tag_header(head, 0, self.max_tag_size, "FLV", offset)
        if offset + TAG_HEADER_SIZE + size > self.size:
            return None
        return tag_type, size, ts, bytes(head[TAG_HEADER_SIZE : TAG_HEADER_SIZE + min(size, 2)])

    # ------------------------------------------------------------------ head

    def _read_head(self, decode_script: Callable[[bytes], list] | None, head_tags: int) -> None:
        first_media = None
        for n, tag in enumerate(self.tags()):
            if n >= head_tags:
                break
            if tag.type == TAG_SCRIPT and self.metadata_payload is None and decode_script is not None:
                try:
                    values = decode_script(tag.payload)
                except FLVError:
                    raise
                except RemoteProtocolError as e:  # e.g. AMFDecodeError: the file is malformed
                    raise FLVError(f"onMetaData at offset {tag.offset}: {e}") from e
                if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
                    self.metadata_payload = tag.payload
                    self.metadata = dict(values[1])
            elif tag.type == TAG_SCRIPT and self.metadata_payload is None and b"onMetaData" in tag.payload[:16]:
                self.metadata_payload = tag.payload
            elif tag.type == TAG_VIDEO and tag.payload:
                if video_info(tag.payload).is_sequence_header:
                    if self.video_header is None:
                        self.video_header = tag
                elif first_media is None:
                    first_media = tag.timestamp
            elif tag.type == TAG_AUDIO and tag.payload:
                if audio_info(tag.payload).is_sequence_header:
                    if self.audio_header is None:
                        self.audio_header = tag
                elif first_media is None:
                    first_media = tag.timestamp
        self.start_ms = first_media or 0
        self._load_index()

    def _load_index(self) -> None:
        kf = self.metadata.get("keyframes")
        if not isinstance(kf, dict):
            return
        times, positions = kf.get("times"), kf.get("filepositions")
        if not isinstance(times, list) or not isinstance(positions, list) or len(times) != len(positions) or not times:
            return
        try:
            t_ms = [round(float(t) * 1000) for t in times]
            pos = [int(p) for p in positions]
        except (TypeError, ValueError, OverflowError):
            return
        if t_ms[0] < 0 or t_ms[-1] > 0xFFFFFFFF or any(b < a for a, b in zip(t_ms, t_ms[1:], strict=False)):
            return
        if any(b <= a for a, b in zip(pos, pos[1:], strict=False)) or pos[0] < self.data_offset or pos[-1] >= self.size:
            return
        # Spot-check the ends: a stale index (file edited after recording) is ignored.
        for p in (pos[0], pos[-1]):
            tag = self._header_at(p)
            if tag is None or tag[0] != TAG_VIDEO or not tag[3] or (tag[3][0] & 0x70) != 0x10:
                return
        self._times = array("q", t_ms)
        self._positions = array("Q", pos)
        self.indexed = True
        self._scan_done = True

    def _find_duration(self) -> int:
        d = self.metadata.get("duration")
        if isinstance(d, int | float) and 0 < d < 1e9:
            return round(d * 1000)
        # Back-pointers lead from the end to the last tags' headers; audio may end after video's
        # end-of-sequence tag, so the largest timestamp of the last few tags is taken.
        end = self.size
        last = None
        for _ in range(_TAIL_TAGS):
            tail = self._read_at(end - 4, 4) if end >= self.data_offset + 4 else b""
            if len(tail) < 4:
                break
            back = _U32.unpack_from(tail, 0)[0]
            pos = end - 4 - back
            if back < TAG_HEADER_SIZE or pos < self.data_offset:
                break
            try:
                h = self._header_at(pos)
            except FLVError:
                break
            if h is None or TAG_HEADER_SIZE + h[1] != back:
                break
            last = h[2] if last is None else max(last, h[2])
            end = pos
        if last is not None:
            return max(0, last - self.start_ms)
        last = self.start_ms
        pos = self.data_offset
        while (h := self._header_at(pos)) is not None:
            last = max(last, h[2])
            pos += TAG_HEADER_SIZE + h[1] + 4
        return last - self.start_ms

    # ------------------------------------------------------------------ seeking

    def _scan(self, until_ms: int | None) -> None:
        """Extend the scanned seek points past ``until_ms`` (None: to the end)."""
        pos = self._scanned_to
        video = self.has_video or self.video_header is not None
        while not self._scan_done:
            h = self._header_at(pos)
            if h is None:
                self._scan_done = True
                break
            tag_type, size, ts, first = h
            point = False
            if tag_type == TAG_VIDEO and video:
                point = self._is_key(first)
            elif tag_type == TAG_AUDIO and not video and first:
                point = not self._times or ts - self._times[-1] >= _AUDIO_SEEK_STEP_MS
            if point and (not self._times or ts >= self._times[-1]):
                self._times.append(ts)
                self._positions.append(pos)
            pos += TAG_HEADER_SIZE + size + 4
            self._scanned_to = pos
            if until_ms is not None and ts > until_ms:
                break

    @staticmethod
    def _is_key(first: bytes) -> bool:
        # Frame type 1 and not a sequence header (AVC packet type 0 / Enhanced SequenceStart 0).
        if not first or (first[0] & 0x70) != 0x10:
            return False
        if first[0] & 0x80:
            return (first[0] & 0x0F) in (1, 3)
        if (first[0] & 0x0F) in (7, 12):
            return len(first) > 1 and first[1] == 1
        return True

    def seek(self, ms: int) -> tuple[int, int]:
        """(tag offset, timestamp relative to ``start_ms``) of the keyframe at or before ``ms``
        (the first one if there is none before). With no seek point at all: the first tag."""
        target = ms + self.start_ms
        if not self._scan_done and (not self._times or self._times[-1] <= target):
            self._scan(target)
        if not self._times:
            return self.data_offset, 0
        k = max(0, bisect_right(self._times, target) - 1)
        return self._positions[k], max(0, self._times[k] - self.start_ms)

    def index_bytes(self) -> int:
        return self._times.itemsize * len(self._times) + self._positions.itemsize * len(self._positions)
