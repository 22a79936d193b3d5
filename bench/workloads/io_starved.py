"""io_starved: a training loop fed by DataLoader workers that read 1 MiB records cold from disk.

Known bottleneck by construction: every sample is a 1 MiB record at a random offset in a dataset
of --data-gb (default 4 GiB) of files in --data-dir (default /tmp/nodetune-io-data; created once
and reused; if that is on tmpfs, /var/tmp/nodetune-io-data is used instead). Reads bypass the page
cache with O_DIRECT; where the filesystem refuses O_DIRECT (or with --no-direct) they are buffered
with readahead off (FADV_RANDOM) and the pages are dropped again with posix_fadvise(DONTNEED) after
each read. The files are fsynced and dropped from
the page cache before READY. 8 worker processes each issue one synchronous read at a time, so
threads sit in D state, PSI io is high and the disk is busy, while the per-record CPU cost is tiny
(one pread into a page-aligned buffer, 16 KiB kept). The GPU does a few microseconds of work per
64-record batch, so it idles almost all the time. Expected nodetune verdict: data_starved, cause
io_input. The achieved MB/s goes to stderr every 5 s.

    python3 bench/workloads/io_starved.py --seconds 60 --device cuda:0
    python3 bench/workloads/io_starved.py --prepare-only      # just create the dataset
"""

from __future__ import annotations

import errno
import json
import math
import mmap
import os
import shutil
import signal
import time
from pathlib import Path

from _common import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("data_starved", "io_input")
NAME = "io_starved"
DEFAULT_DIR = "/tmp/nodetune-io-data"
FALLBACK_DIR = "/var/tmp/nodetune-io-data"
MIB = 2**20
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "hugetlbfs"}


def fs_type(path: str) -> str | None:
    """The filesystem type that holds `path` (its nearest existing ancestor), from /proc/mounts."""
    p = os.path.realpath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    best, best_type = "", None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, best_type = mnt, parts[2]
    except OSError:
        return None
    return best_type


def choose_dir(requested: str) -> str:
    kind = fs_type(requested)
    if kind in MEMORY_FILESYSTEMS:
        if requested == DEFAULT_DIR and fs_type(FALLBACK_DIR) not in MEMORY_FILESYSTEMS:
            log(NAME, f"{requested} is on {kind} (RAM, no disk I/O): using {FALLBACK_DIR}")
            return FALLBACK_DIR
        log(NAME, f"WARNING: {requested} is on {kind}: reads will not touch a disk; pass --data-dir "
                  "on a disk-backed filesystem")
    return requested


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def ensure_dataset(data_dir: str, data_gb: float, file_mib: int) -> list[str]:
    """Create (once) data_gb of incompressible files of file_mib MiB each; return their paths."""
    nfiles = max(1, int(round(data_gb * 1024 / file_mib)))
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "dataset.json"
    want = {"files": nfiles, "file_mib": file_mib, "version": 1}
    paths = [str(root / f"shard-{i:04d}.bin") for i in range(nfiles)]
    try:
        have = json.loads(marker.read_text())
    except (OSError, ValueError):
        have = None
    if have == want and all(os.path.isfile(p) and os.path.getsize(p) == file_mib * MIB for p in paths):
        log(NAME, f"reusing {nfiles} x {file_mib} MiB in {data_dir}")
        return paths
    import numpy as np

    free = shutil.disk_usage(root).free + sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    if nfiles * file_mib * MIB > free - 2**30:
        fit = max(1, int((free - 2**30) // (file_mib * MIB)))
        log(NAME, f"only {free / 2**30:.1f} GiB free in {data_dir}: {fit} file(s) instead of {nfiles}")
        nfiles, paths = fit, paths[:fit]
        want["files"] = nfiles
    marker.unlink(missing_ok=True)
    chunk_mib = math.gcd(16, file_mib)
    chunk = np.random.default_rng(12345).integers(0, 256, size=chunk_mib * MIB, dtype=np.uint8)
    stamps = chunk.view(np.uint64)[:: MIB // 8]  # the first 8 bytes of every MiB: a unique stamp
    t0 = time.monotonic()
    log(NAME, f"creating {nfiles} x {file_mib} MiB = {nfiles * file_mib / 1024:.1f} GiB in {data_dir}")
    serial = 0
    for path in paths:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(file_mib // chunk_mib):
                stamps[:] = np.arange(serial, serial + len(stamps), dtype=np.uint64)
                serial += len(stamps)
                view = memoryview(chunk.data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    os.sync()
    marker.write_text(json.dumps(want))
    dt = time.monotonic() - t0
    log(NAME, f"created in {dt:.1f}s ({nfiles * file_mib / max(dt, 1e-9):.0f} MiB/s)")
    return paths


def open_direct(path: str) -> tuple[int, bool]:
    """Open for reading with O_DIRECT if the filesystem takes it (tested by one aligned read)."""
    flag = getattr(os, "O_DIRECT", 0)
    if flag:
        try:
            fd = os.open(path, os.O_RDONLY | flag)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        else:
            buf = mmap.mmap(-1, 4096)
            try:
                os.preadv(fd, [buf], 0)
                return fd, True
            except OSError as exc:
                os.close(fd)
                if exc.errno != errno.EINVAL:
                    raise
            finally:
                buf.close()
    return os.open(path, os.O_RDONLY), False


def _extra(p) -> None:
    p.add_argument("--data-dir", default=DEFAULT_DIR)
    p.add_argument("--data-gb", type=float, default=4.0, help="dataset size in GiB (default 4)")
    p.add_argument("--file-mib", type=int, default=128, help="size of each file (default 128)")
    p.add_argument("--record-kib", type=int, default=1024, help="bytes per sample read (default 1024)")
    p.add_argument("--keep-kib", type=int, default=16, help="bytes per sample sent to the GPU")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--no-direct", action="store_true", help="buffered reads + fadvise, no O_DIRECT")
    p.add_argument("--prepare-only", action="store_true", help="create the dataset and exit")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    data_dir = choose_dir(args.data_dir)
    paths = ensure_dataset(data_dir, args.data_gb, args.file_mib)
    if args.prepare_only:
        return 0
    run = Run(NAME, args.seconds)
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset, RandomSampler

    record = args.record_kib * 1024
    keep = min(args.keep_kib * 1024, record)
    per_file = args.file_mib * MIB // record
    for path in paths:
        drop_cache(path)
    fds, direct = [], not args.no_direct
    for path in paths:  # held open by the training process: nodetune sees the files and the disk
        if direct:
            fd, direct = open_direct(path)
        else:
            fd = os.open(path, os.O_RDONLY)
        fds.append(fd)
    if not direct:
        log(NAME, ("O_DIRECT off (--no-direct)" if args.no_direct else "O_DIRECT not available here")
            + ": buffered reads, readahead off (FADV_RANDOM), pages dropped after each read")
        for fd in fds:  # no readahead: it would cache pages beyond the record that DONTNEED misses
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)

    class ColdRecords(Dataset):
        """Sample i is one record at a pseudo-random file and offset; read cold every time."""

        def __init__(self) -> None:
            self.buf: mmap.mmap | None = None
            self.pid = -1

        def __len__(self) -> int:
            return len(fds) * per_file

        def __getitem__(self, idx: int):
            if self.pid != os.getpid():  # one page-aligned buffer per worker process
                self.buf, self.pid = mmap.mmap(-1, record), os.getpid()
            assert self.buf is not None
            f, r = divmod(int(idx), per_file)
            fd, off = fds[f], r * record
            got = os.preadv(fd, [self.buf], off)
            if not direct:
                os.posix_fadvise(fd, off, record, os.POSIX_FADV_DONTNEED)
            sample = np.frombuffer(self.buf, dtype=np.uint8, count=keep).copy()
            return torch.from_numpy(sample), got

    def quiet_worker(_worker_id: int) -> None:
        # The runner stops a workload with SIGTERM to its process group; the workers leave it to
        # the training process, which shuts them down (torch would otherwise die on their signal).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    dataset = ColdRecords()
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**12)
    loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=args.workers,
                        prefetch_factor=2 if args.workers else None,
                        multiprocessing_context="fork" if args.workers else None,
                        worker_init_fn=quiet_worker)
    batches = iter(loader)  # forks the workers before CUDA is initialised
    dev = torch_device(args.device)
    w = torch.randn(keep, 64, device=dev, dtype=torch.bfloat16) / keep
    meter = Meter(NAME, "MB/s read from disk", scale=1e6)
    log(NAME, f"{len(fds)} files, {record // 1024} KiB records, batch {args.batch}, "
              f"{args.workers} workers, {'O_DIRECT' if direct else 'buffered+DONTNEED'}, GPU {dev}")
    steps = 0
    while run.running():
        x, got = next(batches)
        # The per-batch GPU work: a small projection and a reduction (microseconds).
        feats = x.to(dev, non_blocking=True).to(torch.bfloat16) @ w
        feats.float().square().mean().item()
        steps += 1
        if steps == 2:
            sync(dev)
            run.ready()
        elif steps > 2:
            meter.add(float(got.sum()))
    run.finish(meter.mean())
    del batches  # shuts the workers down
    for fd in fds:
        os.close(fd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
