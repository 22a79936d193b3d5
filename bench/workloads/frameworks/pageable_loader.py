"""pageable_loader: a DataLoader of large batches (64 x 3 x 512 x 512 fp32, 192 MiB) built in
pageable host memory (pin_memory=False, no workers: tensors already in RAM), each copied to the GPU
for a light step (a mean).

Expected once steady: transfer_bound (PCIe host-to-device traffic high, SMs near idle; pageable
copies staged through a bounce buffer).

    python3 bench/workloads/frameworks/pageable_loader.py --seconds 60
"""

from __future__ import annotations

from _fw import Meter, Run, log, parse_args, torch_device

EXPECTED = ("transfer_bound", None)
NAME = "pageable_loader"


def main() -> int:
    args = parse_args(__doc__)
    run = Run(NAME, args.seconds)
    run.ready()
    import torch

    dev = torch_device(args.device)
    data = torch.utils.data.TensorDataset(torch.randn(4, 64, 3, 512, 512))
    dl = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0, pin_memory=False)
    meter = Meter(NAME, "GiB/s", scale=2**30)
    while run.running():
        for (x,) in dl:
            y = x.to(dev)
            y.mean().item()
            meter.add(x.numel() * 4)
    log(NAME, meter.mean())
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
