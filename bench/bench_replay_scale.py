"""Replay cost against process count: load a snapshot and diagnose it, for 1k, 2k and 10k processes.

    python bench/bench_replay_scale.py [--counts 1000,2000,10000] [--repeat 5]

Each snapshot is the real H200 cpu_starved window (tests/data) with N extra processes followed in
every sample (workers of the GPU job: the shape a 10k-worker job would have), written to a temp file
and replayed the way `nodetune diagnose --replay` does: load_snapshot, then diagnose. Time is wall
and CPU (load s includes the imports, shown apart too); memory is the peak RSS of a fresh process per
count; with --repeat N each count runs in N fresh processes and the table shows medians, beside the
1-minute load average (the VM is shared). Goal: 10k under 2 s (matched pairwise, processes once
took 362 s and 444 MB).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tables import print_table

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "tests/data/h200/cpu_starved.json.gz"


def build(n: int, path: str) -> None:
    raw = json.load(gzip.open(SRC, "rt"))
    win = raw["window"]
    gpu_pid = win["processes"][0]["pid"]
    base_info = win["processes"][0]
    infos = []
    for k in range(n):
        pid = 100_000 + k
        info = copy.deepcopy(base_info)
        info.update(pid=pid, role="worker", parent_gpu_pid=gpu_pid, numa_pages_kb={})
        infos.append(info)
    win["processes"] += infos
    for s in win["samples"]:
        proto = next((p for p in s["processes"] if p["pid"] == gpu_pid), s["processes"][0])
        extra = []
        for k in range(n):
            p = copy.deepcopy(proto)
            p["pid"] = 100_000 + k
            p["threads"] = p["threads"][:2]
            extra.append(p)
        s["processes"] += extra
    with gzip.open(path, "wt") as fh:
        json.dump(raw, fh)


def measure(path: str) -> dict[str, float]:
    code = f"""
import json, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.probes.snapshot import load_snapshot
t_imp = time.perf_counter()
snap = load_snapshot({path!r})
t1 = time.perf_counter()
rep = diagnose(snap.topology, snap.window, Thresholds())
t2 = time.perf_counter()
print(json.dumps({{"load_s": t1 - t0, "imports_s": t_imp - t0, "diagnose_s": t2 - t1, "cpu_s": time.process_time() - c0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "verdict": rep.gpus[0].verdict}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,2000,10000")
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per count; the table shows medians")
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.counts.split(",")]:
        with tempfile.NamedTemporaryFile(suffix=".json.gz") as f:
            build(n, f.name)
            size = Path(f.name).stat().st_size
            runs = [measure(f.name) | {"load1": os.getloadavg()[0]} for _ in range(max(1, args.repeat))]
        m = {k: statistics.median(r[k] for r in runs) for k in ("load_s", "imports_s", "diagnose_s", "cpu_s", "rss_mb",
                                                                 "load1")}
        total = statistics.median(r["load_s"] + r["diagnose_s"] for r in runs)
        rows.append((str(n), f"{size / 2**20:.1f}", f"{m['load_s']:.2f}", f"{m['imports_s']:.2f}",
                     f"{m['diagnose_s']:.2f}", f"{total:.2f}", f"{m['cpu_s']:.2f}", f"{m['rss_mb']:.0f}",
                     f"{m['load1']:.1f}", runs[0]["verdict"]))
    print_table(("processes", "snapshot MiB (gz)", "load s", "of which imports s", "diagnose s", "total s", "CPU s",
                 "peak RSS MB", "load avg (1 min)", "verdict"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
