"""cpu_starved: a DataLoader with num_workers=0 whose __getitem__ decodes images in numpy on the CPU.

Known bottleneck by construction: each sample is a synthetic "JPEG-like" decode of a 224x224x3
image (dequantize 8x8 DCT blocks, inverse DCT by batched matmul, YCbCr->RGB, clip, random crop and
flip, normalize), calibrated at start-up to take --decode-ms (default 4 ms) on this CPU. With
num_workers=0 it all runs in the training process's main thread (one core at ~100%, BLAS/OpenMP
pinned to one thread), a batch of 32 takes ~130 ms to produce and ~1 ms to train on, so the GPU
idles >90% of the time. Expected nodetune verdict: data_starved, cause cpu_input (py-spy sees the
main thread inside the DataLoader's _next_data -> __getitem__). Memory: tens of MB.

    python3 bench/workloads/cpu_starved.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

import os

# One thread for every math library: the decode is what one Python loader thread can do.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import signal  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import Meter, Run, log, parse_args, sync, torch_device  # noqa: E402

EXPECTED = ("data_starved", "cpu_input")
NAME = "cpu_starved"


def _dct_matrix(n: int = 8) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


_D = _dct_matrix()
_Q = (1.0 + np.add.outer(np.arange(8), np.arange(8))).astype(np.float32)  # a quantization table
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


def decode(idx: int, reps: int = 1, size: int = 224) -> np.ndarray:
    """A synthetic JPEG-like decode: returns a normalized float32 array (3, size, size)."""
    rng = np.random.default_rng(idx)
    nb = size // 8
    img = None
    for _ in range(reps):
        coef = rng.integers(-32, 32, size=(3, nb, nb, 8, 8), dtype=np.int16).astype(np.float32)
        coef *= _Q  # dequantize
        blocks = _D.T @ coef @ _D  # inverse DCT of every 8x8 block
        planes = blocks.transpose(0, 1, 3, 2, 4).reshape(3, size, size)
        y, cb, cr = planes[0] + 128.0, planes[1], planes[2]
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb])
        img = np.clip(rgb, 0.0, 255.0).astype(np.uint8)
    assert img is not None
    # augment: random crop with reflect padding, random flip; then normalize
    pad = np.pad(img, ((0, 0), (8, 8), (8, 8)), mode="reflect")
    oy, ox = rng.integers(0, 17, size=2)
    crop = pad[:, oy:oy + size, ox:ox + size]
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    return ((crop.astype(np.float32) / 255.0 - _MEAN) / _STD).astype(np.float32)


def calibrate(target_ms: float) -> tuple[int, float]:
    """How many decode repetitions make one sample take ~target_ms here; and the measured ms."""
    decode(0)
    t = []
    for i in range(7):
        t0 = time.perf_counter()
        decode(i)
        t.append(time.perf_counter() - t0)
    one = sorted(t)[len(t) // 2] * 1e3
    reps = max(1, round(target_ms / max(one, 1e-3)))
    t0 = time.perf_counter()
    for i in range(5):
        decode(i, reps)
    return reps, (time.perf_counter() - t0) / 5 * 1e3


def _extra(p) -> None:
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--decode-ms", type=float, default=4.0, help="CPU time per sample (default 4)")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader workers (default 0: the bottleneck by construction)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    run = Run(NAME, args.seconds)
    import torch
    from torch.utils.data import DataLoader, Dataset

    torch.set_num_threads(1)
    reps, ms = calibrate(args.decode_ms)
    log(NAME, f"decode: {reps} repetition(s) per sample, {ms:.2f} ms/sample on this CPU")

    class SyntheticJpegs(Dataset):
        def __len__(self) -> int:
            return 1_000_000

        def __getitem__(self, idx: int):
            return torch.from_numpy(decode(int(idx), reps)), int(idx) % 10

    def quiet_worker(_worker_id: int) -> None:  # only with --workers > 0: see io_starved.py
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    loader = DataLoader(SyntheticJpegs(), batch_size=args.batch, shuffle=True,
                        num_workers=args.workers, drop_last=True, worker_init_fn=quiet_worker,
                        multiprocessing_context="fork" if args.workers else None)
    dev = torch_device(args.device)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 32, 4, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    meter = Meter(NAME, "samples/s")
    log(NAME, f"num_workers={args.workers}, batch {args.batch}, small CNN on {dev}")
    steps = 0
    while run.running():
        for images, labels in loader:  # the main thread decodes every sample here
            images = images.to(dev, non_blocking=True)
            labels = labels.to(dev, non_blocking=True)
            loss = loss_fn(model(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if steps == 2:
                sync(dev)
                run.ready()
            elif steps > 2:
                meter.add(args.batch)
            if not run.running():
                break
    sync(dev)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
