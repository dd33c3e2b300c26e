"""Minimal asyncio RTMP clients for the load generator, on top of our sans-IO RTMPConnection.

One ``Client`` is one TCP connection: handshake, then ``connect``/``createStream`` calls that wait
for their ``_result``, then publish or play.  Media handling is a pair of hooks (``on_video``,
``on_audio``) that a player overrides; they get the wall-clock time (``time.time_ns()``) at which
the bytes carrying the message were read, which is what latency is measured against.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from rtmpserver.codec import messages as m
from rtmpserver.codec.connection import RTMPConnection
from rtmpserver.errors import RemoteProtocolError

__all__ = ["Client", "CallError", "open_client"]

_VIDEO = m.VideoMessage
_AUDIO = m.AudioMessage
_COMMAND = m.CommandMessage
_USER_CONTROL = m.UserControl
_PING_REQUEST = m.UserControlEvent.PING_REQUEST


class CallError(Exception):
    """The server answered a call with ``_error`` or an error-level onStatus."""


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.conn = RTMPConnection(server=False, uptime_ms=lambda: int(time.monotonic() * 1000) & 0x7FFFFFFF)
        self.transport: asyncio.Transport | None = None
        self.handshaken = loop.create_future()
        self.closed = loop.create_future()
        self._tids = itertools.count(1)
        self._calls: dict[float, asyncio.Future] = {}
        self._status_waiters: list[tuple[int, frozenset, asyncio.Future]] = []
        self.statuses: list[tuple[int, dict]] = []
        self.error: BaseException | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn.initiate()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        try:
            msgs = self.conn.receive_data(data)
        except RemoteProtocolError as e:
            self._fail(e)
            self.transport.abort()
            return
        if not self.handshaken.done() and self.conn.handshake_complete:
            self.handshaken.set_result(None)
        for msg in msgs:
            t = type(msg)
            if t is _VIDEO:
                self.on_video(msg, now)
            elif t is _AUDIO:
                self.on_audio(msg, now)
            elif t is _COMMAND:
                self._command(msg)
            elif t is _USER_CONTROL and msg.event == _PING_REQUEST:
                self.conn.send(m.UserControl.ping_response(msg.value))
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)

    def connection_lost(self, exc) -> None:
        self._fail(exc or ConnectionError("connection closed by the server"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- hooks --------------------------------------------------------------------------------------

    def on_video(self, msg: m.VideoMessage, now_ns: int) -> None:
        pass

    def on_audio(self, msg: m.AudioMessage, now_ns: int) -> None:
        pass

    # -- calls ---------------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        for fut in list(self._calls.values()):
            if not fut.done():
                fut.set_exception(exc)
        self._calls.clear()
        for _, _, fut in self._status_waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._status_waiters.clear()
        if not self.handshaken.done():
            self.handshaken.set_exception(exc)

    def _command(self, msg: m.CommandMessage) -> None:
        name = msg.name
        if name == "_result" or name == "_error":
            fut = self._calls.pop(msg.transaction_id, None)
            if fut is not None and not fut.done():
                if name == "_result":
                    fut.set_result(msg)
                else:
                    info = msg.arguments[0] if msg.arguments else None
                    fut.set_exception(CallError(f"_error: {info!r}"))
        elif name == "onStatus":
            info = msg.arguments[0] if msg.arguments and isinstance(msg.arguments[0], dict) else {}
            self.statuses.append((msg.stream_id, info))
            code = info.get("code", "")
            keep = []
            for sid, codes, fut in self._status_waiters:
                if fut.done():
                    continue
                if sid == msg.stream_id and code in codes:
                    fut.set_result(info)
                elif sid == msg.stream_id and info.get("level") == "error":
                    fut.set_exception(CallError(f"onStatus {code}: {info.get('description')!r}"))
                else:
                    keep.append((sid, codes, fut))
            self._status_waiters = keep

    def send(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def call(self, name: str, obj: Any = None, *args: Any, stream_id: int = 0) -> asyncio.Future:
        if self.error is not None:
            raise self.error
        tid = float(next(self._tids))
        fut = self.loop.create_future()
        self._calls[tid] = fut
        self.conn.send_command(name, tid, obj, *args, stream_id=stream_id)
        self.send()
        return fut

    def notify(self, name: str, obj: Any = None, *args: Any, stream_id: int = 0) -> None:
        """A command with transaction id 0: no answer expected (publish, play, FCPublish...)."""
        self.conn.send_command(name, 0.0, obj, *args, stream_id=stream_id)
        self.send()

    def wait_status(self, stream_id: int, *codes: str) -> asyncio.Future:
        if self.error is not None:
            raise self.error
        fut = self.loop.create_future()
        for sid, info in self.statuses:
            if sid == stream_id and info.get("code") in codes:
                fut.set_result(info)
                return fut
        self._status_waiters.append((stream_id, frozenset(codes), fut))
        return fut

    async def connect(self, app: str, tc_url: str, **extra: Any) -> m.CommandMessage:
        obj = {"app": app, "flashVer": "LNX 9,0,124,2", "tcUrl": tc_url, "fpad": False,
               "capabilities": 15.0, "audioCodecs": 4071.0, "videoCodecs": 252.0, "videoFunction": 1.0}
        obj.update(extra)
        return await self.call("connect", obj)

    async def create_stream(self) -> int:
        res = await self.call("createStream", None)
        sid = res.arguments[0] if res.arguments else None
        if not isinstance(sid, float):
            raise CallError(f"createStream answered {res.arguments!r}")
        return int(sid)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def open_client(host: str, port: int, factory=Client, *, timeout: float = 10.0, ssl=None) -> Client:
    """TCP (or TLS with an ``ssl.SSLContext``) connect and complete the handshake (bounded by ``timeout``)."""
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(factory, host, port, ssl=ssl), timeout)
    try:
        await asyncio.wait_for(asyncio.shield(proto.handshaken), timeout)
    except BaseException:
        proto.transport.abort()
        raise
    return proto
