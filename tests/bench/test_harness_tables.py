"""The tables the diagnosis benchmark and diagnosis_v2_run.sh print."""

from __future__ import annotations

import json

from bench.harness.judge import Goals, Got, Row
from bench.harness.tables import confusion, fmt_num, goal_lines, per_workload, positions, table


def test_table_pads_every_column_to_its_widest_cell():
    assert table(["a", "bb"], [["xyz", "1"], ["q", "22"]]).splitlines() == [
        "a    bb", "---  --", "xyz  1 ", "q    22"]


def _rows() -> list[Row]:
    ok = Row(round=1, workload="compute_bound", device="cuda:0", gpu=0, status="ok", expected=["compute_bound", None],
             got=Got(verdict="compute_bound", cause=None, finding_present=True, top_evidence="sm=0.97"),
             correct=True, util_mean=97.0, beyond_s=0.12)
    wrong = Row(round=2, workload="cpu_starved", device="cuda:0", gpu=0, status="ok",
                expected=["data_starved", "cpu_input"], got=Got(verdict="compute_bound", cause=None),
                correct=False, util_mean=None, beyond_s=0.2)
    err = Row(round=3, workload="io_starved", device="cuda:0", gpu=0, status="error",
              expected=["data_starved", "io_input"], got=Got(), correct=False, error="exited before READY")
    skipped = Row(round=None, workload="allreduce", device="all", gpu=None, status="skipped",
                  expected=["communication_bound", None], got=None, correct=None, error="needs >= 2 GPUs")
    return [ok, wrong, err, skipped]


def test_confusion_rows_are_expectations_columns_what_diagnose_said():
    text, counts = confusion(_rows())
    assert counts == {"compute_bound": {"compute_bound": 1}, "data_starved/cpu_input": {"compute_bound": 1},
                      "data_starved/io_input": {"ERROR": 1}}
    head, _, *body = text.splitlines()
    assert head.split() == ["expected", "\\", "got", "compute_bound", "ERROR"]
    assert body[1].split() == ["data_starved/cpu_input", "1", "."]
    assert "allreduce" not in text and "communication_bound" not in text


def test_per_workload_marks_wrong_errors_and_skips():
    lines = per_workload(_rows()).splitlines()
    assert lines[0].split() == ["workload", "gpu", "expected", "got", "correct", "finding", "util%", "beyond", "s",
                                "top", "evidence"]
    assert lines[2].split() == ["compute_bound", "0", "compute_bound", "compute_bound", "yes", "yes", "97", "0.12",
                                "sm=0.97"]
    assert lines[3].split()[3:8] == ["compute_bound", "NO", "no", "?", "0.20"]
    assert lines[4].split()[3:5] == ["ERROR", "NO"] and lines[4].rstrip().endswith("exited before READY")
    assert lines[5].split()[:4] == ["allreduce", "-", "communication_bound", "skipped"]


def test_goal_lines():
    g = Goals(counted=3, wrong=["cpu_starved@gpu0"], idle_healthy=[], beyonds=[0.25, 0.5], failed_diagnose_runs=1)
    assert goal_lines(g) == [
        "[FAIL] every workload diagnosed correctly: 2/3 (wrong: cpu_starved@gpu0)",
        "[PASS] no job whose GPU was idle >= 50% of the window came out healthy",
        "[FAIL] diagnose work beyond its window < 1s: max 0.50s (per diagnose run: 0.25, 0.50); "
        "1 diagnose run(s) failed",
    ]
    assert fmt_num(None, ".2f") == "?"


def _gpu(verdict: str, cause: str | None, borderline: bool = False, idle: float = 0.1) -> dict:
    return {"index": 0, "verdict": verdict, "cause": cause, "borderline": borderline,
            "attribution": {"idle_share": idle, "unexplained_share": 0.05}}


def test_positions_table_of_the_v2_reports(tmp_path):
    for n, g in enumerate([_gpu("startup", "startup"), _gpu("startup", "startup", borderline=True, idle=0.6)], 1):
        (tmp_path / f"startup-launch-{n}.json").write_text(json.dumps({"gpus": [g]}))
    for n, v in enumerate(["checkpoint", "compute_bound"], 1):
        (tmp_path / f"checkpoint-phase-{n}.json").write_text(json.dumps({"gpus": [_gpu(v, None)]}))
    (tmp_path / "checkpoint-steady-1.json").write_text("")  # diagnose failed: no report
    (tmp_path / "startup-launch-1.json.gz").write_text("not a report")
    lines = positions(tmp_path).splitlines()
    assert lines[0].startswith(f"{tmp_path / 'checkpoint-steady-1.json'}: no report")
    assert lines[1].split()[:4] == ["workload", "position", "gpu", "verdicts"]
    assert lines[2].split() == ["checkpoint", "phase", "0", "checkpoint/None,", "compute_bound/None", "NO", "10%",
                                "5%"]
    assert lines[3].split() == ["startup", "launch", "0", "startup/startup,", "startup/startup~", "yes", "60%", "5%"]
