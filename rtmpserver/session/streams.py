"""The NetStreams of an RTMP session: a publisher feeding the hub, or a player fed by it.

Per-player commands (pause, seek, receiveAudio/receiveVideo) are the player's own business; the
session only finds the stream a command names and hands it over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer

from rtmpserver.codec import messages as m
from rtmpserver.codec.chunk import continuation
from rtmpserver.hub import Frame, LiveStream
from rtmpserver.interfaces import (
    ICohortSink,
    IMonitoredClient,
    IPlayerStream,
    IPublisher,
)
from rtmpserver.session.cohort import PlayerCohort
from rtmpserver.sinks import LiveSink

if TYPE_CHECKING:
    from rtmpserver.session.netconnection import Session

__all__ = ["PublisherStream", "PlayerStream", "EOF_DELAY"]

# Seconds between the publisher leaving and StreamEOF to its players: the last messages may still
# be queued (player backlog, merged writes) while the control message would go out at once, and
# librtmp stops reading at the end of a stream, so it would lose them.
EOF_DELAY = 0.25


@implementer(IPublisher, IMonitoredClient)
class PublisherStream:
    """A NetStream that publishes into the hub."""

    def __init__(self, session: Session, stream_id: int, live: LiveStream, name: str, mode: str, args: dict) -> None:
        self.session = session
        self.stream_id = stream_id
        self.live = live
        self.name = name
        self.mode = mode
        self.args = args
        self.last_media_time = session.clock.seconds()

    @property
    def closing(self) -> bool:
        return self.session.closed

    def evict(self, reason: str) -> None:
        self.session.evicted(self, reason)

    def describe(self, now: float) -> dict:
        """The publishing connection as monitoring shows it (timestamp: not tracked for publishers)."""
        return {**self.session.describe(now), "timestamp": 0}


@implementer(IPlayerStream, IMonitoredClient, ICohortSink)
class PlayerStream(LiveSink):
    """A NetStream playing a live stream over RTMP (delivery rules in ``rtmpserver.sinks``)."""

    def __init__(self, session: Session, stream_id: int, live: LiveStream, name: str, args: dict) -> None:
        app = session.app_config
        super().__init__(live, name, app.player_backlog_bytes, app.player_backlog_time, session.peer)
        self.session = session
        self.stream_id = stream_id
        self.args = args
        self.writer = session.conn.writer
        self.playing = False
        self._eof_call = None  # the delayed StreamEOF after the publisher left (EOF_DELAY)
        self.flow = session.link  # its ``paused``: the transport is full (LiveSink.flow)
        self.cohort = None  # the PlayerCohort delivering to it, if any (ICohortSink)

    # -- LiveSink -------------------------------------------------------------------------------

    def transport_full(self) -> bool:
        return self.session.link.paused

    def write_frame(self, frame: Frame, ts: int) -> None:
        w = self.writer
        payload = frame.payload
        header, ext = w.header(frame.csid, ts, frame.type_id, self.stream_id, len(payload))
        size = w.chunk_size
        if ext is not None:
            body = continuation(payload, size, frame.csid, ext)
        elif frame._size == size:
            body = frame._body  # the shared body, as Frame.body returns it, without the call
        else:
            body = frame.body(size)
        self.session.write_media(header, body)

    # -- ICohortSink ---------------------------------------------------------------------------

    def cohort_key(self):
        """Its chunk size while it takes every message as it comes, alone on its connection."""
        session = self.session
        link = session.link
        if (self.paused or self.need_key or self.pub_base is None or self.backlog or not self.receive_audio
                or not self.receive_video or self._eof_call is not None or link.paused or link._closing
                or link._merge_delay or session.closed or len(session.streams) != 1):
            return None
        return self.writer.chunk_size

    def new_cohort(self, stream):
        return PlayerCohort(stream, self.writer.chunk_size)

    def leave_cohort(self) -> None:
        """Deliver on its own from now on (before anything reads or changes its delivery state)."""
        if self.cohort is not None:
            self.live.release(self)

    def sync_counters(self) -> None:
        if self.cohort is not None:
            self.cohort.sync(self)

    def on_started(self, republished: bool) -> None:
        if self._eof_call is not None:
            self._eof_call.cancel()
            self._stream_eof()  # the previous publisher's end still goes first
        if republished and self.session.app_config.publish_notify:
            self.session.status(self.stream_id, "status", "NetStream.Play.PublishNotify", f"{self.name} is now published.")
        self.session.send_user_control(m.UserControl.stream_begin(self.stream_id))

    def on_stopped(self) -> None:
        # StreamEOF after EOF_DELAY; Play.UnpublishNotify only with publish_notify = yes (librtmp,
        # e.g. GStreamer's rtmpsrc, closes on it and drops what it has not read yet).
        if self._eof_call is None:
            self._eof_call = self.session.clock.callLater(EOF_DELAY, self._stream_eof)

    def _stream_eof(self) -> None:
        self._eof_call = None
        if self.session.closed:
            return
        self.session.send_user_control(m.UserControl.stream_eof(self.stream_id))
        if self.session.app_config.publish_notify:
            self.session.status(self.stream_id, "status", "NetStream.Play.UnpublishNotify", f"{self.name} is now unpublished.")

    # -- per-player commands ----------------------------------------------------------------------

    def pause(self, flag: bool) -> None:
        """``pause``/``pauseRaw``: stop delivery (queued frames go), or resume from the latest keyframe."""
        self.leave_cohort()
        status = self.session.status
        if flag:
            self.paused = True
            self.backlog.clear()
            self.backlog_bytes = 0
            status(self.stream_id, "status", "NetStream.Pause.Notify", f"Paused {self.name}.", details=self.name)
        else:
            self.paused = False
            status(self.stream_id, "status", "NetStream.Unpause.Notify", f"Unpaused {self.name}.", details=self.name)
            self.rewind_to_live()

    def seek(self) -> None:
        """A live stream cannot seek: acknowledge and resume from the latest keyframe."""
        self.leave_cohort()
        status = self.session.status
        status(self.stream_id, "status", "NetStream.Seek.Notify", f"Seeking {self.name} (live: resuming at a keyframe).", details=self.name)
        status(self.stream_id, "status", "NetStream.Play.Start", f"Started playing {self.name}.", details=self.name)
        self.rewind_to_live()

    def set_receive_audio(self, flag: bool) -> None:
        self.leave_cohort()
        self.receive_audio = flag

    def set_receive_video(self, flag: bool) -> None:
        self.leave_cohort()
        if flag and not self.receive_video:
            self.need_key = True  # video comes back at a keyframe
        self.receive_video = flag

    # -- life cycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """The NetStream ends: leave the stream and hand our counters to the session's totals."""
        if self._eof_call is not None:
            self._eof_call.cancel()
            self._eof_call = None
        self.detach()
        self.session.stats.add_player_counts(self.dropped, self.resyncs)
        self.dropped = self.resyncs = 0

    def describe(self, now: float) -> dict:
        """This player's connection as monitoring shows it, with this stream's own drops and position."""
        cohort = self.cohort
        ts = self.last_ts if cohort is None else cohort.position(self)
        return {**self.session.describe(now), "dropped": self.dropped, "timestamp": ts}
