"""An io-bound loader from a cold cache: alone, warm, with a naive fadvise window, and with
`nodetune prefetch --follow`.

The loader is a separate process (so the follower has a PID to follow): one thread reads each file in
name order with buffered reads, sleeps `--step-ms` per file (a GPU step), epoch after epoch for
`--seconds`. With `--evict` it drops each file from the page cache after reading it, so every epoch is
cold, as for a dataset larger than memory; the warm ceiling runs without it on a pre-read dataset.

The loader imports torch and makes its CUDA context first, says "ready", and only then is the page cache
dropped (needs root) and, for warm, the dataset read in: start-up costs no run time and leaves nothing
cold behind. A follower is started with the job and the clock starts once it is following. The loader
reports where its time went (read, step, evict) and how much of each file was already in the page cache
when it opened it (mincore), so a "warm" run that was not warm shows it. Prints files/s per mode: mean,
spread, the ratio to warm, to the naive window and to the ceiling (the lower of warm and the device's
rate); `--json FILE` keeps every run. Modes: ceiling (every file once, O_DIRECT, 16 reads of 2 MiB in
flight, no loader), cold, warm, naive, follower, follower:METHOD (`--method METHOD`).

  sudo python3 bench/bench_prefetch_follow.py --dir /var/tmp/nt-follow --files 1536 --seconds 20
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20
MODES = ("ceiling", "cold", "warm", "naive", "follower")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                              ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    return libc


LIBC = _libc()


def resident(fd: int, size: int) -> tuple[int, int]:
    """(pages of the file in the page cache, pages) by mincore on a mapping that touches nothing."""
    pages = (size + PAGE - 1) // PAGE
    if not size:
        return 0, 0
    addr = LIBC.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    if addr in (None, ctypes.c_void_p(-1).value):
        return 0, pages
    try:
        vec = ctypes.create_string_buffer(pages)
        if LIBC.mincore(addr, size, vec) != 0:
            return 0, pages
        return sum(b & 1 for b in vec.raw), pages
    finally:
        LIBC.munmap(addr, size)


def dataset_resident(d: str) -> float:
    """Share of the dataset's pages in the page cache."""
    have = total = 0
    for n in os.listdir(d):
        fd = os.open(os.path.join(d, n), os.O_RDONLY)
        try:
            h, t = resident(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        have, total = have + h, total + t
    return have / total if total else 0.0


def cgroup_memory() -> str:
    """This process's memory cgroup limit and usage: page cache over it is evicted whatever free says."""
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError as exc:
        return f"cgroup: {exc}"
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        for f_max, f_cur in ((f"/sys/fs/cgroup{path}/memory.max", f"/sys/fs/cgroup{path}/memory.current"),
                             (f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes",
                              f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")):
            if (ctrl == "" or "memory" in ctrl.split(",")) and os.path.exists(f_max):
                lim, cur = open(f_max).read().strip(), open(f_cur).read().strip()
                lim = "unlimited" if not lim.isdigit() or int(lim) >= 1 << 60 else f"{int(lim) / 2**30:.1f} GiB"
                return f"memory cgroup {path}: limit {lim}, usage {int(cur) / 2**30:.1f} GiB"
    return "memory cgroup: none found"


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
    """The job: read every file in name order, a GPU step (or a sleep) per file, until `seconds` are up.

    Says "ready" on stdout once torch and CUDA are up and waits for a line on stdin before the clock starts.
    """
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

    print("ready", flush=True)
    sys.stdin.readline()
    if pool is not None:
        for p in paths[:naive]:
            pool.submit(advise, p)
    files = nbytes = hit_pages = pages = 0
    t_read = t_step = t_evict = 0.0
    t0 = time.monotonic()
    i = 0
    while (t1 := time.monotonic()) - t0 < seconds:
        p = paths[i % len(paths)]
        with open(p, "rb") as f:
            h, n = resident(f.fileno(), os.fstat(f.fileno()).st_size)
            hit_pages, pages = hit_pages + h, pages + n
            data = f.read()
            nbytes += len(data)
            t2 = time.monotonic()
            t_read += t2 - t1
            if evict:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                t_evict += time.monotonic() - t2
        if pool is not None:
            pool.submit(advise, paths[(i + naive) % len(paths)])
        files += 1
        i += 1
        t3 = time.monotonic()
        if step is not None:
            step(data)
        elif step_ms:
            time.sleep(step_ms / 1000)
        t_step += time.monotonic() - t3
    dt = time.monotonic() - t0
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    return {"files": files, "seconds": dt, "files_per_s": files / dt, "gbps": nbytes / dt / 1e9,
            "epochs": files / len(paths), "hit_share": hit_pages / pages if pages else 0.0,
            "read_ms": 1e3 * t_read / max(files, 1), "step_ms": 1e3 * t_step / max(files, 1),
            "evict_ms": 1e3 * t_evict / max(files, 1)}


def ceiling_run(a: argparse.Namespace, threads: int = 16) -> dict[str, object]:
    """What the device gives: every file once, O_DIRECT (no page cache), `threads` 2 MiB reads in flight,
    as fio would (fio is rarely on the GPU machine). Every-epoch-cold loading can go no faster, whoever warms."""
    import mmap

    paths = sorted(os.path.join(a.dir, n) for n in os.listdir(a.dir))
    drop_caches()

    def read_all(p: str) -> int:
        buf = mmap.mmap(-1, 2 * MiB)  # page-aligned, as O_DIRECT wants
        fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
        try:
            n = off = 0
            while (got := os.preadv(fd, [buf], off)) > 0:
                n, off = n + got, off + got
            return n
        finally:
            os.close(fd)
            buf.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        nbytes = sum(pool.map(read_all, paths))
    dt = time.monotonic() - t0
    return {"mode": "ceiling", "files": len(paths), "seconds": dt, "files_per_s": len(paths) / dt,
            "gbps": nbytes / dt / 1e9, "epochs": 1.0}


def one_run(mode: str, a: argparse.Namespace, run: int = 1) -> dict[str, object]:
    if mode == "ceiling":
        return ceiling_run(a)
    cmd = [sys.executable, __file__, "--loader", "--dir", a.dir, "--seconds", str(a.seconds), "--step-ms",
           str(a.step_ms), "--device", a.device]
    if mode != "warm" and a.evict:
        cmd.append("--drop-after-read")
    if mode == "naive":
        cmd += ["--naive", "64"]
    job = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert job.stdin is not None and job.stdout is not None
    if job.stdout.readline().strip() != "ready":
        job.kill()
        raise RuntimeError(f"{mode}: the loader did not start")
    drop_caches()  # after the loader's start-up: its libraries were read warm, its data is cold
    res: dict[str, object] = {"mode": mode}
    if mode == "warm":
        for n in sorted(os.listdir(a.dir)):
            with open(os.path.join(a.dir, n), "rb") as f:
                while f.read(8 * MiB):
                    pass
        res["resident_at_start"] = round(dataset_resident(a.dir), 4)
    fol = None
    if mode.startswith("follower"):
        method = mode.partition(":")[2]
        fol = subprocess.Popen([sys.executable, "-m", "nodetune.cli", "prefetch", "--follow", str(job.pid),
                                *(["--method", method] if method else []), *a.follow_args.split()],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert fol.stdout is not None
        res["follower_start"] = fol.stdout.readline().strip()  # "following pid ...": it is looking now
    job.stdin.write("go\n")
    job.stdin.flush()
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
    res.update(json.loads(out.strip().splitlines()[-1]))
    if fol is not None:
        try:
            err, _ = fol.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            fol.kill()
            err, _ = fol.communicate()
        res["follower_rc"], res["follower"] = fol.returncode, err.strip().splitlines()[-1:] or [""]
    return res


def table(runs: list[dict[str, object]]) -> str:
    """files/s per mode (mean, spread, of warm, of naive, of the ceiling) and where the loader's time went.

    The ceiling is the lower of warm (the loader from the page cache) and the device's rate through the
    page cache (mode `ceiling`): when every epoch is cold, no warming beats the device.
    """
    modes = list(dict.fromkeys(str(r["mode"]) for r in runs))
    by = {m: [r for r in runs if r["mode"] == m] for m in modes}
    fps = {m: [float(r["files_per_s"]) for r in rs] for m, rs in by.items()}  # type: ignore[arg-type]
    nan = float("nan")
    warm = statistics.mean(fps["warm"]) if fps.get("warm") else nan
    naive = statistics.mean(fps["naive"]) if fps.get("naive") else nan
    dev = statistics.mean(fps["ceiling"]) if fps.get("ceiling") else nan
    top = min(warm, dev) if warm == warm and dev == dev else (warm if warm == warm else dev)
    lines = ["| mode | files/s (mean) | min | max | runs | of warm | of naive | of ceiling | in cache when opened "
             "| read ms/file | step ms/file |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, xs in fps.items():
        mean = statistics.mean(xs)

        def avg(k: str, rs: list[dict[str, object]] = by[m]) -> str:
            v = statistics.mean(float(r.get(k, nan)) for r in rs)  # type: ignore[arg-type]
            return "-" if v != v else (f"{v:.0%}" if k == "hit_share" else f"{v:.2f}")
        lines.append(f"| {m} | {mean:,.0f} | {min(xs):,.0f} | {max(xs):,.0f} | {len(xs)} | {mean / warm:.2f} "
                     f"| {mean / naive:.2f} | {mean / top:.2f} | {avg('hit_share')} | {avg('read_ms')} "
                     f"| {avg('step_ms')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/var/tmp/nodetune-follow")
    ap.add_argument("--files", type=int, default=1536)
    ap.add_argument("--size-mib", type=float, default=2)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--step-ms", type=float, default=0.3, help="sleep per file standing in for a GPU step")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated; follower:METHOD tries a read path")
    ap.add_argument("--no-evict", dest="evict", action="store_false", help="let epochs after the first run warm")
    ap.add_argument("--follow-args", default="", help="extra arguments for `nodetune prefetch --follow`")
    ap.add_argument("--json",
                    help="write every run here (rewritten after each run, so a cut-short bench keeps its runs)")
    ap.add_argument("--table-from", metavar="JSON", help="only print the table of the runs in this file")
    ap.add_argument("--device", default="", help="a light GPU step per file on this torch device (e.g. cuda)")
    ap.add_argument("--diag-dir", help="run `nodetune diagnose --json` in the first cold and follower runs, here")
    ap.add_argument("--diag-after", type=float, default=4)
    ap.add_argument("--diag-seconds", type=float, default=10)
    ap.add_argument("--prepare", action="store_true", help="only create the files")
    ap.add_argument("--loader", action="store_true", help=argparse.SUPPRESS)
    # not `--evict`: sharing the dest of --no-evict gave it that flag's default (True), so the warm
    # loader dropped every file too and "warm" was a cold run with a warm first epoch
    ap.add_argument("--drop-after-read", dest="drop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--naive", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.loader:
        print(json.dumps(loader(a.dir, a.seconds, a.step_ms, a.drop, a.naive, a.device)))
        return
    if a.table_from:
        with open(a.table_from) as f:
            print(table(json.load(f)))
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
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(runs, f, indent=1)
            print(f"run {i + 1} {m:18} {float(r['files_per_s']):6.0f} files/s  {float(r['gbps']):.2f} GB/s  "  # type: ignore[arg-type]
                  f"{float(r['epochs']):.1f} epochs  {float(r.get('hit_share', 0)):.0%} cached  "  # type: ignore[arg-type]
                  f"read {float(r.get('read_ms', 0)):.2f} step {float(r.get('step_ms', 0)):.2f} ms  "  # type: ignore[arg-type]
                  + (f"resident at start {r['resident_at_start']:.0%}" if "resident_at_start" in r else "")
                  + (str(r.get("follower", [""])[0]) if m.startswith("follower") else ""),  # type: ignore[index]
                  file=sys.stderr, flush=True)
    print(f"{a.files} files of {a.size_mib:g} MiB, {a.seconds:g} s a run, step {a.step_ms:g} ms, "
          f"{'every epoch cold (loader evicts what it read)' if a.evict else 'later epochs warm'}; {cgroup_memory()}\n")
    print(table(runs))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
