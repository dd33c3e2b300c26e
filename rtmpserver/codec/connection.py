"""A sans-IO RTMP connection: handshake, chunk stream, typed messages and acknowledgements.

Bytes in (``receive_data``), typed messages out; bytes to send accumulate and are taken with
``data_to_send()``.  Used by the server protocol and by clients (bench load tool, relays).  Time
and randomness are injected; nothing here knows about sockets or reactors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rtmpserver.codec import messages as m
from rtmpserver.codec.chunk import (
    CSID_AUDIO,
    CSID_COMMAND,
    CSID_CONTROL,
    CSID_DATA,
    CSID_VIDEO,
    DEFAULT_CHUNK_SIZE,
    MAX_MESSAGE_LENGTH,
    ChunkReader,
    ChunkWriter,
)
from rtmpserver.codec.handshake import ClientHandshake, ServerHandshake

__all__ = ["RTMPConnection", "csid_for"]

_CSID_BY_TYPE = {8: CSID_AUDIO, 9: CSID_VIDEO, 15: CSID_DATA, 18: CSID_DATA, 17: CSID_COMMAND, 20: CSID_COMMAND}


def csid_for(type_id: int) -> int:
    """The chunk stream we send a message type on (control types must use 2, section 5.4)."""
    if type_id <= 6:
        return CSID_CONTROL
    return _CSID_BY_TYPE.get(type_id, CSID_COMMAND)


class RTMPConnection:
    """One side of an RTMP connection.

    ``server=True`` answers a handshake, ``server=False`` starts one (call ``initiate()``).
    Limits are passed to the chunk reader and the AMF decoder.
    """

    def __init__(
        self,
        *,
        server: bool = True,
        max_message_size: int = MAX_MESSAGE_LENGTH,
        max_partial_bytes: int = 32 * 1024 * 1024,
        max_partial_csids: int = 64,
        max_amf_depth: int = 32,
        random_bytes: Callable[[int], bytes] = os.urandom,
        uptime_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        self.server = server
        if server:
            self.handshake: Any = ServerHandshake(random_bytes=random_bytes, uptime_ms=uptime_ms)
        else:
            self.handshake = ClientHandshake(random_bytes=random_bytes, uptime_ms=uptime_ms)
        self.reader = ChunkReader(
            chunk_size=DEFAULT_CHUNK_SIZE,
            max_message_size=max_message_size,
            max_partial_bytes=max_partial_bytes,
            max_partial_csids=max_partial_csids,
        )
        self.writer = ChunkWriter(DEFAULT_CHUNK_SIZE)
        self.max_amf_depth = max_amf_depth
        self.peer_window_ack_size = 0  # acknowledge every this many bytes; 0 until the peer says
        self._last_ack = 0
        self._out: list[bytes] = []
        # The same list, public: truthy while bytes are queued (read without a call on the media path).
        self.pending = self._out
        self.bytes_sent = 0

    # -- receiving ------------------------------------------------------------------------------

    @property
    def handshake_complete(self) -> bool:
        return self.handshake.complete

    def initiate(self) -> None:
        """Client side: queue C0+C1."""
        self._out.append(self.handshake.start())

    def receive_data(self, data: bytes) -> list:
        """Feed received bytes; returns the typed messages they completed (aggregates flattened).

        Raises a RemoteProtocolError subclass on anything malformed; the caller closes.
        """
        if not self.handshake.complete:
            reply = self.handshake.receive(data)
            if reply:
                self._out.append(reply)
            if not self.handshake.complete:
                return []
            data = self.handshake.unused
            if not data:
                return []
        raws = self.reader.feed(data)
        out: list = []
        depth = self.max_amf_depth
        for raw in raws:
            msg = m.decode(raw, max_amf_depth=depth)
            if type(msg) is list:
                out.extend(msg)
                continue
            if type(msg) is m.WindowAcknowledgementSize:
                self.peer_window_ack_size = msg.size
            out.append(msg)
        if self.peer_window_ack_size:
            received = self.reader.bytes_received
            if received - self._last_ack >= self.peer_window_ack_size:
                self._last_ack = received
                self.send(m.Acknowledgement(received & 0xFFFFFFFF))
        return out

    # -- sending --------------------------------------------------------------------------------

    def send(self, msg, *, stream_id: int = 0, timestamp: int = 0, csid: int | None = None) -> None:
        """Queue a typed message. Set Chunk Size takes effect for everything queued after it."""
        type_id, payload = m.encode(msg)
        if isinstance(msg, (m.AudioMessage, m.VideoMessage, m.DataMessage)):
            stream_id = msg.stream_id
            timestamp = msg.timestamp
        elif isinstance(msg, m.CommandMessage):
            stream_id = msg.stream_id
        self.send_raw(type_id, payload, stream_id=stream_id, timestamp=timestamp, csid=csid)
        if type(msg) is m.SetChunkSize:
            self.writer.set_chunk_size(min(msg.size, MAX_MESSAGE_LENGTH))

    def send_raw(self, type_id: int, payload: bytes, *, stream_id: int = 0, timestamp: int = 0, csid: int | None = None) -> None:
        data = self.writer.write(csid_for(type_id) if csid is None else csid, timestamp, type_id, stream_id, payload)
        self._out.append(data)

    def send_command(self, name: str, transaction_id: float, command_object: Any = None, *args: Any, stream_id: int = 0, amf3: bool = False) -> None:
        self.send(m.CommandMessage(stream_id, name, transaction_id, command_object, list(args), amf3=amf3))

    def queue(self, data: bytes) -> None:
        """Queue bytes produced elsewhere (shared fan-out chunks written with this writer's headers)."""
        self._out.append(data)

    @property
    def has_pending(self) -> bool:
        """Bytes are queued that must go out before anything written around this connection."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self.bytes_sent += len(data)
        return data
