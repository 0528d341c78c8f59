"""Memory and speed of the stick table (appliance/persist/table.py), issue 3's target.

Builds a ``type string len 32`` table of ENTRIES random 32-character session ids (as the
proxy sees cookie values: bytes) with ``learn``, and reports the growth of this process's
resident set size (VmRSS from /proc/self/status, read before the first key is made, so the
keys count) in MB and bytes per entry; then the throughput of ``learn`` (inserts), ``lookup``
(hits, and misses) and of streaming the whole update log with ``changes_since`` in batches,
each the median of ROUNDS rounds. There is no HAProxy counterpart: the table is measured alone.
The last line is::

    stick table: N bytes/entry, RSS +M MB for 1,000,000 entries (target <= 250 MB)

    .venv/bin/python -m bench.stick_table [--entries 1000000] [--rounds 3] [--batch 1000]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from appliance.persist.table import StickTable

TARGET_MB = 250
CHUNK = 10_000  # keys made at a time, outside the timed part
EXPIRE = 1800.0  # 30 min: nothing expires during the run


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def key_chunks(seed: int, count: int) -> Iterator[list[bytes]]:
    """``count`` random 32-character hex session ids, CHUNK at a time; the same for a seed."""
    rnd = random.Random(seed)
    for start in range(0, count, CHUNK):
        yield [rnd.randbytes(16).hex().encode() for _ in range(min(CHUNK, count - start))]


def timed(chunks: Iterator[list[bytes]], operation) -> float:
    """Operations per second of ``operation(key)`` over every key of ``chunks``."""
    done, elapsed = 0, 0.0
    for keys in chunks:
        start = time.perf_counter()
        for key in keys:
            operation(key)
        elapsed += time.perf_counter() - start
        done += len(keys)
    return done / elapsed


def learn_rate(table: StickTable, seed: int, entries: int) -> float:
    servers = iter(range(1 << 62))

    def learn(key: bytes) -> None:
        table.learn(key, 1 + next(servers) % 8)

    return timed(key_chunks(seed, entries), learn)


def stream_rate(table: StickTable, batch: int) -> tuple[float, int]:
    """Entries per second read by walking the whole update log, and how many."""
    start, cursor, count = time.perf_counter(), 0, 0
    while changes := table.changes_since(cursor, batch):
        count += len(changes)
        cursor = changes[-1].update_id
    return count / (time.perf_counter() - start), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="changes_since batch size")
    args = parser.parse_args()

    gc.collect()
    before = rss_bytes()
    table = StickTable("bench", "string", args.entries, EXPIRE)
    learns = [learn_rate(table, 1, args.entries)]
    gc.collect()
    grown = rss_bytes() - before
    if len(table) != args.entries:
        raise SystemExit(f"stick table: {len(table)} entries, expected {args.entries}")
    per_entry = grown / args.entries
    print(f"entries: {len(table):,} (keys: 32-char session ids, bytes)")
    print(f"RSS: {before / 1e6:.1f} MB before, {(before + grown) / 1e6:.1f} MB after")
    print(f"RSS growth: {grown / 1e6:.1f} MB, {per_entry:.0f} bytes/entry")

    hits, misses, streams = [], [], []
    for round_ in range(args.rounds):
        if round_:  # rebuild, so every round's learn inserts into an empty table
            table.clear()
            learns.append(learn_rate(table, 1, args.entries))
        hits.append(timed(key_chunks(1, args.entries), table.lookup))
        misses.append(timed(key_chunks(2, args.entries // 10), table.lookup))
        rate, streamed = stream_rate(table, args.batch)
        if streamed != args.entries:
            raise SystemExit(f"stick table: streamed {streamed} changes, expected {args.entries}")
        streams.append(rate)
        print(
            f"round {round_ + 1}: learn {learns[-1]:,.0f}/s, lookup hit {hits[-1]:,.0f}/s, "
            f"miss {misses[-1]:,.0f}/s, changes_since {rate:,.0f} entries/s"
        )
    print(
        f"median of {args.rounds}: learn {statistics.median(learns):,.0f} ops/s, "
        f"lookup hit {statistics.median(hits):,.0f} ops/s, "
        f"miss {statistics.median(misses):,.0f} ops/s, "
        f"changes_since {statistics.median(streams):,.0f} entries/s "
        f"(batches of {args.batch})"
    )
    print(
        f"stick table: {per_entry:.0f} bytes/entry, RSS +{grown / 1e6:.0f} MB for "
        f"{args.entries:,} entries (target <= {TARGET_MB} MB)"
    )


if __name__ == "__main__":
    main()
