"""compute_bound: bf16 matmuls 8192^3 back to back; the tensor pipes are busy (~90%+).

Known bottleneck by construction: nothing but large GEMMs on the GPU, no host work in the loop
beyond launching them (a sync every 16 to keep the queue short). Expected nodetune verdict:
compute_bound (the healthy kind). Memory: three 8192x8192 bf16 matrices, 384 MiB.

    python3 bench/workloads/compute_bound.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

from _common import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("compute_bound", None)
NAME = "compute_bound"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, lambda p: p.add_argument("--n", type=int, default=8192,
                                                         help="matrix size (default 8192)"),
                      argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    n = args.n
    dtype = torch.bfloat16
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    c = torch.empty(n, n, device=dev, dtype=dtype)
    for _ in range(8):  # cuBLAS heuristics, clocks up
        torch.matmul(a, b, out=c)
    sync(dev)
    flop = 2.0 * n ** 3
    meter = Meter(NAME, "TFLOP/s", scale=1e12)
    log(NAME, f"{n}x{n}x{n} bf16 matmuls on {dev}")
    run.ready()
    while run.running():
        for _ in range(16):
            torch.matmul(a, b, out=c)
        sync(dev)
        meter.add(16 * flop)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
