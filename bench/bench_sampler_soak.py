"""Sampler soak: does a Sampler that runs for days stay flat?

    python bench/bench_sampler_soak.py                  # 20,000 samples, 50 process starts/exits per 1,000
    python bench/bench_sampler_soak.py -n 5000 --churn 50

On the 8-GPU dgx_h100 fake tree with FakeNvml: every 1,000 samples, 50 GPU processes exit (their
/proc entries vanish) and 50 new ones start, a tenth of them on a *reused* pid with a new start
time. The window is rolled every 60 samples, as the agent does. Printed per block of samples:
processes followed, processes dropped so far, RSS (from /proc/self/status) and CPU per sample.
Goal: flat (followed bounded by what is alive; RSS and CPU per sample the same at the end).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tables import print_table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repository: tests.support


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="samples")
    ap.add_argument("--churn", type=int, default=50, help="processes starting and exiting per 1,000 samples")
    ap.add_argument("--alive", type=int, default=40, help="GPU processes alive at any time")
    args = ap.parse_args()

    from nodetune.probes.host import Host
    from nodetune.probes.node import probe_topology
    from nodetune.probes.nvml_backend import NvmlBackend
    from nodetune.probes.sampler import Sampler
    from nodetune.probes.snapshot import Window
    from tests.support.fakenvml import FakeNvml, hgx_gpus
    from tests.support.faketree import FakeProc, dgx_h100

    tmp = tempfile.mkdtemp(prefix="nodetune-soak-")
    try:
        p = dgx_h100(tmp)
        gpus = hgx_gpus(p.gpu_addresses)
        nv = FakeNvml(gpus)
        next_pid = [10_000]
        start = [1_000]
        alive: list[int] = []

        def spawn(pid: int | None = None) -> None:
            if pid is None:
                pid = next_pid[0]
                next_pid[0] += 1
            start[0] += 1
            p.node.process(FakeProc(pid=pid, comm="python", cmdline=["python", "train.py"], cpus=list(range(8)),
                                    threads={pid: ("python", "R", 10, 1)}, starttime=start[0]))
            alive.append(pid)

        def reap(pid: int) -> None:
            shutil.rmtree(Path(tmp) / "proc" / str(pid), ignore_errors=True)
            alive.remove(pid)

        def publish() -> None:
            for i, g in enumerate(gpus):
                g.processes = [(pid, 2**30) for pid in alive if pid % len(gpus) == i]

        for _ in range(args.alive):
            spawn()
        publish()
        host = Host(tmp)
        backend: Any = NvmlBackend(nv)
        status = backend.open()
        topo = probe_topology(host, backend, status)
        sampler = Sampler(host, backend, topo, worker_scan_every=5)
        sampler.prime()
        win = Window(seconds=60, interval_s=1.0)
        every = max(1, 1000 // max(1, args.churn))
        rows: list[list[Any]] = []
        block = max(1, args.n // 10)
        cpu_block = 0.0
        t_block = time.monotonic()
        for k in range(1, args.n + 1):
            if k % every == 0 and alive:
                old = alive[0]
                reap(old)
                # one in ten new processes reuses the pid that just exited, with a new start time
                spawn(old if (k // every) % 10 == 0 else None)
                publish()
            c0 = time.process_time()
            win.samples.append(sampler.sample())
            if len(win.samples) >= 60:
                sampler.roll(win)
                win = Window(seconds=60, interval_s=1.0)
            cpu_block += time.process_time() - c0
            if k % block == 0:
                rows.append([k, len(sampler.infos), sampler.dropped, rss_kb() // 1024,
                             round(cpu_block / block * 1000, 3), round((time.monotonic() - t_block) / block * 1000, 3)])
                cpu_block = 0.0
                t_block = time.monotonic()
        backend.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"Sampler soak: {args.n} samples on dgx_h100 (8 GPUs), {args.alive} GPU processes alive, "
          f"{args.churn} starting and exiting per 1,000 samples\n")
    print_table(("samples", "followed", "dropped", "RSS MiB", "CPU ms/sample", "wall ms/sample"),
                [tuple(str(c) for c in r) for r in rows])
    first, last = rows[0], rows[-1]
    flat = last[1] <= args.alive + 5 and last[3] <= first[3] * 1.1 + 2 and last[4] <= first[4] * 1.25
    print(f"\nfollowed {first[1]} -> {last[1]}, RSS {first[3]} -> {last[3]} MiB, CPU/sample {first[4]} -> "
          f"{last[4]} ms: {'flat' if flat else 'NOT flat'}")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
