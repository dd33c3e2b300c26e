"""HLS segmenting of a live RTMP stream, sans-IO: frames in, MPEG-TS segments and a playlist out.

References: RFC 8216 sections 4.3.2 (EXT-X-VERSION, EXTINF), 4.3.3 (TARGETDURATION, MEDIA-SEQUENCE,
DISCONTINUITY-SEQUENCE, ENDLIST), 6.2.1 and 6.2.2 (what a server must do when it publishes and
removes segments of a live playlist); nginx-rtmp-module's ``hls_fragment``/``hls_playlist_length``/
``hls_max_fragment`` for the shape of the knobs.

Segments are cut only where a player can start decoding: at video keyframes, or at any audio
frame of a stream without video.  A segment is at least ``fragment`` seconds long (longer when
the GOP is); ``max_fragment`` forces a cut anyway so that a publisher that never sends a keyframe
cannot grow one segment without bound.

Storage is the caller's choice: segments are kept in memory as bytes by default (``segment(seq)``)
and ``on_segment_added(seq, data)`` / ``on_playlist_changed(text)`` / ``on_segment_removed(seq)``
are called in that order, which is the order a directory writer needs (segment file before the
playlist that names it, deletion only after the playlist stopped naming it for a while).

``fmt="fmp4"`` makes fragmented MP4 (CMAF) segments with an init segment named by EXT-X-MAP
(RFC 8216 4.3.2.5; ``rtmpserver.media.fmp4``) instead of MPEG-TS; it carries HEVC and AV1 from
Enhanced RTMP as well as H.264, with AAC.  A new publisher gets a new init segment after the
discontinuity.

``part=<seconds>`` turns on Low-Latency HLS (draft-pantos-hls-rfc8216bis, 4.4.3.7 EXT-X-PART-INF,
4.4.3.8 EXT-X-SERVER-CONTROL, 4.4.4.9 EXT-X-PART, 4.4.5.3 EXT-X-PRELOAD-HINT, 6.2.5.2 blocking
playlist reload): each segment is built from partial segments of at most ``part`` seconds, cut
at frame boundaries, listed as soon as they are complete; the playlist lists the parts of the
last three target durations and hints the next one.  ``ready(msn, part)`` tells an HTTP layer
holding a blocking request whether the playlist now has what was asked for; ``listeners``
(callables without arguments) hear every change of the playlist, part by part.  The text given
to ``on_playlist_changed`` stays a classic playlist (no parts): a directory served by a plain
web server cannot answer blocking requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rtmpserver.errors import FLVError, LocalProtocolError
from rtmpserver.media.flv import audio_info, video_info
from rtmpserver.media.fmp4 import FMP4Muxer
from rtmpserver.media.ts import TSMuxer

__all__ = ["TYPE_AUDIO", "TYPE_VIDEO", "FORMATS", "Segment", "Part", "HLSSegmenter"]

FORMATS = ("ts", "fmp4")
# Parts are listed for the segments of the last this many target durations (rfc8216bis 4.4.4.9
# lets a server drop them once they are older than three target durations).
_PART_WINDOW = 3
# URIs in the cached playlist end with this marker; each request replaces it by its own query
# (a viewer token), or by nothing.
URI_END = "\x00"

TYPE_AUDIO = 8
TYPE_VIDEO = 9

DEFAULT_MAX_SEGMENT_BYTES = 64 << 20
# Audio that precedes the first keyframe by at most this much goes into the first segment.
_HOLD_MS = 1000
_HOLD_BYTES = 1 << 20
_HOLD_FRAMES = 256


class Part(NamedTuple):
    """A partial segment of a finished segment: where its bytes are in the segment's data."""

    offset: int
    size: int
    duration_ms: int
    independent: bool


class Segment(NamedTuple):
    """One finished segment; ``data`` is None when the segmenter does not keep bytes."""

    sequence: int
    duration_ms: int
    discontinuity: bool
    data: bytes | None
    size: int
    parts: tuple = ()  # Part, when low latency is on
    map_id: int = 0  # the init segment (fMP4) it needs

    @property
    def duration(self) -> float:
        return self.duration_ms / 1000


class _Unwrapper:
    """Extends RTMP's 32-bit millisecond timestamps (they wrap after ~49.7 days) to a plain int.

    Each step is taken modulo 2**32 as a signed delta, so small backward jumps (audio and video
    interleaved slightly out of order) stay small instead of looking like a wrap.
    """

    __slots__ = ("_last", "_value")

    def __init__(self) -> None:
        self._last: int | None = None
        self._value = 0

    def peek(self, ts: int) -> int:
        """The extended value of ``ts``, without moving on (the message may yet be refused)."""
        ts &= 0xFFFFFFFF
        if self._last is None:
            return ts
        delta = (ts - self._last) & 0xFFFFFFFF
        if delta & 0x80000000:
            delta -= 1 << 32
        return self._value + delta

    def advance(self, ts: int) -> int:
        self._value = self.peek(ts)
        self._last = ts & 0xFFFFFFFF
        return self._value


class _Open:
    """The segment being built."""

    __slots__ = ("start", "last", "parts", "pending", "size", "discontinuity", "part_start", "independent", "map_id")

    def __init__(self, start: int, discontinuity: bool, map_id: int) -> None:
        self.start = start
        self.last = start
        self.parts: list[tuple[bytes, int, bool]] = []  # finished parts: (data, duration_ms, independent)
        self.pending: list = []  # muxer output of the part being built
        self.size = 0
        self.discontinuity = discontinuity
        self.part_start = start
        self.independent = True
        self.map_id = map_id


class HLSSegmenter:
    """Cuts one live stream into MPEG-TS segments and keeps a sliding-window playlist.

    ``name`` makes the segment URIs (``<name>-<seq>.ts``, relative to the playlist).  ``window``
    segments are listed; ``grace`` more stay fetchable after they left the list, because a player
    may have loaded the playlist just before they did.  RFC 8216 6.2.2 wants a removed segment
    available for its own duration plus that of the playlist that listed it, hence the default
    ``window + 1``.  So at most ``window + grace`` finished segments plus the one being built are
    held, each bounded by ``max_segment_bytes``.

    ``has_video``: True waits for a video keyframe to start, False ignores video and cuts audio by
    time, None (default) decides from the stream: video mode from the first video message on,
    audio-only until then (RTMP publishers send the video sequence header before any frame).

    ``feed()`` raises ``FLVError`` for a message it cannot use (bad payload, unsupported codec);
    no media, timestamp or counter state has changed then, and the caller decides whether to go
    on.  (The message still counts as a sign of life: after ``end()`` it reopens the playlist, and
    a video message still switches an auto-detected stream to video mode.)
    """

    def __init__(
        self,
        name: str = "stream",
        fragment: float = 2.0,
        window: int = 5,
        *,
        grace: int | None = None,
        max_fragment: float | None = None,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        has_video: bool | None = None,
        has_audio: bool = True,
        first_sequence: int = 0,
        keep_data: bool = True,
        fmt: str = "ts",
        part: float | None = None,
        on_segment_added: Callable[[int, bytes], None] | None = None,
        on_segment_removed: Callable[[int], None] | None = None,
        on_playlist_changed: Callable[[str], None] | None = None,
    ) -> None:
        if not 0 < fragment <= 3600:
            raise LocalProtocolError(f"fragment must be within (0, 3600] seconds, not {fragment!r}")
        if window < 1:
            raise LocalProtocolError(f"window must be at least 1 segment, not {window!r}")
        if grace is None:
            grace = window + 1
        if grace < 0:
            raise LocalProtocolError(f"grace must not be negative, not {grace!r}")
        if max_fragment is None:
            max_fragment = 10 * fragment
        if max_fragment < fragment:
            raise LocalProtocolError(f"max_fragment {max_fragment!r} is shorter than fragment {fragment!r}")
        if max_segment_bytes < 188 * 4:
            raise LocalProtocolError(f"max_segment_bytes {max_segment_bytes!r} is too small for a segment")
        if first_sequence < 0:
            raise LocalProtocolError(f"first_sequence must not be negative, not {first_sequence!r}")
        if fmt not in FORMATS:
            raise LocalProtocolError(f"fmt must be one of {FORMATS}, not {fmt!r}")
        if part is not None and not 0.1 <= part <= fragment:
            raise LocalProtocolError(f"part must be within [0.1, fragment] seconds, not {part!r}")
        self.format = fmt
        self.part_ms = round(part * 1000) if part is not None else None
        self.extension = "ts" if fmt == "ts" else "m4s"
        self.listeners: list[Callable[[], None]] = []
        self.on_init_added: Callable[[int, bytes], None] | None = None
        self._maps: dict[int, bytes] = {}
        self._map_id = -1
        self._classic: str | None = None
        self.name = name
        self.fragment_ms = round(fragment * 1000)
        self.max_fragment_ms = round(max_fragment * 1000)
        self.max_segment_bytes = max_segment_bytes
        self.window = window
        self.grace = grace
        self.keep_data = keep_data
        self.on_segment_added = on_segment_added
        self.on_segment_removed = on_segment_removed
        self.on_playlist_changed = on_playlist_changed
        self._has_video_setting = has_video
        self._has_audio = has_audio
        self._next_sequence = first_sequence
        self._segments: list[Segment] = []  # finished, oldest first: window + grace at most
        self._target = -(-self.fragment_ms // 1000)
        self._discontinuity_sequence = 0
        self._playlist: str | None = None
        self.ended = False
        # Counters for stat pages.
        self.forced_cuts = 0
        self.dropped_frames = 0
        self._reset_stream()
        self._pending_discontinuity = False

    def _reset_stream(self) -> None:
        """State that belongs to one publisher: timeline, codecs, the segment being built."""
        setting = self._has_video_setting
        self._video_mode = bool(setting)
        if self.format == "ts":
            self._muxer = TSMuxer(has_video=setting is not False, has_audio=self._has_audio)
        else:
            self._muxer = FMP4Muxer(has_video=setting is not False, has_audio=self._has_audio)
        self._map_ready = False
        self._unwrap = _Unwrapper()
        self._open: _Open | None = None
        self._video_started = False  # a keyframe has been muxed since the last reset
        self._last_video_ts: int | None = None
        self._last_audio_ts: int | None = None
        self._frame_step = 0  # last positive interval between frames of the cutting stream
        self._held: list = []  # (ts, payload, info) of audio before the first keyframe
        self._held_bytes = 0

    # -- input ---------------------------------------------------------------------------------

    def feed(self, type_id: int, timestamp: int, payload) -> None:
        """One RTMP message of the stream (8 audio, 9 video; anything else is ignored).

        ``timestamp`` is the publisher's 32-bit millisecond timestamp.  A hub ``Frame`` is fed
        as ``feed(frame.type_id, frame.timestamp, frame.payload)``.
        """
        if type_id == TYPE_VIDEO:
            self._feed_video(timestamp, payload)
        elif type_id == TYPE_AUDIO:
            self._feed_audio(timestamp, payload)

    def _feed_video(self, timestamp: int, payload) -> None:
        if self._has_video_setting is False:
            return
        info = video_info(payload)
        if self.ended:
            self.discontinuity()
        # First video of an auto-detected stream: from now on cut at keyframes.  A segment
        # already open with audio goes on until the first keyframe that may end it.
        self._video_mode = True
        ts = self._unwrap.peek(timestamp)
        if not (info.is_keyframe or self._video_started or info.is_sequence_header):
            # Nothing before the first keyframe can be decoded.  Not muxed at all, so the
            # continuity counters have no gap where it was left out.
            self._unwrap.advance(timestamp)
            self.dropped_frames += 1
            return
        seg = self._open
        forced = False
        if info.is_keyframe and (seg is None or ts - seg.start >= self.fragment_ms):
            cut = True
        elif seg is None:
            cut = True
        else:
            cut = forced = ts - seg.start >= self.max_fragment_ms or seg.size >= self.max_segment_bytes
        new_part = not cut and not info.is_sequence_header and self._part_due(seg, ts)
        # Mux before changing anything else: if the message is refused, nothing has happened.
        data = self._muxer.video(ts, payload, info, psi=cut or (new_part and info.is_keyframe))
        self._unwrap.advance(timestamp)
        if not data:
            return  # sequence header, or a message the format has no place for
        if new_part:
            self._close_part(seg, ts, info.is_keyframe)
        if self._last_video_ts is not None and ts > self._last_video_ts:
            self._frame_step = ts - self._last_video_ts
        self._last_video_ts = ts
        if info.is_keyframe:
            self._video_started = True
        if not cut:
            self._append(seg, ts, data)
            return
        self.forced_cuts += forced
        self._cut(ts, data)
        if self._held:
            self._mux_held(ts)

    def _feed_audio(self, timestamp: int, payload) -> None:
        if not self._has_audio:
            return
        info = audio_info(payload)
        if self.ended:
            self.discontinuity()
        ts = self._unwrap.peek(timestamp)
        seg = self._open
        if self._video_mode:
            if seg is None:
                if not info.is_sequence_header:
                    self._unwrap.advance(timestamp)
                    self._hold(ts, payload, info)
                    return
                cut = forced = False
            else:
                # Video stopped (or never had keyframes): bound the segment anyway.
                cut = forced = ts - seg.start >= self.max_fragment_ms or seg.size >= self.max_segment_bytes
        elif seg is None or ts - seg.start >= self.fragment_ms:
            cut, forced = True, False
        else:
            cut = forced = seg.size >= self.max_segment_bytes
        new_part = not cut and not self._video_mode and not info.is_sequence_header and self._part_due(seg, ts)
        data = self._muxer.audio(ts, payload, info, psi=cut)
        self._unwrap.advance(timestamp)
        if not data:
            return
        if new_part:
            self._close_part(seg, ts, True)
        if not self._video_mode:
            if self._last_audio_ts is not None and ts > self._last_audio_ts:
                self._frame_step = ts - self._last_audio_ts
            self._last_audio_ts = ts
        if cut:
            self.forced_cuts += forced
            self._cut(ts, data)
        else:
            self._append(seg, ts, data, not self._video_mode)

    def _hold(self, ts: int, payload, info) -> None:
        """Keep audio that arrives before the first keyframe for the first segment.

        Encoders often emit audio a few milliseconds before the first picture (FFmpeg+libx264
        does); dropping it would lose the start.  Only the last ``_HOLD_MS`` are kept, bounded
        in bytes and count as well, and they are muxed only once the segment exists, so nothing dropped
        here leaves a continuity counter gap.
        """
        held = self._held
        held.append((ts, payload, info))
        self._held_bytes += len(payload)
        while held and (ts - held[0][0] > _HOLD_MS or self._held_bytes > _HOLD_BYTES or len(held) > _HOLD_FRAMES):
            self._held_bytes -= len(held.pop(0)[1])
            self.dropped_frames += 1

    def _mux_held(self, keyframe_ts: int) -> None:
        seg = self._open
        for ts, payload, info in self._held:
            if keyframe_ts - ts > _HOLD_MS:
                self.dropped_frames += 1
                continue
            try:
                data = self._muxer.audio(ts, payload, info)
            except FLVError:
                # Refused now as it would have been when it arrived; the caller has no message
                # in hand to blame, so it is only counted.
                self.dropped_frames += 1
                continue
            if data:
                self._append(seg, ts, data, False)
        self._held = []
        self._held_bytes = 0

    @staticmethod
    def _append(seg: _Open, ts: int, data, timed: bool = True) -> None:
        """Add muxer output; ``timed`` frames (those of the stream that cuts) extend the duration."""
        seg.pending.append(data)
        seg.size += len(data)
        if timed and ts > seg.last:
            seg.last = ts

    # -- partial segments ----------------------------------------------------------------------

    def _part_due(self, seg: _Open | None, ts: int) -> bool:
        """A frame of the cutting stream at ``ts`` starts a new part: adding it would make the
        current part longer than the part target (rfc8216bis 4.4.4.9: no part may be longer)."""
        if self.part_ms is None or seg is None or not seg.pending:
            return False
        length = ts - seg.part_start
        return length > 0 and (length >= self.part_ms or length + self._frame_step > self.part_ms)

    def _pack(self, pending: list, end_ms: int) -> bytes:
        if self.format == "ts":
            return b"".join(pending)
        return self._muxer.pack(pending, end_ms)

    def _close_part(self, seg: _Open, ts: int, next_independent: bool) -> None:
        """The part being built ends at ``ts``: pack it and list it."""
        data = self._pack(seg.pending, ts)
        seg.pending = []
        seg.parts.append((data, max(0, ts - seg.part_start), seg.independent))
        seg.part_start = ts
        seg.independent = next_independent
        self._changed(parts_only=True)

    def _cut(self, ts: int, data: bytes) -> None:
        """Finish the open segment at ``ts`` and start the next one with ``data``.

        ``data`` was muxed with ``psi=True``: PAT/PMT first, so that every segment can be
        decoded on its own (RFC 8216 3.2: each TS segment carries a PAT and a PMT, first).
        """
        if self._open is not None:
            self._finish(max(0, ts - self._open.start))
        if self.format == "fmp4" and not self._map_ready:
            # The first segment of this publisher: its tracks are known now (sequence headers
            # come before media), so the init segment can be made and frozen.
            self._map_id += 1
            self._maps[self._map_id] = self._muxer.init_segment()
            self._map_ready = True
            if self.on_init_added is not None:
                self.on_init_added(self._map_id, self._maps[self._map_id])
        discontinuity = self._pending_discontinuity
        self._pending_discontinuity = False
        seg = self._open = _Open(ts, discontinuity, self._map_id)
        self._append(seg, ts, data)

    # -- publisher lifecycle -------------------------------------------------------------------

    def discontinuity(self) -> None:
        """A new publisher (or a restarted encoder): timestamps and codecs may start over.

        The segment being built is finished here, and the next one gets EXT-X-DISCONTINUITY
        (RFC 8216 4.3.2.3) if anything came before it.
        """
        self._flush()
        if self._segments:
            self._pending_discontinuity = True
        if self.ended:
            # Media after end() reopens the playlist: players that saw ENDLIST are gone, new
            # ones get a live playlist again.
            self.ended = False
            self._changed()
        self._reset_stream()

    def end(self) -> None:
        """The publisher left: finish the partial segment and close the playlist (EXT-X-ENDLIST)."""
        if self.ended:
            return
        self._flush()
        self.ended = True
        self._changed()

    def _flush(self) -> None:
        seg = self._open
        if seg is None:
            return
        # No next cut to measure against: the last frame lasts as long as the one before it.
        self._finish(seg.last - seg.start + self._frame_step)

    def _finish(self, duration_ms: int) -> None:
        seg = self._open
        self._open = None
        end = seg.start + duration_ms
        if seg.pending:
            seg.parts.append((self._pack(seg.pending, end), max(0, end - seg.part_start), seg.independent))
            seg.pending = []
        data = b"".join(p[0] for p in seg.parts)
        parts: tuple = ()
        if self.part_ms is not None:
            offset = 0
            listed = []
            for chunk, duration, independent in seg.parts:
                listed.append(Part(offset, len(chunk), duration, independent))
                offset += len(chunk)
            parts = tuple(listed)
        sequence = self._next_sequence
        self._next_sequence += 1
        self._segments.append(
            Segment(sequence, duration_ms, seg.discontinuity, data if self.keep_data else None, len(data), parts, seg.map_id)
        )
        # RFC 8216 4.3.3.1 wants every EXTINF, rounded, at or under the target and 6.2.1 wants
        # the target never to change; so it only ever grows, and only when a GOP forces it.
        self._target = max(self._target, -(-duration_ms // 1000))
        segs = self._segments
        if len(segs) > self.window and segs[-self.window - 1].discontinuity:
            # That segment just scrolled out of the playlist with its tag (RFC 8216 6.2.2).
            self._discontinuity_sequence += 1
        excess = len(segs) - self.window - self.grace
        removed = [old.sequence for old in segs[:excess]] if excess > 0 else []
        if removed:
            del segs[: len(removed)]
        if self._maps:
            # Init segments no kept segment needs any more (older publishers) are forgotten.
            needed = {s.map_id for s in segs} | {self._map_id}
            for old_map in [m for m in self._maps if m not in needed]:
                del self._maps[old_map]
        if self.on_segment_added is not None:
            self.on_segment_added(sequence, data)
        self._changed()
        if self.on_segment_removed is not None:
            for s in removed:
                self.on_segment_removed(s)

    def _changed(self, parts_only: bool = False) -> None:
        self._playlist = None
        if not parts_only:
            self._classic = None
            if self.on_playlist_changed is not None:
                self.on_playlist_changed(self.playlist(parts=False))
        for listener in list(self.listeners):
            listener()

    # -- output --------------------------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        """The segments the playlist lists, oldest first."""
        return self._segments[-self.window :]

    @property
    def media_sequence(self) -> int:
        listed = self.segments
        return listed[0].sequence if listed else self._next_sequence

    @property
    def target_duration(self) -> int:
        return self._target

    @property
    def low_latency(self) -> bool:
        return self.part_ms is not None

    @property
    def next_sequence(self) -> int:
        """The sequence number of the segment being built (or of the next one)."""
        return self._next_sequence

    def segment_uri(self, sequence: int) -> str:
        return f"{self.name}-{sequence}.{self.extension}"

    def part_uri(self, sequence: int, index: int) -> str:
        return f"{self.name}-{sequence}.{index}.{self.extension}"

    def map_uri(self, map_id: int) -> str:
        return f"{self.name}-init{map_id}.mp4"

    def _find(self, sequence: int) -> Segment | None:
        segs = self._segments
        if not segs:
            return None
        index = sequence - segs[0].sequence
        if 0 <= index < len(segs):
            return segs[index]
        return None

    def segment(self, sequence: int) -> bytes | None:
        """A finished segment still listed or in its grace period; None otherwise."""
        seg = self._find(sequence)
        return seg.data if seg is not None else None

    def part(self, sequence: int, index: int):
        """A finished partial segment (bytes or a memoryview of its segment's); None otherwise."""
        seg = self._open
        if seg is not None and sequence == self._next_sequence:
            return seg.parts[index][0] if 0 <= index < len(seg.parts) else None
        done = self._find(sequence)
        if done is None or done.data is None or not 0 <= index < len(done.parts):
            return None
        p = done.parts[index]
        return memoryview(done.data)[p.offset : p.offset + p.size]

    def init_segment(self, map_id: int) -> bytes | None:
        return self._maps.get(map_id)

    def ready(self, msn: int, part: int | None = None) -> bool | None:
        """Blocking reload (rfc8216bis 6.2.5.2): does the playlist have segment ``msn`` (or its
        part ``part``) or a later one?  None when it never will: the stream ended."""
        if msn < self._next_sequence:
            return True
        seg = self._open
        if part is not None and msn == self._next_sequence and seg is not None and part < len(seg.parts):
            return True
        if self.ended:
            return None
        return False

    def part_state(self, sequence: int, index: int) -> bool | None:
        """For a request of a part (the preload hint): True if it exists, False if it may yet
        appear, None if it never will (its segment closed with fewer parts, or it is gone)."""
        if self.part(sequence, index) is not None:
            return True
        if self.ended or sequence < self._next_sequence:
            return None
        if sequence == self._next_sequence and self._open is not None and index == len(self._open.parts):
            return False
        return None

    def playlist(self, suffix: str = "", parts: bool = True) -> str:
        """The media playlist (RFC 8216 4.3); without segments it only has its header.

        ``suffix`` is appended to every URI (a viewer token's query); ``parts=False`` leaves the
        low-latency tags out.
        """
        if parts and self.part_ms is not None:
            if self._playlist is None:
                self._playlist = self._render(True)
            text = self._playlist
        else:
            if self._classic is None:
                self._classic = self._render(False)
            text = self._classic
        return text.replace(URI_END, suffix)

    def _render(self, low_latency: bool) -> str:
        listed = self.segments
        fmp4 = self.format == "fmp4"
        lines = [
            "#EXTM3U",
            # Decimal EXTINF values need version 3, EXT-X-MAP in a media playlist version 6 (RFC 8216 7).
            "#EXT-X-VERSION:6" if fmp4 or low_latency else "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self._target}",
        ]
        if low_latency:
            part_target = self.part_ms / 1000
            # PART-HOLD-BACK at least twice the part target; three times is what rfc8216bis
            # 4.4.3.8 recommends.
            lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * part_target:.3f}")
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self._discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        current_map = None
        horizon = (sum(s.duration_ms for s in listed) - _PART_WINDOW * self._target * 1000) if low_latency else 0
        elapsed = 0
        for seg in listed:
            if seg.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if fmp4 and seg.map_id != current_map:
                current_map = seg.map_id
                lines.append(f'#EXT-X-MAP:URI="{self.map_uri(seg.map_id)}{URI_END}"')
            if low_latency and elapsed + seg.duration_ms > horizon:
                for i, p in enumerate(seg.parts):
                    lines.append(self._part_line(seg.sequence, i, p.duration_ms, p.independent))
            elapsed += seg.duration_ms
            lines.append(f"#EXTINF:{seg.duration_ms // 1000}.{seg.duration_ms % 1000:03d},")
            lines.append(self.segment_uri(seg.sequence) + URI_END)
        if low_latency and not self.ended:
            open_seg = self._open
            if open_seg is not None:
                if open_seg.discontinuity and listed:
                    lines.append("#EXT-X-DISCONTINUITY")
                if fmp4 and open_seg.map_id != current_map:
                    lines.append(f'#EXT-X-MAP:URI="{self.map_uri(open_seg.map_id)}{URI_END}"')
                for i, (_, duration, independent) in enumerate(open_seg.parts):
                    lines.append(self._part_line(self._next_sequence, i, duration, independent))
                hint = self.part_uri(self._next_sequence, len(open_seg.parts))
                lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}{URI_END}"')
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _part_line(self, sequence: int, index: int, duration_ms: int, independent: bool) -> str:
        line = f'#EXT-X-PART:DURATION={duration_ms / 1000:.3f},URI="{self.part_uri(sequence, index)}{URI_END}"'
        return line + ",INDEPENDENT=YES" if independent else line
