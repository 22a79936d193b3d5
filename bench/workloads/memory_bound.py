"""memory_bound: device-to-device copies and streaming elementwise ops on two 2 GiB buffers.

Known bottleneck by construction: every kernel streams GiBs through HBM (far beyond the ~50 MiB L2)
with no tensor-core math, so DRAM bandwidth is high and the tensor pipes are idle, while SM
activity can still read high. Expected nodetune verdict: memory_bound. Memory: 2 x --gib (4 GiB).

    python3 bench/workloads/memory_bound.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

from _common import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("memory_bound", None)
NAME = "memory_bound"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, lambda p: p.add_argument("--gib", type=float, default=2.0,
                                                         help="size of each of the two buffers (default 2)"),
                      argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    n = int(args.gib * 2**30) // 4
    src = torch.empty(n, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    src.fill_(1.0)
    dst.fill_(2.0)
    # Per round: copy (read n, write n) + add (read 2n, write n) = 5n floats through DRAM.
    moved = 5 * n * 4

    def one_round() -> None:
        dst.copy_(src)
        torch.add(src, dst, alpha=-0.5, out=dst)

    for _ in range(3):
        one_round()
    sync(dev)
    meter = Meter(NAME, "GB/s through DRAM", scale=1e9)
    log(NAME, f"2 x {args.gib:g} GiB float32 buffers on {dev}")
    run.ready()
    while run.running():
        for _ in range(8):
            one_round()
        sync(dev)
        meter.add(8 * moved)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
