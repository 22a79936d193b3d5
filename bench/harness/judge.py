"""Judging diagnose against the workloads: what each expects, what a report said, the goals.

A workload's expectation is its module-level `EXPECTED = (verdict, cause-or-None)`, read with ast
(nothing is imported: the workloads import torch). A row is correct when diagnose's verdict for
the workload's GPU (and cause, where the expectation names one) matches.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Expected = tuple[str, str | None]

HEALTHY_VERDICTS = {"compute_bound", "healthy"}
# Where nvidia-smi cannot say, the GPU of these is idle most of the time by construction.
IDLE_BY_CONSTRUCTION = {"cpu_starved", "io_starved", "pageable_h2d", "idle_allocated"}
BEYOND_GOAL_S = 1.0
IDLE_GOAL = 0.5
UTIL_KEYS = ("util_mean", "nvml_util_pct", "util_gpu_pct", "gpu_util_pct", "nvml_util", "util_gpu", "gpu_util",
             "utilization_gpu", "utilization.gpu", "util_pct", "util")


def read_expected(path: Path, name: str = "EXPECTED") -> Expected | None:
    """The module-level `name = (verdict, cause)` of a workload file, without importing it."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
                return value[0], value[1]
    return None


def label(verdict: Any, cause: Any) -> str:
    """`verdict/cause`, or the verdict alone where there is no cause."""
    return f"{verdict}/{cause}" if cause not in (None, "") and verdict != "?" else str(verdict)


@dataclass
class Got:
    """What diagnose said about one GPU (and the job found on it)."""

    verdict: Any = "?"
    cause: Any = "?"
    healthy: Any = "?"
    job: dict[str, Any] | None = None
    finding_present: bool = False
    top_evidence: str = ""
    metrics_util: float | None = None
    metrics_idle_share: float | None = None


@dataclass
class Row:
    """One workload on one GPU in one round of the diagnosis benchmark."""

    round: int | None
    workload: str
    device: str
    gpu: int | None
    status: str  # ok, error, skipped
    expected: list[str | None]
    got: Got | None
    correct: bool | None
    util_mean: float | None = None
    util_source: str = "none"
    idle_share: float | None = None
    beyond_s: float | None = None
    beyond_internal_s: float | None = None
    raw: str | None = None
    pids: list[int] | None = None
    error: str | None = None
    stderr_tail: str | None = None
    ready_after_s: float | None = None
    stderr_log: str | None = None
    workload_exit: int | None = None
    workload_killed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as the results JSON holds it."""
        return asdict(self)


def is_correct(status: str, got: Got, expected: Expected) -> bool:
    """Verdict matches, and the cause where the expectation names one."""
    exp_v, exp_c = expected
    return status == "ok" and got.verdict == exp_v and (exp_c is None or got.cause == exp_c)


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (dict, list)):
        s = json.dumps(v, separators=(",", ":"))
        return s if len(s) <= 24 else s[:21] + "..."
    return str(v)


def fmt_evidence(ev: Any, n: int = 3) -> str:
    """The first `n` evidence items as `k=v, ...`."""
    if not isinstance(ev, dict) or not ev:
        return ""
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in list(ev.items())[:n])


def _find_job(report: dict[str, Any], gpu: int, pids: list[int]) -> dict[str, Any] | None:
    """The job holding one of `pids`, else the first job on `gpu`."""
    jobs = [j for j in _as_list(report.get("jobs")) if isinstance(j, dict)]
    pidset = set(pids)
    for j in jobs:
        if pidset & {p for p in _as_list(j.get("pids")) if isinstance(p, int)}:
            return j
    return next((j for j in jobs if gpu in _as_list(j.get("gpus"))), None)


def evaluate(report: dict[str, Any] | None, gpu: int, expected: Expected, pids: list[int]) -> Got:
    """What diagnose said about `gpu` (and the workload's job), against the expectation."""
    exp_v, exp_c = expected
    out = Got()
    if report is None:
        return out
    entry = next((e for e in _as_list(report.get("gpus")) if isinstance(e, dict) and e.get("index") == gpu),
                 None)
    job = _find_job(report, gpu, pids)
    if job is not None:
        out.job = {"id": job.get("id", "?"), "verdict": job.get("verdict", "?"),
                   "cause": job.get("cause", "?"), "pids": job.get("pids", "?")}
    if entry is not None:
        out.verdict = entry.get("verdict", "?")
        if "cause" in entry:
            out.cause = entry.get("cause")
        elif job is not None and job.get("verdict") == out.verdict:
            out.cause = job.get("cause", "?")
        out.healthy = entry.get("healthy", "?")
        metrics = entry.get("metrics")
        if isinstance(metrics, dict):
            out.metrics_util = next((float(metrics[k]) for k in UTIL_KEYS
                                     if isinstance(metrics.get(k), (int, float))), None)
            if isinstance(metrics.get("idle_share"), (int, float)):
                out.metrics_idle_share = float(metrics["idle_share"])
    findings = [f for f in _as_list(report.get("findings")) if isinstance(f, dict)]
    if job is not None:
        findings += [f for f in _as_list(job.get("findings")) if isinstance(f, dict)]
    pidset = set(pids)

    def on_this_gpu(f: dict[str, Any]) -> bool:
        fg = _as_list(f.get("gpus"))
        fp = {p for p in _as_list(f.get("pids")) if isinstance(p, int)}
        return gpu in fg or bool(fp & pidset) or (not fg and not fp)

    mine = [f for f in findings if on_this_gpu(f)]
    out.finding_present = any(f.get("kind") == exp_v and (exp_c is None or f.get("cause") == exp_c) for f in mine)

    def conf(f: dict[str, Any]) -> float:
        c = f.get("confidence")
        return float(c) if isinstance(c, (int, float)) else 0.0

    for kind in (out.verdict, exp_v):
        best = sorted((f for f in mine if f.get("kind") == kind), key=conf, reverse=True)
        if best:
            out.top_evidence = fmt_evidence(best[0].get("evidence"))
            break
    if not out.top_evidence and entry is not None:
        out.top_evidence = fmt_evidence(entry.get("metrics"))
    return out


def idle_share(util: float | None, util_source: str, got: Got) -> float | None:
    """Share of the window the GPU was idle: from nvidia-smi's mean, else diagnose's own metrics."""
    share = (1.0 - util / 100.0) if isinstance(util, (int, float)) else None
    if util_source == "diagnose metrics" and got.metrics_idle_share is not None:
        share = got.metrics_idle_share
    return share


@dataclass(frozen=True)
class Goals:
    """The benchmark's three goals, each with what failed it."""

    counted: int
    wrong: list[str]
    idle_healthy: list[str]
    beyonds: list[float]
    failed_diagnose_runs: int

    @property
    def max_beyond(self) -> float | None:
        """The most any diagnose run took beyond its window."""
        return max(self.beyonds) if self.beyonds else None

    @property
    def all_correct(self) -> bool:
        """Every counted row was diagnosed right."""
        return bool(self.counted) and not self.wrong

    @property
    def beyond_ok(self) -> bool:
        """Every diagnose run finished and none took BEYOND_GOAL_S or more beyond its window."""
        mb = self.max_beyond
        return mb is not None and mb < BEYOND_GOAL_S and not self.failed_diagnose_runs

    def to_json(self) -> dict[str, Any]:
        """The goals as the results JSON holds them."""
        return {
            "all_correct": {"pass": self.all_correct, "wrong": self.wrong,
                            "correct": self.counted - len(self.wrong), "total": self.counted},
            "idle_never_healthy": {"pass": not self.idle_healthy, "violations": self.idle_healthy},
            "beyond_window_under_1s": {"pass": self.beyond_ok, "max_beyond_s": self.max_beyond,
                                       "failed_diagnose_runs": self.failed_diagnose_runs},
        }


def judge_goals(rows: list[Row], diagnose_runs: list[dict[str, Any]]) -> Goals:
    """The goals over `rows` and the rounds' diagnose runs (`beyond_s`, `error` each)."""
    counted = [r for r in rows if r.status != "skipped"]
    wrong = [f"{r.workload}@gpu{r.gpu}" for r in counted if not r.correct]
    idle_bad = []
    for r in counted:
        idle = r.idle_share
        is_idle = idle >= IDLE_GOAL if isinstance(idle, float) else r.workload in IDLE_BY_CONSTRUCTION
        got = r.got or Got()
        healthy = got.healthy is True or got.verdict in HEALTHY_VERDICTS
        if is_idle and healthy:
            idle_bad.append(f"{r.workload}@gpu{r.gpu}")
    beyonds = [d["beyond_s"] for d in diagnose_runs if d["error"] is None]
    return Goals(len(counted), wrong, idle_bad, beyonds, len(diagnose_runs) - len(beyonds))
