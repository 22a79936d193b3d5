"""allreduce: NCCL all-reduce of large buffers across every GPU of the host, little compute.

Known bottleneck by construction: one process per GPU (mp.spawn with --nproc N, default all GPUs;
or under torchrun, which sets RANK/WORLD_SIZE), each all-reducing a 256 MiB bf16 buffer (AVG) in a
loop with no other work, so NVLink (or PCIe) traffic is high, tensor pipes idle and SM activity
low: the NCCL-wait signature. Expected nodetune verdict: communication_bound on every GPU.
Needs >= 2 GPUs: with fewer it says so and exits 0.

NVLink multicast (NVLS) must stay off on the lent machines: NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1 are set below before anything is
imported or initialised, and the spawned ranks inherit them.

    python3 bench/workloads/allreduce.py --seconds 60 --nproc 2
    torchrun --nproc-per-node 2 bench/workloads/allreduce.py --seconds 60
"""

from __future__ import annotations

import os

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
os.environ.update(NO_MULTICAST)  # forced, not setdefault: these must hold

import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from _common import Meter, Run, log, parse_args  # noqa: E402

EXPECTED = ("communication_bound", None)
NAME = "allreduce"


def _extra(p) -> None:
    p.add_argument("--nproc", type=int, default=0, help="GPUs/processes (default: all GPUs)")
    p.add_argument("--mib", type=int, default=256, help="all-reduce buffer size (default 256 MiB)")
    p.add_argument("--backend", default="nccl", help="nccl (default), or gloo to test on CPU")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, args, port: int | None) -> None:
    os.environ.update(NO_MULTICAST)
    run = Run(f"{NAME}[{rank}]", args.seconds)
    import torch
    import torch.distributed as dist

    use_cuda = args.backend == "nccl"
    if use_cuda:
        torch.cuda.set_device(rank)
        dev = torch.device("cuda", rank)
    else:
        dev = torch.device("cpu")
    if port is None:  # torchrun: MASTER_ADDR/PORT, RANK, WORLD_SIZE in the environment
        dist.init_process_group(args.backend, device_id=dev if use_cuda else None)
    else:
        dist.init_process_group(args.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, device_id=dev if use_cuda else None)
    n = args.mib * 2**20 // 2
    dtype = torch.bfloat16 if use_cuda else torch.float32
    buf = torch.ones(n, device=dev, dtype=dtype)
    flag = torch.zeros(1, device=dev, dtype=torch.int32)
    avg = dist.ReduceOp.AVG if use_cuda else dist.ReduceOp.SUM

    def should_stop() -> bool:
        # Every rank must leave on the same iteration or the others hang in the collective.
        flag.fill_(0 if run.running() else 1)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    for _ in range(5):
        dist.all_reduce(buf, op=avg)
    should_stop()
    if rank == 0:
        log(NAME, f"{world} ranks, {args.mib} MiB all-reduce, backend {args.backend}")
    if rank == 0:
        run.ready()
    else:
        run.deadline = time.monotonic() + args.seconds
    # Bus bandwidth of a ring all-reduce: 2 (world-1)/world of the buffer per call.
    meter = Meter(NAME, "GB/s bus bandwidth", scale=1e9) if rank == 0 else None
    while True:
        for _ in range(10):
            dist.all_reduce(buf, op=avg)
            if not use_cuda:
                buf.mul_(1.0 / world)
        if meter is not None:
            meter.add(10 * 2 * (world - 1) / world * n * buf.element_size())
        if should_stop():
            break
    if meter is not None:
        run.finish(meter.mean())
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # under torchrun
        worker(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])), int(os.environ["WORLD_SIZE"]),
               args, None)
        return 0
    import torch
    import torch.multiprocessing as mp

    if args.backend == "nccl":
        ngpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        nproc = args.nproc or ngpu
        if ngpu < 2 or nproc < 2:
            print(f"allreduce: needs >= 2 GPUs, this machine has {ngpu}: nothing to do",
                  file=sys.stderr)
            return 0
        nproc = min(nproc, ngpu)
    else:
        nproc = args.nproc or 2
    # The parent only waits: a SIGTERM to the process group reaches the ranks, which stop together.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    mp.spawn(worker, args=(nproc, args, free_port()), nprocs=nproc, join=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
