"""The plain-text tables the benchmarks print: confusion, per workload, goals, positions (v2)."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from bench.harness.judge import BEYOND_GOAL_S, Goals, Row, label


def fmt_num(v: Any, spec: str) -> str:
    """`v` formatted with `spec`, or `?` where it is no number."""
    return format(v, spec) if isinstance(v, (int, float)) else "?"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, a dashed line under the headers."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
    return "\n".join([fmt.format(*headers), line] + [fmt.format(*r) for r in rows])


def _got_label(r: Row) -> str:
    assert r.got is not None
    if r.status == "error" and r.got.verdict == "?":
        return "ERROR"
    return label(r.got.verdict, r.got.cause)


def confusion(rows: list[Row]) -> tuple[str, dict[str, dict[str, int]]]:
    """Rows: expected verdict[/cause]; columns: what diagnose said (expected ones first)."""
    counts: dict[str, dict[str, int]] = {}
    cols: list[str] = []
    for r in rows:
        if r.status == "skipped":
            continue
        exp = label(*r.expected)
        assert r.got is not None
        got = "ERROR" if r.status == "error" else label(r.got.verdict, r.got.cause)
        counts.setdefault(exp, {})
        counts[exp][got] = counts[exp].get(got, 0) + 1
        if got not in cols:
            cols.append(got)
    exps = list(counts)
    cols = [c for c in exps if c in cols] + [c for c in cols if c not in exps]
    body = [[e] + [str(counts[e].get(c, 0) or ".") for c in cols] for e in exps]
    return table(["expected \\ got"] + cols, body), counts


def per_workload(rows: list[Row]) -> str:
    """One line per workload and GPU: expected, got, correct, finding, util, beyond, evidence."""
    body = []
    for r in rows:
        if r.status == "skipped":
            body.append([r.workload, "-", label(*r.expected), "skipped", "-", "-", "-", "-", r.error or ""])
            continue
        assert r.got is not None
        ev = r.got.top_evidence or (r.error or "")[:60]
        body.append([r.workload, str(r.gpu), label(*r.expected), _got_label(r),
                     "yes" if r.correct else "NO", "yes" if r.got.finding_present else "no",
                     fmt_num(r.util_mean, ".0f"), fmt_num(r.beyond_s, ".2f"), ev[:90]])
    return table(["workload", "gpu", "expected", "got", "correct", "finding", "util%", "beyond s",
                  "top evidence"], body)


def goal_lines(g: Goals) -> list[str]:
    """`[PASS]`/`[FAIL]` and what failed, one line per goal."""
    wrong, idle_bad, beyonds, failed = g.wrong, g.idle_healthy, g.beyonds, g.failed_diagnose_runs
    return [
        f"[{'PASS' if g.all_correct else 'FAIL'}] every workload diagnosed "
        f"correctly: {g.counted - len(wrong)}/{g.counted}"
        + (f" (wrong: {', '.join(wrong)})" if wrong else ""),
        f"[{'PASS' if not idle_bad else 'FAIL'}] no job whose GPU was idle >= 50% of the window "
        f"came out healthy" + (f" (violations: {', '.join(idle_bad)})" if idle_bad else ""),
        f"[{'PASS' if g.beyond_ok else 'FAIL'}] diagnose work beyond "
        f"its window < {BEYOND_GOAL_S:g}s: max {fmt_num(g.max_beyond, '.2f')}s"
        + (f" (per diagnose run: {', '.join(f'{b:.2f}' for b in beyonds)})" if beyonds else "")
        + (f"; {failed} diagnose run(s) failed" if failed else ""),
    ]


def positions(report_dir: Path) -> str:
    """Verdicts of the `NAME-POSITION-N.json` reports in `report_dir` (diagnosis_v2_run.sh): per
    workload, position and GPU, the runs' verdicts (`~`: borderline), whether they agree, and the
    highest idle and unexplained shares."""
    runs: dict[tuple[str, str, int], list[tuple[Any, ...]]] = collections.defaultdict(list)
    lines = []
    for f in sorted(report_dir.glob("*-*-[123].json")):
        name, pos, _ = f.name[:-5].rsplit("-", 2)
        try:
            r = json.loads(f.read_text())
        except ValueError as exc:
            lines.append(f"{f}: no report ({exc})")
            continue
        for g in r["gpus"]:
            a = g.get("attribution") or {}
            runs[(name, pos, g["index"])].append((g["verdict"], g["cause"], g.get("borderline"), a.get("idle_share"),
                                                  a.get("unexplained_share")))
    lines.append(f"{'workload':16} {'position':8} gpu  verdicts (3 runs)                              "
                 "stable  idle  unexplained")
    for (name, pos, gpu), rs in sorted(runs.items()):
        vs = [f"{v}/{c}" + ("~" if b else "") for v, c, b, _, _ in rs]
        idle = max((i or 0) for *_, i, _ in rs)
        unex = max((u or 0) for *_, u in rs)
        stable = "yes" if len({v[:2] for v in rs}) == 1 else "NO"
        lines.append(f"{name:16} {pos:8} {gpu:3}  {', '.join(vs):46} {stable:6} {idle:4.0%}  {unex:4.0%}")
    return "\n".join(lines)
