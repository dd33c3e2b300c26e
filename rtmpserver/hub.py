"""Live streams: one publisher fanned out to any number of sinks.

The media path is the hot path (docs/performance.md): a message from the publisher
becomes one ``Frame``, parsed once (keyframe? sequence header?); its chunk continuation bytes are
produced once per outgoing chunk size and shared by every player.  The hub keeps what a late joiner
needs: metadata, the latest sequence headers and a bounded GOP cache from the latest keyframe.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.logger import Logger

from rtmpserver.codec.chunk import CSID_AUDIO, CSID_DATA, CSID_VIDEO, continuation
from rtmpserver.interfaces import ICohortSink, IDetachableSink
from rtmpserver.media.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, video_flags

__all__ = ["Frame", "LiveStream", "Hub", "MediaBatch", "AUDIO", "VIDEO", "DATA"]

# Message type ids of audio, video and AMF0 data: the same numbers as FLV tag types.
AUDIO, VIDEO, DATA = TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT

_CSID = {AUDIO: CSID_AUDIO, VIDEO: CSID_VIDEO, DATA: CSID_DATA}

# Sinks waiting outside a cohort are looked at on a video keyframe (or, without video, a message)
# at most this often, in stream time (ms).
_GATHER_EVERY = 1000


class MediaBatch:
    """Writes to players held while media is fanned out, flushed when it ends.

    A publisher's read (one ``dataReceived``) often carries several messages; each is fanned out
    to every player. Instead of one write per message per player, each player's share of the read
    goes out in one write (one ``sendmsg``) when the read has been handled: no timer, so no added
    latency, and a fraction of the system calls. ``depth`` counts the fan-outs and reads being
    handled; connections in ``dirty`` are flushed (``flush_merged()``) when it comes back to 0.
    One per hub, so RTMP, RTMPS and HTTP-FLV players of a stream share it whatever their listener.
    """

    __slots__ = ("depth", "dirty")
    _log = Logger()

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list = []

    def end(self) -> None:
        self.depth -= 1
        if self.depth or not self.dirty:
            return
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            try:
                conn.flush_merged()
            except Exception:
                self._log.failure("flushing {peer} failed", peer=conn.peer)


class Frame:
    """One message of a live stream as every sink sees it.

    ``timestamp`` is the publisher's (32-bit); sinks rebase it.  ``keyframe`` is True for video
    keyframes and for every message of a stream without video (where any frame is a place to start).
    """

    __slots__ = ("type_id", "timestamp", "payload", "keyframe", "header", "csid", "_size", "_body")

    def __init__(self, type_id: int, timestamp: int, payload: bytes, keyframe: bool, header: bool = False) -> None:
        self.type_id = type_id
        self.timestamp = timestamp
        self.payload = payload
        self.keyframe = keyframe
        # Sequence headers and metadata: decoder configuration, not a place to start decoding.
        self.header = header
        self.csid = _CSID[type_id]
        self._size = 0
        self._body = b""

    def body(self, chunk_size: int) -> bytes:
        """The payload with its fmt 3 separators, made once and shared by all players of that chunk size."""
        if chunk_size == self._size:
            return self._body
        body = continuation(self.payload, chunk_size, self.csid)
        if not self._size:
            self._size = chunk_size
            self._body = body
        return body

    def __repr__(self) -> str:
        return f"Frame(type={self.type_id}, ts={self.timestamp}, key={self.keyframe}, {len(self.payload)} bytes)"


def _audio_is_sequence_header(payload: bytes) -> bool:
    """AAC (10) packet type 0, or Enhanced RTMP ExAudio (9) packet type 0 (SequenceStart)."""
    if len(payload) < 2:
        return False
    fmt = payload[0] >> 4
    if fmt == 10:
        return payload[1] == 0
    if fmt == 9:
        return payload[0] & 0x0F == 0
    return False


class LiveStream:
    """A live stream: (app, name), its publisher, sinks and late-joiner caches."""

    _log = Logger()

    def __init__(self, hub: Hub, app: str, name: str, *, gop_cache: bool, gop_max_frames: int, gop_max_bytes: int) -> None:
        self.hub = hub
        self.app = app
        self.name = name
        self.publisher = None
        self.sinks: list = []
        # Fan-out (docs/architecture.md, "Fan-out"): ``sinks`` is every sink; each message goes to
        # each cohort (IOutputCohort: steady players sent the same bytes, worked out once) and to
        # each sink in ``_solo`` (everything else, one call each).
        self._solo: list = []
        self._cohorts: dict = {}
        self._gather_at: int | None = None
        self.metadata: Frame | None = None
        self.video_header: Frame | None = None
        self.audio_header: Frame | None = None
        self.has_video = False
        self.gop_enabled = gop_cache
        self.gop_max_frames = gop_max_frames
        self.gop_max_bytes = gop_max_bytes
        self.gop: list[Frame] = []
        self._gop_bytes = 0
        self._gop_overflow = False
        self.publish_count = 0  # how many publishers this stream has had (players rebase on each)
        self.started_at = 0.0
        self.bytes_in = 0
        self.frames_in = 0
        self._bw_sample = (0.0, 0)  # (time, bytes_in) at the last bandwidth reading
        self._bw = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.app, self.name)

    @property
    def active(self) -> bool:
        return self.publisher is not None

    def bandwidth(self, now: float) -> float:
        """Bytes per second received, averaged since the previous reading (at least 1 s back).

        Sampled when monitoring asks, so the media path only adds to a byte counter.
        """
        t0, b0 = self._bw_sample
        if t0 == 0.0:
            t0 = self.started_at
        if now - t0 >= 1.0:
            self._bw = (self.bytes_in - b0) / (now - t0)
            self._bw_sample = (now, self.bytes_in)
        return self._bw

    # -- publisher side -----------------------------------------------------------------------

    def start(self, publisher, now: float) -> None:
        self.publisher = publisher
        self.publish_count += 1
        self.started_at = now
        self.metadata = self.video_header = self.audio_header = None
        self.has_video = False
        self._reset_gop()
        self._dissolve()
        for sink in list(self.sinks):
            self._call(sink, sink.stream_started, self)
        if self.hub.observers:
            self.hub._tell(lambda o: o.stream_published(self, publisher))

    def stop(self) -> None:
        if self.publisher is None:
            return
        publisher, self.publisher = self.publisher, None
        self._reset_gop()
        self._dissolve()
        for sink in list(self.sinks):
            self._call(sink, sink.stream_stopped, self)
        if self.hub.observers:
            self.hub._tell(lambda o: o.stream_unpublished(self, publisher))
        self.hub._maybe_discard(self)

    def _reset_gop(self) -> None:
        self.gop = []
        self._gop_bytes = 0
        self._gop_overflow = False

    def set_metadata(self, timestamp: int, payload: bytes) -> None:
        """Store and forward ``onMetaData`` (``payload`` is its AMF0 body: "onMetaData", object)."""
        frame = Frame(DATA, timestamp, payload, True, True)
        self.metadata = frame
        self._fanout(frame)

    def data(self, timestamp: int, payload: bytes) -> None:
        """Other data messages (onTextData, onCuePoint...) go live only, never cached."""
        self._fanout(Frame(DATA, timestamp, payload, True))

    def video(self, timestamp: int, payload: bytes) -> None:
        key, seq = video_flags(payload)
        self.bytes_in += len(payload)
        self.frames_in += 1
        frame = Frame(VIDEO, timestamp, payload, key, seq)
        if seq:
            self.video_header = frame
            self.has_video = True
            self._fanout(frame)
            return
        self.has_video = True
        self._cache(frame)
        self._fanout(frame)

    def audio(self, timestamp: int, payload: bytes) -> None:
        self.bytes_in += len(payload)
        self.frames_in += 1
        # Without video, every audio frame is a place a player can start.
        seq = _audio_is_sequence_header(payload)
        frame = Frame(AUDIO, timestamp, payload, not self.has_video, seq)
        if seq:
            self.audio_header = frame
            self._fanout(frame)
            return
        self._cache(frame)
        self._fanout(frame)

    def _cache(self, frame: Frame) -> None:
        if not self.gop_enabled or not self.has_video:
            return
        if frame.keyframe and frame.type_id == VIDEO:
            self.gop = [frame]
            self._gop_bytes = len(frame.payload)
            self._gop_overflow = False
            return
        if self._gop_overflow or not self.gop:
            return
        self._gop_bytes += len(frame.payload)
        if len(self.gop) >= self.gop_max_frames or self._gop_bytes > self.gop_max_bytes:
            # A GOP longer than the bound is not cached at all: a partial GOP cannot be decoded
            # from its start, so late joiners wait for the next keyframe instead.
            self._log.debug(
                "GOP cache of {app}/{name} over its bound ({frames} frames, {nbytes} bytes); dropped",
                app=self.app, name=self.name, frames=len(self.gop), nbytes=self._gop_bytes,
            )
            self._reset_gop()
            self._gop_overflow = True
            return
        self.gop.append(frame)

    def _fanout(self, frame: Frame) -> None:
        batch = self.hub.batch
        batch.depth += 1  # what players are sent goes out when the outermost fan-out or read ends
        try:
            solo = self._solo
            if self._cohorts:
                self._to_cohorts(frame)
            sink = None
            try:
                for sink in solo:
                    sink.frame(frame)
            except Exception:
                # Sinks run on the publisher's data path: a bug in one (a player, a recorder, an HLS
                # writer) must not close the publisher or starve the others. The failed sink is
                # detached and the frame goes on to the sinks after it. (A try costs nothing when
                # nothing raises, so the common path stays one plain loop.)
                sinks = list(solo)
                rest = sinks[sinks.index(sink) + 1 :]
                self._failed(sink, "frame")
                for other in rest:
                    self._call(other, other.frame, frame)
            if frame.keyframe and not frame.header and solo:
                at = self._gather_at
                ts = frame.timestamp
                if at is None or not 0 <= ts - at < _GATHER_EVERY:
                    self._gather_at = ts
                    self._gather()
        finally:
            batch.end()

    def _to_cohorts(self, frame: Frame) -> None:
        emptied = None
        for key, cohort in self._cohorts.items():
            try:
                left = cohort.frame(frame)
            except Exception:
                self._log.failure("cohort of {app}/{name} failed; its members go on alone", app=self.app, name=self.name)
                left = self._release_all(cohort)
            if left:
                # Members that left before this message: they get it (and the rest) on their own.
                self._solo.extend(left)
            if not cohort.members:
                emptied = [key] if emptied is None else [*emptied, key]
        if emptied:
            for key in emptied:
                del self._cohorts[key]

    def _gather(self) -> None:
        """Put steady sinks that are on their own into the cohort of their key (made if needed)."""
        cohorts = self._cohorts
        joined = None
        for sink in self._solo:
            if not ICohortSink.providedBy(sink):
                continue
            key = sink.cohort_key()
            if key is None:
                continue
            cohort = cohorts.get(key)
            if cohort is None:
                cohort = cohorts[key] = sink.new_cohort(self)
            if cohort.admit(sink):
                joined = [sink] if joined is None else [*joined, sink]
        if joined:
            gone = set(map(id, joined))
            self._solo = [s for s in self._solo if id(s) not in gone]
        for key in [k for k, c in cohorts.items() if not c.members]:
            del cohorts[key]

    def _release_all(self, cohort) -> list:
        left = list(cohort.members)
        for sink in left:
            try:
                cohort.release(sink)
            except Exception:
                self._log.failure("releasing {sink!r} from a cohort failed", sink=sink)
        return left

    def _dissolve(self) -> None:
        """Every cohort's members go back on their own (before a publisher starts or stops)."""
        for cohort in self._cohorts.values():
            self._solo.extend(self._release_all(cohort))
        self._cohorts.clear()

    def _unlist(self, sink) -> None:
        """``sink`` (just taken out of ``sinks``) leaves the fan-out lists."""
        if sink not in self._solo:
            self.release(sink)  # a cohort member: its counters and state first
        if sink in self._solo:
            self._solo.remove(sink)

    def release(self, sink) -> None:
        """Take ``sink`` out of its cohort (it handles its own delivery from the next message)."""
        for key, cohort in self._cohorts.items():
            if sink in cohort.members:
                cohort.release(sink)
                self._solo.append(sink)
                if not cohort.members:
                    del self._cohorts[key]
                return

    def _call(self, sink, method, arg) -> None:
        """``method`` (a bound IMediaSink method of ``sink``) with ``arg``; a failure detaches ``sink``."""
        try:
            method(arg)
        except Exception:
            self._failed(sink, method.__name__)

    def _failed(self, sink, method: str) -> None:
        """Log the failure being handled and detach ``sink`` (must be called inside ``except``)."""
        self._log.failure(
            "sink {sink!r} of {app}/{name} failed in {method}; detaching it",
            sink=sink, app=self.app, name=self.name, method=method,
        )
        if sink in self.sinks:
            self.sinks.remove(sink)
            self._unlist(sink)
        if IDetachableSink.providedBy(sink):
            try:
                sink.detach()
            except Exception:
                self._log.failure("detaching sink {sink!r} failed", sink=sink)

    def startup_frames(self) -> list[Frame]:
        """What a sink that starts now is sent first: metadata, sequence headers, then the GOP."""
        out = []
        if self.metadata is not None:
            out.append(self.metadata)
        if self.video_header is not None:
            out.append(self.video_header)
        if self.audio_header is not None:
            out.append(self.audio_header)
        out.extend(self.gop)
        return out

    # -- sinks --------------------------------------------------------------------------------

    def add_sink(self, sink) -> None:
        self.sinks.append(sink)
        self._solo.append(sink)
        if self.publisher is not None:
            self._call(sink, sink.stream_started, self)
        if self.hub.observers:
            self.hub._tell(lambda o: o.sink_added(self, sink))

    def remove_sink(self, sink) -> None:
        try:
            self.sinks.remove(sink)
        except ValueError:
            return
        self._unlist(sink)
        if self.hub.observers:
            self.hub._tell(lambda o: o.sink_removed(self, sink))
        self.hub._maybe_discard(self)


class Hub:
    """All live streams of a server, keyed by (app, name)."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], LiveStream] = {}
        # With ``[server] workers`` > 1 (rtmpserver.workers): the IStreamDirectory publishes are
        # claimed in, and IHubObservers told of publishers and sinks coming and going.  A single
        # process has neither and behaves as without them.
        self.directory = None
        self.worker = 0  # this process's owner id in the directory
        # (app, name) -> a Deferred that fires once a stream another worker publishes is live
        # here too (an inter-worker relay started), or None when no other worker publishes it.
        self.fetch = None
        self.observers: list = []
        # Shared by every listener's connections and HTTP viewers (MediaBatch).
        self.batch = MediaBatch()

    def get(self, app: str, name: str) -> LiveStream | None:
        return self.streams.get((app, name))

    def get_or_create(self, app: str, name: str, *, gop_cache: bool = True, gop_max_frames: int = 600, gop_max_bytes: int = 16 << 20) -> LiveStream:
        stream = self.streams.get((app, name))
        if stream is None:
            stream = LiveStream(self, app, name, gop_cache=gop_cache, gop_max_frames=gop_max_frames, gop_max_bytes=gop_max_bytes)
            self.streams[(app, name)] = stream
        return stream

    def _maybe_discard(self, stream: LiveStream) -> None:
        if stream.publisher is None and not stream.sinks and self.streams.get(stream.key) is stream:
            del self.streams[stream.key]

    def _tell(self, call) -> None:
        """``call(observer)`` for each IHubObserver; one that raises is logged, the rest still hear."""
        for observer in list(self.observers):
            try:
                call(observer)
            except Exception:
                LiveStream._log.failure("hub observer {observer!r} failed", observer=observer)

    def active_streams(self) -> Iterable[LiveStream]:
        return [s for s in self.streams.values() if s.publisher is not None]
