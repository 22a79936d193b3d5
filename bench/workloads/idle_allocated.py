"""idle_allocated: allocates ~20 GB on the GPU, runs one op over it, then sleeps holding it.

Known bottleneck by construction: there is no work at all after the first op; the memory stays
allocated (NVML memory.used high, utilization 0). Expected nodetune verdict: idle_allocated. The
size is capped at 80% of the free GPU memory.

    python3 bench/workloads/idle_allocated.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

from _common import Run, log, parse_args, sync, torch_device

EXPECTED = ("idle_allocated", None)
NAME = "idle_allocated"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, lambda p: p.add_argument("--gb", type=float, default=20.0,
                                                         help="GB to hold (default 20)"),
                      argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    nbytes = int(args.gb * 1e9)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        if nbytes > 0.8 * free:
            nbytes = int(0.8 * free)
            log(NAME, f"only {free / 1e9:.1f} GB free: holding {nbytes / 1e9:.1f} GB")
    buf = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    buf.fill_(1)  # the one op: touches all of it
    sync(dev)
    log(NAME, f"holding {nbytes / 1e9:.1f} GB on {dev}, idle")
    run.ready()
    while run.running():
        run.sleep(0.5)
    run.finish(f"held {buf.numel() / 1e9:.1f} GB")
    del buf
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
