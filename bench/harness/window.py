"""One workload, one recorded window: launch it, wait for an offset, record, stop it.

    python3 -m bench.harness window --kind diagnose --tag startup-launch-1 --at launch+2 \
        --seconds 5 --interval 0.5 --dir $D --nodetune-cmd "$NT" -- \
        python3 bench/workloads/startup.py --seconds 120 --device cuda:0

The workload runs in its own session with its stderr in DIR/NAME.log (NAME: the workload file's
stem, or --name); the recording's files are those of `record.RecordSpec` (TAG.json, TAG.err,
TAG.json.gz for diagnose; TAG.json.gz and TAG.snap.err for a snapshot). It prints one line: the
verdicts of a diagnose, or a snapshot's failure; --log-tail adds the workload's last log lines.
Exits 0 once the workload was launched (the line is the result), 2 on a bad command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from bench.harness.console import say
from bench.harness.launch import LaunchSpec, Offset, launch
from bench.harness.record import (
    KINDS,
    Recorded,
    RecordSpec,
    default_nodetune_cmd,
    record,
    verdict_line,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options; the workload's argv follows `--`."""
    p.add_argument("--kind", choices=KINDS, default="diagnose")
    p.add_argument("--tag", required=True, help="the recording's file stem in --dir")
    p.add_argument("--dir", required=True, type=Path, help="where the recording and the workload's log go")
    p.add_argument("--at", default="ready+0", type=Offset.parse,
                   help="when to start recording: launch+S or ready+S (default ready+0)")
    p.add_argument("--seconds", type=float, required=True, help="the recorded window")
    p.add_argument("--interval", type=float, help="nodetune's sampling interval")
    p.add_argument("--note", help="snapshot: its note")
    p.add_argument("--no-save", action="store_true", help="diagnose: do not keep the window (TAG.json.gz)")
    p.add_argument("--timeout", type=float, default=120.0, help="nodetune's run is killed after this many s")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="longest wait for READY")
    p.add_argument("--stop-grace", type=float, default=10.0, help="SIGTERM -> SIGKILL delay")
    p.add_argument("--cool", type=float, default=0.0, help="seconds to sleep after the workload stopped")
    p.add_argument("--name", help="the workload's name (default: its file's stem)")
    p.add_argument("--stdout", type=Path, help="also copy the workload's stdout here")
    p.add_argument("--log-tail", action="store_true", help="print the workload's last two log lines")
    p.add_argument("--nodetune-cmd", help="how to run nodetune, shlex-split")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- the workload's command")


def workload_name(argv: list[str], fallback: str) -> str:
    """The stem of the first `.py` argument, else `fallback`."""
    return next((Path(a).stem for a in argv if a.endswith(".py")), fallback)


def outcome_line(rec: Recorded, name: str) -> str | None:
    """What the device logs show of a recording: a diagnose's verdicts, a snapshot's failure."""
    if rec.spec.kind == "diagnose":
        if rec.report is None:
            return f"  {rec.spec.tag}: no report ({rec.error})"
        return f"  {rec.spec.tag}: {verdict_line(rec.report)}"
    if rec.error is not None:
        return f"  snapshot of {name} failed: {rec.error}"
    return None


def log_tail_line(name: str, log: Path) -> str:
    """`  NAME: ` and the log's last two lines on one line, cut at 200 characters."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-2:]
    except OSError as exc:
        tail = [f"(log unreadable: {exc})"]
    return f"  {name}: {' '.join(tail)[:200]}"


def run(a: argparse.Namespace) -> int:
    """Launch, record at the offset, stop; print the outcome."""
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    if not argv:
        print("window: the workload's command goes after --", file=sys.stderr)
        return 2
    name = a.name or workload_name(argv, a.tag)
    cmd = shlex.split(a.nodetune_cmd) if a.nodetune_cmd else default_nodetune_cmd()
    env = dict(os.environ)
    cwd = Path.cwd()
    log = a.dir / f"{name}.log"
    w = launch(LaunchSpec(name, argv, cwd, env, stderr_path=log, stdout_path=a.stdout))
    if not w.wait_until(a.at, a.ready_timeout):
        say(f"{name}: no READY within {a.ready_timeout:g}s (rc={w.proc.poll()}): recording anyway", tag="window")
    spec = RecordSpec(a.kind, a.tag, a.seconds, a.dir, interval=a.interval, save_window=not a.no_save,
                      note=a.note, timeout=a.timeout)
    rec = record(cmd, spec, env, cwd)
    w.stop(a.stop_grace)
    line = outcome_line(rec, name)
    if line:
        print(line, flush=True)
    if a.log_tail:
        print(log_tail_line(name, log), flush=True)
    if a.cool > 0:
        time.sleep(a.cool)
    return 0
