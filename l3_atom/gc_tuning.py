"""The garbage collector's settings for a process that streams records (the processor, ``runner.py local``).

A streaming process allocates containers fast (a dict and tuples per record: a Binance book snapshot
is over a thousand records alive at once) and frees nearly all of them by reference counting; the
cyclic collector's default young threshold (700 net allocations) then runs young collections
several times per book message and promotes records that die a moment later.  Measured on the
recordings (``bench/peers.py``'s frames): the collector took ~45% of the processor's CPU on
Binance and ~10% on Kraken.  So, as Instagram did for its servers: the objects of startup
(modules, schemas, compiled writers) are frozen out of every pass, and young collections run
far less often.  Cycles are still collected, later.
"""

from __future__ import annotations

import gc

# Net container allocations between young collections (CPython's default: 700, 10, 10), and the
# collections of each generation between the next one's.  Every frame on a bus and every record in
# a queue is a container that lives a few ms: with a young generation of 700 they survive its
# passes, are promoted and traversed again in the older ones; at 100,000 almost all of them are
# freed by reference counting first (``runner.py local``: 34.5 -> 27.4 CPU-us per frame).  Only
# cyclic garbage waits longer (a few MB).
STREAMING_THRESHOLDS = (100_000, 50, 100)


def tune_for_streaming() -> tuple[int, int, int]:
    """Freeze what startup made and set :data:`STREAMING_THRESHOLDS`; returns the thresholds before."""
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*STREAMING_THRESHOLDS)
    return before
