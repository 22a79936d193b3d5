"""pageable_h2d: repeated host-to-device copies from a 256 MiB pageable (not pinned) CPU tensor.

Known bottleneck by construction: the loop does nothing but `dev.copy_(host)` from pageable memory,
which the driver stages through its own pinned bounce buffers (synchronous for the host, ~8.5 GB/s
measured on an H200 node). PCIe rx is high, SM activity ~0, NVML util low (~18%). Expected nodetune
verdict: transfer_bound. Memory: 256 MiB on the GPU and on the host.

    python3 bench/workloads/pageable_h2d.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

from _common import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("transfer_bound", None)
NAME = "pageable_h2d"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, lambda p: p.add_argument("--mib", type=int, default=256,
                                                         help="size of the copy (default 256 MiB)"),
                      argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    nbytes = args.mib * 2**20
    host = torch.empty(nbytes, dtype=torch.uint8)  # plain malloc'd pages: pageable
    host.fill_(7)  # fault every page in now, not inside the measured copies
    assert not host.is_pinned()
    target = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    for _ in range(3):
        target.copy_(host)
    sync(dev)
    meter = Meter(NAME, "GB/s host->device (pageable)", scale=1e9)
    log(NAME, f"{args.mib} MiB pageable copies to {dev}")
    run.ready()
    while run.running():
        for _ in range(4):
            target.copy_(host)
        sync(dev)
        meter.add(4 * nbytes)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
