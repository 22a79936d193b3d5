"""The diagnosis benchmark's result: the printed tables and goals, the results JSON beside them."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.console import say
from bench.harness.judge import judge_goals
from bench.harness.rounds import Bench
from bench.harness.tables import confusion, goal_lines, per_workload

TABLE_NAME = "diagnosis_table.txt"


@dataclass(frozen=True)
class Outputs:
    """Where the results go: the JSON, the printed table beside it (TABLE_NAME), raw reports."""

    results_json: Path

    @property
    def table(self) -> Path:
        """The printed tables, as text."""
        return self.results_json.parent / TABLE_NAME


def render(bench: Bench, total_s: float, mode: str) -> tuple[str, dict[str, Any]]:
    """The printed text (header, confusion, per workload, goals) and the goals as JSON."""
    rows = bench.rows
    conf_text, _ = confusion(rows)
    goals = judge_goals(rows, [rd["diagnose"] for rd in bench.rounds if "diagnose" in rd])
    header = (f"nodetune diagnosis bench: {goals.counted} row(s), {bench.ngpus} GPU(s), "
              f"window {bench.opts.window:g}s, mode {mode}"
              f"{', DRY RUN (fake workloads and diagnose)' if bench.opts.dry_run else ''}, "
              f"total {total_s:.0f}s")
    text = "\n".join([header, "", "Confusion (rows: expected, columns: diagnose's verdict)",
                      conf_text, "", "Per workload", per_workload(rows), "", "Goals"]
                     + goal_lines(goals)) + "\n"
    return text, goals.to_json()


def summarize(bench: Bench, total_s: float, io_prep: float | None, mode: str, out: Outputs) -> dict[str, Any]:
    """Print the tables and write the results JSON and the table file; returns the results."""
    text, goals = render(bench, total_s, mode)
    print("\n" + text, flush=True)
    _, conf = confusion(bench.rows)
    results = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - total_s)),
        "host": platform.node(), "dry_run": bench.opts.dry_run, "mode": mode,
        "window_s": bench.opts.window, "gpus": bench.ngpus, "nodetune_cmd": bench.opts.nodetune,
        "total_s": total_s, "io_prepare_s": io_prep, "gpu_baseline": bench.baseline,
        "rows": [r.to_json() for r in bench.rows], "rounds": bench.rounds, "confusion": conf, "goals": goals,
        "table": text,
    }
    out.results_json.parent.mkdir(parents=True, exist_ok=True)
    out.results_json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    out.table.write_text(text)
    say(f"wrote {out.results_json}, {out.table}, raw reports in {bench.raw_dir}")
    return results
