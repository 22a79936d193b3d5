"""Rules over windows recorded on a real H200 with the diagnosis-v2 workloads (bench/workloads:
startup, checkpoint, cpu_eval, half_host), each diagnosed 2 s after launch, in steady state and
across a phase change (bench/device/diagnosis_run.sh, run 3 and 4 of the v2 runner).

At launch (a process ~3 s old whose GPU context appears inside the window, its GPU memory
climbing, the process busy on the CPU with stacks in `main` of the script: native CUDA/cuBLAS
initialisation under it) the verdict is start-up, not host code; a steady job whose GPU
works between host steps stays host_other even though it is only seconds old.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.probes.snapshot import load_snapshot

DATA = Path(__file__).parents[1] / "data" / "h200v2"
EXPECTED = {
    "checkpoint-steady": ("checkpoint", "checkpoint"),
    "cpu_eval-steady": ("host_other", "evaluation"),
    "half_host-steady": ("host_other", "host_code"),
    "half_host-phase": ("host_other", "host_code"),
    "startup-steady": ("compute_bound", None),
    "startup-phase": ("startup", "startup"),
    "startup-launch": ("startup", "startup"),
    "checkpoint-launch": ("startup", "startup"),
    "half_host-launch": ("startup", "startup"),
}


def replay(name: str) -> Report:
    snap = load_snapshot(str(DATA / f"{name}.json.gz"))
    assert snap.window is not None
    return diagnose(snap.topology, snap.window, Thresholds(), f"replay:{name}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_window_verdict(name: str) -> None:
    r = replay(name)
    g = r.gpus[0]
    assert (g.verdict, g.cause) == EXPECTED[name]
    assert r.jobs and r.jobs[0].verdict == EXPECTED[name][0]


@pytest.mark.parametrize("name", ["startup-launch", "checkpoint-launch", "half_host-launch"])
def test_launch_idle_is_start_up_not_host_code(name: str) -> None:
    r = replay(name)
    a = r.gpus[0].attribution
    assert a is not None and a.top() is not None and a.top().cause == "startup"  # type: ignore[union-attr]
    assert a.share("startup") >= 0.6 and a.share("data_loading") == 0.0  # the imports' reads are start-up
    f = next(f for f in r.findings if f.kind == "startup")
    # positive evidence, never the process's age: its GPU context created in the window, its memory climbing
    assert f.severity == "info" and set(f.evidence["basis"]) & {"gpu_context", "gpu_memory", "stacks"}
    assert "process_age" not in f.evidence["basis"]
    assert not any(f.kind == "host_other" and f.severity == "critical" for f in r.findings)


def test_half_host_names_its_host_step_and_no_start_up():
    for name in ("half_host-steady", "half_host-phase"):
        g = replay(name).gpus[0]
        assert "host_step" in g.summary
        assert not any(p.kind == "startup" for p in g.phases), name  # its GPU worked: a host step, not start-up


def test_checkpoint_steady_names_the_writes():
    g = replay("checkpoint-steady").gpus[0]
    assert g.attribution is not None and g.attribution.share("checkpoint") >= 0.4
    assert "GiB written" in g.summary
