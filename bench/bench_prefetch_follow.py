"""An io-bound loader from a cold cache: alone, warm, with a naive fadvise window, and with `nodetune prefetch --follow`.

The loader is a separate process (so the follower has a PID to follow): one thread reads each file in
name order with buffered reads, sleeps `--step-ms` per file (a GPU step), epoch after epoch for
`--seconds`. With `--evict` it drops each file from the page cache after reading it, so every epoch is
cold, as for a dataset larger than memory; the warm ceiling runs without it on a pre-read dataset.
The page cache is dropped before every run (needs root). Prints files/s per mode: mean, spread, and
the ratio to warm; `--json FILE` keeps every run.

  sudo python3 bench/bench_prefetch_follow.py --dir /var/tmp/nt-follow --files 1536 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20
MODES = ("cold", "warm", "naive", "follower")


def make_files(d: str, n: int, size: int) -> list[str]:
    os.makedirs(d, exist_ok=True)
    block = os.urandom(MiB)
    paths = [os.path.join(d, f"{i:06d}.bin") for i in range(n)]
    for i, p in enumerate(paths):
        if os.path.exists(p) and os.path.getsize(p) == size:
            continue
        with open(p, "wb") as f:
            left = size
            while left:
                chunk = block[: min(left, MiB)]
                f.write(bytes([i & 0xFF]) + chunk[1:])  # files differ, so nothing dedups them
                left -= len(chunk)
    os.sync()
    return paths


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def gpu_step(device: str) -> Callable[[bytes], None] | None:
    """A light GPU step per file (its first 64 KiB to the GPU, a small matmul, a sync); None without torch."""
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        return None
    w = torch.randn(256, 256, device=device)

    def step(data: bytes) -> None:
        x = torch.frombuffer(bytearray(data[: 64 * 1024]), dtype=torch.uint8).to(device).float().view(256, 256)
        (x @ w).sum().item()

    step(bytes(64 * 1024))  # CUDA context and kernels before the clock starts
    return step


def loader(d: str, seconds: float, step_ms: float, evict: bool, naive: int, device: str = "") -> dict[str, float]:
    """The job: read every file in name order, a GPU step (or a sleep) per file, until `seconds` are up."""
    paths = sorted(os.path.join(d, n) for n in os.listdir(d))
    step = gpu_step(device) if device else None
    if device and step is None:
        print(f"loader: no torch, so no GPU step on {device}: sleeping {step_ms} ms a file instead", file=sys.stderr)
    pool = ThreadPoolExecutor(8) if naive else None

    def advise(p: str) -> None:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    if pool is not None:
        for p in paths[:naive]:
            pool.submit(advise, p)
    files = nbytes = 0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        p = paths[i % len(paths)]
        with open(p, "rb") as f:
            data = f.read()
            nbytes += len(data)
            if evict:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if pool is not None:
            pool.submit(advise, paths[(i + naive) % len(paths)])
        files += 1
        i += 1
        if step is not None:
            step(data)
        elif step_ms:
            time.sleep(step_ms / 1000)
    dt = time.monotonic() - t0
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    return {"files": files, "seconds": dt, "files_per_s": files / dt, "gbps": nbytes / dt / 1e9,
            "epochs": files / len(paths)}


def one_run(mode: str, a: argparse.Namespace, run: int = 1) -> dict[str, object]:
    drop_caches()
    if mode == "warm":
        for n in sorted(os.listdir(a.dir)):
            with open(os.path.join(a.dir, n), "rb") as f:
                while f.read(8 * MiB):
                    pass
    cmd = [sys.executable, __file__, "--loader", "--dir", a.dir, "--seconds", str(a.seconds), "--step-ms",
           str(a.step_ms), "--device", a.device]
    if mode != "warm" and a.evict:
        cmd.append("--evict")
    if mode == "naive":
        cmd += ["--naive", "64"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    fol = None
    if mode == "follower":
        fol = subprocess.Popen([sys.executable, "-m", "nodetune.cli", "prefetch", "--follow", str(job.pid),
                                *a.follow_args.split()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    diag = None
    if a.diag_dir and run == 1 and mode in ("cold", "follower"):
        # `diagnose` of this run, a few seconds in: the io-bound loader before, the follower's effect after
        time.sleep(a.diag_after)
        with open(os.path.join(a.diag_dir, f"pid_{mode}.txt"), "w") as f:
            f.write(f"{job.pid}\n")
        out_f = open(os.path.join(a.diag_dir, f"diag_{mode}.json"), "w")  # noqa: SIM115 - closed below
        diag = subprocess.Popen([sys.executable, "-m", "nodetune.cli", "diagnose", "--seconds", str(a.diag_seconds),
                                 "--json"], stdout=out_f, stderr=subprocess.DEVNULL)
    out, _ = job.communicate()
    if diag is not None:
        diag.wait()
        out_f.close()
    res: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    if fol is not None:
        try:
            err, _ = fol.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            fol.kill()
            err, _ = fol.communicate()
        res["follower_rc"], res["follower"] = fol.returncode, err.strip().splitlines()[-1:] or [""]
    res["mode"] = mode
    return res


def table(runs: list[dict[str, object]]) -> str:
    by = {m: [float(r["files_per_s"]) for r in runs if r["mode"] == m] for m in MODES}  # type: ignore[arg-type]
    warm = statistics.mean(by["warm"]) if by["warm"] else float("nan")
    naive = statistics.mean(by["naive"]) if by["naive"] else float("nan")
    lines = ["| mode | files/s (mean) | min | max | runs | of warm | of naive |", "|---|---|---|---|---|---|---|"]
    for m, xs in by.items():
        if xs:
            mean = statistics.mean(xs)
            lines.append(f"| {m} | {mean:,.0f} | {min(xs):,.0f} | {max(xs):,.0f} | {len(xs)} | {mean / warm:.2f} "
                         f"| {mean / naive:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/var/tmp/nodetune-follow")
    ap.add_argument("--files", type=int, default=1536)
    ap.add_argument("--size-mib", type=float, default=2)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--step-ms", type=float, default=0.3, help="sleep per file standing in for a GPU step")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--no-evict", dest="evict", action="store_false", help="let epochs after the first run warm")
    ap.add_argument("--follow-args", default="", help="extra arguments for `nodetune prefetch --follow`")
    ap.add_argument("--json", help="write every run here")
    ap.add_argument("--device", default="", help="a light GPU step per file on this torch device (e.g. cuda)")
    ap.add_argument("--diag-dir", help="run `nodetune diagnose --json` in the first cold and follower runs, here")
    ap.add_argument("--diag-after", type=float, default=4)
    ap.add_argument("--diag-seconds", type=float, default=10)
    ap.add_argument("--prepare", action="store_true", help="only create the files")
    ap.add_argument("--loader", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--evict", dest="evict", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--naive", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.loader:
        print(json.dumps(loader(a.dir, a.seconds, a.step_ms, a.evict, a.naive, a.device)))
        return
    if a.prepare:
        make_files(a.dir, a.files, int(a.size_mib * MiB))
        return
    if os.geteuid() != 0:
        sys.exit("bench_prefetch_follow: needs root to drop the page cache between runs")
    make_files(a.dir, a.files, int(a.size_mib * MiB))
    runs = []
    for i in range(a.runs):
        for m in a.modes.split(","):
            r = one_run(m, a, i + 1)
            runs.append(r)
            print(f"run {i + 1} {m:8} {float(r['files_per_s']):8.0f} files/s  {float(r['gbps']):.2f} GB/s  "  # type: ignore[arg-type]
                  f"{float(r['epochs']):.1f} epochs  {r.get('follower', [''])[0] if m == 'follower' else ''}",  # type: ignore[arg-type,index]
                  file=sys.stderr, flush=True)
    print(f"{a.files} files of {a.size_mib:g} MiB, {a.seconds:g} s a run, step {a.step_ms:g} ms, "
          f"{'every epoch cold (loader evicts what it read)' if a.evict else 'later epochs warm'}\n")
    print(table(runs))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
