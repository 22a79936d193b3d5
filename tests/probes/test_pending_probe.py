"""probes/pending.py: young processes that mapped CUDA but hold no GPU context are found, with the
GPU they will most likely use; old, CUDA-less, vanished or unreadable processes are not."""

from __future__ import annotations

import os
from pathlib import Path

from nodetune.probes.host import Host
from nodetune.probes.pending import pending_gpu_processes

STAT = "{pid} (python3) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 50 5 0 0 20 0 4 0 {start} 1000 100 0 0 0 0 0\n"
TORCH_MAPS = ("7f00 r-xp 00000000 fd:01 123 /opt/venv/lib/python3.12/site-packages/torch/lib/libtorch_cuda.so\n"
              "7f10 r-xp 00000000 fd:01 124 /usr/lib/libc.so.6\n")


def proc(root: Path, pid: int, start_ticks: int, maps: str, environ: bytes = b"") -> None:
    d = root / "proc" / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(STAT.format(pid=pid, start=start_ticks))
    (d / "maps").write_text(maps)
    (d / "environ").write_bytes(environ)


def test_pending_finds_young_cuda_processes(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "uptime").write_text("1000.00 900.00\n")
    proc(tmp_path, 10, 99_000, TORCH_MAPS, b"CUDA_VISIBLE_DEVICES=1,2\0HOME=/root\0")  # 10 s old, GPU 1
    proc(tmp_path, 11, 99_500, TORCH_MAPS, b"LOCAL_RANK=3\0")  # torchrun rank 3
    proc(tmp_path, 12, 99_500, "7f10 r-xp 00000000 fd:01 124 /usr/lib/libc.so.6\n")  # no CUDA
    proc(tmp_path, 13, 10_000, TORCH_MAPS)  # 900 s old: not starting
    proc(tmp_path, 14, 99_500, TORCH_MAPS, b"CUDA_VISIBLE_DEVICES=GPU-abc\0")  # a UUID: GPU 0 assumed
    (tmp_path / "proc" / "15").mkdir()  # vanished between listdir and read: skipped
    found = {p.pid: p for p in pending_gpu_processes(Host(str(tmp_path)), {99}, ngpus=4, max_age_s=120)}
    assert set(found) == {10, 11, 14}
    assert found[10].gpus == [1] and found[11].gpus == [3] and found[14].gpus == [0]
    assert found[10].lib == "libtorch_cuda.so"
    # already followed processes, and a node without GPUs, are not scanned
    assert [p.pid for p in pending_gpu_processes(Host(str(tmp_path)), {10, 11, 14}, 4, 120)] == []
    assert pending_gpu_processes(Host(str(tmp_path)), set(), 0, 120) == []


def test_pending_unreadable_maps_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "uptime").write_text("1000.00 900.00\n")
    proc(tmp_path, 10, 99_000, TORCH_MAPS)
    os.unlink(tmp_path / "proc" / "10" / "maps")
    assert pending_gpu_processes(Host(str(tmp_path)), set(), 1, 120) == []


def test_scanner_rechecks_young_processes_until_they_map_cuda(tmp_path: Path) -> None:
    from nodetune.probes.pending import PendingScanner

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "uptime").write_text("1000.00 900.00\n")
    proc(tmp_path, 10, 99_000, "7f10 r-xp 00000000 fd:01 124 /usr/lib/libc.so.6\n")  # still importing
    scanner = PendingScanner(Host(str(tmp_path)), ngpus=1, max_age_s=120)
    assert scanner.scan(set()) == []
    # its stat is not read again (a new scan needs only its maps): remove it to prove it
    os.unlink(tmp_path / "proc" / "10" / "stat")
    (tmp_path / "proc" / "10" / "maps").write_text(TORCH_MAPS)
    assert [p.pid for p in scanner.scan(set())] == [10]
    assert scanner.scan(set()) == []  # reported once; the sampler follows it from then on


def test_children_of_followed_processes_are_workers_not_pending(tmp_path: Path) -> None:
    # A DataLoader worker forked by a GPU process inherits its CUDA mappings.
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "uptime").write_text("1000.00 900.00\n")
    proc(tmp_path, 20, 99_800, TORCH_MAPS)
    (tmp_path / "proc" / "20" / "stat").write_text(STAT.format(pid=20, start=99_800).replace(" S 1 ", " S 7 ", 1))
    assert pending_gpu_processes(Host(str(tmp_path)), {7}, ngpus=1, max_age_s=120) == []
    assert [p.pid for p in pending_gpu_processes(Host(str(tmp_path)), set(), ngpus=1, max_age_s=120)] == [20]
