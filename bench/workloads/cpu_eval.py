"""cpu_eval: training steps, then an evaluation pass whose metrics are computed on the CPU.

Known bottleneck by construction: --train-s seconds of bf16 steps, then an `evaluate()` that moves
predictions to the CPU and computes a ranking metric in NumPy for --eval-s seconds while the GPU
waits. Expected nodetune verdict: host_other, cause evaluation, naming the evaluate frame.

    python3 bench/workloads/cpu_eval.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

import time

from _common import Meter, Run, parse_args, torch_device, train_for

EXPECTED = ("host_other", "evaluation")
NAME = "cpu_eval"


def _extra(p) -> None:
    p.add_argument("--train-s", type=float, default=1.0, help="seconds of steps per round (default 1)")
    p.add_argument("--eval-s", type=float, default=1.5, help="seconds of CPU evaluation per round (default 1.5)")
    p.add_argument("--steady-first", type=float, default=0.0, help="seconds of training before the first eval")


def evaluate(preds, labels, seconds: float) -> float:
    """A ranking metric in NumPy, repeated until `seconds` pass (as a big validation set would)."""
    import numpy as np

    p = preds.float().cpu().numpy().ravel()
    y = labels.cpu().numpy().ravel()
    end = time.monotonic() + seconds
    auc = 0.0
    while time.monotonic() < end:
        order = np.argsort(p)
        ranks = np.empty_like(order)
        ranks[order] = np.arange(len(p))
        pos = y > 0.5
        auc = float((ranks[pos].sum() - pos.sum() * (pos.sum() - 1) / 2) / max(pos.sum() * (~pos).sum(), 1))
    return auc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1)).to(
        dev, torch.bfloat16)
    x = torch.randn(16384, 4096, device=dev, dtype=torch.bfloat16)
    labels = (torch.rand(16384, 1, device=dev) > 0.5).float()
    meter = Meter(NAME, "steps/s")
    run.ready()
    first = time.monotonic() + args.steady_first
    while run.running():
        train_for(args.train_s, run, meter, dev, lambda: model(x).float().mean().backward())
        if time.monotonic() >= first and run.running():
            with torch.no_grad():
                evaluate(model(x[:4096]), labels[:4096], args.eval_s)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
