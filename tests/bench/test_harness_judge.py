"""The bench harness's judging: expectations read from the workload files, what a diagnose report
said about a GPU, and the three goals."""

from __future__ import annotations

from pathlib import Path

from bench.harness.judge import (
    Got,
    Row,
    evaluate,
    fmt_evidence,
    idle_share,
    is_correct,
    judge_goals,
    label,
    read_expected,
)
from bench.harness.workloads import WORKLOAD_DIR, discover

REPO = Path(__file__).resolve().parents[2]


def test_every_workload_file_states_its_expectation():
    found = discover()
    assert {"compute_bound", "cpu_starved", "io_starved", "allreduce", "straggler_2gpu"} <= set(found)
    assert found["cpu_starved"].expected == ("data_starved", "cpu_input")
    assert found["idle_allocated"].expected == ("idle_allocated", None)
    assert not [n for n in found if n.startswith("_")]  # helpers and stand-ins are not workloads
    frameworks = sorted((WORKLOAD_DIR / "frameworks").glob("[!_]*.py"))
    assert frameworks and all(read_expected(p) is not None for p in frameworks)
    assert read_expected(WORKLOAD_DIR / "startup.py", "EXPECTED_AT_LAUNCH") == ("startup", None)


def test_read_expected_refuses_what_is_not_a_pair(tmp_path):
    (tmp_path / "a.py").write_text("EXPECTED = compute()\n")
    (tmp_path / "b.py").write_text("EXPECTED = ('x',)\n")
    (tmp_path / "c.py").write_text("def (:\n")
    assert [read_expected(tmp_path / f) for f in ("a.py", "b.py", "c.py", "missing.py")] == [None] * 4


def test_label():
    assert label("data_starved", "cpu_input") == "data_starved/cpu_input"
    assert label("compute_bound", None) == "compute_bound"
    assert label("?", "?") == "?"


def _report() -> dict:
    return {
        "gpus": [{"index": 0, "verdict": "data_starved", "healthy": False,
                  "metrics": {"util_pct": 12.0, "idle_share": 0.8}},
                 {"index": 1, "verdict": "compute_bound", "cause": None, "healthy": True, "metrics": {}}],
        "jobs": [{"id": "j1", "pids": [41], "gpus": [0], "verdict": "data_starved", "cause": "cpu_input",
                  "findings": [{"kind": "data_starved", "cause": "cpu_input", "gpus": [0], "pids": [41],
                                "confidence": 0.9, "evidence": {"idle": 0.8, "workers": 4, "x": 1, "y": 2}}]}],
        "findings": [{"kind": "compute_bound", "gpus": [1], "confidence": 0.7, "evidence": {"sm": 0.97}}],
    }


def test_evaluate_takes_the_cause_from_the_job_where_the_gpu_has_none():
    got = evaluate(_report(), 0, ("data_starved", "cpu_input"), pids=[41, 42])
    assert (got.verdict, got.cause, got.healthy) == ("data_starved", "cpu_input", False)
    assert got.job == {"id": "j1", "verdict": "data_starved", "cause": "cpu_input", "pids": [41]}
    assert got.finding_present
    assert got.top_evidence == "idle=0.8, workers=4, x=1"
    assert (got.metrics_util, got.metrics_idle_share) == (12.0, 0.8)
    assert is_correct("ok", got, ("data_starved", "cpu_input"))
    assert not is_correct("ok", got, ("data_starved", "io_input"))
    assert not is_correct("error", got, ("data_starved", "cpu_input"))


def test_evaluate_finds_the_job_by_gpu_when_no_pid_matches():
    got = evaluate(_report(), 0, ("data_starved", None), pids=[999])
    assert got.job is not None and got.job["id"] == "j1"
    other = evaluate(_report(), 1, ("data_starved", None), pids=[])
    assert (other.verdict, other.cause, other.finding_present) == ("compute_bound", None, False)
    assert other.top_evidence == "sm=0.97"


def test_evaluate_without_a_report_or_a_gpu_entry():
    assert evaluate(None, 0, ("x", None), []) == Got()
    got = evaluate({"gpus": "junk", "jobs": None}, 3, ("x", None), [])
    assert got.verdict == "?" and not got.finding_present


def test_evaluate_a_replayed_report():
    from nodetune.config.diagnosis import Thresholds
    from nodetune.diagnosis.engine import diagnose
    from nodetune.probes.serde import to_jsonable
    from nodetune.probes.snapshot import load_snapshot

    snap = load_snapshot(str(REPO / "examples" / "h200-dataloader-starved.json.gz"))
    assert snap.window is not None
    report = to_jsonable(diagnose(snap.topology, snap.window, Thresholds(), "replay"))
    got = evaluate(report, 0, ("data_starved", "cpu_input"), pids=[])
    assert (got.verdict, got.cause, got.healthy, got.finding_present) == ("data_starved", "cpu_input", False, True)
    assert got.metrics_util is not None and got.metrics_idle_share is not None


def test_fmt_evidence_shortens_long_values():
    assert fmt_evidence({"a": 0.123456, "b": list(range(30))}) == "a=0.123, b=[0,1,2,3,4,5,6,7,8,9,..."
    assert fmt_evidence(None) == ""


def test_idle_share_prefers_diagnose_metrics_only_where_nvidia_smi_could_not_say():
    got = Got(metrics_idle_share=0.9)
    assert idle_share(20.0, "nvidia-smi", got) == 0.8
    assert idle_share(20.0, "diagnose metrics", got) == 0.9
    assert idle_share(None, "none", got) is None


def _row(name: str, gpu: int, verdict: str, correct: bool, idle: float | None, status: str = "ok",
         healthy: object = "?") -> Row:
    return Row(round=1, workload=name, device=f"cuda:{gpu}", gpu=gpu, status=status, expected=[verdict, None],
               got=Got(verdict=verdict, healthy=healthy), correct=correct, idle_share=idle)


def test_goals():
    rows = [_row("compute_bound", 0, "compute_bound", True, 0.02),
            _row("cpu_starved", 0, "compute_bound", False, 0.7),        # idle and called healthy
            _row("idle_allocated", 1, "healthy", False, None),          # idle by construction
            _row("memory_bound", 1, "memory_bound", True, None, healthy=True),
            Row(round=None, workload="allreduce", device="all", gpu=None, status="skipped",
                expected=["communication_bound", None], got=None, correct=None)]
    g = judge_goals(rows, [{"beyond_s": 0.3, "error": None}, {"beyond_s": 0.5, "error": None}])
    assert g.counted == 4 and g.wrong == ["cpu_starved@gpu0", "idle_allocated@gpu1"]
    assert g.idle_healthy == ["cpu_starved@gpu0", "idle_allocated@gpu1"]
    assert g.max_beyond == 0.5 and g.beyond_ok and not g.all_correct
    j = g.to_json()
    assert j["all_correct"] == {"pass": False, "wrong": g.wrong, "correct": 2, "total": 4}
    assert j["beyond_window_under_1s"]["pass"]


def test_a_failed_or_slow_diagnose_fails_the_beyond_goal():
    rows = [_row("compute_bound", 0, "compute_bound", True, 0.0)]
    assert not judge_goals(rows, [{"beyond_s": 0.2, "error": "rc=1"}]).beyond_ok
    assert not judge_goals(rows, [{"beyond_s": 1.0, "error": None}]).beyond_ok
    assert not judge_goals(rows, []).beyond_ok
    assert judge_goals(rows, [{"beyond_s": 0.99, "error": None}]).all_correct
