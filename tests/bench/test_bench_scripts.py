"""The device scripts parse, and the pure parts of the framework table and the calibration."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench import calibration, frameworks_table
from bench.calibration import Verdict

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "bench" / "device").glob("*.sh"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_device_script_parses(script):
    p = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_device_scripts_launch_through_the_harness():
    """The diagnosis benchmark and the recorded windows are launched by the harness, not by shell loops."""
    text = {p.name: p.read_text() for p in SCRIPTS}
    assert not [n for n, t in text.items() if "bench/run_diagnosis.py" in t]
    assert "bench.harness window" in text["diagnosis_v2_run.sh"] and "setsid" not in text["diagnosis_v2_run.sh"]
    assert "bench.harness window" in text["frameworks_run.sh"] and "setsid" not in text["frameworks_run.sh"]


def test_framework_expectations_are_read_without_importing_torch():
    assert frameworks_table.expected("hf_gpt2_train") == ("compute_bound", None)
    assert frameworks_table.expected("tv_imagefolder") == ("data_starved", "cpu_input")
    assert frameworks_table.parse_cuts("2:12,10:20") == [(2.0, 12.0), (10.0, 20.0)]


def test_cut_and_first_work_on_a_recorded_window():
    from nodetune.probes.snapshot import load_snapshot

    snap = load_snapshot(str(REPO / "tests" / "data" / "frameworks" / "hf_generate-10.json.gz"))
    assert snap.window is not None
    w = frameworks_table.cut(snap.window, 1, 4)
    t0 = snap.window.samples[0].t
    assert w.samples and all(1 - 1e-6 <= s.t - t0 <= 4 + 1e-6 for s in w.samples)
    assert w.seconds == pytest.approx(w.samples[-1].t - w.samples[0].t, abs=1e-3)
    assert frameworks_table.first_work(snap.window) >= 0


def test_start_up_counts_as_right_only_before_the_gpu_first_worked():
    want = ("compute_bound", None)
    assert frameworks_table.is_right(("compute_bound", None), want, 0.0, 2, 12)
    assert frameworks_table.is_right(("startup", "startup"), want, 8.0, 2, 12)
    assert not frameworks_table.is_right(("startup", "startup"), want, 6.0, 2, 12)
    assert not frameworks_table.is_right(("idle", None), want, 99.0, 2, 12)


def test_calibration_render():
    rows = [Verdict("a.json.gz", 0, ("data_starved", "cpu_input"), ("data_starved", "cpu_input"), 0.9, 0.8, 0.1),
            Verdict("b.json.gz", 1, ("compute_bound", None), ("idle", None), 0.3, None, None)]
    lines = calibration.render(rows, windows=2, needs_stacks={"x"})
    assert "| 0.85-0.95 | 1 | 1 | 100% |" in lines and "| 0.00-0.50 | 1 | 0 | 0% |" in lines
    assert "| 0.95-1.00 | 0 | 0 | - |" in lines
    summary = next(line for line in lines if line.startswith("2 GPU verdicts"))
    assert "(1 wrong: b.json.gz read idle)" in summary and "without them: x." in summary
    assert lines[-2:] == ["| a.json.gz | 0 | data_starved/cpu_input | data_starved/cpu_input | 0.90 | 80% | 10% |",
                          "| b.json.gz | 1 | compute_bound | idle | 0.30 | - | - |"]
