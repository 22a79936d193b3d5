"""The diagnosis benchmark's rounds: some workloads at once, one `nodetune diagnose`, each judged.

A round launches its workloads, waits for every READY, lets them settle, records a snapshot where
one was asked for, runs diagnose (with nvidia-smi's utilization beside it), judges each workload's
GPUs, stops the workloads and waits for the GPUs to go idle.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.console import say
from bench.harness.gpus import GpuState, UtilMonitor, wait_gpus_idle
from bench.harness.judge import Got, Row, evaluate, idle_share, is_correct, label
from bench.harness.launch import LaunchSpec, Workload, launch
from bench.harness.record import CommandResult, parse_report, run_nodetune
from bench.harness.workloads import ALL_GPU_WORKLOADS, REPO, ArgvOptions, Slot, workload_argv


@dataclass(frozen=True)
class RoundOptions:
    """How every round runs (from the command line)."""

    window: float
    nodetune: list[str]
    nvsmi: str | None
    env: dict[str, str]
    python: str = sys.executable
    workload_seconds: float = 0.0
    ready_timeout: float = 120.0
    settle: float = 1.0
    stop_grace: float = 10.0
    idle_quiet: float = 2.0
    idle_timeout: float = 60.0
    diagnose_timeout: float = 120.0
    dry_run: bool = False
    fake_workloads: bool = False
    fake_wrong: frozenset[str] = frozenset()
    util_monitor: bool = True
    save_windows: str | None = None
    io_data_dir: str | None = None
    template: str | None = None
    snapshots: dict[str, str] = field(default_factory=dict)


@dataclass
class Bench:
    """What the rounds accumulate: rows, one record per round, and where their files go."""

    opts: RoundOptions
    log_dir: Path
    raw_dir: Path
    ngpus: int = 0
    baseline: GpuState | None = None
    rows: list[Row] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    round_no: int = 0

    def workload_seconds(self, name: str) -> float:
        """--seconds for a workload: long enough to outlast settle, snapshot and diagnose."""
        o = self.opts
        return o.workload_seconds or (o.window + o.settle + 60 + (o.window if name in o.snapshots else 0))

    def _launch(self, slot: Slot) -> Workload:
        o = self.opts
        argv = workload_argv(slot, ArgvOptions(o.python, self.workload_seconds(slot.name), self.ngpus,
                                               o.dry_run or o.fake_workloads, o.io_data_dir, o.template))
        suffix = slot.device.replace(":", "") if slot.name not in ALL_GPU_WORKLOADS else "all"
        return launch(LaunchSpec(slot.name, argv, REPO, o.env, self.log_dir / f"{slot.name}.{suffix}.stderr.log"))

    def run_round(self, slots: list[Slot]) -> None:
        """Launch `slots`, diagnose them together, judge, stop, wait for idle GPUs."""
        self.round_no += 1
        o = self.opts
        say(f"round {self.round_no}: starting " + ", ".join(f"{s.name}@{s.where}" for s in slots))
        procs = [(s, self._launch(s)) for s in slots]
        deadline = time.monotonic() + o.ready_timeout
        ready = [(s, w) for s, w in procs if w.wait_ready(deadline)]
        for s, w in procs:
            if (s, w) in ready:
                continue
            why = "exited before READY" if w.proc.poll() is not None else f"no READY within {o.ready_timeout:.0f}s"
            tail = w.stderr_tail()
            say(f"{s.name}: {why} (rc={w.proc.poll()}); stderr tail:\n{tail}")
            for g in s.gpus:
                self.rows.append(self._row(s, w, g, status="error", error=why, stderr_tail=tail))
        rnd: dict[str, Any] = {"round": self.round_no, "workloads": [
            {"name": s.name, "device": s.device, "gpus": s.gpus, "argv": w.spec.argv,
             "ready_after_s": w.ready_after, "stderr_log": str(w.spec.stderr_path)} for s, w in procs]}
        if ready:
            self._diagnose(ready, rnd)
        for s, w in procs:
            stopped = w.stop(o.stop_grace)
            if stopped.exit_code != 0 or stopped.killed:
                say(f"{s.name}: exit code {stopped.exit_code}{' (SIGKILLed)' if stopped.killed else ''} after SIGTERM")
            for r in self.rows:
                if r.workload == s.name and r.device == s.device and r.round == self.round_no:
                    r.workload_exit, r.workload_killed = stopped.exit_code, stopped.killed
        rnd["idle_wait_s"] = wait_gpus_idle(o.nvsmi, self.baseline, o.idle_quiet, o.idle_timeout)
        self.rounds.append(rnd)

    def _fake_env(self, ready: list[tuple[Slot, Workload]], pids: dict[str, list[int]]) -> dict[str, str]:
        """What the dry run's fake diagnose is to find: the expectations, less --fake-wrong's."""
        expect = {str(g): {"verdict": s.expected[0], "cause": s.expected[1], "pids": pids[s.name + s.device]}
                  for s, _ in ready for g in s.gpus}
        wrong = {str(g) for s, _ in ready for g in s.gpus if s.name in self.opts.fake_wrong}
        return dict(self.opts.env, NODETUNE_FAKE_EXPECT=json.dumps(expect),
                    NODETUNE_FAKE_WRONG=",".join(sorted(wrong)))

    def _diagnose(self, ready: list[tuple[Slot, Workload]], rnd: dict[str, Any]) -> None:
        o = self.opts
        say("ready: " + ", ".join(f"{s.name} after {w.ready_after:.1f}s" for s, w in ready))
        time.sleep(o.settle)
        for s, _ in ready:
            if s.name in o.snapshots:
                rnd["snapshot"] = self._snapshot(s)
        pids = {s.name + s.device: w.pids() for s, w in ready}
        env = self._fake_env(ready, pids) if o.dry_run else dict(o.env)
        monitor = UtilMonitor(o.nvsmi if o.util_monitor else None)
        monitor.start()
        say(f"diagnose: {shlex.join(o.nodetune)} diagnose --json --seconds {o.window:g}")
        extra: list[str] = []
        if o.save_windows and not o.dry_run:
            # The diagnosed window itself, for replay tests of the rules on real data.
            Path(o.save_windows).mkdir(parents=True, exist_ok=True)
            name = "+".join(s.name for s, _ in ready)
            extra = ["--save", str(Path(o.save_windows) / f"{self.round_no:02d}-{name}.json.gz")]
        res = run_nodetune(o.nodetune, ["diagnose", "--json", "--seconds", f"{o.window:g}", *extra],
                           o.window + o.diagnose_timeout, env, REPO)
        monitor.stop()
        beyond = res.wall_s - o.window
        report, perr = parse_report(res.stdout)
        raw_path = self._save_raw(res, report)
        internal = None
        if report is not None and isinstance(report.get("elapsed_s"), (int, float)) and \
                isinstance(report.get("window_s"), (int, float)):
            internal = float(report["elapsed_s"]) - float(report["window_s"])
        error = None
        if res.rc != 0 or report is None:
            error = f"diagnose rc={res.rc}: {perr or ''} {res.stderr.strip()[-400:]}".strip()
            say(error)
        say(f"diagnose took {res.wall_s:.2f}s = window + {beyond:.2f}s"
            + (f" (its own count: +{internal:.2f}s)" if internal is not None else ""))
        rnd["diagnose"] = {"rc": res.rc, "wall_s": res.wall_s, "beyond_s": beyond,
                           "beyond_internal_s": internal, "raw": raw_path, "error": error,
                           "stderr_tail": res.stderr[-2000:]}
        for s, w in ready:
            for g in s.gpus:
                got = evaluate(report, g, s.expected, pids[s.name + s.device])
                util, src = monitor.mean(g), "nvidia-smi"
                if util is None and got.metrics_util is not None:
                    util, src = got.metrics_util, "diagnose metrics"
                if util is None:
                    src = "none"
                row = self._row(s, w, g, status="ok" if report is not None else "error", got=got, error=error,
                                util=util, util_source=src, beyond=beyond, internal=internal, raw=raw_path,
                                pids=pids[s.name + s.device])
                self.rows.append(row)
                say(f"{s.name} gpu{g}: expected {label(*s.expected)}, got {label(got.verdict, got.cause)} -> "
                    f"{'correct' if row.correct else 'WRONG'}")

    def _row(self, s: Slot, w: Workload, gpu: int, status: str, got: Got | None = None,
             error: str | None = None, util: float | None = None, util_source: str = "none",
             beyond: float | None = None, internal: float | None = None, raw: str | None = None,
             pids: list[int] | None = None, stderr_tail: str | None = None) -> Row:
        got = got or Got()
        return Row(round=self.round_no, workload=s.name, device=s.device, gpu=gpu, status=status,
                   expected=list(s.expected), got=got, correct=is_correct(status, got, s.expected),
                   util_mean=util, util_source=util_source, idle_share=idle_share(util, util_source, got),
                   beyond_s=beyond, beyond_internal_s=internal, raw=raw, pids=pids, error=error,
                   stderr_tail=stderr_tail, ready_after_s=w.ready_after, stderr_log=str(w.spec.stderr_path))

    def _snapshot(self, s: Slot) -> dict[str, Any]:
        o = self.opts
        path = o.snapshots[s.name]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        note = (f"bench workload {s.name} on {s.device} (expected {label(*s.expected)}), "
                f"recorded by bench/run_diagnosis.py")
        say(f"snapshot of {s.name} -> {path}")
        res = run_nodetune(o.nodetune, ["snapshot", "-o", path, "--seconds", f"{o.window:g}", "--note", note],
                           o.window + o.diagnose_timeout, o.env, REPO)
        if res.rc != 0:
            say(f"snapshot failed rc={res.rc}: {res.stderr.strip()[-400:]}")
        return {"workload": s.name, "path": path, "rc": res.rc, "wall_s": res.wall_s,
                "stderr_tail": res.stderr[-1000:]}

    def _save_raw(self, res: CommandResult, report: dict[str, Any] | None) -> str:
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        stem = f"round{self.round_no:02d}"
        if report is not None:
            path = self.raw_dir / f"{stem}.diagnose.json"
            path.write_text(json.dumps(report, indent=1) + "\n")
        else:
            path = self.raw_dir / f"{stem}.diagnose.txt"
            path.write_text(f"rc={res.rc}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}\n")
        return str(path)
