"""CPU of the agent's two recurring jobs on the 8-GPU fake tree, measured in-process (thread CPU time,
not clock ticks): one sample (8 busy GPUs, a training process per GPU with 8 loader workers, the
agent's worker cadence) and one diagnosis of the 60-sample window. Their sum per second at the
agent's defaults (a sample a second, a diagnosis every 15 s) is the agent's floor, scrapes aside.

Paced as the agent runs them (`--pace`, 1 s): a job that runs once a second finds the interpreter's
code and data out of the CPU caches, and costs about three times what the same job costs back to back
on this VM (4.2 against 1.4 ms a sample). `--pace 0` gives the warm figure.

    .venv/bin/python bench/bench_agent_work.py [--samples 60] [--diagnoses 8] [--rounds 1] [--pace 1.0]

Compare two checkouts by running it under each (PYTHONPATH naming the other's `nodetune` folder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import print_table  # noqa: E402


def build(root: str, workers: int = 8, idle_threads: int = 0) -> object:
    """The agent on the 8-GPU tree with one busy job a GPU and `workers` loader workers each."""
    from nodetune.agent.application import Agent
    from tests.support.agent_support import dgx_with_jobs, write_config

    cfg = write_config(Path(root), '[agent]\nlisten = "127.0.0.1:0"\n')
    return Agent(root=root, config_path=str(cfg), nvml=dgx_with_jobs(root, 8, workers, idle_threads))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--diagnoses", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pace", type=float, default=1.0, help="seconds between two runs of a job (0: back to back)")
    ap.add_argument("--idle-threads", type=int, default=25,
                    help="sleeping threads per training process (34 threads in all, as the H200's trainers)")
    args = ap.parse_args()
    from nodetune.diagnosis.engine import diagnose

    with tempfile.TemporaryDirectory() as root:
        a = build(root, idle_threads=args.idle_threads)
        a.sampler.prime()  # type: ignore[attr-defined]
        time.sleep(0.12)
        for i in range(61):  # a full window in the ring
            a.controller._sample_once(i % 15 == 0, 0.0)  # type: ignore[attr-defined]
        job = a.controller.window_work()  # type: ignore[attr-defined]
        per_sample, per_diag = [], []
        for _ in range(args.rounds):
            cpu = 0.0
            for i in range(args.samples):
                c0 = time.thread_time()
                a.controller._sample_once(i % 60 == 0, 0.0)  # type: ignore[attr-defined]
                cpu += time.thread_time() - c0
                time.sleep(args.pace)
            per_sample.append(cpu / args.samples * 1e3)
            cpu = 0.0
            for _ in range(args.diagnoses):
                c0 = time.thread_time()
                diagnose(job.topo, job.window, job.th, "agent")
                cpu += time.thread_time() - c0
                time.sleep(args.pace)
            per_diag.append(cpu / args.diagnoses * 1e3)
    s, d = statistics.median(per_sample), statistics.median(per_diag)
    print(f"8-GPU fake tree, 8 training processes ({9 + args.idle_threads} threads, 9 working) x 8 loader workers; "
          f"{args.pace} s between runs; "
          f"median of {args.rounds} rounds")
    print_table(("sample ms", "diagnosis ms", "% of a core at 1 s samples + a diagnosis every 15 s"),
                [(f"{s:.2f}", f"{d:.1f}", f"{(s + d / 15) / 10:.3f}")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
