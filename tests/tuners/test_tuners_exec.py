"""`nodetune exec --gpu N`: binding from the GPU's place, libnuma present or missing, exec itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodetune.probes.host import Host
from nodetune.tuners.errors import TargetError, TuneError
from nodetune.tuners.exec_numa import NO_LIBNUMA, bind, binding_for_gpu, run
from nodetune.tuners.gpu_control import GpuControl
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import vm_h200
from tests.support.tuners_support import dgx_copy

NODE1 = list(range(56, 112)) + list(range(168, 224))


class Recorder:
    def __init__(self) -> None:
        self.affinity: list[tuple[int, list[int]]] = []
        self.preferred: list[int] = []
        self.execs: list[list[str]] = []

    def set_affinity(self, pid, cpus):
        self.affinity.append((pid, list(cpus)))

    def libnuma(self):
        rec = self

        class Sched:
            @staticmethod
            def set_preferred_node(n):
                rec.preferred.append(n)

        return Sched

    def execvp(self, file, argv):
        self.execs.append(argv)


def missing_libnuma():
    raise TuneError(NO_LIBNUMA + " (OSError: libnuma.so.1: cannot open shared object file)")


def test_binding_uses_the_gpus_node_through_nvml_order(tmp_path):
    pre = dgx_copy(tmp_path)
    gpus = GpuControl(FakeNvml(hgx_gpus(pre.gpu_addresses)))
    b = binding_for_gpu(Host(str(pre.node.root)), gpus, 6, list(range(224)))
    assert (b.address, b.numa_node, b.cpus, b.notes) == ("0000:ba:00.0", 1, NODE1, [])
    narrow = binding_for_gpu(Host(str(pre.node.root)), gpus, 6, [0, 1, 60, 61])
    assert narrow.cpus == [60, 61]
    assert len(narrow.notes) == 1 and narrow.notes[0].startswith("warning: only 2 of GPU 6's ")  # said, not hidden
    assert narrow.notes[0] in bind(narrow, False, lambda pid, cpus: None, missing_libnuma)
    with pytest.raises(TargetError, match="none of its local CPUs"):
        binding_for_gpu(Host(str(pre.node.root)), gpus, 6, [0, 1])
    with pytest.raises(TargetError, match="GPU 8: no such GPU on this node \\(GPUs: 0, 1, 2, 3, 4, 5, 6, 7\\)"):
        binding_for_gpu(Host(str(pre.node.root)), gpus, 8, list(range(224)))


def test_bind_sets_cpus_and_preferred_node_then_execs(tmp_path):
    pre = dgx_copy(tmp_path)
    b = binding_for_gpu(Host(str(pre.node.root)), GpuControl.disabled("no NVML"), 1, list(range(224)))
    rec = Recorder()
    said = bind(b, strict=False, set_affinity=rec.set_affinity, libnuma=rec.libnuma)
    assert rec.affinity == [(0, list(range(56)) + list(range(112, 168)))] and rec.preferred == [0]
    assert said[0] == "memory: preferred NUMA node 0" and said[1].startswith("CPUs: 0-55,112-167 (local to GPU 1")
    run(["python3", "-c", "pass"], rec.execvp)
    assert rec.execs == [["python3", "-c", "pass"]]


def test_missing_libnuma_still_binds_cpus_unless_strict(tmp_path):
    pre = dgx_copy(tmp_path)
    b = binding_for_gpu(Host(str(pre.node.root)), GpuControl.disabled("no NVML"), 5, list(range(224)))
    rec = Recorder()
    said = bind(b, strict=False, set_affinity=rec.set_affinity, libnuma=missing_libnuma)
    assert any("libnuma not available: install libnuma1 (apt) / numactl" in s for s in said)
    assert rec.affinity and rec.affinity[0][1] == NODE1
    rec2 = Recorder()
    with pytest.raises(TuneError, match="libnuma not available.*--strict: not starting the command"):
        bind(b, strict=True, set_affinity=rec2.set_affinity, libnuma=missing_libnuma)
    assert rec2.affinity == []


def test_unknown_numa_node_binds_cpus_and_leaves_memory_alone(tmp_path):
    vm_h200(tmp_path)
    b = binding_for_gpu(Host(str(tmp_path)), GpuControl.disabled("no NVML"), 0, list(range(16)))
    assert b.numa_node is None and "memory policy left alone" in b.notes[0]
    rec = Recorder()
    said = bind(b, strict=True, set_affinity=rec.set_affinity, libnuma=missing_libnuma)  # libnuma not needed
    assert rec.preferred == [] and rec.affinity == [(0, list(range(16)))] and "memory policy left alone" in said[0]


def test_real_libnuma_loads_here():
    from nodetune.tuners.exec_numa import load_libnuma

    try:
        sched = load_libnuma()
    except TuneError as exc:
        assert NO_LIBNUMA in exc.reason
        pytest.skip(f"this machine has no libnuma: {exc.reason}")
    assert callable(sched.set_preferred_node)


def test_exec_command_runs_the_program(tmp_path):
    """The real thing, in a subprocess: bind (to the fake VM's CPUs, clipped by the kernel) and exec."""
    vm_h200(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "exec", "--gpu", "0", "--root", str(tmp_path),
                        "--", sys.executable, "-c", "import os; print('ran', len(os.sched_getaffinity(0)) > 0)"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ran True"
    assert "memory policy left alone" in r.stderr and "CPUs: 0-15 (local to GPU 0" in r.stderr


def test_exec_of_a_missing_command_is_one_line(tmp_path):
    with pytest.raises(TuneError, match="no-such-program-xyz: command not found"):
        run(["no-such-program-xyz"])
