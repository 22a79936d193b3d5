"""CPU a followed loader worker costs the sampler, per second of sampling, on this node's live /proc.

    python bench/bench_followed_worker.py [--workers 64] [--samples 300]

This process stands in for a training process (a stub GPU backend says it holds a GPU context) and
starts `--workers` children, half of them with three threads (a DataLoader worker with a pin or
OpenMP thread), as its loader workers. The sampler's thread CPU per sample is measured with and
without the workers, at one sample a second as the agent takes them:
per worker per second = (CPU with workers - CPU without) / workers. Goal: <= 0.02 ms.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tables import print_table

REPO = Path(__file__).resolve().parent.parent
GOAL_MS = 0.02
CHILD = ("import threading, time\n"
         "for _ in range({n}): threading.Thread(target=time.sleep, args=(1e6,), daemon=True).start()\n"
         "time.sleep(1e6)\n")


class StubBackend:
    """A GPU backend whose one GPU holds this process's context."""

    def prime(self, i: int) -> None:
        return None

    def sample(self, i: int, detail: bool) -> Any:
        from nodetune.probes.gpu import GpuProcess, GpuSample

        return GpuSample(index=i, t=time.monotonic(), util_gpu_pct=90.0, processes=[GpuProcess(os.getpid())])


def cost_per_sample(workers: int, samples: int, every: int) -> float:
    """Mean thread CPU (s) of one sample with `workers` children followed."""
    from nodetune.probes.host import Host
    from nodetune.probes.sampler import Sampler

    kids = [subprocess.Popen([sys.executable, "-c", CHILD.format(n=2 if k % 2 else 0)]) for k in range(workers)]
    try:
        time.sleep(1.0 + workers * 0.02)  # the children start their threads
        topo = SimpleNamespace(gpus=[SimpleNamespace(index=0)], backend=SimpleNamespace(available=True),
                               cpu=SimpleNamespace(numa_nodes=[]),
                               node=SimpleNamespace(page_kb=4, clk_tck=os.sysconf("SC_CLK_TCK")))
        sampler = Sampler(Host("/"), StubBackend(), topo, worker_scan_every=every)  # type: ignore[arg-type]
        for _ in range(every):
            sampler.sample()  # finds the workers
        followed = sum(1 for i in sampler.infos.values() if i.role == "worker")
        if followed != workers:
            raise SystemExit(f"bench_followed_worker: followed {followed} workers, started {workers}")
        n = max(every, samples - samples % every)
        c0 = time.thread_time()
        for _ in range(n):
            sampler.sample()
        return (time.thread_time() - c0) / n
    finally:
        for k in kids:
            k.kill()
        for k in kids:
            k.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--every", type=int, default=5, help="worker cadence in samples (the agent's default: 5)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    base = cost_per_sample(0, args.samples, args.every)
    full = cost_per_sample(args.workers, args.samples, args.every)
    per = (full - base) / max(1, args.workers) * 1e3
    print(f"sampler thread CPU at 1 sample/s, live /proc, {args.workers} workers (half with 3 threads), "
          f"workers read every {args.every} samples")
    print_table(("no workers ms/s", f"{args.workers} workers ms/s", "per worker ms/s", f"<= {GOAL_MS} ms"),
                [(f"{base * 1e3:.3f}", f"{full * 1e3:.3f}", f"{per:.4f}", "yes" if per <= GOAL_MS else "NO")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
