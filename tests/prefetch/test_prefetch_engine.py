"""nodetune prefetch: the engines on real temp files, the memory guard on fake /proc trees, every bad input."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nodetune.prefetch import (
    MiB,
    Prefetcher,
    PrefetchError,
    PrefetchOptions,
    choose_engine,
    parse_size,
    warm,
)
from nodetune.prefetch import uring as prefetch_uring
from nodetune.probes.host import Host
from nodetune.tuners.recommend import advice_items, profile_from_advice

GiB = 1 << 30
URING_OK, URING_WHY = prefetch_uring.available(None)
ENGINES = ["threads", "fadvise"] + [pytest.param("io_uring", marks=pytest.mark.skipif(
    not URING_OK, reason=f"io_uring not usable in this sandbox: {URING_WHY}"))]


def nodetune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodetune.cli", *args], capture_output=True, text=True, timeout=120)


def fake_root(tmp: Path, free: int = 64 * GiB, avail: int = 100 * GiB, uring: int | None = 0,
              psi_total: int | None = 0) -> Host:
    (tmp / "proc/self").mkdir(parents=True, exist_ok=True)
    (tmp / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    set_mem(tmp, free, avail)
    (tmp / "proc/self/mountinfo").write_text("22 1 259:1 / / rw - ext4 /dev/nvme0n1p1 rw\n")
    if uring is not None:
        (tmp / "proc/sys/kernel/io_uring_disabled").write_text(f"{uring}\n")
    if psi_total is not None:
        set_psi(tmp, psi_total)
    return Host(str(tmp))


def set_mem(tmp: Path, free: int, avail: int, total: int = 128 * GiB) -> None:
    (tmp / "proc/meminfo").write_text(f"MemTotal: {total // 1024} kB\nMemFree: {free // 1024} kB\n"
                                      f"MemAvailable: {avail // 1024} kB\nCached: {8 * GiB // 1024} kB\n")


def set_psi(tmp: Path, total_us: int) -> None:
    (tmp / "proc/pressure").mkdir(parents=True, exist_ok=True)
    (tmp / "proc/pressure/memory").write_text(f"some avg10=0.00 avg60=0.00 avg300=0.00 total={total_us}\n"
                                              "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def make_files(d: Path, n: int, size: int) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"f{i:03d}.bin"
        p.write_bytes(os.urandom(size))
        out.append(p)
    return out


_libc = ctypes.CDLL(None, use_errno=True)


def cached_share(path: Path) -> float:
    """Share of a file's pages in the page cache: mincore on a copy-on-write mapping (faults nothing in)."""
    size = path.stat().st_size
    pages = (size + 4095) // 4096
    vec = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        view = ctypes.c_char.from_buffer(m)
        try:
            if _libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del view
    return sum(v & 1 for v in vec) / pages


def drop(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- sizes and options ---------------------------------------------------------------------------------

def test_sizes_parse_and_bad_ones_name_what_was_expected():
    assert parse_size("1MiB") == MiB and parse_size("8G") == 8 * GiB and parse_size("512k") == 512 * 1024
    assert parse_size("4096") == 4096 and parse_size("1.5GiB") == 3 * GiB // 2 and parse_size("1GB") == 10**9
    for bad in ("", "1x", "-1M", "MiB", "1 2M"):
        with pytest.raises(PrefetchError, match="expected a size"):
            parse_size(bad, "--budget")
    for opts in (PrefetchOptions(depth=0), PrefetchOptions(block_size=1000), PrefetchOptions(order="random"),
                 PrefetchOptions(budget=0), PrefetchOptions(depth=4096, block_size=64 * MiB)):
        with pytest.raises(PrefetchError):
            opts.check()


# -- the engines, on real files --------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_reads_every_byte_into_the_page_cache(tmp_path, engine):
    files = make_files(tmp_path / "data", 6, 3 * MiB + 123)  # not a multiple of the block size
    for f in files:
        drop(f)
    rep = warm([str(tmp_path / "data")], PrefetchOptions(depth=4, block_size=MiB, engine=engine),
               fake_root(tmp_path / "root"))
    assert rep.engine == engine and rep.exit_code == 0 and rep.stopped is None
    assert [f.status for f in rep.files] == ["warmed"] * 6
    assert rep.bytes_read == sum(f.stat().st_size for f in files)
    if engine != "fadvise":  # WILLNEED is advice: the kernel may still be reading when it returns
        assert all(cached_share(f) > 0.99 for f in files)


def test_auto_takes_io_uring_where_it_works_and_threads_where_it_is_disabled(tmp_path):
    host = fake_root(tmp_path, uring=2)
    assert choose_engine(host, "auto") == ("threads", "thread pool of preads, because io_uring disabled for "
                                                      "every process (kernel.io_uring_disabled = 2)")
    with pytest.raises(PrefetchError, match="--engine io_uring: io_uring disabled"):
        choose_engine(host, "io_uring")
    name, why = choose_engine(fake_root(tmp_path / "on", uring=None), "auto")
    assert (name == "io_uring") == URING_OK, why


@pytest.mark.skipif(not URING_OK, reason=f"io_uring not usable in this sandbox: {URING_WHY}")
def test_the_ring_reports_errors_per_read(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"a" * 10000)
    buf = mmap.mmap(-1, 8192)
    view = ctypes.c_char.from_buffer(buf)
    fd = os.open(p, os.O_RDONLY)
    try:
        with prefetch_uring.Ring(4) as ring:
            ring.read(fd, ctypes.addressof(view), 8192, 8192, 7)  # past 10000: a short read of 1808 bytes
            ring.read(-1, ctypes.addressof(view), 10, 0, 8)
            got: dict[int, int] = {}
            while len(got) < 2:
                got.update((c.tag, c.res) for c in ring.submit_and_wait(1))
        assert got == {7: 10000 - 8192, 8: -9}  # EBADF
    finally:
        os.close(fd)
        del view
        buf.close()


# -- bad input: one line each, the rest goes on ---------------------------------------------------------

def test_bad_inputs_fail_alone_and_the_rest_is_warmed(tmp_path):
    good = make_files(tmp_path / "good", 2, MiB)
    (tmp_path / "empty").mkdir()
    os.mkfifo(tmp_path / "fifo")  # opening it would block: it must be refused before open
    (tmp_path / "good" / "dangling").symlink_to(tmp_path / "gone")
    rep = warm([str(tmp_path / "missing"), str(tmp_path / "good"), str(tmp_path / "fifo"), str(tmp_path / "empty")],
               PrefetchOptions(engine="threads"), fake_root(tmp_path / "root"))
    by = {Path(f.path).name: f for f in rep.files}
    assert by["missing"].status == "failed" and by["missing"].note == "No such file or directory"
    assert by["fifo"].status == "failed" and "a FIFO, not a regular file" in by["fifo"].note
    assert by["dangling"].status == "failed"
    assert by["f000.bin"].status == by["f001.bin"].status == "warmed"
    assert rep.bytes_read == 2 * MiB and rep.exit_code == 1
    assert any("empty directory" in n for n in rep.notes)
    assert [Path(f.path).name for f in rep.files][0] == "missing"  # reported in the order given
    assert good


def test_unreadable_file_fails_alone(tmp_path):
    d = Path(tempfile.mkdtemp(prefix="nt-prefetch-"))
    try:
        d.chmod(0o755)
        make_files(d, 1, MiB)
        secret = d / "secret"
        secret.write_bytes(b"x" * 4096)
        secret.chmod(0)
        rd, wr = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: as nobody when root (root reads anything), already imported
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                r = warm([str(d)], PrefetchOptions(engine="threads", floor=1), Host("/"))
                os.write(wr, json.dumps([(Path(f.path).name, f.status, f.note) for f in r.files]).encode())
            finally:
                os._exit(0)
        os.close(wr)
        with os.fdopen(rd) as f:
            got = f.read()
        os.waitpid(pid, 0)
        assert json.loads(got) == [["f000.bin", "warmed", ""], ["secret", "failed", "Permission denied"]]
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def test_sparse_files_read_only_their_data(tmp_path):
    p = tmp_path / "sparse"
    with open(p, "wb") as f:
        f.seek(64 * MiB)
        f.write(b"z" * MiB)
    rep = warm([str(p)], PrefetchOptions(engine="threads"), fake_root(tmp_path / "root"))
    f = rep.files[0]
    if f.note == "":  # a file system without holes (SEEK_DATA unsupported) reads all of it
        pytest.skip("this file system does not report holes")
    assert f.status == "warmed" and "sparse: 1.0 MiB of 65.0 MiB is data; holes skipped" == f.note
    assert f.bytes_read == MiB


def test_a_file_larger_than_the_budget_is_warmed_up_to_the_budget_and_the_rest_skipped(tmp_path):
    big, small = make_files(tmp_path / "d", 2, 3 * MiB)
    rep = warm([str(big), str(small)], PrefetchOptions(engine="threads", budget=2 * MiB),
               fake_root(tmp_path / "root"))
    assert [f.status for f in rep.files] == ["partial", "skipped"]
    assert rep.files[0].bytes_read == 2 * MiB and "larger than the budget left" in rep.files[0].note
    assert "over the budget (2.0 MiB)" in rep.files[1].note
    assert rep.exit_code == 0  # a budget is what was asked for, not a failure


def test_tmpfs_and_nfs_have_no_block_device_and_are_warmed_anyway(tmp_path):
    host = fake_root(tmp_path / "root")
    make_files(tmp_path / "d", 1, MiB)
    (tmp_path / "root/proc/self/mountinfo").write_text(
        "22 1 259:1 / / rw - ext4 /dev/nvme0n1p1 rw\n"
        f"30 22 0:45 / {tmp_path / 'd'} rw - nfs4 server:/export rw\n")
    rep = warm([str(tmp_path / "d")], PrefetchOptions(engine="threads"), host)
    assert rep.exit_code == 0 and rep.files[0].status == "warmed"
    assert rep.notes == [f"{tmp_path / 'd'}: on nfs4 (no block device): warmed anyway"]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm here")
def test_a_real_tmpfs_path_says_so():
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
        f.write(b"x" * MiB)
        f.flush()
        rep = warm([f.name], PrefetchOptions(engine="threads"))
    if not any("no block device" in n for n in rep.notes):
        pytest.skip("/dev/shm is not tmpfs here")
    assert rep.files[0].status == "warmed" and "already in RAM" in rep.notes[0]


# -- the memory budget -----------------------------------------------------------------------------------

def test_a_full_page_cache_reads_nothing_and_says_why(tmp_path):
    make_files(tmp_path / "d", 2, MiB)
    host = fake_root(tmp_path / "root", free=256 * MiB, avail=40 * GiB)  # cache holds the memory
    rep = warm([str(tmp_path / "d")], PrefetchOptions(engine="threads"), host)
    assert rep.bytes_read == 0 and rep.exit_code == 1
    assert rep.stopped is not None and rep.stopped.startswith("page cache full: MemFree 256.0 MiB is not above "
                                                              "the floor 6.4 GiB")
    assert "--allow-evict" in rep.stopped and all(f.status == "skipped" for f in rep.files)
    rep = warm([str(tmp_path / "d")], PrefetchOptions(engine="threads", allow_evict=True), host)
    assert rep.bytes_read == 2 * MiB and rep.exit_code == 0


def test_free_memory_above_the_floor_caps_the_budget(tmp_path):
    make_files(tmp_path / "d", 4, MiB)
    host = fake_root(tmp_path / "root", free=GiB + 2 * MiB, avail=50 * GiB)
    rep = warm([str(tmp_path / "d")], PrefetchOptions(engine="threads", floor=GiB), host)
    assert rep.bytes_read == 2 * MiB and [f.status for f in rep.files] == ["warmed", "warmed", "skipped", "skipped"]
    assert any(n.startswith("memory: only 2.0 MiB free above the floor 1.0 GiB") for n in rep.notes)


@pytest.mark.parametrize("pressure", ["memavailable", "psi"])
def test_memory_pressure_while_warming_stops_it(tmp_path, pressure):
    make_files(tmp_path / "d", 8, MiB)
    root = tmp_path / "root"
    host = fake_root(root)
    t0 = time.monotonic()

    def squeeze(done: int, total: int) -> None:
        if done >= 2 * MiB:  # after the first files: the job starts allocating
            if pressure == "psi":
                set_psi(root, int((time.monotonic() - t0 + 10) * 1e6))  # stalled the whole interval
            else:
                set_mem(root, free=GiB, avail=GiB)

    rep = warm([str(tmp_path / "d")], PrefetchOptions(engine="threads", depth=1, check_every_s=0), host,
               progress=squeeze)
    assert rep.exit_code == 1 and rep.stopped is not None
    assert rep.stopped.startswith("memory pressure: " + ("PSI memory some" if pressure == "psi" else
                                                         "MemAvailable 1.0 GiB below the floor 6.4 GiB"))
    statuses = [f.status for f in rep.files]
    assert statuses[:2] == ["warmed", "warmed"] and statuses[-1] == "skipped"
    assert rep.bytes_read < 8 * MiB


# -- the DataLoader API ----------------------------------------------------------------------------------

def test_prefetcher_stays_a_bounded_number_of_files_ahead_and_never_blocks(tmp_path):
    files = [str(p) for p in make_files(tmp_path / "d", 12, MiB)]
    with Prefetcher(budget="64MiB", ahead_files=4, depth=4, engine="threads", host=fake_root(tmp_path / "root")) as p:
        t = time.monotonic()
        p.feed(files)
        assert time.monotonic() - t < 0.05  # feed queues and returns
        assert p.wait_idle(10)
        assert p.stats.warmed_files == 4 and p.stats.bytes_read == 4 * MiB
        p.advance(3)  # the loader consumed three
        assert p.wait_idle(10) and p.stats.warmed_files == 7
        p.done(files[3])
        assert p.wait_idle(10) and p.stats.warmed_files == 8
        p.advance(12)  # the loader ran past everything: unwarmed ones are dropped
        assert p.wait_idle(10)
    assert p.stats.dropped > 0 and p.stats.failed == 0 and p.stats.stopped is None


def test_prefetcher_byte_budget_and_pressure_stop(tmp_path):
    files = [str(p) for p in make_files(tmp_path / "d", 6, MiB)]
    with Prefetcher(budget="2MiB", ahead_files=100, engine="threads", host=fake_root(tmp_path / "r")) as p:
        p.feed(files)
        assert p.wait_idle(10) and p.stats.bytes_read == 2 * MiB
    with Prefetcher(engine="threads", host=fake_root(tmp_path / "full", free=MiB, avail=MiB)) as p:
        p.feed(files)
        assert p.wait_idle(10)
    assert p.stats.stopped is not None and p.stats.stopped.startswith("page cache full")
    with pytest.raises(PrefetchError, match="ahead_files"):
        Prefetcher(ahead_files=0)


# -- the command and the recommendation --------------------------------------------------------------------

def test_cli_exit_codes_lines_and_json(tmp_path):
    make_files(tmp_path / "d", 3, MiB)
    r = nodetune("prefetch", str(tmp_path / "d"), "--depth", "4", "--block-size", "256K")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("warmed 3 file(s), 3.0 MiB in ") and "GB/s) with " in r.stdout
    r = nodetune("prefetch", str(tmp_path / "d"), str(tmp_path / "nope"), "--json", "--engine", "threads")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["engine"] == "threads" and out["failed"] == 1 and out["bytes_read"] == 3 * MiB
    assert set(out["mem_before"]) == {"MemTotal", "MemFree", "MemAvailable", "Cached"}
    r = nodetune("prefetch", str(tmp_path / "nope"))
    assert r.returncode == 1 and r.stderr.strip() == f"{tmp_path / 'nope'}: failed: No such file or directory"
    for args, line in ((["--budget", "lots"], "--budget: expected a size such as 1MiB, 512K or 8GiB, got 'lots'"),
                       (["--depth", "0"], "--depth: expected a whole number between 1 and 4096, got '0'"),
                       (["--order", "random"], "--order: expected one of listed, sorted, got 'random'"),
                       (["--block-size", "1000"], "block size: expected a multiple of 4 KiB")):
        r = nodetune("prefetch", str(tmp_path / "d"), *args)
        assert r.returncode == 2 and r.stderr.startswith(f"nodetune: error: {line}"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = nodetune("prefetch")
    assert r.returncode == 2 and "PATH" in r.stderr


def test_recommend_prints_the_prefetch_command_for_io_starved_jobs():
    items = advice_items([{"tuner": "readahead", "params": {"paths": ["/data/shards", "/mnt/my data"],
                                                            "read_ahead_kb": 4096}, "text": "io"}])
    prof, notes = profile_from_advice(items)
    assert prof.readahead is not None and prof.readahead.paths == ["/data/shards", "/mnt/my data"]
    assert any("nodetune prefetch --budget 8GiB /data/shards '/mnt/my data'" in n for n in notes)
    _, notes = profile_from_advice(advice_items([{"tuner": "readahead", "params": {"paths": ["/"]}, "text": ""}]))
    assert not any("prefetch" in n for n in notes)  # never "warm the whole root"


