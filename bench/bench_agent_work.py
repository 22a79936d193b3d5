"""CPU of the agent's two recurring jobs on the 8-GPU fake tree, measured in-process (thread CPU time,
not clock ticks): one sample (8 busy GPUs, a training process per GPU with 8 loader workers, the
agent's worker cadence) and one diagnosis of the 60-sample window. Their sum per second at the
agent's defaults (a sample a second, a diagnosis every 15 s) is the agent's floor, scrapes aside.

    .venv/bin/python bench/bench_agent_work.py [--samples 600] [--diagnoses 40] [--rounds 3]

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


def build(root: str, workers: int = 8) -> object:
    """The agent on the 8-GPU tree with one busy job a GPU and `workers` loader workers each."""
    from nodetune.agent.application import Agent
    from tests.support.agent_support import dgx_with_jobs, write_config

    cfg = write_config(Path(root), '[agent]\nlisten = "127.0.0.1:0"\n')
    return Agent(root=root, config_path=str(cfg), nvml=dgx_with_jobs(root, 8, workers))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--diagnoses", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from nodetune.diagnosis.engine import diagnose

    with tempfile.TemporaryDirectory() as root:
        a = build(root)
        a.sampler.prime()  # type: ignore[attr-defined]
        time.sleep(0.12)
        for i in range(61):  # a full window in the ring
            a.controller._sample_once(i % 15 == 0, 0.0)  # type: ignore[attr-defined]
        job = a.controller.window_work()  # type: ignore[attr-defined]
        per_sample, per_diag = [], []
        for _ in range(args.rounds):
            c0 = time.thread_time()
            for i in range(args.samples):
                a.controller._sample_once(i % 60 == 0, 0.0)  # type: ignore[attr-defined]
            per_sample.append((time.thread_time() - c0) / args.samples * 1e3)
            c0 = time.thread_time()
            for _ in range(args.diagnoses):
                diagnose(job.topo, job.window, job.th, "agent")
            per_diag.append((time.thread_time() - c0) / args.diagnoses * 1e3)
    s, d = statistics.median(per_sample), statistics.median(per_diag)
    print(f"8-GPU fake tree, 8 training processes x 8 loader workers; median of {args.rounds} rounds")
    print_table(("sample ms", "diagnosis ms", "% of a core at 1 s samples + a diagnosis every 15 s"),
                [(f"{s:.2f}", f"{d:.1f}", f"{(s + d / 15) / 10:.3f}")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
