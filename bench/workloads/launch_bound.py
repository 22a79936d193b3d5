"""launch_bound: a Python loop of tiny kernels (elementwise ops on 1024-element tensors), no sync.

Known bottleneck by construction: each step launches three elementwise kernels on 1024 elements
and one 128x128 matmul; each finishes in a few microseconds on one to a few of the 132 SMs while
Python and the dispatcher need several microseconds to launch the next (~100k+ launches/s), so the
GPU is "busy" a good share of the time by NVML's measure but GPM SM activity stays near zero. Expected
nodetune verdict: launch_bound. The main thread is ~100% on one CPU core. Memory: negligible.

    python3 bench/workloads/launch_bound.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

import time

from _common import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("launch_bound", None)
NAME = "launch_bound"


def main(argv: list[str] | None = None) -> int:
    def extra(p) -> None:
        p.add_argument("--numel", type=int, default=1024, help="elements per tensor (default 1024)")
        p.add_argument("--mm", type=int, default=128,
                       help="size of the one tiny matmul per step (default 128; 0: none)")

    args = parse_args(__doc__, extra, argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    x = torch.zeros(args.numel, device=dev)
    y = torch.full((args.numel,), 0.5, device=dev)

    n = max(args.mm, 1)
    m1, m2 = torch.randn(n, n, device=dev) / n, torch.randn(n, n, device=dev) / n
    m3 = torch.empty(n, n, device=dev)
    per_step = 4 if args.mm else 3

    def burst(k: int) -> None:
        for _ in range(k):
            x.add_(y)
            x.mul_(0.5)
            torch.relu_(x)
            if args.mm:  # a few-microsecond GEMM on a handful of SMs: GPU busy-time up, SMs ~idle
                torch.mm(m1, m2, out=m3)

    burst(100)
    sync(dev)
    meter = Meter(NAME, "kernel launches/s")
    log(NAME, f"3 elementwise kernels on {args.numel}-element tensors"
              f"{f' + a {n}x{n} matmul' if args.mm else ''} per step, no sync, on {dev}")
    run.ready()
    last_sync = time.monotonic()
    while run.running():
        burst(300)  # 900-1200 launches, no sync
        meter.add(300 * per_step)
        if time.monotonic() - last_sync > 2.0:  # only to keep the rate honest, rarely
            sync(dev)
            last_sync = time.monotonic()
    sync(dev)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
