"""The tuning journal at 150k lines: load time before and after compaction, and the agent's cost.

Builds a journal of finished transactions (each applied, committed and rolled back) of about
150,000 lines, as years of autotune would leave, plus one transaction still applied. Prints a
table: the journal's size, the time and peak memory of a full load (what `tune status`, `verify`,
`rollback` and `plan` each did), the compaction, the load after it, and what the agent's sampling
thread pays per journal check (the cached read hands the load to a helper thread).

    .venv/bin/python bench/bench_journal_load.py [--lines 150000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repository: tests.support

from nodetune.probes.host import Host  # noqa: E402
from nodetune.tuners.contract import Knob  # noqa: E402
from nodetune.tuners.transaction.compact import compact  # noqa: E402
from nodetune.tuners.transaction.journal import DEFAULT_JOURNAL, Journal  # noqa: E402
from nodetune.tuners.transaction.record import (  # noqa: E402
    APPLIED,
    BEGIN,
    COMMIT,
    INTENT,
    ROLLED_BACK,
    Record,
    dump,
)
from nodetune.tuners.transaction.watch import JournalWatch  # noqa: E402
from tests.support.faketree import laptop  # noqa: E402


def _knob(i: int) -> Knob:
    p = f"/sys/block/nvme{i % 8}n1/queue/read_ahead_kb"
    return Knob(id=f"sysfs:{p}", kind="sysfs", group="readahead", label=f"read_ahead_kb nvme{i % 8}n1", path=p,
                floor=True, unit="kB")


def build(path: str, lines: int) -> int:
    """Write finished transactions until `lines`, then one still applied; returns the line count."""
    out: list[bytes] = []
    t = 1.7e9
    n = 0
    while len(out) < lines:
        txn = f"{n:012x}"
        changes = 1 + n % 4
        out.append(dump(Record(txn=txn, state=BEGIN, t=t, profile="autotune")))
        for s in range(changes):
            k = _knob(s)
            out.append(dump(Record(txn=txn, state=INTENT, t=t, seq=s, knob=k, tuner="readahead", original="128",
                                   target="4096")))
            out.append(dump(Record(txn=txn, state=APPLIED, t=t, seq=s, knob=k, tuner="readahead", original="128",
                                   target="4096", actual="4096")))
        out.append(dump(Record(txn=txn, state=COMMIT, t=t, n=changes)))
        for s in reversed(range(changes)):
            out.append(dump(Record(txn=txn, state=ROLLED_BACK, t=t + 1, seq=s)))
        t += 60
        n += 1
    k = _knob(0)
    txn = "ffffffffffff"
    out += [dump(Record(txn=txn, state=BEGIN, t=t, profile="autotune")),
            dump(Record(txn=txn, state=INTENT, t=t, seq=0, knob=k, tuner="readahead", original="128", target="4096")),
            dump(Record(txn=txn, state=APPLIED, t=t, seq=0, knob=k, tuner="readahead", original="128", target="4096",
                        actual="4096")),
            dump(Record(txn=txn, state=COMMIT, t=t, n=1))]
    Path(path).write_bytes(b"".join(out))
    return len(out)


def timed_load(path: str) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak MiB of Python allocations, active changes) of one full load; the peak
    is taken in a second load (tracemalloc slows the one it watches)."""
    w, c = time.perf_counter(), time.process_time()
    st = Journal(path).load()
    w, c = time.perf_counter() - w, time.process_time() - c
    del st
    tracemalloc.start()
    active = len(Journal(path).load().active())
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return w, c, peak, active


def sample_loop_cost(path: str, checks: int = 100) -> tuple[float, float, float]:
    """(worst s, mean s) one journal check costs the sampling thread, polled every 10 ms from a
    cold cache, and the seconds until the counts were ready (the load, on the helper thread)."""
    watch = JournalWatch(path)
    costs = []
    start = time.perf_counter()
    ready = None
    for _ in range(checks):
        t = time.perf_counter()
        pending = watch.poll().pending
        costs.append(time.perf_counter() - t)
        if not pending and ready is None:
            ready = time.perf_counter() - start
        time.sleep(0.01)
    if ready is None:
        watch.wait()
        ready = time.perf_counter() - start
    return max(costs), sum(costs) / len(costs), ready


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=150_000)
    ap.add_argument("--dir", default=None, help="where to build the fake node (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        laptop(d)
        host = Host(d)
        path = host.path(DEFAULT_JOURNAL)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lines = build(path, args.lines)
        size = os.path.getsize(path)
        rows = [("", "lines", "MiB", "load wall s", "load CPU s", "peak MiB", "agent check worst ms",
                 "agent check mean ms", "counts ready s")]
        w, c, peak, active = timed_load(path)
        worst, mean, ready = sample_loop_cost(path)
        rows.append(("before compaction", str(lines), f"{size / 2**20:.1f}", f"{w:.2f}", f"{c:.2f}", f"{peak:.0f}",
                     f"{worst * 1e3:.2f}", f"{mean * 1e3:.3f}", f"{ready:.2f}"))
        t = time.perf_counter()
        res = compact(host, path)
        took = time.perf_counter() - t
        w, c, peak, active_after = timed_load(path)
        assert active_after == active, (active, active_after)
        worst, mean, ready = sample_loop_cost(path)
        rows.append(("after compaction", str(res.lines_after), f"{res.size_after / 2**20:.3f}", f"{w:.3f}",
                     f"{c:.3f}", f"{peak:.1f}", f"{worst * 1e3:.2f}", f"{mean * 1e3:.3f}", f"{ready:.2f}"))
        print(f"compaction: {took:.2f} s, {res.folded} transactions folded, {res.lines_before} -> "
              f"{res.lines_after} lines; {active} change(s) still applied before and after")
        print("before this change the whole load ran on the agent's sampling thread: one check cost the "
              "'load wall s' column")
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(width[i]) for i, v in enumerate(r)).rstrip())


if __name__ == "__main__":
    main()
