"""Cold-read throughput of a dataset directory: plain reads, cat-like reads with tuned read-ahead, the fadvise
fallback, nodetune's prefetcher (threads, io_uring at several depths) and fio (io_uring) as the ceiling.

The page cache is dropped before every run (echo 3 > /proc/sys/vm/drop_caches: root only; without it
the table says the numbers are warm and meaningless). read_ahead_kb is raised for the cat-like run
only and restored in the same process (finally), even on Ctrl-C.

    python3 bench/bench_prefetch.py                       # 2000 files of 1-4 MiB + 8 x 1 GiB (~13 GiB)
    python3 bench/bench_prefetch.py --small 200 --big 2 --big-mib 256 --depths 8,32
    python3 bench/bench_prefetch.py --train --seconds 20 [--prefetch]   # the closed-loop workload
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import print_table  # noqa: E402

from nodetune.prefetch import MiB, PrefetchOptions, warm  # noqa: E402
from nodetune.probes.host import Host, ProbeError  # noqa: E402
from nodetune.tuners.knobs.readahead import devices_for_path  # noqa: E402

CHUNK = 16 * MiB


def make_dataset(root: Path, small: int, big: int, big_mib: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "dataset.json"
    want = {"small": small, "big": big, "big_mib": big_mib, "v": 1}
    rng = random.Random(7)
    sizes = [rng.randint(1, 4) * MiB for _ in range(small)] + [big_mib * MiB] * big
    names = [f"small/s{i:05d}.bin" for i in range(small)] + [f"big/b{i:02d}.bin" for i in range(big)]
    paths = [str(root / n) for n in names]
    if marker.exists() and json.loads(marker.read_text()) == want:
        return paths
    (root / "small").mkdir(exist_ok=True)
    (root / "big").mkdir(exist_ok=True)
    block = os.urandom(CHUNK)
    print(f"creating {len(paths)} files, {sum(sizes) / 2**30:.1f} GiB in {root}", file=sys.stderr)
    for p, size in zip(paths, sizes, strict=True):
        with open(p, "wb") as f:
            left = size
            while left:
                left -= f.write(block[:min(left, CHUNK)])
    os.sync()
    marker.write_text(json.dumps(want))
    return paths


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def plain(paths: list[str], bs: int) -> int:
    n = 0
    buf = bytearray(bs)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while k := f.readinto(buf):
                n += k
    return n


def cat_like(paths: list[str]) -> int:
    n = 0
    buf = bytearray(128 * 1024)  # coreutils cat's buffer size
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)  # as cat does
            while k := os.readv(fd, [buf]):
                n += k
        finally:
            os.close(fd)
    return n


def run_fio(directory: str, depth: int, bs: int) -> float | None:
    if shutil.which("fio") is None:
        return None
    r = subprocess.run(["fio", "--name=cold", f"--opendir={directory}", "--rw=read", f"--bs={bs}",
                        "--ioengine=io_uring", f"--iodepth={depth}", "--direct=0", "--thread",
                        "--output-format=json"], capture_output=True, text=True, check=True)
    job = json.loads(r.stdout)["jobs"][0]["read"]
    return float(job["bw_bytes"]) / 1e9


def table(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    paths = make_dataset(root, args.small, args.big, args.big_mib)
    total = sum(os.path.getsize(p) for p in paths)
    host = Host("/")
    try:
        devs = devices_for_path(host, str(root))
    except Exception as exc:  # tmpfs/overlay: no disk to tune; the cat-like run goes untuned
        print(f"read-ahead not tunable here: {exc}", file=sys.stderr)
        devs = []
    rows: list[tuple[str, ...]] = []
    cold = True

    def measure(name: str, fn: object, depth: str = "-") -> None:
        nonlocal cold
        cold = drop_caches() and cold
        t = time.monotonic()
        n = fn()  # type: ignore[operator]
        dt = time.monotonic() - t
        if n is None:
            return
        rows.append((name, depth, f"{n / 2**30:.2f}", f"{dt:.2f}", f"{n / dt / 1e9:.2f}"))
        print(f"  {name} depth {depth}: {n / dt / 1e9:.2f} GB/s", file=sys.stderr)

    def engine(e: str, depth: int) -> int:
        rep = warm(paths, PrefetchOptions(engine=e, depth=depth, block_size=args.block_mib * MiB,
                                                budget=total + MiB, allow_evict=True))
        if rep.stopped or rep.failed:
            raise SystemExit(f"prefetch {e} depth {depth} did not finish: {rep.stopped or rep.failed[0]}")
        return rep.bytes_read

    def fadvise_then_read() -> int:
        engine("fadvise", args.depths[-1])
        return plain(paths, args.block_mib * MiB)  # fadvise returns before the data is in: read to know

    measure("python sequential read", lambda: plain(paths, args.block_mib * MiB))
    originals: dict[str, str] = {}
    try:
        for d in devs:  # tuned read-ahead for the cat-like run only
            p = f"/sys/block/{d}/queue/read_ahead_kb"
            originals[p] = host.read(p).strip()
            host.write(p, str(args.read_ahead_kb))
        measure(f"cat-like, read_ahead_kb={args.read_ahead_kb if originals else 'untouched'}", lambda: cat_like(paths))
    except ProbeError as exc:
        print(f"read-ahead not changed: {exc.reason}", file=sys.stderr)
    finally:
        for p, v in originals.items():
            host.write(p, v)
    measure("fadvise WILLNEED pool, then read", fadvise_then_read, str(args.depths[-1]))
    measure("nodetune prefetch, threads", lambda: engine("threads", 32), "32")
    for depth in args.depths:
        measure("nodetune prefetch, io_uring", lambda d=depth: engine("io_uring", d), str(depth))
    for depth in args.depths:  # fio's own bandwidth figure (its start-up is not in it)
        cold = drop_caches() and cold
        gbps = run_fio(str(root), depth, args.block_mib * MiB)
        if gbps is not None:
            rows.append(("fio io_uring (ceiling)", str(depth), f"{total / 2**30:.2f}", "-", f"{gbps:.2f}"))
    if shutil.which("fio") is None:
        print("fio not installed: no ceiling row", file=sys.stderr)
    print(f"cold read of {len(paths)} files, {total / 2**30:.2f} GiB in {root}; kernel {os.uname().release}; "
          f"block {args.block_mib} MiB; disks {', '.join(devs) or 'none found'}")
    if not cold:
        print("WARNING: the page cache could not be dropped (not root?): these numbers are WARM and meaningless")
    print_table(("method", "depth", "GiB", "s", "GB/s"), rows)
    return 0


def train(args: argparse.Namespace) -> int:
    """Closed loop: a loader reading whole files cold in sampler order (buffered, unlike io_starved's O_DIRECT,
    so page-cache warming can help), a tiny GPU step per batch; --prefetch warms ahead via Prefetcher."""
    import torch

    from nodetune.prefetch import Prefetcher

    paths = make_dataset(Path(args.dir), args.small, 0, 0)
    order = paths[:]
    random.Random(1).shuffle(order)
    dev = torch.device(args.device)
    w = torch.randn(4096, 64, device=dev)
    pf = Prefetcher(budget=args.budget, ahead_files=args.ahead, depth=args.depth) if args.prefetch else None
    if pf is not None:
        pf.feed(order * 50)  # the sampler order, epochs ahead; feed never blocks
    buf = bytearray(4 * MiB)
    steps, samples, t0, busy = 0, 0, time.monotonic(), 0.0
    print("READY", flush=True)
    i = 0
    while time.monotonic() - t0 < args.seconds:
        batch = []
        for _ in range(args.batch):
            with open(order[i % len(order)], "rb", buffering=0) as f:
                f.readinto(buf)
            batch.append(torch.frombuffer(buf[:16384], dtype=torch.float32).clone())
            i += 1
        if pf is not None:
            pf.advance(args.batch)
        t = time.monotonic()
        (torch.stack(batch).to(dev) @ w).square().mean().item()
        busy += time.monotonic() - t
        steps, samples = steps + 1, samples + args.batch
    dt = time.monotonic() - t0
    if pf is not None:
        pf.close()
    print(json.dumps({"samples_per_s": samples / dt, "steps": steps, "seconds": dt,
                      "prefetch": bool(pf), "engine": pf.stats.engine if pf else None}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--dir", default="/var/tmp/nodetune-prefetch-data")
    p.add_argument("--small", type=int, default=2000, help="files of 1-4 MiB (default 2000)")
    p.add_argument("--big", type=int, default=8, help="big files (default 8)")
    p.add_argument("--big-mib", type=int, default=1024, help="size of each big file (default 1024)")
    p.add_argument("--depths", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 128])
    p.add_argument("--block-mib", type=int, default=1)
    p.add_argument("--read-ahead-kb", type=int, default=4096)
    p.add_argument("--train", action="store_true", help="run the closed-loop training workload instead")
    p.add_argument("--prefetch", action="store_true", help="--train: warm ahead with Prefetcher")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ahead", type=int, default=256)
    p.add_argument("--depth", type=int, default=64)
    p.add_argument("--budget", default="8GiB")
    p.add_argument("--device", default="cuda:0")
    args = p.parse_args(argv)
    return train(args) if args.train else table(args)


if __name__ == "__main__":
    raise SystemExit(main())
