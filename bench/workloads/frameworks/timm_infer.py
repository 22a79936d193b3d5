"""timm_infer: timm create_model (ResNet-50, no weights) eager inference at batch 1 under no_grad,
the result read back each step (.argmax().item()), as a simple serving loop does.

Expected once steady: launch_bound (NVML utilization moderate, SM activity near zero: each small
kernel finishes before Python launches the next).

    python3 bench/workloads/frameworks/timm_infer.py --seconds 60
"""

from __future__ import annotations

from _fw import Meter, Run, log, parse_args, torch_device

EXPECTED = ("launch_bound", None)
NAME = "timm_infer"


def main() -> int:
    args = parse_args(__doc__, lambda p: p.add_argument("--model", default="resnet50"))
    run = Run(NAME, args.seconds)
    run.ready()
    import timm
    import torch

    dev = torch_device(args.device)
    model = timm.create_model(args.model, pretrained=False).to(dev).eval()
    x = torch.randn(1, 3, 224, 224, device=dev)
    meter = Meter(NAME, "img/s")
    with torch.no_grad():
        while run.running():
            model(x).argmax().item()
            meter.add(1)
    log(NAME, meter.mean())
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
