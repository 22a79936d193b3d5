"""Warm a DataLoader's files in the sampler's order with nodetune's Prefetcher (no root, no agent needed).

The DataLoader reads through `SamplerFeed`, which draws the (shuffled) order once an epoch and hands
the Prefetcher the files in that order; the training loop says how far it got with `advance()`, so
the Prefetcher stays `ahead_files` files ahead inside a byte budget and stops under memory pressure.

    python3 examples/prefetch_dataloader.py /data/shards --epochs 2
Without torch it prints how to install it and exits 2 (the import is guarded so the file always loads).
"""

from __future__ import annotations

import argparse
import os
import sys

from nodetune.prefetch import Prefetcher, SamplerFeed

try:
    import torch
    from torch.utils.data import DataLoader, Dataset, RandomSampler
except ImportError:  # the example still imports (and its tests run) where torch is not installed
    torch = None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    if torch is None:
        print("prefetch_dataloader: needs torch (pip install torch)", file=sys.stderr)
        return 2
    paths = sorted(os.path.join(a.data_dir, n) for n in os.listdir(a.data_dir))

    class Files(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            with open(paths[i], "rb") as f:
                return torch.frombuffer(bytearray(f.read(4096).ljust(4096, b"\0")), dtype=torch.uint8)

    with Prefetcher(budget="2GiB", ahead_files=4 * a.batch_size * max(a.workers, 1)) as pf:
        feed = SamplerFeed(RandomSampler(range(len(paths))), paths.__getitem__, pf)
        loader = DataLoader(Files(), batch_size=a.batch_size, sampler=feed, num_workers=a.workers)
        for epoch in range(a.epochs):
            for batch in loader:
                pf.advance(len(batch))  # the files of this batch are consumed: warm further ahead
            s = pf.stats
            print(f"epoch {epoch}: warmed {s.warmed_files} files ({s.bytes_read >> 20} MiB) with {s.engine}; "
                  f"{s.dropped} passed before they were warmed" + (f"; stopped: {s.stopped}" if s.stopped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
