"""Players of one live stream that are sent the same bytes: each message's bytes worked out once.

A player that receives every message of a stream and keeps up is, from one message to the next,
in a state that differs from another such player's only by a constant timestamp offset: its
chunk stream for audio and for video last carried the same message (same length and type id, same
timestamp delta; Adobe RTMP 1.0, section 5.3.1.2), so the next message's chunk header is the same
fmt 1, 2 or 3 header for both, and the body (with its fmt 3 separators) is already shared
(``Frame.body``).  ``PlayerCohort`` keeps that state once, as a virtual member, works out each
message's header once, and appends (header, body) to every member's held output
(``RTMPServerProtocol``'s, flushed in one ``sendmsg`` when the fan-out ends: ``MediaBatch``).  Per
member per message that is a list extend instead of a chain of Python calls
(docs/architecture.md, "Fan-out"; figures in docs/performance.md).

While a player is a member its own delivery state (``last_ts``, its chunk writer's audio and video
states, ``frames_sent``, the session's ``media_bytes_out``) is not updated; ``release`` writes it
back, so a player leaves the cohort exactly as if it had been sent every message on its own.  A
player leaves when its output is full, when it pauses, seeks or filters, when its session opens
another stream, when a message cannot be shared (data messages, sequence headers, a timestamp that
needs the extended field) and when a publisher starts or stops (``LiveStream`` releases them all);
the stream takes steady players back in at a later keyframe (``LiveStream._gather``).
"""

from __future__ import annotations

from zope.interface import implementer

from rtmpserver.codec.chunk import _BASIC, _U32, _U56, CSID_AUDIO, CSID_VIDEO
from rtmpserver.interfaces import IOutputCohort

__all__ = ["PlayerCohort"]

_MASK32 = 0xFFFFFFFF
_EXTENDED = 0xFFFFFF
_MEDIA_CSIDS = (CSID_AUDIO, CSID_VIDEO)


@implementer(IOutputCohort)
class PlayerCohort:
    """Steady ``PlayerStream``s of one stream and one outgoing chunk size."""

    def __init__(self, live, chunk_size: int) -> None:
        self.live = live
        self.chunk_size = chunk_size
        self.batch = live.hub.batch
        # sink -> [offset, frames at join/sync, bytes at join/sync]; offset: the member's
        # timestamps are the virtual member's plus this.
        self.members: dict = {}
        self._links: list = []  # each member's connection (RTMPServerProtocol), in join order
        self._sink_of: dict = {}  # connection -> member
        # The virtual member: per media chunk stream [timestamp, delta, length, type id] as its
        # chunk writer would hold them, its last timestamp, and the bases its timestamps use.
        self._states: dict[int, list] = {}
        self._last = 0
        self._player_base = 0
        self._pub_base = 0
        self._founded = False
        self.frames = 0  # messages sent to the virtual member
        self.bytes = 0  # their bytes (headers and bodies)
        # What every member is sent when the current fan-out ends (MediaBatch), and its size.
        self.pending: list = []
        self.pending_bytes = 0
        # Members that joined during the current fan-out: how many of ``pending``'s parts are not theirs.
        self._late: dict = {}
        self.peer = f"cohort of {live.app}/{live.name}"  # MediaBatch logs a failed flush with it

    # -- IOutputCohort --------------------------------------------------------------------------

    def admit(self, sink) -> bool:
        states = sink.writer._states
        if not self._founded:
            mine = {c: [st.timestamp, st.delta, st.length, st.type_id] for c in _MEDIA_CSIDS
                    if (st := states.get(c)) is not None and st.stream_id == sink.stream_id}
            if not mine:
                return False
            self._states = mine
            self._last = sink.last_ts
            self._player_base = sink.player_base
            self._pub_base = sink.pub_base
            self._founded = True
            offset = 0
        else:
            offset = sink.last_ts - self._last
            d = (self._pub_base - sink.pub_base) & _MASK32
            if offset != sink.player_base - self._player_base + (d - 0x100000000 if d & 0x80000000 else d):
                return False  # its timestamps would not stay the virtual member's plus a constant
            for c in _MEDIA_CSIDS:
                vs = self._states.get(c)
                st = states.get(c)
                if vs is None:
                    if st is not None:
                        return False
                    continue
                if (st is None or st.stream_id != sink.stream_id or st.timestamp != (offset + vs[0]) & _MASK32
                        or st.delta != vs[1] or st.length != vs[2] or st.type_id != vs[3]):
                    return False
        link = sink.session.link
        if self.pending:
            self._late[link] = len(self.pending)  # it had those messages on its own
        self.members[sink] = [offset, self.frames, self.bytes]
        self._links.append(link)
        self._sink_of[link] = sink
        sink.cohort = link.cohort = self
        return True

    def frame(self, frame) -> list:
        vs = self._states.get(frame.csid)
        if vs is None or frame.header:
            return self._leave_all()  # data messages, sequence headers, a chunk stream not yet seen
        # The virtual member's timestamp, as LiveSink.frame rebases and clamps it.
        d = (frame.timestamp - self._pub_base) & _MASK32
        ts = self._player_base + (d - 0x100000000 if d & 0x80000000 else d)
        last = self._last
        if ts < last:
            ts = last
        tsm = ts & _MASK32
        delta = (tsm - vs[0]) & _MASK32
        if delta >= _EXTENDED:
            return self._leave_all()  # fmt 0 or an extended timestamp: each member on its own
        payload = frame.payload
        length = len(payload)
        t = frame.type_id
        # ChunkWriter.header's choice of fmt 1, 2 or 3 for this chunk stream.
        if vs[2] != length or vs[3] != t:
            h = _BASIC[1][frame.csid] + _U56.pack(delta << 32 | length << 8 | t)[1:]
        elif vs[1] != delta:
            h = _BASIC[2][frame.csid] + _U32.pack(delta)[1:]
        else:
            h = _BASIC[3][frame.csid]
        size = self.chunk_size
        body = frame._body if frame._size == size else frame.body(size)
        pending = self.pending
        left = ()
        if not pending:
            # The first message of this fan-out. A member whose output is full (or that has replies
            # queued, which go before media: Session.write_media) goes on alone from
            # here (it queues and drops by LiveSink's rules); within one fan-out nothing is written,
            # so this holds for the messages after it too.
            full = [link for link in self._links if link.paused or link._closing or link.session.conn.pending]
            if full:
                left = [self._release(self._sink_of[link]) for link in full]
            self.batch.dirty.append(self)  # flush_merged when the fan-out (or the read) ends
        pending.append(h)
        pending.append(body)
        vs[0] = tsm
        vs[1] = delta
        vs[2] = length
        vs[3] = t
        if ts > last:
            self._last = ts
        n = len(h) + len(body)
        self.pending_bytes += n
        self.frames += 1
        self.bytes += n
        return left

    def flush_merged(self) -> None:
        """Send every member what this fan-out produced: the same parts, one write each."""
        parts = self.pending
        if not parts:
            return
        total = self.pending_bytes
        self.pending = []
        self.pending_bytes = 0
        late = self._late
        if late:
            self._late = {}
        for link in self._links:
            mine, size = parts, total
            if late and link in late:
                mine, size = parts[late[link]:], None
            if not mine:
                pass
            elif link._held:
                # Something went ahead of this fan-out's messages (rare): after it, in order.
                link._held += mine
                link.flush_merged()
            elif not link._lost:
                link.writer.write_sequence(mine, size)

    def release(self, sink) -> None:
        self._release(sink)

    def before_write(self, link) -> None:
        """Something else is written to a member's connection: if this fan-out already produced
        messages for it, the member leaves (they go first, in its own output; see ``_release``)."""
        if self.pending:
            self.live.release(self._sink_of[link])

    def sync(self, sink) -> None:
        rec = self.members.get(sink)
        if rec is not None:
            sink.frames_sent += self.frames - rec[1]
            sink.session.stats.media_bytes_out += self.bytes - rec[2]
            rec[1] = self.frames
            rec[2] = self.bytes

    def position(self, sink) -> int:
        rec = self.members.get(sink)
        return sink.last_ts if rec is None else rec[0] + self._last

    # -- internals ------------------------------------------------------------------------------

    def _release(self, sink):
        """Write the virtual member's state back into ``sink`` (shifted by its offset), drop it."""
        self.sync(sink)
        offset = self.members.pop(sink)[0]
        link = sink.session.link
        self._links.remove(link)
        del self._sink_of[link]
        link.cohort = None
        skip = self._late.pop(link, 0)
        if len(self.pending) > skip and not link._lost:
            # This fan-out's messages so far are its too: they go first, with its own output.
            held = link._held
            if not held:
                self.batch.dirty.append(link)
            held += self.pending[skip:]
        if not self.members:
            self.pending = []
            self.pending_bytes = 0
            self._late = {}
        sink.last_ts = offset + self._last
        states = sink.writer._states
        for c, vs in self._states.items():
            st = states[c]
            st.timestamp = (offset + vs[0]) & _MASK32
            st.delta = vs[1]
            st.length = vs[2]
            st.type_id = vs[3]
        sink.cohort = None
        return sink

    def _leave_all(self) -> list:
        return [self._release(sink) for sink in list(self.members)]
