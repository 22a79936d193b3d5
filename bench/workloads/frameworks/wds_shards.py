"""wds_shards: WebDataset-style tar shards (members of 256 KiB) read by an IterableDataset in two
DataLoader workers through Python's tarfile, each shard's pages dropped after it is read
(posix_fadvise DONTNEED): a dataset larger than the page cache, read cold every epoch. A light GPU
step per batch.

Expected once steady: data_starved (io_input): workers in D state reading, the disk busy, the main
thread waiting in the DataLoader's __next__.

    python3 bench/workloads/frameworks/wds_shards.py --data /tmp/nt-shards --seconds 60
"""

from __future__ import annotations

from _fw import Meter, Run, log, parse_args, torch_device

EXPECTED = ("data_starved", "io_input")
NAME = "wds_shards"


def make_shards(root: str, shards: int, per_shard: int, size: int) -> None:
    import io
    import os
    import tarfile

    os.makedirs(root, exist_ok=True)
    payload = os.urandom(size)
    for s in range(shards):
        path = os.path.join(root, f"shard-{s:05d}.tar")
        if os.path.exists(path):
            continue
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                info = tarfile.TarInfo(f"{s:05d}_{i:05d}.bin")
                info.size = size
                tar.addfile(info, io.BytesIO(payload[i % 7:] + payload[:i % 7]))
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def main() -> int:
    args = parse_args(__doc__, lambda p: (p.add_argument("--data", default="/tmp/nt-shards"),
                                          p.add_argument("--make", type=int, default=0,
                                                         help="write this many shards first and exit")))
    if args.make:
        make_shards(args.data, args.make, 400, 256 * 1024)
        return 0
    run = Run(NAME, args.seconds)
    run.ready()
    import os
    import tarfile

    import numpy as np
    import torch

    class Shards(torch.utils.data.IterableDataset):
        def __init__(self, root: str) -> None:
            self.paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".tar"))

        def __iter__(self):  # type: ignore[no-untyped-def]
            info = torch.utils.data.get_worker_info()
            mine = self.paths[info.id::info.num_workers] if info else self.paths
            while True:
                for path in mine:
                    with open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
                        for m in tar:
                            f = tar.extractfile(m)
                            if f is not None:
                                yield torch.from_numpy(np.frombuffer(f.read(), dtype=np.uint8)[:65536].copy())
                        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    dev = torch_device(args.device)
    dl = torch.utils.data.DataLoader(Shards(args.data), batch_size=32, num_workers=2)
    w = torch.randn(65536, 256, device=dev)
    meter = Meter(NAME, "MiB/s", scale=2**20)
    for x in dl:
        (x.to(dev).float() @ w).sum().item()
        meter.add(x.shape[0] * 256 * 1024)
        if not run.running():
            break
    log(NAME, meter.mean())
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
