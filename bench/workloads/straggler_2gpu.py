"""straggler_2gpu: data-parallel training on 2 GPUs where one rank does extra host work every step.

Known bottleneck by construction: each rank runs bf16 steps and all-reduces a gradient buffer
(NCCL) every step; rank --slow-rank (default 1) also spends --slow-s in `slow_host_work()` per
step, so its GPU idles while the other rank's GPU waits in the all-reduce (NCCL kernels spinning:
busy at low power). Expected nodetune verdict on the slow rank's GPU: straggler, naming that GPU
and pid; its peer waits (communication_bound or compute with waits). Needs 2 GPUs; NVLink
multicast off as in allreduce.py.

    python3 bench/workloads/straggler_2gpu.py --seconds 60
"""

from __future__ import annotations

import os

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
os.environ.update(NO_MULTICAST)  # forced, not setdefault: these must hold

import sys  # noqa: E402
import time  # noqa: E402

from _common import Meter, Run, log, parse_args  # noqa: E402
from allreduce import free_port  # noqa: E402

EXPECTED = ("straggler", None)
NAME = "straggler_2gpu"


def _extra(p) -> None:
    p.add_argument("--slow-rank", type=int, default=1)
    p.add_argument("--slow-s", type=float, default=0.3, help="extra host seconds per step on the slow rank")


def slow_host_work(seconds: float) -> int:
    """Per-step host work only the slow rank does (augmentation, logging, a metric)."""
    end = time.monotonic() + seconds
    state = 1
    while time.monotonic() < end:
        for _ in range(10_000):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
    return state


def worker(rank: int, world: int, args, port: int) -> None:
    os.environ.update(NO_MULTICAST)
    run = Run(f"{NAME}[{rank}]", args.seconds)
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=dev)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    grad = torch.ones(64 * 2**20 // 2, device=dev, dtype=torch.bfloat16)
    flag = torch.zeros(1, device=dev, dtype=torch.int32)
    dist.all_reduce(grad)
    if rank == 0:
        log(NAME, f"{world} ranks; rank {args.slow_rank} adds {args.slow_s}s of host work per step")
        run.ready()
    else:
        run.deadline = time.monotonic() + args.seconds
    meter = Meter(NAME, "steps/s") if rank == 0 else None
    while True:
        for _ in range(4):
            torch.matmul(a, b)
        if rank == args.slow_rank:
            torch.cuda.synchronize(dev)
            slow_host_work(args.slow_s)
        dist.all_reduce(grad, op=dist.ReduceOp.AVG)
        flag.fill_(0 if run.running() else 1)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if meter is not None:
            meter.add(1)
        if flag.item():
            break
    if meter is not None:
        run.finish(meter.mean())
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    import torch
    import torch.multiprocessing as mp

    ngpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if ngpu < 2:
        print(f"{NAME}: needs 2 GPUs, this machine has {ngpu}: nothing to do", file=sys.stderr)
        return 0
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    mp.spawn(worker, args=(2, args, free_port()), nprocs=2, join=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
