"""checkpoint: a training loop that writes a ~3 GiB checkpoint (torch.save + fsync) every 1.5 s of compute.

Known bottleneck by construction: bf16 steps keep the tensor pipes busy for --compute-s seconds,
then the loop stops to save the model and optimizer state to --dir with torch.save and fsync it;
the GPU idles for the whole save. No DataLoader, no input at all: a data_starved verdict here is a
false alarm. Expected nodetune verdict: checkpoint (cause checkpoint), with the write bytes and the
torch.save frame as evidence. --steady-first S trains S seconds before the first save (a phase change).

    python3 bench/workloads/checkpoint.py --seconds 60 --device cuda:0 --dir /tmp/ckpt
"""

from __future__ import annotations

import os
import time

from _common import Meter, Run, log, parse_args, torch_device, train_for

EXPECTED = ("checkpoint", "checkpoint")
NAME = "checkpoint"


def _extra(p) -> None:
    p.add_argument("--dir", default="/tmp/nodetune-ckpt", help="where to write (default /tmp/nodetune-ckpt)")
    p.add_argument("--gib", type=float, default=3.0, help="checkpoint size (default 3 GiB)")
    p.add_argument("--compute-s", type=float, default=1.5, help="seconds of steps between saves (default 1.5)")
    p.add_argument("--steady-first", type=float, default=0.0, help="seconds of steps before the first save")


def save_checkpoint(state: dict, path: str) -> None:
    import torch

    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    os.makedirs(args.dir, exist_ok=True)
    n = 8192
    model = torch.nn.Sequential(torch.nn.Linear(n, n), torch.nn.Linear(n, n)).to(dev, torch.bfloat16)
    x = torch.randn(8192, n, device=dev, dtype=torch.bfloat16)
    # Checkpoint payload: the model plus a CPU-side state of --gib (optimizer moments, as in fp32 Adam).
    extra = torch.randn(int(args.gib * 2**30 / 4), dtype=torch.float32)
    path = os.path.join(args.dir, "ckpt.pt")
    meter = Meter(NAME, "steps/s")
    run.ready()
    first = time.monotonic() + args.steady_first
    saves = 0
    while run.running():
        train_for(args.compute_s, run, meter, dev, lambda: model(x).float().mean().backward())
        if time.monotonic() >= first and run.running():
            t = time.monotonic()
            save_checkpoint({"model": model.state_dict(), "optim": extra, "step": saves}, path)
            saves += 1
            log(NAME, f"checkpoint {saves} took {time.monotonic() - t:.1f}s")
    if os.path.exists(path):
        os.unlink(path)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
