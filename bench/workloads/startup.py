"""startup: a bf16 MLP training job from launch: imports, CUDA context, cuBLAS warm-up, then steps.

Known regime by construction: for the first seconds the process imports torch, builds a model and
warms cuBLAS up (the GPU idle or near it), then trains steadily on random batches (tensor pipes
busy). READY is printed at launch, not in steady state, so a runner diagnosing "2 s after READY"
sees start-up. Expected nodetune verdicts: `startup` when the window holds only start-up,
compute_bound (healthy) once steady, and compute_bound with "first N s: start-up" across the change.

    python3 bench/workloads/startup.py --seconds 60 --device cuda:0 [--extra-init-s 4]
"""

from __future__ import annotations

import time

from _common import Meter, Run, log, parse_args, sync

EXPECTED = ("compute_bound", None)
EXPECTED_AT_LAUNCH = ("startup", None)
NAME = "startup"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, lambda p: p.add_argument(
        "--extra-init-s", type=float, default=4.0,
        help="extra start-up work on the CPU (building weights, default 4 s), as a big model's load"), argv)
    run = Run(NAME, args.seconds + 30)
    run.ready()  # READY at launch: the start-up is what is measured
    t0 = time.monotonic()
    import torch  # the import itself is part of start-up
    from _common import torch_device
    dev = torch_device(args.device)
    # "Loading weights": build them on the CPU (as from a checkpoint), then move them.
    end = time.monotonic() + args.extra_init_s
    layers = []
    while time.monotonic() < end or len(layers) < 4:
        layers.append(torch.randn(4096, 4096) * 0.01)
        if len(layers) > 8:
            layers.pop(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(4)]).to(dev, torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(8192, 4096, device=dev, dtype=torch.bfloat16)
    log(NAME, f"start-up took {time.monotonic() - t0:.1f}s")
    meter = Meter(NAME, "steps/s")
    while run.running():
        for _ in range(8):
            loss = model(x).float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(dev)
        meter.add(8)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
