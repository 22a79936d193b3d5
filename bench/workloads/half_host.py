"""half_host: a job that alternates 1 s of matmuls with 1 s of CPU work in Python.

Known bottleneck by construction: the GPU works for --gpu-s, then the main thread runs
`host_step()` (pure-Python/NumPy work standing for feature engineering, logging, a simulator)
for --host-s while the GPU waits; no data loading, no I/O. Expected nodetune verdict: host_other,
cause host_code, naming host_step, GPU idle about half the window.

    python3 bench/workloads/half_host.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

import time

from _common import Meter, Run, parse_args, sync, torch_device

EXPECTED = ("host_other", "host_code")
NAME = "half_host"


def _extra(p) -> None:
    p.add_argument("--gpu-s", type=float, default=1.0)
    p.add_argument("--host-s", type=float, default=1.0)
    p.add_argument("--steady-first", type=float, default=0.0, help="seconds of GPU-only work first")


def host_step(seconds: float) -> int:
    """CPU work in Python: a small simulation stepped until `seconds` pass."""
    end = time.monotonic() + seconds
    state, n = 1, 0
    while time.monotonic() < end:
        for _ in range(10_000):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        n += 1
    return state + n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    meter = Meter(NAME, "rounds/s")
    run.ready()
    first = time.monotonic() + args.steady_first
    while run.running():
        end = time.monotonic() + args.gpu_s
        while time.monotonic() < end and run.running():
            for _ in range(8):
                torch.matmul(a, b)
            sync(dev)
        if time.monotonic() >= first and run.running():
            host_step(args.host_s)
        meter.add(1)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
