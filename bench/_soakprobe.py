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


def sample(out, interval: float) -> None:
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
