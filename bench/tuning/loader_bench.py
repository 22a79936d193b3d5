"""A CPU-starved data loader: samples/s with and without tuning (run by run_loader_bench.sh).

Each sample is a zlib-compressed 64 KiB record read with pread from shard files on disk, then
"decoded" on the CPU (decompress, a few hash rounds standing in for JPEG decode and augmentation).
With PyTorch and CUDA the batches feed a small model on the GPU through a DataLoader with
worker processes (the shape the diagnosis calls data-starved); without them a multiprocessing
pool does the same decode work and the main process consumes the results.

    python3 loader_bench.py --prepare --data DIR            # write the shards once
    python3 loader_bench.py --data DIR --seconds 20          # measure now
    python3 loader_bench.py --data DIR --wait-signal         # warm up, print READY PID, measure on SIGUSR1

The result is one JSON line: {"mode", "samples_per_s", "samples", "seconds", "workers", ...}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
import zlib
from typing import Any

RECORD = 64 * 1024
SHARD_INDEX = "index.json"


def prepare(data: str, shards: int, per_shard: int, seed: int = 1) -> None:
    """Shards of compressed records plus an index of (shard, offset, length)."""
    os.makedirs(data, exist_ok=True)
    rng = random.Random(seed)
    index: list[tuple[int, int, int]] = []
    for s in range(shards):
        off = 0
        with open(os.path.join(data, f"shard{s:03d}.bin"), "wb") as fh:
            for _ in range(per_shard):
                # Half noise, half structure: compresses to ~55%, so decompression does real work.
                raw = rng.randbytes(RECORD // 2) + bytes(range(256)) * (RECORD // 512)
                blob = zlib.compress(raw, 6)
                fh.write(blob)
                index.append((s, off, len(blob)))
                off += len(blob)
    with open(os.path.join(data, SHARD_INDEX), "w") as fh:
        json.dump(index, fh)


class Records:
    """Random access to the records: pread from per-process file handles."""

    def __init__(self, data: str, rounds: int) -> None:
        self.data = data
        self.rounds = rounds
        with open(os.path.join(data, SHARD_INDEX)) as fh:
            self.index = [tuple(x) for x in json.load(fh)]
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(os.path.join(self.data, f"shard{shard:03d}.bin"), os.O_RDONLY)
            self._fds[shard] = fd
        return fd

    def decode(self, i: int) -> bytes:
        shard, off, n = self.index[i % len(self.index)]
        raw = zlib.decompress(os.pread(self._fd(shard), n, off))
        h = raw
        for _ in range(self.rounds):  # the CPU-heavy part of a real decode + augmentation
            h = hashlib.sha256(h + raw[:4096]).digest() + raw[: RECORD // 4]
        return raw


# -- pure CPU -------------------------------------------------------------------------------------

_REC: Records | None = None


def _init(data: str, rounds: int) -> None:
    global _REC
    _REC = Records(data, rounds)


def _decode(i: int) -> int:
    assert _REC is not None
    return len(_REC.decode(i))


def run_cpu(args: argparse.Namespace, go: threading.Event) -> dict[str, Any]:
    import multiprocessing as mp

    n = len(Records(args.data, 0))
    # Bound the work in flight (like a DataLoader's prefetch_factor): an unbounded imap keeps
    # decoding while the main process waits, and a measurement would count that stock.
    slots = threading.Semaphore(args.workers * args.batch * 2)
    stop = threading.Event()

    def indices() -> Any:
        i = 0
        while True:
            slots.acquire()
            if stop.is_set():
                return  # lets the pool's task thread finish, so terminate() does not wait forever
            yield i % n
            i += 1

    with mp.get_context("fork").Pool(args.workers, initializer=_init, initargs=(args.data, args.rounds)) as pool:
        it = pool.imap(_decode, indices(), chunksize=args.batch)

        def take() -> None:
            next(it)
            slots.release()

        t_end = time.monotonic() + args.warmup
        while time.monotonic() < t_end:
            take()
        ready(go)
        count, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            take()
            count += 1
        dt = time.monotonic() - t0
        stop.set()
        slots.release()
        pool.terminate()
    return {"mode": "cpu", "samples": count, "seconds": round(dt, 3), "samples_per_s": round(count / dt, 1)}


# -- PyTorch + CUDA -------------------------------------------------------------------------------

def run_torch(args: argparse.Namespace, go: threading.Event) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, Dataset

    class DS(Dataset):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rec: Records | None = None
            self.n = len(Records(args.data, 0))

        def __len__(self) -> int:
            return 10**9

        def __getitem__(self, i: int) -> Any:
            if self.rec is None:  # one Records (and its fds) per worker process
                self.rec = Records(args.data, args.rounds)
            raw = self.rec.decode(i % self.n)
            return torch.frombuffer(bytearray(raw[:16384]), dtype=torch.uint8)

    dev = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Linear(16384, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    dl = DataLoader(DS(), batch_size=args.batch, num_workers=args.workers, pin_memory=True,
                    persistent_workers=True, prefetch_factor=2)
    it = iter(dl)

    def step() -> int:
        x = next(it).to(dev, non_blocking=True).float().div_(255)
        loss = model(x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return int(x.shape[0])

    t_end = time.monotonic() + args.warmup
    while time.monotonic() < t_end:
        step()
    torch.cuda.synchronize()
    ready(go)
    count, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        count += step()
    torch.cuda.synchronize()
    dt = time.monotonic() - t0
    return {"mode": "torch-cuda", "samples": count, "seconds": round(dt, 3), "samples_per_s": round(count / dt, 1),
            "gpu": torch.cuda.get_device_name(0)}


def ready(go: threading.Event) -> None:
    """With --wait-signal: say READY and wait for SIGUSR1 before measuring."""
    if go.is_set():
        return
    print(f"READY {os.getpid()}", flush=True)
    go.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="Directory of the shards.")
    ap.add_argument("--prepare", action="store_true", help="Write the shards and exit.")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--per-shard", type=int, default=512, help="Records per shard (64 KiB each before compression).")
    ap.add_argument("--seconds", type=float, default=20.0, help="Measured time.")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=6, help="Hash rounds per sample: the CPU cost of a decode.")
    ap.add_argument("--cpu", action="store_true", help="Pure CPU even where PyTorch and CUDA are present.")
    ap.add_argument("--wait-signal", action="store_true", help="Print READY PID after warm-up; measure on SIGUSR1.")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.data, args.shards, args.per_shard)
        print(json.dumps({"prepared": args.data, "records": args.shards * args.per_shard}))
        return
    go = threading.Event()
    if args.wait_signal:
        signal.signal(signal.SIGUSR1, lambda *_: go.set())
    else:
        go.set()
    use_torch = False
    if not args.cpu:
        try:
            import torch

            use_torch = bool(torch.cuda.is_available())
        except ImportError:
            use_torch = False
    res = run_torch(args, go) if use_torch else run_cpu(args, go)
    res.update(workers=args.workers, batch=args.batch, rounds=args.rounds, pid=os.getpid())
    print(json.dumps(res), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
