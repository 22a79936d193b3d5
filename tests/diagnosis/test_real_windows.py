"""Rules over windows recorded on a real H200 while bench/workloads ran (bench/device/diagnosis_run.sh).

Each file is the window `nodetune diagnose --save` recorded for one workload whose bottleneck is
known by construction; the verdict must stay right as the rules change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.probes.snapshot import load_snapshot

DATA = Path(__file__).parents[1] / "data" / "h200"
EXPECTED = {
    "compute_bound": ("compute_bound", None),
    "healthy_training": ("compute_bound", None),
    "memory_bound": ("memory_bound", None),
    "cpu_starved": ("data_starved", "cpu_input"),
    "io_starved": ("data_starved", "io_input"),
    "pageable_h2d": ("transfer_bound", None),
    "launch_bound": ("launch_bound", None),
    "idle_allocated": ("idle_allocated", None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_window_verdict(name: str) -> None:
    snap = load_snapshot(str(DATA / f"{name}.json.gz"))
    assert snap.window is not None
    r = diagnose(snap.topology, snap.window, Thresholds(), f"replay:{name}")
    g = r.gpus[0]
    assert (g.verdict, g.cause) == EXPECTED[name]
    assert r.jobs and r.jobs[0].verdict == EXPECTED[name][0]
    # A job whose GPU idles most of the window is never called healthy.
    if (g.metrics["idle_share"] or 0) >= 0.5:
        assert not g.healthy and not r.jobs[0].healthy


def test_healthy_only_when_tensor_pipes_work():
    for name in ("compute_bound", "healthy_training"):
        snap = load_snapshot(str(DATA / f"{name}.json.gz"))
        assert snap.window is not None
        assert diagnose(snap.topology, snap.window, Thresholds()).gpus[0].healthy


@pytest.mark.parametrize("name", ["pageable_h2d", "launch_bound"])
def test_busy_dispatch_thread_is_not_called_starved(name: str) -> None:
    # The thread is saturated, but py-spy shows it issuing copies/kernels, not loading input.
    snap = load_snapshot(str(DATA / f"{name}.json.gz"))
    assert snap.window is not None
    kinds = {f.kind for f in diagnose(snap.topology, snap.window, Thresholds()).findings}
    assert "data_starved" not in kinds


def test_example_snapshot_replays():
    snap = load_snapshot(str(Path(__file__).parents[2] / "examples" / "h200-dataloader-starved.json.gz"))
    assert snap.window is not None and snap.note
    r = diagnose(snap.topology, snap.window, Thresholds())
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert f.cause == "cpu_input" and f.evidence["stack_data_loading_share"] >= 0.5
    assert snap.topology.gpus[0].static.uuid == "GPU-redacted-0"


PAIRS = {  # windows recorded on 2x H200 with a different workload on each GPU at once
    "compute_bound+io_starved": [("compute_bound", None), ("data_starved", "io_input")],
    "memory_bound+cpu_starved": [("memory_bound", None), ("data_starved", "cpu_input")],
    "pageable_h2d+launch_bound": [("transfer_bound", None), ("launch_bound", None)],
    "idle_allocated+healthy_training": [("idle_allocated", None), ("compute_bound", None)],
    "allreduce": [("communication_bound", None), ("communication_bound", None)],
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_two_gpu_window_verdicts(name: str) -> None:
    snap = load_snapshot(str(Path(__file__).parents[1] / "data" / "h200x2" / f"{name}.json.gz"))
    assert snap.window is not None
    r = diagnose(snap.topology, snap.window, Thresholds())
    assert [(g.verdict, g.cause) for g in r.gpus] == PAIRS[name]
    assert snap.topology.link(0, 1) is not None and snap.topology.link(0, 1).label == "NV18"


def test_allreduce_example_is_communication_bound():
    snap = load_snapshot(str(Path(__file__).parents[2] / "examples" / "h200x2-allreduce.json.gz"))
    assert snap.window is not None
    r = diagnose(snap.topology, snap.window, Thresholds())
    comm = [f for f in r.findings if f.kind == "communication_bound"]
    assert {g for f in comm for g in f.gpus} == {0, 1}
    assert all(f.evidence["nvlink_rx_mibps"] > 100_000 for f in comm)
