"""Verdict rules over recorded windows: every verdict, conflicting signals, missing metrics,
a process that exits, py-spy failing, no GPM."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.probes.serde import from_jsonable, to_jsonable
from nodetune.probes.snapshot import SNAPSHOT_VERSION, Snapshot, save_snapshot
from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

LOADER_STACK = ["<module> (train.py)", "_MultiProcessingDataLoaderIter.__next__ (torch/utils/data/dataloader.py)",
                "_SingleProcessDataLoaderIter._next_data (torch/utils/data/dataloader.py)",
                "_MapDatasetFetcher.fetch (torch/utils/data/_utils/fetch.py)", "Decode.__getitem__ (train.py)"]
STEP_STACK = ["<module> (train.py)", "Module._call_impl (torch/nn/modules/module.py)", "forward (model.py)"]


def run(b: WindowBuilder) -> Report:
    topo, win = b.build()
    return diagnose(topo, win, Thresholds())


def kinds(r: Report) -> set[str]:
    return {f.kind for f in r.findings}


def trainer(pid: int = 100, gpus: list[int] | None = None, main_cpu: float = 30.0, **kw: object) -> ProcLoad:
    return ProcLoad(pid=pid, gpus=gpus or [0], threads=[ThreadLoad(pid, "python", main_cpu),
                                                        ThreadLoad(pid + 1, "pt_autograd", 2.0)], **kw)  # type: ignore[arg-type]


def test_compute_bound_healthy_with_field_note_numbers():
    # bf16 matmul 8192^3 on the real H200: util 100, SM 96, tensor 93, DRAM 17.
    b = WindowBuilder().gpu(0, util=100, sm=96, tensor=93, dram=17, power=650).proc(trainer(main_cpu=100))
    r = run(b)
    g = r.gpus[0]
    assert (g.verdict, g.healthy) == ("compute_bound", True)
    assert r.jobs[0].verdict == "compute_bound" and r.jobs[0].healthy
    f = next(f for f in r.findings if f.kind == "compute_bound")
    assert f.evidence["tensor_active_pct"] == 93 and f.severity == "info"


def test_compute_bound_fp32_without_tensor_cores_is_not_healthy():
    r = run(WindowBuilder().gpu(0, util=100, sm=90, tensor=0, fp32=65, dram=30).proc(trainer()))
    assert r.gpus[0].verdict == "compute_bound" and not r.gpus[0].healthy
    f = next(f for f in r.findings if f.kind == "compute_bound")
    assert f.severity == "warning" and any("TF32" in a.text for a in f.advice)


def test_memory_bound_device_copy():
    # device-to-device copy on the H200: util 100, SM 99, tensor 0, DRAM 89.
    r = run(WindowBuilder().gpu(0, util=100, sm=99, tensor=0, dram=89).proc(trainer()))
    assert r.gpus[0].verdict == "memory_bound"
    assert "compute_bound" not in kinds(r)


def test_data_starved_cpu_input_main_thread_decodes_with_stack_evidence():
    b = (WindowBuilder().gpu(0, busy_pattern=[0, 0, 0, 0, 12, 0, 0, 0, 0, 0], sm=1, tensor=0, pcie_rx=12)
         .proc(trainer(main_cpu=99))
         .stack(100, [(LOADER_STACK, 80), (STEP_STACK, 20)]))
    r = run(b)
    g = r.gpus[0]
    assert (g.verdict, g.cause) == ("data_starved", "cpu_input")
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert f.evidence["stack_data_loading_share"] == 0.8
    assert f.evidence["workers"] == 0 and f.evidence["main_thread_cpu_pct"] >= 95
    # One NUMA node: pinning would change nothing, so it is not advised; workers are.
    assert not any(a.tuner == "pinning" for a in f.advice)
    assert any("num_workers=" in a.text for a in f.advice)
    assert r.jobs[0].stacks[0].top_stack[-1] == "Decode.__getitem__ (train.py)"
    assert not r.jobs[0].healthy


def test_data_starved_cpu_input_workers_saturated():
    b = WindowBuilder().gpu(0, util=20, sm=8, tensor=5).proc(trainer(main_cpu=15))
    for w in range(4):
        b.proc(ProcLoad(pid=200 + w, gpus=[0], role="worker", parent=100, threads=[ThreadLoad(200 + w, "python", 97)]))
    r = run(b)
    assert (r.gpus[0].verdict, r.gpus[0].cause) == ("data_starved", "cpu_input")
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert f.evidence["busy_workers"] == 4 and f.evidence["workers"] == 4


def test_data_starved_io_input():
    b = (WindowBuilder().gpu(0, busy_pattern=[0, 0, 8, 0, 0, 0, 0, 9, 0, 0], sm=2)
         .host_load(psi_io=35, psi_io_full=20, disks={"nvme1n1": (92, 640)})
         .proc(ProcLoad(pid=100, gpus=[0], blkio_pct=55, open_files=["/data/shard-0001.tar"],
                        threads=[ThreadLoad(100, "python", 12), ThreadLoad(101, "reader", 5, state="D"),
                                 ThreadLoad(102, "reader", 5, state="D")])))
    r = run(b)
    assert (r.gpus[0].verdict, r.gpus[0].cause) == ("data_starved", "io_input")
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert f.evidence["disk"] == "nvme1n1" and f.evidence["psi_io_some_pct"] == pytest.approx(35, abs=0.5)
    ra = next(a for a in f.advice if a.tuner == "readahead")
    assert ra.params["paths"] == ["/data"]


def test_transfer_bound_pageable_copies():
    # pageable host-to-device copies on the H200: util 18, SM 0, PCIe rx 8500 MiB/s.
    r = run(WindowBuilder().gpu(0, util=18, sm=0, tensor=0, pcie_rx=8500).proc(trainer(main_cpu=100)))
    assert r.gpus[0].verdict == "transfer_bound"
    f = next(f for f in r.findings if f.kind == "transfer_bound")
    assert any("pageable" in n for n in f.notes)
    assert any("pin_memory" in a.text for a in f.advice)


def test_launch_bound_tiny_kernels():
    r = run(WindowBuilder().gpu(0, util=55, sm=3, tensor=0, dram=1).proc(trainer(main_cpu=100))
            .stack(100, [(STEP_STACK, 95)]))
    assert r.gpus[0].verdict == "launch_bound"


def test_communication_bound_nccl():
    b = WindowBuilder(gpus=2)
    for i in (0, 1):
        b.gpu(i, util=100, sm=15, tensor=0, nvlink=90000, power=180, limit=700)
        b.proc(trainer(pid=100 + 10 * i, gpus=[i], main_cpu=100))
    r = run(b)
    assert [g.verdict for g in r.gpus] == ["communication_bound", "communication_bound"]


def test_throttled_power_cap_below_default_advises_power_tuner():
    b = WindowBuilder().gpu(0, util=100, sm=95, tensor=85, reasons=["sw_power_cap"], power=495, limit=500)
    r = run(b.proc(trainer()))
    f = next(f for f in r.findings if f.kind == "throttled")
    assert f.evidence["reasons"] == {"sw_power_cap": 1.0}
    assert any(a.tuner == "power" and a.params["gpu_power_limit_w"] == 700.0 for a in f.advice)
    assert r.gpus[0].verdict == "compute_bound"  # throttling is a finding, not the bottleneck verdict


def test_throttled_ignores_idle_bit_and_idle_samples():
    r = run(WindowBuilder().gpu(0, util=0, reasons=["sw_power_cap"]))
    assert "throttled" not in kinds(r)


def test_idle_allocated():
    b = WindowBuilder(seconds=10).gpu(0, util=0, sm=0, mem_used_gib=20).proc(trainer(main_cpu=0.5))
    r = run(b)
    assert r.gpus[0].verdict == "idle_allocated"
    f = next(f for f in r.findings if f.kind == "idle_allocated")
    assert f.evidence["memory_held_gib"] == 20.0 and f.evidence["idle_seconds"] >= 9


def test_idle_gpu_without_processes():
    r = run(WindowBuilder())
    assert r.gpus[0].verdict == "idle" and not r.findings


def test_numa_misplaced_threads_and_memory_on_remote_node():
    b = WindowBuilder(gpus=2, numa_nodes=2, cpus=32).gpu(1, util=100, sm=95, tensor=90)
    p = ProcLoad(pid=100, gpus=[1],
                 threads=[ThreadLoad(100, "python", 90, processor=3), ThreadLoad(101, "w", 40, processor=5)],
                 numa_pages_kb={"0": 9_000_000, "1": 1_000_000})
    r = run(b.proc(p))
    f = next(f for f in r.findings if f.kind == "numa_misplaced")
    assert f.evidence["remote_thread_share"] == 1.0 and f.evidence["remote_memory_share"] == 0.9
    assert any(a.tuner == "pinning" for a in f.advice)


def test_numa_not_judged_when_gpu_node_unknown():
    b = WindowBuilder(gpus=1, numa_nodes=2, cpus=32, gpu_numa=[None]).gpu(0, util=100, sm=95, tensor=90)
    r = run(b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 90, processor=20)])))
    assert "numa_misplaced" not in kinds(r)


def test_pcie_degraded_only_under_load():
    loaded = run(WindowBuilder().gpu(0, util=100, sm=90, tensor=80, pcie_gen=4, pcie_width=8).proc(trainer()))
    f = next(f for f in loaded.findings if f.kind == "pcie_degraded")
    assert (f.evidence["gen"], f.evidence["width"], f.severity) == (4, 8, "critical")
    idle = run(WindowBuilder().gpu(0, util=0, pcie_gen=1, pcie_width=16))
    assert "pcie_degraded" not in kinds(idle)


def test_host_memory_pressure_and_cpu_contention():
    r = run(WindowBuilder().host_load(psi_mem=12, psi_mem_full=3, swap_pps=500, psi_cpu=35, steal=8))
    assert {"host_memory_pressure", "cpu_contention"} <= kinds(r)
    cc = next(f for f in r.findings if f.kind == "cpu_contention")
    assert cc.evidence["steal_pct"] == pytest.approx(8, abs=0.5)


def test_no_gpm_fallback_lowers_confidence_and_says_why():
    with_gpm = run(WindowBuilder().gpu(0, util=100, mem_util=20, sm=96, tensor=93).proc(trainer()))
    no_gpm = run(WindowBuilder(gpm=False).gpu(0, util=100, mem_util=20).proc(trainer()))
    assert no_gpm.gpus[0].verdict == "compute_bound"
    assert no_gpm.gpus[0].confidence < with_gpm.gpus[0].confidence
    f = next(f for f in no_gpm.findings if f.kind == "compute_bound")
    assert any("GPM" in n for n in f.notes)
    assert not no_gpm.gpus[0].healthy  # cannot see tensor pipes: never called healthy


def test_no_gpm_data_starved_and_transfer():
    r = run(WindowBuilder(gpm=False).gpu(0, busy_pattern=[0, 0, 0, 10], mem_util=2).proc(trainer(main_cpu=98)))
    # A saturated training thread without stacks is host work of no known kind: the cause stays unknown.
    assert (r.gpus[0].verdict, r.gpus[0].cause) == ("data_starved", "unknown")
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert f.severity == "warning" and any("no stack samples show it loading" in n for n in f.notes)
    t = run(WindowBuilder(gpm=False).gpu(0, util=20, pcie_rx=9000).proc(trainer(main_cpu=98)))
    f = next(f for f in t.findings if f.kind == "transfer_bound")
    assert any("NVML" in n for n in f.notes)


def test_conflicting_signals_busy_sms_beat_pcie_traffic():
    r = run(WindowBuilder().gpu(0, util=100, sm=90, tensor=80, pcie_rx=20000).proc(trainer()))
    assert r.gpus[0].verdict == "compute_bound"
    assert "transfer_bound" not in kinds(r)


def test_conflicting_signals_transfer_outranks_starvation():
    r = run(WindowBuilder().gpu(0, util=18, sm=0, pcie_rx=8500).proc(trainer(main_cpu=99)))
    assert {"transfer_bound", "data_starved"} <= kinds(r)
    assert r.gpus[0].verdict == "transfer_bound"


def test_never_healthy_when_idle_half_the_time():
    b = WindowBuilder().gpu(0, busy_pattern=[100, 0], sm=60, tensor=55).proc(trainer(main_cpu=60))
    r = run(b)
    assert r.gpus[0].metrics["idle_share"] == pytest.approx(5 / 11, abs=0.01)
    assert not r.gpus[0].healthy and not r.jobs[0].healthy
    assert r.gpus[0].verdict == "data_starved"


def test_missing_gpm_metric_values_do_not_crash():
    r = run(WindowBuilder().gpu(0, util=100, sm=None, tensor=None, dram=None, fp32=None).proc(trainer()))
    assert r.gpus[0].verdict in {"compute_bound", "unclassified"}
    assert r.gpus[0].metrics["sm_active_pct"] is None


def test_process_exits_during_window():
    b = WindowBuilder().gpu(0, util=100, sm=95, tensor=90).proc(trainer(exits_at=6))
    r = run(b)
    assert r.gpus[0].verdict == "compute_bound"
    assert r.jobs[0].pids == [100]


def test_pyspy_failure_is_reported_in_the_finding():
    b = (WindowBuilder().gpu(0, busy_pattern=[0, 0, 0, 5], sm=1).proc(trainer(main_cpu=99))
         .stack(100, [], ok=False, reason="py-spy could not attach: permission denied (run as root ...)"))
    r = run(b)
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert any("permission denied" in n for n in f.notes)
    assert f.evidence["stack_data_loading_share"] is None
    assert r.jobs[0].stacks[0].ok is False


def test_gpu_lost_mid_window():
    r = run(WindowBuilder().gpu(0, util=100, sm=95, tensor=90, lost_at=4).proc(trainer()))
    assert r.gpus[0].verdict == "gpu_lost"
    assert r.worst_severity() == "critical"


def test_thresholds_come_from_config():
    b = WindowBuilder().gpu(0, util=100, sm=99, tensor=0, dram=55).proc(trainer())
    topo, win = b.build()
    assert diagnose(topo, win, Thresholds()).gpus[0].verdict == "compute_bound"
    lower = Thresholds(memory_bound_dram_pct=50)
    assert diagnose(topo, win, lower).gpus[0].verdict == "memory_bound"


def test_report_round_trips_through_json():
    r = run(WindowBuilder().gpu(0, util=18, sm=0, pcie_rx=8500).proc(trainer()))
    again = from_jsonable(Report, json.loads(json.dumps(to_jsonable(r))))
    assert again == r


def test_replay_cli_gives_the_same_verdict(tmp_path):
    topo, win = WindowBuilder().gpu(0, util=100, sm=99, tensor=0, dram=89).proc(trainer()).build()
    path = tmp_path / "snap.json.gz"
    save_snapshot(Snapshot(SNAPSHOT_VERSION, "2026-11-22T00:00:00+00:00", topo, win), str(path))
    out = subprocess.run([sys.executable, "-c", "from nodetune.cli.app import main; main()", "diagnose",
                          "--replay", str(path), "--json"], capture_output=True, text=True, check=True)
    rep = json.loads(out.stdout)
    assert rep["gpus"][0]["verdict"] == "memory_bound"
    assert rep["source"].startswith("replay:")
    failing = subprocess.run([sys.executable, "-c", "from nodetune.cli.app import main; main()", "diagnose",
                              "--replay", str(path), "--fail-on", "warning"], capture_output=True, text=True)
    assert failing.returncode == 0  # memory_bound is info only


def test_power_cap_at_default_limit_is_info_only():
    # Seen on the H200 under bf16 matmul: 692/700 W, sw_power_cap in every busy sample.
    r = run(WindowBuilder().gpu(0, util=99, sm=96, tensor=93, reasons=["sw_power_cap"], power=692, limit=700)
            .proc(trainer()))
    f = next(f for f in r.findings if f.kind == "throttled")
    assert f.severity == "info" and not any(a.tuner for a in f.advice)


def test_launch_bound_with_low_utilization_needs_stack_evidence():
    # Tiny kernels from a saturated Python thread can leave the GPU mostly idle. Without stacks,
    # batches arriving slowly (the SMs busy whenever the GPU is) look like starvation; kernels
    # trickling in (busy a little in every sample, SMs hardly active) are launch-bound, with
    # less confidence than where stacks show the dispatch.
    starved = WindowBuilder().gpu(0, util=8, sm=6).proc(trainer(main_cpu=100))
    assert run(starved).gpus[0].verdict == "data_starved"
    b = WindowBuilder().gpu(0, util=8, sm=1).proc(trainer(main_cpu=100))
    blind = run(b).gpus[0]
    assert blind.verdict == "launch_bound" and blind.confidence <= 0.6
    r = run(b.stack(100, [(STEP_STACK, 97), (LOADER_STACK, 3)]))
    assert r.gpus[0].confidence > blind.confidence
    assert r.gpus[0].verdict == "launch_bound"
    assert any("dispatch" in n for f in r.findings if f.kind == "launch_bound" for n in f.notes)


def test_idle_allocated_in_a_five_second_window():
    b = WindowBuilder(seconds=5, interval=0.5).gpu(0, util=0, sm=0, mem_used_gib=20).proc(trainer(main_cpu=0.5))
    assert run(b).gpus[0].verdict == "idle_allocated"


def test_no_gpu_node_still_gets_a_node_summary(tmp_path):
    # The laptop fake: no GPU, no NVML. diagnose must still report the host side.
    from tests.support.faketree import laptop

    laptop(tmp_path)
    out = subprocess.run([sys.executable, "-c", "from nodetune.cli.app import main; main()", "diagnose",
                          "--root", str(tmp_path), "--seconds", "1", "--interval", "0.25", "--json"],
                         capture_output=True, text=True, check=True)
    rep = json.loads(out.stdout)
    assert rep["gpus"] == [] and rep["gpu_backend"].startswith("none")
    node = rep["host"]["node"]
    assert node["cpus"] == 8 and node["thp_enabled"] == "madvise"
    assert {d["device"] for d in node["disks"]} >= {"sda", "dm-0"}
