"""A sans-IO ISO base media file (MP4) reader for recorded playback.

Only what playback needs: the box tree of ``moov`` (or of each ``moof`` in a fragmented file), the
sample tables, and an iterator over the samples of the chosen video and audio tracks in decode
order. Media data is never read here: a sample is an (offset, size) that the caller reads when it
sends it. References: ISO/IEC 14496-12 (boxes: 8.3 tkhd, 8.4 mdhd/hdlr, 8.5 stsd, 8.6 stts/ctts/
stss/elst, 8.7 stsc/stsz/stz2/stco/co64, 8.8 mvex/trex/moof/tfhd/trun, 8.8.12 tfdt), ISO/IEC 14496-15
(avcC, hvcC sample entries), ISO/IEC 14496-1 section 7.2.6 (esds descriptors), the AV1 ISOBMFF
binding (av1C) and the VP codec ISOBMFF binding (vpcC).

Why not a library: pymp4 (1.4.0, construct-based) parses whole boxes into Python objects, mdat
included when parsing a stream, and has no sample-table logic; pymp4parse was last released in
2017. Neither reads ``moov`` alone from a 2 GB file and turns the tables into a bounded index, so
this module does that itself.

File access goes through an injected ``read_at(offset, size) -> bytes`` (a short result means end
of file), so tests use bytes and the server a file. The top level is walked box header by box
header (``mdat`` is skipped by its size, 64-bit sizes and ``moov`` after ``mdat`` included);
``moov`` is read whole but at most ``max_moov_bytes``; each ``moof`` at most ``max_moof_bytes``.

Memory: a track keeps its tables in the run-length form the file uses (``stts`` and ``stsc`` runs,
one ``array`` entry per chunk) plus 4 bytes per sample for sizes (none when all samples have one
size), 4 per sample for composition offsets (when there is a ``ctts``) and 4 per sync sample. So
the index costs about what the ``moov`` does. Two measured cases (tests/media/test_mp4.py and the
branch's commit notes): a 2-hour 30 fps H.264 (B-frames) + 44.1 kHz AAC movie stored in one-second
chunks costs 3 040 424 bytes (5.8 bytes a sample); FFmpeg's default interleaving (about one chunk per
video frame, audio chunks of 1-2 frames) costs 13.5 bytes a sample, about 7 MB for 2 hours. Sample
offsets and times are computed by a cursor while iterating, never stored per sample. A fragmented
file keeps 12 bytes per fragment plus 8 per fragment per track, and parses one moof at a time.

Malformed input raises ``MP4Error`` (a RemoteProtocolError); a bound crossed raises
``MP4LimitExceeded``. Codec records are returned raw; callers parse them with media.codecs.
"""

from __future__ import annotations

import heapq
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from typing import NamedTuple

from rtmpserver.errors import LimitExceeded, RemoteProtocolError

__all__ = [
    "MP4Error",
    "MP4LimitExceeded",
    "DEFAULT_MAX_MOOV_BYTES",
    "DEFAULT_MAX_MOOF_BYTES",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_SAMPLE_SIZE",
    "Sample",
    "Track",
    "Position",
    "MP4File",
    "iter_boxes",
]

DEFAULT_MAX_MOOV_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_MOOF_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_FRAGMENTS = 1_000_000
# One access unit; a 4K intra frame is a few MB.
DEFAULT_MAX_SAMPLE_SIZE = 16 * 1024 * 1024

ReadAt = Callable[[int, int], bytes]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U16 = struct.Struct(">H")
_BOX = struct.Struct(">I4s")

_LITTLE = sys.byteorder == "little"

_VIDEO_ENTRIES = {b"avc1": "avc1", b"avc3": "avc1", b"hvc1": "hvc1", b"hev1": "hvc1", b"av01": "av01", b"vp09": "vp09"}
_CONFIG_BOX = {"avc1": b"avcC", "hvc1": b"hvcC", "av01": b"av1C", "vp09": b"vpcC"}
# Fragment sample flags (14496-12 8.8.3.1): sample_is_non_sync_sample.
_NON_SYNC = 0x10000
# Decode times are kept in signed 64-bit arrays.
_MAX_TIME = 1 << 62
# A trun whose samples all take the defaults has no per-sample bytes to bound its count.
_MAX_DEFAULT_TRUN = 1 << 16
# tfhd flags.
_TFHD_BASE_OFFSET = 0x1
_TFHD_SDI = 0x2
_TFHD_DURATION = 0x8
_TFHD_SIZE = 0x10
_TFHD_FLAGS = 0x20
_TFHD_BASE_IS_MOOF = 0x20000
# trun flags.
_TRUN_DATA_OFFSET = 0x1
_TRUN_FIRST_FLAGS = 0x4
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRUN_FLAGS = 0x400
_TRUN_CTS = 0x800


class MP4Error(RemoteProtocolError):
    """Malformed or unsupported ISO BMFF data."""


class MP4LimitExceeded(MP4Error, LimitExceeded):
    """A box or table is larger than the configured bound."""


class Sample(NamedTuple):
    """One access unit. Times are milliseconds on the file's timeline (never negative).

    ``cts_offset_ms`` is presentation minus decode time (negative only with ctts version 1 edits).
    """

    track_id: int
    dts_ms: int
    cts_offset_ms: int
    offset: int
    size: int
    keyframe: bool


def _u32_array(buf, start: int, count: int, typecode: str = "I") -> array:
    a = array(typecode)
    a.frombytes(memoryview(buf)[start : start + count * a.itemsize])
    if _LITTLE:
        a.byteswap()
    return a


def iter_boxes(buf, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """Child boxes of ``buf[start:end]``: (type, payload start, payload end). Sizes are checked."""
    if end is None:
        end = len(buf)
    pos = start
    while pos < end:
        if end - pos < 8:
            raise MP4Error(f"truncated box header at offset {pos}")
        size, btype = _BOX.unpack_from(buf, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise MP4Error(f"truncated 64-bit box size at offset {pos}")
            size = _U64.unpack_from(buf, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise MP4Error(f"box {btype!r} at offset {pos} claims {size} bytes, {end - pos} available")
        yield btype, pos + header, pos + size
        pos += size


def _find(buf, start: int, end: int, btype: bytes) -> tuple[int, int] | None:
    for t, s, e in iter_boxes(buf, start, end):
        if t == btype:
            return s, e
    return None


def _need(start: int, end: int, n: int, what: str) -> None:
    if end - start < n:
        raise MP4Error(f"{what}: {end - start} bytes, need {n}")


class _Stbl:
    """Run-length sample tables of one track (stts/ctts/stsc runs, per-chunk offsets, sizes)."""

    __slots__ = (
        "count", "stts_n", "stts_d", "stts_first", "stts_dts", "ctts",
        "stsc_chunk", "stsc_spc", "stsc_first", "chunks", "sizes", "const_size", "sync",
    )

    def __init__(self) -> None:
        self.count = 0
        self.stts_n = array("I")
        self.stts_d = array("I")
        self.stts_first = array("I")
        self.stts_dts = array("q")
        self.ctts = array("i")  # per sample, empty without ctts
        self.stsc_chunk = array("I")  # 0-based first chunk of each run
        self.stsc_spc = array("I")
        self.stsc_first = array("I")  # first sample of each run
        self.chunks = array("I")  # 'Q' for co64
        self.sizes = array("I")
        self.const_size = 0
        self.sync: array | None = None  # 0-based sync sample numbers; None = every sample

    def nbytes(self) -> int:
        total = 0
        for name in self.__slots__:
            v = getattr(self, name)
            if isinstance(v, array):
                total += v.itemsize * len(v)
        return total

    def dts(self, n: int) -> int:
        r = bisect_right(self.stts_first, n) - 1
        return self.stts_dts[r] + (n - self.stts_first[r]) * self.stts_d[r]

    def cts(self, n: int) -> int:
        return self.ctts[n] if self.ctts else 0

    def size(self, n: int) -> int:
        return self.const_size if not self.sizes else self.sizes[n]


class Track:
    """One ``trak``: codec, timing and the sample index."""

    def __init__(self) -> None:
        self.track_id = 0
        self.kind = ""  # 'video', 'audio' or the raw handler type
        self.timescale = 0
        self.duration = 0  # media timescale units (mdhd)
        self.codec = ""  # 'avc1', 'hvc1', 'av01', 'vp09', 'mp4a', '.mp3' or the sample entry type
        self.config = b""  # avcC/hvcC/av1C/vpcC payload or the AudioSpecificConfig
        self.width = 0
        self.height = 0
        self.channels = 0
        self.sample_rate = 0
        self.sample_size = 16
        self.media_time = 0  # elst: first media time shown (track timescale)
        self.empty_edit = 0  # elst: initial empty edit (track timescale)
        self.stbl = _Stbl()
        # Fragmented files: trex defaults and the per-fragment first decode time.
        self.trex = (1, 0, 0, 0)  # sample description index, duration, size, flags
        self.frag_dts = array("q")  # per fragment (index into MP4File.fragments); -1 = absent
        self.frag_end = 0  # decode time after the last fragment
        self.frag_samples = 0  # samples in all fragments

    @property
    def sample_count(self) -> int:
        return self.stbl.count + self.frag_samples

    @property
    def supported(self) -> bool:
        return self.codec in ("avc1", "hvc1", "av01", "vp09", "mp4a") and bool(self.config)

    def index_bytes(self) -> int:
        """Bytes held by this track's index arrays."""
        return self.stbl.nbytes() + self.frag_dts.itemsize * len(self.frag_dts)

    def to_ms(self, t: int) -> int:
        """Track time (decode or presentation, in timescale units) to file milliseconds, before the
        file-wide shift that keeps everything non-negative."""
        return (t - self.media_time + self.empty_edit) * 1000 // self.timescale

    def __repr__(self) -> str:
        return f"<Track {self.track_id} {self.kind} {self.codec} {self.stbl.count} samples>"


class Position(NamedTuple):
    """A seek result: the time playback resumes at (ms) and, per selected track id, where its
    samples start (moov sample number, fragment number, minimum decode time in track units)."""

    ms: int
    starts: dict[int, tuple[int, int, int]]


class _Traf(NamedTuple):
    track_id: int
    base_dts: int
    dts: array  # per sample, raw decode time
    cts: array
    offsets: array
    sizes: array
    keys: array  # per sample 0/1 ('B')
    end_dts: int


class MP4File:
    """An MP4 file's index, read lazily through ``read_at``.

    ``tracks``: every track; ``video``/``audio``: the first supported track of each kind (or None);
    ``selected``: those two. ``duration_ms``; ``shift_ms`` (added to every time so that none is
    negative: B-frame edit lists start decoding before 0); ``fragmented``. ``seek(ms)`` says where
    playback from ``ms`` starts (a ``Position``); ``samples(position=None)`` iterates the selected
    tracks merged by decode time from there; ``read_sample(sample)`` reads one sample's bytes.
    """

    def __init__(
        self,
        read_at: ReadAt,
        size: int,
        *,
        max_moov_bytes: int = DEFAULT_MAX_MOOV_BYTES,
        max_moof_bytes: int = DEFAULT_MAX_MOOF_BYTES,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
    ) -> None:
        self._read_at = read_at
        self.size = size
        self.max_moov_bytes = max_moov_bytes
        self.max_moof_bytes = max_moof_bytes
        self.max_fragments = max_fragments
        self.brand = b""
        self.timescale = 1000
        self.movie_duration = 0
        self.fragment_duration = 0  # mehd, movie timescale
        self.tracks: list[Track] = []
        self.fragments = array("Q")  # moof offsets
        self._fragment_sizes = array("I")
        self._moof_cache: dict[int, list[_Traf]] = {}
        self._parse_top_level()
        self.video = next((t for t in self.tracks if t.kind == "video" and t.supported), None)
        self.audio = next((t for t in self.tracks if t.kind == "audio" and t.supported), None)
        if self.video is None and self.audio is None:
            raise MP4Error("no supported audio or video track (H.264, HEVC, AV1, VP9, AAC)")
        if self.fragmented:
            self._index_fragments()
        self.shift_ms = max(0, -min(self._first_ms(t) for t in self.selected))
        self.duration_ms = self._duration_ms()

    # ------------------------------------------------------------------ reading

    def _read(self, offset: int, size: int, what: str) -> bytes:
        data = self._read_at(offset, size)
        if len(data) < size:
            raise MP4Error(f"{what} at offset {offset}: file ends after {len(data)} of {size} bytes")
        return data

    def _parse_top_level(self) -> None:
        pos = 0
        moov = None
        # ftyp, moov, mdat, free... plus a moof and an mdat per fragment.
        max_boxes = 2 * self.max_fragments + 1024
        boxes = 0
        while pos + 8 <= self.size:
            boxes += 1
            if boxes > max_boxes:
                raise MP4LimitExceeded(f"more than {max_boxes} top-level boxes")
            head = self._read_at(pos, 16)
            if len(head) < 8:
                break
            bsize, btype = _BOX.unpack_from(head, 0)
            header = 8
            if bsize == 1:
                if len(head) < 16:
                    raise MP4Error(f"truncated 64-bit box size at offset {pos}")
                bsize = _U64.unpack_from(head, 8)[0]
                header = 16
            elif bsize == 0:
                bsize = self.size - pos
            if bsize < header:
                raise MP4Error(f"box {btype!r} at offset {pos} claims {bsize} bytes")
            if pos + bsize > self.size:
                if btype == b"mdat":  # a truncated recording: the rest of the file is media
                    bsize = self.size - pos
                else:
                    raise MP4Error(f"box {btype!r} at offset {pos} runs past the end of the file")
            if btype == b"ftyp" and bsize <= 4096 and bsize >= header + 4:
                self.brand = self._read(pos + header, 4, "ftyp")
            elif btype == b"moov":
                if moov is not None:
                    raise MP4Error(f"second moov at offset {pos}")
                if bsize > self.max_moov_bytes:
                    raise MP4LimitExceeded(f"moov of {bsize} bytes at offset {pos}, limit is {self.max_moov_bytes}")
                moov = self._read(pos, bsize, "moov")
                self._parse_moov(moov, header, bsize)
            elif btype == b"moof":
                if len(self.fragments) >= self.max_fragments:
                    raise MP4LimitExceeded(f"more than {self.max_fragments} fragments")
                if bsize > self.max_moof_bytes:
                    raise MP4LimitExceeded(f"moof of {bsize} bytes at offset {pos}, limit is {self.max_moof_bytes}")
                self.fragments.append(pos)
                self._fragment_sizes.append(bsize)
            pos += bsize
        if moov is None:
            raise MP4Error("no moov box")

    @property
    def fragmented(self) -> bool:
        return len(self.fragments) > 0

    @property
    def selected(self) -> list[Track]:
        return [t for t in (self.video, self.audio) if t is not None]

    def index_bytes(self) -> int:
        """Bytes held by index arrays (all tracks and the fragment list)."""
        return sum(t.index_bytes() for t in self.tracks) + 12 * len(self.fragments)

    def read_sample(self, sample: Sample, max_size: int = DEFAULT_MAX_SAMPLE_SIZE) -> bytes:
        """The bytes of one sample; MP4LimitExceeded above ``max_size``, MP4Error if the file
        ends inside it."""
        if sample.size > max_size:
            raise MP4LimitExceeded(f"sample of {sample.size} bytes at offset {sample.offset}, limit is {max_size}")
        return self._read(sample.offset, sample.size, "sample")

    # ------------------------------------------------------------------ iteration and seeking

    def _first_ms(self, track: Track) -> int:
        if track.stbl.count:
            return track.to_ms(0)
        for d in track.frag_dts:
            if d >= 0:
                return track.to_ms(d)
        return 0

    def end_dts(self, track: Track) -> int:
        """Decode time (track units) just after the track's last sample."""
        if self.fragmented and track.frag_end:
            return track.frag_end
        st = track.stbl
        return st.dts(st.count - 1) + st.stts_d[bisect_right(st.stts_first, st.count - 1) - 1] if st.count else 0

    def _duration_ms(self) -> int:
        if self.movie_duration and self.movie_duration != 0xFFFFFFFF and not self.fragmented:
            return self.movie_duration * 1000 // self.timescale
        if self.fragment_duration:
            return self.fragment_duration * 1000 // self.timescale
        return max(max(0, t.to_ms(self.end_dts(t)) + self.shift_ms) for t in self.selected)

    def _min_dts(self, track: Track, ms: int) -> int:
        """Smallest decode time (track units) whose millisecond time is at least ``ms``."""
        return -(-(ms - self.shift_ms) * track.timescale // 1000) + track.media_time - track.empty_edit

    def _ms(self, track: Track, t: int) -> int:
        return track.to_ms(t) + self.shift_ms

    def _raw_stbl(self, track: Track, n: int) -> Iterator[tuple[int, int, int, int, bool]]:
        """(dts, cts offset, file offset, size, keyframe) of samples n.. of the moov tables."""
        st = track.stbl
        count = st.count
        if n >= count:
            return
        r = bisect_right(st.stts_first, n) - 1
        dts = st.stts_dts[r] + (n - st.stts_first[r]) * st.stts_d[r]
        delta = st.stts_d[r]
        left = st.stts_first[r] + st.stts_n[r] - n
        nruns = len(st.stts_n)
        ctts = st.ctts
        sr = bisect_right(st.stsc_first, n) - 1
        nsr = len(st.stsc_chunk)
        nchunks = len(st.chunks)
        spc = st.stsc_spc[sr]
        if spc == 0:
            raise MP4Error(f"track {track.track_id}: stsc run with 0 samples per chunk")
        k = n - st.stsc_first[sr]
        chunk = st.stsc_chunk[sr] + k // spc
        in_chunk = k % spc
        run_end = st.stsc_chunk[sr + 1] if sr + 1 < nsr else nchunks
        sizes = st.sizes
        const = st.const_size
        offset = st.chunks[chunk] + (sum(sizes[n - in_chunk : n]) if sizes else const * in_chunk)
        sync = st.sync
        si = 0
        if sync is not None:
            si = bisect_left(sync, n)
        nsync = len(sync) if sync is not None else 0
        while n < count:
            size = sizes[n] if sizes else const
            if sync is None:
                key = True
            else:
                key = si < nsync and sync[si] == n
                if key:
                    si += 1
            yield dts, ctts[n] if ctts else 0, offset, size, key
            n += 1
            dts += delta
            offset += size
            left -= 1
            while left <= 0 and r + 1 < nruns:
                r += 1
                left = st.stts_n[r]
                delta = st.stts_d[r]
            in_chunk += 1
            if in_chunk >= spc:
                in_chunk = 0
                chunk += 1
                while chunk >= run_end and sr + 1 < nsr:
                    sr += 1
                    spc = st.stsc_spc[sr]
                    if spc == 0:
                        raise MP4Error(f"track {track.track_id}: stsc run with 0 samples per chunk")
                    run_end = st.stsc_chunk[sr + 1] if sr + 1 < nsr else nchunks
                if chunk < nchunks:
                    offset = st.chunks[chunk]
                elif n < count:
                    raise MP4Error(f"track {track.track_id}: sample {n} is past the last chunk")

    def _raw_frags(self, track: Track, i: int, min_dts: int) -> Iterator[tuple[int, int, int, int, bool]]:
        tid = track.track_id
        for fi in range(i, len(self.fragments)):
            if track.frag_dts[fi] < 0:
                continue
            for traf in self._moof(fi):
                if traf.track_id != tid:
                    continue
                for j in range(len(traf.dts)):
                    if traf.dts[j] >= min_dts:
                        yield traf.dts[j], traf.cts[j], traf.offsets[j], traf.sizes[j], bool(traf.keys[j])

    def _track_samples(self, track: Track, start: tuple[int, int, int]) -> Iterator[Sample]:
        stbl_sample, frag_index, min_dts = start
        tid = track.track_id
        mt = track.empty_edit - track.media_time
        ts = track.timescale
        shift = self.shift_ms
        raw = self._raw_stbl(track, stbl_sample)
        for dts, cts, off, size, key in raw:
            d = (dts + mt) * 1000 // ts + shift
            yield Sample(tid, d, (dts + cts + mt) * 1000 // ts + shift - d, off, size, key)
        if self.fragmented:
            for dts, cts, off, size, key in self._raw_frags(track, frag_index, min_dts):
                d = (dts + mt) * 1000 // ts + shift
                yield Sample(tid, d, (dts + cts + mt) * 1000 // ts + shift - d, off, size, key)

    def samples(self, position: Position | None = None) -> Iterator[Sample]:
        """Samples of the selected video and audio tracks, merged by decode time (video first on
        a tie), from ``position`` (a ``seek`` result) or the start."""
        iters = []
        for order, track in enumerate(self.selected):
            start = (0, 0, 0) if position is None else position.starts[track.track_id]
            iters.append(self._keyed(track, start, order))
        return (item[2] for item in heapq.merge(*iters))

    def _keyed(self, track: Track, start: tuple[int, int, int], order: int) -> Iterator[tuple[int, int, Sample]]:
        for s in self._track_samples(track, start):
            yield s.dts_ms, order, s

    def seek(self, ms: int) -> Position:
        """Where playback from ``ms`` starts: the reference track (video, else audio) at its last
        keyframe at or before ``ms`` (its first keyframe if there is none), the other track at its
        first sample at or after that keyframe's time."""
        ref = self.video or self.audio
        assert ref is not None
        landed, ref_start = self._seek_keyframe(ref, max(0, ms))
        starts = {ref.track_id: ref_start}
        for track in self.selected:
            if track is not ref:
                starts[track.track_id] = self._seek_time(track, landed)
        return Position(landed, starts)

    def _seek_keyframe(self, track: Track, ms: int) -> tuple[int, tuple[int, int, int]]:
        if self.fragmented:
            present = [i for i, d in enumerate(track.frag_dts) if d >= 0]
            k = bisect_right(present, ms, key=lambda i: self._ms(track, track.frag_dts[i])) - 1
            while k >= 0:
                fi = present[k]
                best = None
                for traf in self._moof(fi):
                    if traf.track_id != track.track_id:
                        continue
                    for j in range(len(traf.dts)):
                        if traf.keys[j] and self._ms(track, traf.dts[j]) <= ms:
                            best = traf.dts[j]
                if best is not None:
                    return self._ms(track, best), (track.stbl.count, fi, best)
                k -= 1
        st = track.stbl
        if st.count:
            keys = st.sync if st.sync is not None else range(st.count)
            if len(keys):
                k = bisect_right(keys, ms, key=lambda n: self._ms(track, st.dts(n))) - 1
                n = keys[max(k, 0)]
                return self._ms(track, st.dts(n)), (n, 0, 0)
        # No keyframe at or before ms: the first one of the file.
        for s in self._track_samples(track, (0, 0, 0)):
            if s.keyframe:
                return s.dts_ms, self._seek_time(track, s.dts_ms)
        return 0, (0, 0, 0)

    def _seek_time(self, track: Track, ms: int) -> tuple[int, int, int]:
        min_dts = self._min_dts(track, ms)
        st = track.stbl
        if st.count and st.dts(st.count - 1) >= min_dts:
            n = bisect_left(range(st.count), min_dts, key=st.dts)
            return n, 0, 0
        fi = 0
        if self.fragmented:
            present = [i for i, d in enumerate(track.frag_dts) if d >= 0]
            k = bisect_right(present, min_dts, key=lambda i: track.frag_dts[i]) - 1
            fi = present[k] if k >= 0 else 0
        return st.count, fi, min_dts

    # ------------------------------------------------------------------ fragments

    def _index_fragments(self) -> None:
        by_id = {t.track_id: t for t in self.tracks}
        running = {t.track_id: self.end_dts(t) for t in self.tracks}
        n = len(self.fragments)
        for track in self.tracks:
            track.frag_dts = array("q", [-1]) * n
        for i in range(n):
            for traf in self._moof(i, by_id, running):
                track = by_id[traf.track_id]
                if track.frag_dts[i] < 0:
                    track.frag_dts[i] = traf.base_dts
                track.frag_end = traf.end_dts
                track.frag_samples += len(traf.dts)
        self._moof_cache.clear()

    def _moof(self, i: int, by_id: dict[int, Track] | None = None, running: dict[int, int] | None = None) -> list[_Traf]:
        off = self.fragments[i]
        cached = self._moof_cache.get(off)
        if cached is not None:
            return cached
        if by_id is None:
            by_id = {t.track_id: t for t in self.tracks}
        if running is None:
            # Without tfdt a fragment's decode time continues from the previous one: the index has it.
            running = {t.track_id: t.frag_dts[i] for t in self.tracks if len(t.frag_dts) > i and t.frag_dts[i] >= 0}
        buf = self._read(off, self._fragment_sizes[i], "moof")
        trafs = _parse_moof(buf, off, by_id, running)
        if len(self._moof_cache) >= 4:
            self._moof_cache.pop(next(iter(self._moof_cache)))
        self._moof_cache[off] = trafs
        return trafs

    # ------------------------------------------------------------------ moov

    def _parse_moov(self, buf: bytes, start: int, end: int) -> None:
        trex: dict[int, tuple[int, int, int, int]] = {}
        for t, s, e in iter_boxes(buf, start, end):
            if t == b"mvhd":
                self._parse_mvhd(buf, s, e)
            elif t == b"trak":
                self.tracks.append(self._parse_trak(buf, s, e))
            elif t == b"mvex":
                for t2, s2, e2 in iter_boxes(buf, s, e):
                    if t2 == b"trex":
                        _need(s2, e2, 24, "trex")
                        tid, sdi, dur, size, flags = struct.unpack_from(">5I", buf, s2 + 4)
                        trex[tid] = (sdi, dur, size, flags)
                    elif t2 == b"mehd":
                        _need(s2, e2, 8, "mehd")
                        if buf[s2] == 1:
                            _need(s2, e2, 12, "mehd")
                            self.fragment_duration = _U64.unpack_from(buf, s2 + 4)[0]
                        else:
                            self.fragment_duration = _U32.unpack_from(buf, s2 + 4)[0]
        for track in self.tracks:
            track.trex = trex.get(track.track_id, track.trex)

    def _parse_mvhd(self, buf, s: int, e: int) -> None:
        if buf[s] == 1:
            _need(s, e, 32, "mvhd")
            self.timescale = _U32.unpack_from(buf, s + 20)[0]
            self.movie_duration = _U64.unpack_from(buf, s + 24)[0]
        else:
            _need(s, e, 20, "mvhd")
            self.timescale, self.movie_duration = struct.unpack_from(">II", buf, s + 12)
        if self.timescale == 0:
            raise MP4Error("mvhd: timescale 0")

    def _parse_trak(self, buf, s: int, e: int) -> Track:
        track = Track()
        elst = None
        for t, s2, e2 in iter_boxes(buf, s, e):
            if t == b"tkhd":
                v1 = buf[s2] == 1
                _need(s2, e2, 92 if v1 else 84, "tkhd")
                track.track_id = _U32.unpack_from(buf, s2 + (20 if v1 else 12))[0]
                w, h = struct.unpack_from(">II", buf, s2 + (88 if v1 else 76))
                track.width, track.height = w >> 16, h >> 16
            elif t == b"edts":
                found = _find(buf, s2, e2, b"elst")
                if found:
                    elst = found
            elif t == b"mdia":
                self._parse_mdia(buf, s2, e2, track)
        if track.timescale == 0:
            raise MP4Error(f"track {track.track_id}: no mdhd or timescale 0")
        if elst:
            self._parse_elst(buf, elst[0], elst[1], track)
        return track

    def _parse_elst(self, buf, s: int, e: int, track: Track) -> None:
        _need(s, e, 8, "elst")
        v1 = buf[s] == 1
        count = _U32.unpack_from(buf, s + 4)[0]
        entry = 20 if v1 else 12
        if count > (e - s - 8) // entry:
            raise MP4Error(f"elst: {count} entries do not fit in {e - s} bytes")
        pos = s + 8
        empty = 0
        for _ in range(count):
            if v1:
                dur, mtime = struct.unpack_from(">Qq", buf, pos)
            else:
                dur, mtime = struct.unpack_from(">Ii", buf, pos)
            pos += entry
            if mtime == -1:
                empty += dur
                continue
            # The first edit that shows media: where it starts. Later edits (rare) are ignored.
            track.media_time = mtime
            break
        track.empty_edit = empty * track.timescale // self.timescale

    def _parse_mdia(self, buf, s: int, e: int, track: Track) -> None:
        stbl = None
        for t, s2, e2 in iter_boxes(buf, s, e):
            if t == b"mdhd":
                if buf[s2] == 1:
                    _need(s2, e2, 32, "mdhd")
                    track.timescale = _U32.unpack_from(buf, s2 + 20)[0]
                    track.duration = _U64.unpack_from(buf, s2 + 24)[0]
                else:
                    _need(s2, e2, 20, "mdhd")
                    track.timescale, track.duration = struct.unpack_from(">II", buf, s2 + 12)
            elif t == b"hdlr":
                _need(s2, e2, 12, "hdlr")
                handler = bytes(buf[s2 + 8 : s2 + 12])
                track.kind = {b"vide": "video", b"soun": "audio"}.get(handler, handler.decode("latin-1"))
            elif t == b"minf":
                found = _find(buf, s2, e2, b"stbl")
                if found:
                    stbl = found
        if stbl:
            self._parse_stbl(buf, stbl[0], stbl[1], track)

    def _parse_stbl(self, buf, s: int, e: int, track: Track) -> None:
        st = track.stbl
        boxes = {t: (s2, e2) for t, s2, e2 in iter_boxes(buf, s, e)}
        if b"stsd" in boxes:
            self._parse_stsd(buf, *boxes[b"stsd"], track)
        # Sizes first: they give the sample count the other tables must agree with.
        if b"stsz" in boxes:
            s2, e2 = boxes[b"stsz"]
            _need(s2, e2, 12, "stsz")
            st.const_size, count = struct.unpack_from(">II", buf, s2 + 4)
            if st.const_size == 0:
                if count > (e2 - s2 - 12) // 4:
                    raise MP4Error(f"stsz: {count} sizes do not fit in {e2 - s2} bytes")
                st.sizes = _u32_array(buf, s2 + 12, count)
            st.count = count
        elif b"stz2" in boxes:
            s2, e2 = boxes[b"stz2"]
            _need(s2, e2, 12, "stz2")
            field = buf[s2 + 7]
            count = _U32.unpack_from(buf, s2 + 8)[0]
            if field not in (4, 8, 16):
                raise MP4Error(f"stz2: field size {field}")
            if count > (e2 - s2 - 12) * 8 // field:
                raise MP4Error(f"stz2: {count} sizes do not fit in {e2 - s2} bytes")
            raw = bytes(buf[s2 + 12 : s2 + 12 + (count * field + 7) // 8])
            if field == 16:
                a = array("H")
                a.frombytes(raw)
                if _LITTLE:
                    a.byteswap()
                st.sizes = array("I", a)
            elif field == 8:
                st.sizes = array("I", raw)
            else:
                st.sizes = array("I", ((raw[i >> 1] >> (0 if i & 1 else 4)) & 15 for i in range(count)))
            st.count = count
        if st.count == 0:
            return
        # stts
        s2, e2 = boxes.get(b"stts", (0, 0))
        _need(s2, e2, 8, "stts")
        n = _U32.unpack_from(buf, s2 + 4)[0]
        if n > (e2 - s2 - 8) // 8:
            raise MP4Error(f"stts: {n} entries do not fit in {e2 - s2} bytes")
        pairs = _u32_array(buf, s2 + 8, 2 * n)
        st.stts_n, st.stts_d = pairs[0::2], pairs[1::2]
        first = dts = 0
        for r, (c, d) in enumerate(zip(st.stts_n, st.stts_d, strict=True)):
            if first >= st.count:  # runs past the last sample describe nothing
                del st.stts_n[r:], st.stts_d[r:]
                break
            st.stts_first.append(first)
            st.stts_dts.append(dts)
            first += c
            dts += c * d
            if dts > _MAX_TIME:
                raise MP4Error(f"track {track.track_id}: stts decode times out of range")
        if first < st.count:
            raise MP4Error(f"track {track.track_id}: stts covers {first} of {st.count} samples")
        # ctts, expanded to one signed entry per sample: with B-frames the runs are about one
        # sample long, so runs would cost more. Version 0 offsets are read as signed too, as
        # writers use them.
        if b"ctts" in boxes:
            s2, e2 = boxes[b"ctts"]
            _need(s2, e2, 8, "ctts")
            n = _U32.unpack_from(buf, s2 + 4)[0]
            if n > (e2 - s2 - 8) // 8:
                raise MP4Error(f"ctts: {n} entries do not fit in {e2 - s2} bytes")
            pairs = _u32_array(buf, s2 + 8, 2 * n)
            offsets = array("i", pairs[1::2].tobytes())
            counts = pairs[0::2]
            ctts = array("i")
            if counts.count(1) == n:  # one run per sample: the offsets are the table
                ctts = offsets[: st.count]
                counts = array("I")
                offsets = array("i")
            for c, o in zip(counts, offsets, strict=True):
                c = min(c, st.count - len(ctts))
                ctts.extend(array("i", (o,)) * c)
            if len(ctts) < st.count:
                ctts.extend(array("i", (0,)) * (st.count - len(ctts)))
            st.ctts = ctts
        # chunk offsets
        if b"stco" in boxes:
            s2, e2 = boxes[b"stco"]
            _need(s2, e2, 8, "stco")
            n = _U32.unpack_from(buf, s2 + 4)[0]
            if n > (e2 - s2 - 8) // 4:
                raise MP4Error(f"stco: {n} entries do not fit in {e2 - s2} bytes")
            st.chunks = _u32_array(buf, s2 + 8, n)  # 4 bytes a chunk below 4 GB, as in the file
        elif b"co64" in boxes:
            s2, e2 = boxes[b"co64"]
            _need(s2, e2, 8, "co64")
            n = _U32.unpack_from(buf, s2 + 4)[0]
            if n > (e2 - s2 - 8) // 8:
                raise MP4Error(f"co64: {n} entries do not fit in {e2 - s2} bytes")
            st.chunks = _u32_array(buf, s2 + 8, n, "Q")
        else:
            raise MP4Error(f"track {track.track_id}: no stco/co64")
        # stsc
        s2, e2 = boxes.get(b"stsc", (0, 0))
        _need(s2, e2, 8, "stsc")
        n = _U32.unpack_from(buf, s2 + 4)[0]
        if n == 0 or n > (e2 - s2 - 8) // 12:
            raise MP4Error(f"stsc: {n} entries in {e2 - s2} bytes")
        triples = _u32_array(buf, s2 + 8, 3 * n)
        nchunks = len(st.chunks)
        sample = 0
        for i in range(n):
            fc, spc = triples[3 * i] - 1, triples[3 * i + 1]
            nxt = triples[3 * i + 3] - 1 if i + 1 < n else nchunks
            if fc < 0 or nxt < fc or nxt > nchunks or (i and fc <= st.stsc_chunk[-1]):
                raise MP4Error(f"stsc: bad first_chunk in entry {i}")
            st.stsc_chunk.append(fc)
            st.stsc_spc.append(spc)
            if sample > 0xFFFFFFFF:
                raise MP4Error(f"stsc: more than 2**32 samples by entry {i}")
            st.stsc_first.append(sample)
            sample += (nxt - fc) * spc
        if sample < st.count:
            raise MP4Error(f"track {track.track_id}: chunks hold {sample} of {st.count} samples")
        if b"stss" in boxes:
            s2, e2 = boxes[b"stss"]
            _need(s2, e2, 8, "stss")
            n = _U32.unpack_from(buf, s2 + 4)[0]
            if n > (e2 - s2 - 8) // 4:
                raise MP4Error(f"stss: {n} entries do not fit in {e2 - s2} bytes")
            sync = _u32_array(buf, s2 + 8, n)
            prev = 0
            for v in sync:
                if v <= prev or v > st.count:
                    raise MP4Error(f"stss: sample number {v} out of order or range")
                prev = v
            st.sync = array("I", (v - 1 for v in sync))

    def _parse_stsd(self, buf, s: int, e: int, track: Track) -> None:
        _need(s, e, 8, "stsd")
        if _U32.unpack_from(buf, s + 4)[0] == 0:
            return
        for t, s2, e2 in iter_boxes(buf, s + 8, e):
            name = t.decode("latin-1")
            if t in _VIDEO_ENTRIES:
                track.codec = _VIDEO_ENTRIES[t]
                _need(s2, e2, 78, name)
                w, h = struct.unpack_from(">HH", buf, s2 + 24)
                if not track.width:
                    track.width, track.height = w, h
                found = _find(buf, s2 + 78, e2, _CONFIG_BOX[track.codec])
                if found:
                    # vpcC and av1C bodies are passed on whole (E-RTMP carries them as is).
                    track.config = bytes(buf[found[0] : found[1]])
            elif t == b"mp4a":
                _need(s2, e2, 28, name)
                version = _U16.unpack_from(buf, s2 + 8)[0]
                track.channels, track.sample_size = struct.unpack_from(">HH", buf, s2 + 16)
                track.sample_rate = _U32.unpack_from(buf, s2 + 24)[0] >> 16
                extra = {0: 0, 1: 16, 2: 36}.get(version)
                if extra is None:
                    raise MP4Error(f"mp4a: sound description version {version}")
                _need(s2, e2, 28 + extra, name)
                found = _find(buf, s2 + 28 + extra, e2, b"esds")
                track.codec = name
                if found:
                    oti, asc = _parse_esds(buf, found[0], found[1])
                    if oti == 0x40:
                        track.codec, track.config = "mp4a", asc
                    elif oti in (0x69, 0x6B):
                        track.codec = ".mp3"
            else:
                track.codec = name
            return  # only the first sample description is used


def _descriptor(buf, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, body start, body end) of the 14496-1 descriptor at ``pos``."""
    if pos + 2 > end:
        raise MP4Error(f"esds: truncated descriptor at offset {pos}")
    tag = buf[pos]
    pos += 1
    size = 0
    for _ in range(4):
        if pos >= end:
            raise MP4Error("esds: truncated descriptor size")
        b = buf[pos]
        pos += 1
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if pos + size > end:
        raise MP4Error(f"esds: descriptor {tag} of {size} bytes does not fit")
    return tag, pos, pos + size


def _parse_esds(buf, s: int, e: int) -> tuple[int, bytes]:
    """(objectTypeIndication, DecoderSpecificInfo) from an esds box payload."""
    tag, s, e = _descriptor(buf, s + 4, e)
    if tag != 3:
        raise MP4Error(f"esds: expected ES_Descriptor (3), got tag {tag}")
    _need(s, e, 3, "ES_Descriptor")
    flags = buf[s + 2]
    pos = s + 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        if pos >= e:
            raise MP4Error("ES_Descriptor: truncated URL")
        pos += 1 + buf[pos]
    if flags & 0x20:
        pos += 2
    while pos < e:
        tag, ds, de = _descriptor(buf, pos, e)
        pos = de
        if tag != 4:
            continue
        _need(ds, de, 13, "DecoderConfigDescriptor")
        oti = buf[ds]
        p = ds + 13
        while p < de:
            tag2, s2, e2 = _descriptor(buf, p, de)
            if tag2 == 5:
                return oti, bytes(buf[s2:e2])
            p = e2
        return oti, b""
    raise MP4Error("esds: no DecoderConfigDescriptor")


# ---------------------------------------------------------------------- fragments


def _parse_moof(buf: bytes, moof_offset: int, tracks: dict[int, Track], running: dict[int, int]) -> list[_Traf]:
    """Every traf of a moof (``buf`` is the whole moof box). ``running`` holds, per track, the
    decode time after the previous fragment, for files without tfdt; it is updated."""
    out: list[_Traf] = []
    header = 16 if _U32.unpack_from(buf, 0)[0] == 1 else 8
    data_end = moof_offset  # end of the previous traf's data, the implicit base of the next
    for t, s, e in iter_boxes(buf, header, len(buf)):
        if t != b"traf":
            continue
        tfhd = None
        tfdt = None
        truns = []
        for t2, s2, e2 in iter_boxes(buf, s, e):
            if t2 == b"tfhd":
                tfhd = (s2, e2)
            elif t2 == b"tfdt":
                _need(s2, e2, 8, "tfdt")
                tfdt = _U64.unpack_from(buf, s2 + 4)[0] if buf[s2] == 1 and e2 - s2 >= 12 else _U32.unpack_from(buf, s2 + 4)[0]
            elif t2 == b"trun":
                truns.append((s2, e2))
        if tfhd is None:
            raise MP4Error(f"traf without tfhd in moof at offset {moof_offset}")
        s2, e2 = tfhd
        _need(s2, e2, 8, "tfhd")
        flags = _U32.unpack_from(buf, s2)[0] & 0xFFFFFF
        tid = _U32.unpack_from(buf, s2 + 4)[0]
        track = tracks.get(tid)
        if track is None:
            continue
        _sdi, d_dur, d_size, d_flags = track.trex
        p = s2 + 8
        base = data_end
        if flags & _TFHD_BASE_IS_MOOF:
            base = moof_offset
        if flags & _TFHD_BASE_OFFSET:
            _need(p, e2, 8, "tfhd")
            base = _U64.unpack_from(buf, p)[0]
            p += 8
        for bit in (_TFHD_SDI, _TFHD_DURATION, _TFHD_SIZE, _TFHD_FLAGS):
            if flags & bit:
                _need(p, e2, 4, "tfhd")
                v = _U32.unpack_from(buf, p)[0]
                p += 4
                if bit == _TFHD_DURATION:
                    d_dur = v
                elif bit == _TFHD_SIZE:
                    d_size = v
                elif bit == _TFHD_FLAGS:
                    d_flags = v
        dts = tfdt if tfdt is not None else running.get(tid, 0)
        if dts > _MAX_TIME:
            raise MP4Error(f"tfdt {dts} of track {tid} out of range")
        base_dts = dts
        dts_a, cts_a, off_a, size_a, key_a = array("q"), array("i"), array("Q"), array("I"), array("B")
        pos = base
        for s3, e3 in truns:
            _need(s3, e3, 8, "trun")
            tflags = _U32.unpack_from(buf, s3)[0] & 0xFFFFFF
            count = _U32.unpack_from(buf, s3 + 4)[0]
            p = s3 + 8
            if tflags & _TRUN_DATA_OFFSET:
                _need(p, e3, 4, "trun")
                pos = base + _I32.unpack_from(buf, p)[0]
                p += 4
            first_flags = None
            if tflags & _TRUN_FIRST_FLAGS:
                _need(p, e3, 4, "trun")
                first_flags = _U32.unpack_from(buf, p)[0]
                p += 4
            fields = [b for b in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTS) if tflags & b]
            per = 4 * len(fields)
            if (per and count > (e3 - p) // per) or (not per and count > _MAX_DEFAULT_TRUN):
                raise MP4Error(f"trun: {count} samples do not fit in {e3 - s3} bytes")
            values = _u32_array(buf, p, count * len(fields)) if per else array("I")
            k = len(fields)
            for i in range(count):
                dur, size, sflags, cts = d_dur, d_size, d_flags, 0
                for j, b in enumerate(fields):
                    v = values[i * k + j]
                    if b == _TRUN_DURATION:
                        dur = v
                    elif b == _TRUN_SIZE:
                        size = v
                    elif b == _TRUN_FLAGS:
                        sflags = v
                    else:
                        cts = v - (1 << 32) if v & 0x80000000 else v  # v0 too, as writers use it
                if i == 0 and first_flags is not None:
                    sflags = first_flags
                if pos < 0 or pos > 1 << 62:
                    raise MP4Error("trun: data offset out of range")
                dts_a.append(dts)
                cts_a.append(cts)
                off_a.append(pos)
                size_a.append(size)
                key_a.append(0 if sflags & _NON_SYNC else 1)
                dts += dur
                pos += size
                if dts > _MAX_TIME:
                    raise MP4Error(f"decode time of track {tid} out of range")
            data_end = max(data_end, pos)
        running[tid] = dts
        out.append(_Traf(tid, base_dts, dts_a, cts_a, off_a, size_a, key_a, dts))
    return out


