"""tv_imagefolder: torchvision ImageFolder of JPEGs decoded and augmented by PIL in two DataLoader
workers, feeding ResNet-18 AMP training steps that need far less time than the decoding.

Expected once steady: data_starved (cpu_input): the workers are saturated, the main thread waits in
the DataLoader's __next__. Start-up: imports, the dataset index, the model, the workers' spawn.

    python3 bench/workloads/frameworks/tv_imagefolder.py --data /tmp/nt-imgs --seconds 60
"""

from __future__ import annotations

from _fw import Meter, Run, log, parse_args, torch_device

EXPECTED = ("data_starved", "cpu_input")
NAME = "tv_imagefolder"


def make_images(root: str, n: int, size: int) -> None:
    """n JPEGs in 10 class folders (random noise compresses badly: decoding costs what photos do)."""
    import os

    import numpy as np
    from PIL import Image

    if os.path.exists(os.path.join(root, ".done")):
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        d = os.path.join(root, f"class{i % 10}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(os.path.join(d, f"{i}.jpg"),
                                                                                  quality=90)
    open(os.path.join(root, ".done"), "w").close()


def main() -> int:
    args = parse_args(__doc__, lambda p: (p.add_argument("--data", default="/tmp/nt-imgs"),
                                          p.add_argument("--workers", type=int, default=2),
                                          p.add_argument("--make", type=int, default=0,
                                                         help="write this many images first and exit")))
    if args.make:
        make_images(args.data, args.make, 500)
        return 0
    run = Run(NAME, args.seconds)
    run.ready()
    import torch
    import torchvision
    from torchvision import transforms

    dev = torch_device(args.device)
    tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                             transforms.ColorJitter(0.4, 0.4, 0.4), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(args.data, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=args.workers, drop_last=True,
                                     persistent_workers=True, pin_memory=True)
    model = torchvision.models.resnet18(num_classes=10).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    meter = Meter(NAME, "img/s")
    while run.running():
        for x, y in dl:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            meter.add(x.shape[0])
            if not run.running():
                break
    log(NAME, meter.mean())
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
