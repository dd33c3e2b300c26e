"""Run twistd with a sampling thread that records Python-level memory, for bench/soak.py.

    python bench/_soakprobe.py OUT.jsonl INTERVAL twistd-arguments...

Every INTERVAL seconds one JSON line goes to OUT.jsonl: the number of blocks Python's allocator
holds (``sys.getallocatedblocks()``), the cyclic GC's per-generation collection counts, and how
many objects of the session-level types are alive (``gc.get_objects()``; every object the GC
tracks, whether still reachable or garbage waiting for a collection).  RSS that grows while these
stay flat is allocator fragmentation or memory outside Python's object allocator; growth in the
type counts is objects that are retained.  Nothing here changes what the server does: the thread
only reads, holding the GIL for a few milliseconds per sample.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import threading
import time
from collections import Counter

# The types whose counts tell a retained session (or stream) from a live one.
WATCHED = (
    "RTMPServerProtocol", "Session", "SessionView", "SessionStats", "RTMPConnection", "ChunkReader",
    "PlayerStream", "PublisherStream", "LiveStream", "Frame", "Deferred", "DelayedCall",
)


class _Mallinfo2(ctypes.Structure):
    # glibc's struct mallinfo2 (malloc.h): every field a size_t.
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo():
    """glibc's own accounting: heap obtained with brk/sbrk (``arena``), mmapped blocks (``hblkhd``),
    bytes in use (``uordblks``) and free inside the heap (``fordblks``); None off glibc.  Python's
    small-object arenas are mmapped directly and not counted here: large bytes objects (media
    payloads, chunk buffers) are."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2

    def read() -> dict:
        mi = fn()
        return {"heap": mi.arena, "mmapped": mi.hblkhd, "in_use": mi.uordblks, "free": mi.fordblks}
    return read


def sample(out, interval: float) -> None:
    mallinfo = _mallinfo()
    watched = set(WATCHED)
    t0 = time.monotonic()
    while True:
        time.sleep(interval)
        counts: Counter = Counter()
        objects = gc.get_objects()
        total = len(objects)
        for o in objects:
            name = type(o).__name__
            if name in watched:
                counts[name] += 1
        del objects
        line = {
            "t": round(time.monotonic() - t0, 1),
            "blocks": sys.getallocatedblocks(),
            "gc_objects": total,
            "collections": [s["collections"] for s in gc.get_stats()],
            "types": dict(counts),
        }
        if mallinfo is not None:
            line["malloc"] = mallinfo()
        out.write(json.dumps(line) + "\n")
        out.flush()


def main() -> None:
    path, interval = sys.argv[1], float(sys.argv[2])
    out = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    threading.Thread(target=sample, args=(out, interval), daemon=True, name="soakprobe").start()
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *sys.argv[3:]]
    run()


if __name__ == "__main__":
    main()
