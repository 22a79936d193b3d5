"""Job history cost: CPU per diagnosis-interval write, and database size per 1,000 job-hours.

    python bench/bench_history.py              # 8 jobs (one a GPU), 2,500 windows of 15 s = 83 job-hours

Each window records the real 2x H200 report (tests/data) with its jobs renamed to one job per GPU
slot, as the agent does after each diagnosis (one transaction per window, WAL, synchronous=NORMAL).
Size per 1,000 job-hours is the measured bytes per job-interval times the intervals 1,000 job-hours
make at the default cadence (diagnose_every_s = 15: 240 per job-hour).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tables import print_table

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2500)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--every", type=float, default=15.0, help="seconds between diagnoses")
    args = ap.parse_args()
    from nodetune.agent.history import History
    from nodetune.config.diagnosis import Thresholds
    from nodetune.diagnosis.engine import diagnose
    from nodetune.probes.snapshot import load_snapshot

    snap = load_snapshot(str(REPO / "tests/data/h200x2/compute_bound+io_starved.json.gz"))
    assert snap.window is not None
    rep = diagnose(snap.topology, snap.window, Thresholds())
    base = rep.jobs[0]
    import copy

    rep.jobs = []
    for k in range(args.jobs):
        j = copy.deepcopy(base)
        j.id, j.gpus = f"slurm:{1000 + k}", [k % max(1, len(rep.gpus))]
        rep.jobs.append(j)
    with tempfile.TemporaryDirectory() as d:
        h = History(os.path.join(d, "h.sqlite")).open()
        t = 1.7e9
        cpu: list[float] = []
        wall: list[float] = []
        for _ in range(args.windows):
            c0, w0 = time.process_time(), time.perf_counter()
            h.record(rep, t, t + args.every)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            t += args.every
        h._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = h.size_bytes()
        c0 = time.process_time()
        jobs = h.jobs()
        list_ms = (time.process_time() - c0) * 1000
        h.close()
    intervals = args.windows * args.jobs
    job_hours = intervals * args.every / 3600
    per_1000 = size / job_hours * 1000
    cpu.sort()
    wall.sort()
    print_table(("windows", "jobs", "job-hours", "CPU ms/window (mean)", "wall ms/window p50", "wall ms p99",
                 "DB MiB", "MiB per 1,000 job-hours", "history list ms"),
                [(str(args.windows), str(args.jobs), f"{job_hours:.0f}", f"{sum(cpu) / len(cpu) * 1000:.3f}",
                  f"{wall[len(wall) // 2] * 1000:.3f}", f"{wall[int(len(wall) * 0.99)] * 1000:.3f}",
                  f"{size / 2**20:.2f}", f"{per_1000 / 2**20:.1f}", f"{list_ms:.1f} ({len(jobs)} jobs)")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
