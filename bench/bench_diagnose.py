"""CPU cost of one diagnosis over the agent's default window (60 samples, one a second).

The agent diagnoses every 15 s (`diagnose_every_s`) over the last 60 s (`window_s`); its CPU budget
is 0.5% of a core, so one diagnosis may cost at most ~75 ms of CPU, and it should cost far less
(the sampler spends most of the budget). Windows are built with tests/support/windows.py the way the
sampler records them: a PyTorch-like trainer (24 threads) with 8 DataLoader workers per GPU,
py-spy stacks, start-up then steady work.

    .venv/bin/python bench/bench_diagnose.py [--repeat 30] [--before DIR]

`--before DIR` runs the same cases again with DIR first on PYTHONPATH (a tree holding
nodetune/diagnosis of an older commit, its other packages linked to this checkout) and prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repository: tests.support

LOADER = ["<module> (train.py)", "_SingleProcessDataLoaderIter.__next__ (torch/utils/data/dataloader.py)",
          "_MapDatasetFetcher.fetch (torch/utils/data/_utils/fetch.py)", "Decode.__getitem__ (train.py)"]
STEP = ["<module> (train.py)", "main (train.py)", "Module._call_impl (torch/nn/modules/module.py)"]
SYNC = ["<module> (train.py)", "main (train.py)", "synchronize (torch/cuda/__init__.py)"]
CASES = {"1 GPU, 60 samples": 1, "8 GPUs, 60 samples": 8}


def build(gpus: int, seconds: float = 60.0):  # type: ignore[no-untyped-def]
    from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

    b = WindowBuilder(gpus=gpus, seconds=seconds, interval=1.0, cpus=16 * gpus, numa_nodes=2 if gpus > 1 else 1)
    pattern = [0.0] * 8 + [100.0, 100.0, 40.0, 100.0, 100.0, 0.0]
    for i in range(gpus):
        b.gpu(i, busy_pattern=pattern, sm=70, tensor=50, dram=20, mem_used_gib=40)
        pid = 1000 + 100 * i
        threads = [ThreadLoad(pid, "python", 95.0)] + [ThreadLoad(pid + k, f"pt_{k}", 2.0) for k in range(1, 24)]
        b.proc(ProcLoad(pid=pid, gpus=[i], threads=threads, age_s=-3.0, read_mibps=[0, 0, 30, 0], pgid=1000))
        for w in range(8):
            wp = pid + 50 + w
            b.proc(ProcLoad(pid=wp, gpus=[], role="worker", parent=pid,
                            threads=[ThreadLoad(wp, "pt_data_worker", 60.0), ThreadLoad(wp + 20, "w", 1.0)],
                            age_s=-2.0))
        b.stack(pid, [(LOADER, 120), (STEP, 50), (SYNC, 30)])
    return b.build()


def measure(repeat: int) -> dict[str, float]:
    from nodetune.config.diagnosis import Thresholds
    from nodetune.diagnosis.engine import diagnose

    out = {}
    for name, gpus in CASES.items():
        topo, win = build(gpus)
        diagnose(topo, win, Thresholds())  # warm caches (rule discovery, regex compilation)
        times = []
        for _ in range(repeat):
            c0 = time.process_time()
            diagnose(topo, win, Thresholds())
            times.append(time.process_time() - c0)
        out[name] = round(statistics.median(times) * 1000, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--before", help="a tree whose nodetune/diagnosis is the older code to compare against")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one column, for --before
    args = ap.parse_args()
    now = measure(args.repeat)
    if args.json:
        print(json.dumps(now))
        return 0
    before: dict[str, float] = {}
    if args.before:
        env = dict(os.environ, PYTHONPATH=args.before + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = subprocess.run([sys.executable, __file__, "--json", "--repeat", str(args.repeat)], env=env,
                             capture_output=True, text=True, check=True)
        before = json.loads(res.stdout)
    print("| window | before (ms CPU) | after (ms CPU) |" if before else "| window | ms CPU per diagnosis |")
    print("|---|---|---|" if before else "|---|---|")
    for name, ms in now.items():
        print(f"| {name} | {before[name]} | {ms} |" if before else f"| {name} | {ms} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
