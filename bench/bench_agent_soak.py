"""Soak: the agent's loop on the 8-GPU fake tree for N samples at a small interval while GPU
processes start and exit; RSS and CPU per sample at the start and the end (they should be flat).

    .venv/bin/python bench/bench_agent_soak.py [--samples 3000] [--interval 0.11]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--interval", type=float, default=0.11)
    args = ap.parse_args()
    from tables import print_table

    from nodetune.agent.application import Agent
    from tests.support.agent_support import BUSY_GPM, write_config
    from tests.support.fakenvml import FakeNvml, hgx_gpus
    from tests.support.faketree import FakeProc, dgx_h100

    with tempfile.TemporaryDirectory() as root:
        p = dgx_h100(root)
        nv = FakeNvml(hgx_gpus(p.gpu_addresses, util_gpu=97, gpm=dict(BUSY_GPM)))
        cfg = write_config(Path(root), f'[agent]\nlisten = "127.0.0.1:0"\nsample_interval_s = {args.interval}\n'
                           'diagnose_every_s = 5\nwindow_s = 30\nworker_scan_every_s = 1\njob_retention_s = 20\n')
        a = Agent(root=root, config_path=str(cfg), nvml=nv)
        a.start(http=False)
        stop = threading.Event()

        def churn() -> None:  # a new job every 0.5 s on a rotating GPU; each lives ~2 s
            pid, live = 10000, []
            while not stop.wait(0.5):
                pid += 1
                g = pid % 8
                p.node.process(FakeProc(pid=pid, comm="python3", cmdline=["python3", "train.py"], starttime=pid,
                                        cgroup=f"/system.slice/slurmstepd.scope/job_{pid}/step_0/user/task_0",
                                        children=[pid + 100000]))
                p.node.process(FakeProc(pid=pid + 100000, comm="pt_data_worker", cmdline=["python3"], ppid=pid,
                                        starttime=pid))
                nv.gpus[g].processes = [(pid, 1 << 30)]
                live.append((pid, g))
                if len(live) > 4:
                    old, og = live.pop(0)
                    if nv.gpus[og].processes and nv.gpus[og].processes[0][0] == old:
                        nv.gpus[og].processes = []
                    for q in (old, old + 100000):
                        shutil.rmtree(Path(root) / f"proc/{q}", ignore_errors=True)

        t = threading.Thread(target=churn, daemon=True)
        t.start()
        marks: list[tuple[int, float, float]] = []
        cpu: list[float] = []

        def watch() -> None:
            last = -1
            while not stop.is_set():
                v = a.state.view
                if v.samples_total != last:
                    last = v.samples_total
                    cpu.append(v.sample_cpu_s)
                    if v.samples_total in (200, args.samples // 2, args.samples - 1):
                        marks.append((v.samples_total, rss_mb(), len(a.state.ring)))
                time.sleep(args.interval / 3)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        t0 = time.monotonic()
        a.run(max_samples=args.samples)
        wall = time.monotonic() - t0
        stop.set()
        v = a.state.view
        a.stop()
    k = 200
    head = sum(cpu[50:50 + k]) / k * 1000
    tail = sum(cpu[-k:]) / k * 1000
    print(f"soak: {args.samples} samples at {args.interval:g} s on the 8-GPU fake tree, a job started every 0.5 s "
          f"(wall {wall:.0f} s; {v.diagnoses_total} diagnoses; {a.sampler.dropped} processes dropped; "
          f"{len(v.jobs)} jobs kept)")
    print_table(("point", "samples", "RSS MB", "ring", "CPU ms/sample (mean of 200)"),
                [("start", str(marks[0][0]), f"{marks[0][1]:.1f}", str(marks[0][2]), f"{head:.2f}"),
                 ("middle", str(marks[1][0]), f"{marks[1][1]:.1f}", str(marks[1][2]), ""),
                 ("end", str(marks[-1][0]), f"{marks[-1][1]:.1f}", str(marks[-1][2]), f"{tail:.2f}")])


if __name__ == "__main__":
    main()
