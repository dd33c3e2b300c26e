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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rtmpserver.errors import FLVError, LocalProtocolError
from rtmpserver.media.flv import audio_info, video_info
from rtmpserver.media.ts import TSMuxer

__all__ = ["TYPE_AUDIO", "TYPE_VIDEO", "Segment", "HLSSegmenter"]

TYPE_AUDIO = 8
TYPE_VIDEO = 9

DEFAULT_MAX_SEGMENT_BYTES = 64 << 20
# Audio that precedes the first keyframe by at most this much goes into the first segment.
_HOLD_MS = 1000
_HOLD_BYTES = 1 << 20
_HOLD_FRAMES = 256


class Segment(NamedTuple):
    """One finished segment; ``data`` is None when the segmenter does not keep bytes."""

    sequence: int
    duration_ms: int
    discontinuity: bool
    data: bytes | None
    size: int

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

    __slots__ = ("start", "last", "parts", "size", "discontinuity")

    def __init__(self, start: int, discontinuity: bool) -> None:
        self.start = start
        self.last = start
        self.parts: list[bytes] = []
        self.size = 0
        self.discontinuity = discontinuity


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
        self._muxer = TSMuxer(has_video=setting is not False, has_audio=self._has_audio)
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
        # Mux before changing anything else: if the message is refused, nothing has happened.
        data = self._muxer.video(ts, payload, info, psi=cut)
        self._unwrap.advance(timestamp)
        if not data:
            return  # sequence header, or a message TS has no place for
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
        data = self._muxer.audio(ts, payload, info, psi=cut)
        self._unwrap.advance(timestamp)
        if not data:
            return
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
    def _append(seg: _Open, ts: int, data: bytes, timed: bool = True) -> None:
        """Add packets; ``timed`` frames (those of the stream that cuts) extend the duration."""
        seg.parts.append(data)
        seg.size += len(data)
        if timed and ts > seg.last:
            seg.last = ts

    def _cut(self, ts: int, data: bytes) -> None:
        """Finish the open segment at ``ts`` and start the next one with ``data``.

        ``data`` was muxed with ``psi=True``: PAT/PMT first, so that every segment can be
        decoded on its own (RFC 8216 3.2: each TS segment carries a PAT and a PMT, first).
        """
        if self._open is not None:
            self._finish(max(0, ts - self._open.start))
        discontinuity = self._pending_discontinuity
        self._pending_discontinuity = False
        seg = self._open = _Open(ts, discontinuity)
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
        data = b"".join(seg.parts)
        sequence = self._next_sequence
        self._next_sequence += 1
        self._segments.append(Segment(sequence, duration_ms, seg.discontinuity, data if self.keep_data else None, len(data)))
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
        if self.on_segment_added is not None:
            self.on_segment_added(sequence, data)
        self._changed()
        if self.on_segment_removed is not None:
            for s in removed:
                self.on_segment_removed(s)

    def _changed(self) -> None:
        self._playlist = None
        if self.on_playlist_changed is not None:
            self.on_playlist_changed(self.playlist())

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

    def segment_uri(self, sequence: int) -> str:
        return f"{self.name}-{sequence}.ts"

    def segment(self, sequence: int) -> bytes | None:
        """A finished segment still listed or in its grace period; None otherwise."""
        segs = self._segments
        if not segs:
            return None
        index = sequence - segs[0].sequence
        if 0 <= index < len(segs):
            return segs[index].data
        return None

    def playlist(self) -> str:
        """The media playlist (RFC 8216 4.3); without segments it only has its header."""
        if self._playlist is None:
            listed = self.segments
            lines = [
                "#EXTM3U",
                "#EXT-X-VERSION:3",  # decimal EXTINF values need version 3 (RFC 8216 7)
                f"#EXT-X-TARGETDURATION:{self._target}",
                f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            ]
            if self._discontinuity_sequence:
                lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
            for seg in listed:
                if seg.discontinuity:
                    lines.append("#EXT-X-DISCONTINUITY")
                lines.append(f"#EXTINF:{seg.duration_ms // 1000}.{seg.duration_ms % 1000:03d},")
                lines.append(self.segment_uri(seg.sequence))
            if self.ended:
                lines.append("#EXT-X-ENDLIST")
            self._playlist = "\n".join(lines) + "\n"
        return self._playlist
