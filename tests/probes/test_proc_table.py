"""probes/proc_table.py: loader workers are found from one listing of /proc and each pid's stat read
once, not from a walk of every thread's children file; a reused pid and a re-parented grandchild are
not taken for workers; an unreadable /proc keeps the workers already followed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nodetune.probes.host import Host
from nodetune.probes.node import probe_topology
from nodetune.probes.nvml_backend import NvmlBackend
from nodetune.probes.proc_table import ProcTable
from nodetune.probes.sampler import Sampler
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import FakeNode, FakeProc, vm_h200

TRAIN = 4242


def _proc(node: FakeNode, pid: int, ppid: int, start: int = 123456) -> None:
    node.process(FakeProc(pid=pid, comm="pt_data_worker", cmdline=["python"], ppid=ppid, starttime=start,
                          threads={pid: ("pt_data_worker", "S", 10, 1)}))


def test_descendants_come_from_parents_read_once(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.process(FakeProc(pid=TRAIN, comm="python", cmdline=["python"], threads={TRAIN: ("python", "R", 5, 1)}))
    for w in (5000, 5001):
        _proc(node, w, TRAIN)
    _proc(node, 6000, 5000)  # a worker's own child (a decoder it spawned)
    _proc(node, 7000, 1)  # someone else's
    table = ProcTable(Host(str(tmp_path)))
    assert table.scan()
    kids, capped = table.descendants(TRAIN, 256)
    assert sorted(kids) == [5000, 5001, 6000] and not capped
    few, more = table.descendants(TRAIN, 2)
    assert len(few) == 2 and more
    # a pid's stat is read once in its life: the next scan needs the listing only
    os.unlink(tmp_path / "proc" / "5000" / "stat")
    assert table.scan() and table.new == set()
    assert sorted(table.descendants(TRAIN, 256)[0]) == [5000, 5001, 6000]


def test_a_grandchild_whose_parent_left_is_no_longer_a_descendant(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.process(FakeProc(pid=TRAIN, comm="python", cmdline=["python"]))
    _proc(node, 5000, TRAIN)
    _proc(node, 6000, 5000)
    table = ProcTable(Host(str(tmp_path)))
    table.scan()
    shutil.rmtree(tmp_path / "proc" / "5000")  # a daemonising double fork: the middle one exits
    table.scan()
    assert table.descendants(TRAIN, 256) == ([], False)


def test_an_unlistable_proc_is_an_error_and_keeps_the_table(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.process(FakeProc(pid=TRAIN, comm="python", cmdline=["python"]))
    _proc(node, 5000, TRAIN)
    table = ProcTable(Host(str(tmp_path)))
    table.scan()
    shutil.rmtree(tmp_path / "proc")
    assert not table.scan() and table.error and "/proc" in table.error
    assert table.descendants(TRAIN, 256) == ([5000], False)


def _sampler(tmp_path: Path, workers: list[int]) -> tuple[Sampler, Path]:
    p = vm_h200(tmp_path)
    p.node.process(FakeProc(pid=TRAIN, comm="python", cmdline=["python", "train.py"], cpus=[0, 1],
                            threads={TRAIN: ("python", "R", 500, 50), 4243: ("pt_autograd_0", "S", 5, 1)}))
    for w in workers:
        _proc(p.node, w, TRAIN)
    gpus = hgx_gpus(p.gpu_addresses)
    gpus[0].processes = [(TRAIN, 2**30)]
    backend = NvmlBackend(FakeNvml(gpus))
    host = Host(str(tmp_path))
    return Sampler(host, backend, probe_topology(host, backend, backend.open())), tmp_path


def test_the_sampler_follows_workers_without_children_files(tmp_path: Path) -> None:
    # CONFIG_PROC_CHILDREN off: no /proc/PID/task/TID/children anywhere
    s, root = _sampler(tmp_path, [5000, 5001])
    for f in root.glob("proc/*/task/*/children"):
        f.unlink()
    s.sample()
    assert sorted(p for p, i in s.infos.items() if i.role == "worker") == [5000, 5001]
    assert all(s.infos[w].parent_gpu_pid == TRAIN for w in (5000, 5001))


def test_a_reused_pid_is_not_taken_for_a_worker(tmp_path: Path) -> None:
    s, root = _sampler(tmp_path, [])
    # the table saw pid 5000 as the trainer's child; before the worker scan it exited and an
    # unrelated process took its pid (another start time)
    _proc(FakeNode(root), 5000, TRAIN, start=111)
    s._table.scan()
    FakeNode(root).process(FakeProc(pid=5000, comm="bash", cmdline=["bash"], ppid=TRAIN, starttime=222))
    s.sample()
    assert 5000 not in s.infos
    # the table reads that pid again: the new process is the trainer's child, so a worker from now on
    s.sample(detail=True)
    assert s.infos[5000].role == "worker" and s.infos[5000].starttime == 222
