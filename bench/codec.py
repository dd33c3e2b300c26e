"""Micro-benchmarks of the sans-IO codec and the server's per-player media path.

    .venv/bin/python bench/codec.py [--repeat 5] [--quick]

Prints one table per section; every figure is the best and the median of ``--repeat`` runs
(time.perf_counter).  Sections:

- chunk reader: a realistic publish stream (30 fps video at 2 and 6 Mbit/s, keyframe every 2 s,
  ~47 AAC frames/s) at chunk size 4096 and 128, fed in 16 KiB and 1460-byte reads;
- chunk writer: ``write()`` per message, and fan-out to 100 players from scratch vs with the
  shared ``continuation()`` plus a per-player ``header()`` (what ``rtmpserver.hub`` does);
- AMF0: decode/encode of the commands FFmpeg sends (connect, publish) and our answers
  (_result, onStatus);
- server media path: a publisher ``Session`` fanning out to 100 player ``Session``s whose
  transport is a byte counter, i.e. everything the server does per player per message except
  the socket.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _media import AAC_SEQUENCE_HEADER, AVC_SEQUENCE_HEADER, stream_messages  # noqa: E402

from rtmpserver.codec import amf0  # noqa: E402
from rtmpserver.codec import messages as m  # noqa: E402
from rtmpserver.codec.chunk import ChunkReader, ChunkWriter, RawMessage, continuation  # noqa: E402

# What FFmpeg 5.1 (Lavf59.27.100) sends, from tests/data/ffmpeg-{publish,play}.c2s.bin.
FFMPEG_PUBLISH_CONNECT = {
    "app": "live",
    "type": "nonprivate",
    "flashVer": "FMLE/3.0 (compatible; Lavf59.27.100)",
    "tcUrl": "rtmp://127.0.0.1:19351/live",
}
FFMPEG_PLAY_CONNECT = {
    "app": "live",
    "flashVer": "LNX 9,0,124,2",
    "tcUrl": "rtmp://127.0.0.1:19352/live",
    "fpad": False,
    "capabilities": 15.0,
    "audioCodecs": 4071.0,
    "videoCodecs": 252.0,
    "videoFunction": 1.0,
}
# Our server's answers (rtmpserver/session.py).
CONNECT_RESULT = (
    {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0},
    {
        "level": "status",
        "code": "NetConnection.Connect.Success",
        "description": "Connection succeeded.",
        "objectEncoding": 0.0,
    },
)
PLAY_START = {
    "level": "status",
    "code": "NetStream.Play.Start",
    "description": "Started playing cap.",
    "details": "cap",
}


def timeit(fn, repeat: int) -> tuple[float, float]:
    """(best, median) seconds of ``fn()`` over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print()
    print(title)
    print("  " + "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=False))))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))))


def fmt_rate(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{n:.0f}"


def encode_stream(msgs, chunk_size: int) -> bytes:
    w = ChunkWriter(chunk_size)
    out = [w.write(9 if t == 9 else 6 if t == 8 else 5, ts, t, 1, p) for t, ts, p in msgs]
    return b"".join(out)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- sections -----------------------------------------------------------------------------------


def bench_reader(repeat: int, seconds: float) -> None:
    rows = []
    for mbps in (2, 6):
        msgs = stream_messages(seconds, mbps * 1_000_000)
        payload_bytes = sum(len(p) for _, _, p in msgs)
        for chunk_size in (4096, 128):
            data = encode_stream(msgs, chunk_size)
            for read_size in (16384, 1460):
                pieces = split(data, read_size)

                want = len(msgs)

                def run(pieces=pieces, chunk_size=chunk_size, want=want):
                    r = ChunkReader(chunk_size=chunk_size)
                    n = 0
                    for piece in pieces:
                        n += len(r.feed(piece))
                    assert n == want, n

                best, med = timeit(run, repeat)
                rows.append(
                    [
                        f"{mbps} Mbit/s",
                        chunk_size,
                        read_size,
                        f"{len(data) / best / 1e6:.0f}",
                        f"{len(data) / med / 1e6:.0f}",
                        fmt_rate(len(msgs) / best),
                        fmt_rate(len(msgs) / med),
                        f"{best / seconds * 100:.2f}%",
                    ]
                )
        del payload_bytes
    table(
        f"ChunkReader.feed: {seconds:.0f} s of publish stream (30 fps video, keyframe every 2 s, ~47 audio msg/s)",
        ["stream", "chunk", "read", "MB/s best", "MB/s med", "msg/s best", "msg/s med", "core per stream"],
        rows,
    )
    print("  core per stream: share of one core the reader needs for one such publisher in real time")


def bench_writer(repeat: int, seconds: float, players: int = 100) -> None:
    rows = []
    msgs = stream_messages(seconds, 2_000_000)
    total = sum(len(p) for _, _, p in msgs)
    for chunk_size in (4096, 128):

        def one(chunk_size=chunk_size):
            w = ChunkWriter(chunk_size)
            for t, ts, p in msgs:
                w.write(7 if t == 9 else 6, ts, t, 1, p)

        best, med = timeit(one, repeat)
        rows.append(
            [
                f"write(), 1 connection, chunk {chunk_size}",
                f"{total / best / 1e6:.0f} MB/s",
                fmt_rate(len(msgs) / best) + " msg/s",
                f"{best / len(msgs) * 1e6:.2f}",
                f"{med / len(msgs) * 1e6:.2f}",
            ]
        )

    short = msgs[: max(1, len(msgs) // 5)]
    n_pm = len(short) * players
    for chunk_size in (4096, 128):

        def scratch(chunk_size=chunk_size):
            writers = [ChunkWriter(chunk_size) for _ in range(players)]
            for t, ts, p in short:
                csid = 7 if t == 9 else 6
                for w in writers:
                    w.write(csid, ts, t, 1, p)

        def shared(chunk_size=chunk_size):
            writers = [ChunkWriter(chunk_size) for _ in range(players)]
            for t, ts, p in short:
                csid = 7 if t == 9 else 6
                body = continuation(p, chunk_size, csid)
                n = len(p)
                for w in writers:
                    h, ext = w.header(csid, ts, t, 1, n)
                    if ext is not None:
                        continuation(p, chunk_size, csid, ext)
                    _ = (h, body)  # what goes to writeSequence

        for label, fn in (("from scratch: write() per player", scratch), ("shared continuation + header()", shared)):
            best, med = timeit(fn, repeat)
            rows.append(
                [
                    f"fan-out {players}, chunk {chunk_size}: {label}",
                    f"{short and sum(len(p) for _, _, p in short) * players / best / 1e6:.0f} MB/s",
                    fmt_rate(n_pm / best) + " msg/s",
                    f"{best / n_pm * 1e6:.2f}",
                    f"{med / n_pm * 1e6:.2f}",
                ]
            )
    table(
        "ChunkWriter (2 Mbit/s stream; fan-out figures are per player per message)",
        ["case", "payload", "messages", "us/msg best", "us/msg med"],
        rows,
    )


def bench_amf(repeat: int, loops: int = 20000) -> None:
    cases = [
        ("connect (FFmpeg publisher)", ("connect", 1.0, FFMPEG_PUBLISH_CONNECT)),
        ("connect (FFmpeg player)", ("connect", 1.0, FFMPEG_PLAY_CONNECT)),
        ("publish", ("publish", 5.0, None, "cap", "live")),
        ("play", ("play", 4.0, None, "cap", -2000.0)),
        ("_result for connect (ours)", ("_result", 1.0, *CONNECT_RESULT)),
        ("onStatus Play.Start (ours)", ("onStatus", 0.0, None, PLAY_START)),
    ]
    rows = []
    for label, values in cases:
        payload = m.command_payload(*values)
        raw = RawMessage(3, 0, 20, 0, payload)

        def dec(payload=payload):
            for _ in range(loops):
                amf0.decode(payload)

        def dec_msg(raw=raw):
            for _ in range(loops):
                m.decode(raw)

        def enc(values=values):
            for _ in range(loops):
                m.command_payload(*values)

        (db, dm), (mb, _), (eb, em) = (timeit(dec, repeat), timeit(dec_msg, repeat), timeit(enc, repeat))
        rows.append(
            [
                label,
                len(payload),
                fmt_rate(loops / db),
                fmt_rate(loops / dm),
                fmt_rate(loops / mb),
                fmt_rate(loops / eb),
                fmt_rate(loops / em),
            ]
        )
    table(
        "AMF0 commands per second",
        ["command", "bytes", "amf0.decode best", "med", "messages.decode best", "encode best", "med"],
        rows,
    )


# -- the server's media path without sockets -----------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay, fn, *a, **kw):  # pragma: no cover - only if a handler needs it
        raise RuntimeError("the benchmark clock does not schedule calls")


class _CountingLink:
    """A transport that only counts what the server writes (bytes and write calls)."""

    paused = False

    def __init__(self) -> None:
        self.bytes = 0
        self.writes = 0
        self.closed = None
        self.received = bytearray()
        self.keep = True

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.bytes += len(data)
        if self.keep:
            self.received += data

    def write_sequence(self, parts: list) -> None:
        self.writes += 1
        for p in parts:
            self.bytes += len(p)
            if self.keep:
                self.received += p

    def close(self, reason: str) -> None:
        self.closed = reason

    def peer_host(self) -> str:
        return "127.0.0.1"

    def loseConnection(self) -> None:
        self.closed = "lost"


def _server_sessions(players: int):
    """A publisher and ``players`` player Sessions attached to one hub, handshaken and playing."""
    from rtmpserver import config as cfg
    from rtmpserver.codec.connection import RTMPConnection
    from rtmpserver.hub import Hub
    from rtmpserver.session import Session

    conf = cfg.parse(
        "[server]\nlisten = tcp:0:interface=127.0.0.1\naccess_log = no\n"
        "[limits]\nmax_connections_per_ip = 100000\n"
        "[app:live]\n"
    )
    hub = Hub()
    clock = _Clock()

    def session():
        link = _CountingLink()
        s = Session(link, conf, hub, clock, peer="127.0.0.1:1")
        c = RTMPConnection(server=False)
        c.initiate()
        return s, link, c

    def pump(s, link, c):
        """Exchange bytes until both sides are quiet."""
        for _ in range(20):
            out = c.data_to_send()
            if out:
                s.data_received(out)
            back = bytes(link.received)
            link.received.clear()
            if back:
                c.receive_data(back)
            if not out and not back:
                return

    def connect(s, link, c):
        pump(s, link, c)
        c.send_command("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"})
        c.send_command("createStream", 2, None)
        pump(s, link, c)

    pub = session()
    connect(*pub)
    pub[2].send(m.SetChunkSize(4096))
    pub[2].send_command("publish", 0, None, "bench", "live", stream_id=1)
    pump(*pub)
    subs = []
    for _ in range(players):
        sub = session()
        connect(*sub)
        sub[2].send_command("play", 0, None, "bench", -2000.0, stream_id=1)
        pump(*sub)
        sub[1].keep = False
        subs.append(sub)
    live = hub.get("live", "bench")
    if live is None or len(live.sinks) != players or live.publisher is None:
        raise RuntimeError(f"set-up failed: stream {live!r} has {len(live.sinks) if live else 0} sinks")
    return pub, subs, clock


def bench_server_path(repeat: int, seconds: float, players: int = 100) -> None:
    msgs = stream_messages(seconds, 2_000_000, audio_rate=44100 / 1024)
    rows = []
    for n in (1, players):
        runs = []
        for _ in range(repeat + 1):
            # Fresh sessions per run (set-up not timed): the hub and the players' timestamp
            # rebasing must see the stream from its start each time.
            try:
                pub, subs, _ = _server_sessions(n)
            except Exception as e:
                print(f"\nserver media path: skipped, could not set up sessions: {type(e).__name__}: {e}")
                return
            s, _, c = pub
            c.send(m.VideoMessage(0, 1, AVC_SEQUENCE_HEADER))
            c.send(m.AudioMessage(0, 1, AAC_SEQUENCE_HEADER))
            s.data_received(c.data_to_send())
            for t, ts, p in msgs:
                c.send_raw(t, p, stream_id=1, timestamp=ts)
            pieces = split(c.data_to_send(), 16384)
            links = [sub[1] for sub in subs]
            w0 = sum(lk.writes for lk in links)
            b0 = sum(lk.bytes for lk in links)
            t0 = time.perf_counter()
            for piece in pieces:
                s.data_received(piece)
            runs.append(time.perf_counter() - t0)
            writes = sum(lk.writes for lk in links) - w0
            nbytes = sum(lk.bytes for lk in links) - b0
        runs = runs[1:]
        best, med = min(runs), statistics.median(runs)
        pm = len(msgs) * n
        rows.append(
            [
                n,
                len(msgs),
                f"{best / pm * 1e6:.2f}",
                f"{med / pm * 1e6:.2f}",
                f"{writes / pm:.2f}",
                f"{nbytes / seconds * 8 / 1e6:.0f}",
                f"{best / seconds * 100:.1f}%",
            ]
        )
    table(
        f"Server media path: publisher Session -> hub -> N player Sessions, null transport ({seconds:.0f} s of 2 Mbit/s)",
        ["players", "messages", "us/player/msg best", "med", "writes/player/msg", "Mbit/s out", "core for the stream"],
        rows,
    )
    print("  us/player/msg includes the publisher's share (reader, decode, hub) spread over the players;")
    print("  a real socket adds Twisted's write path on top (bench/load.py measures the whole).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per case (default 5)")
    ap.add_argument("--quick", action="store_true", help="shorter streams and fewer runs (smoke test)")
    args = ap.parse_args()
    repeat = 2 if args.quick else args.repeat
    seconds = 2.0 if args.quick else 10.0
    t0 = time.perf_counter()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best and median of {repeat} runs")
    bench_reader(repeat, seconds)
    bench_writer(repeat, seconds)
    bench_amf(repeat, 2000 if args.quick else 20000)
    bench_server_path(repeat, seconds / 2)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
