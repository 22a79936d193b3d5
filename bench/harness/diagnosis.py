"""The diagnosis benchmark: every bench workload diagnosed by `nodetune diagnose`, judged, tabled.

For every workload in bench/workloads/ (or --only a,b): start it, wait for its READY line, let it
settle, run `nodetune diagnose --json --seconds W` on the node while it runs, stop it (SIGTERM to
its process group, SIGKILL after 10 s) and wait until the GPUs are idle again. Then print

  * a confusion table (rows: expected verdict[/cause], columns: what diagnose said),
  * a per-workload table (workload, GPU, expected, got, correct, expected finding present,
    NVML GPU util mean over the window, time diagnose took beyond its window, top evidence),
  * the goals: every workload correct; no job whose GPU was idle >= 50% of the window
    came out healthy; diagnose never took >= 1 s beyond its window,

and write everything to --out as JSON (raw diagnose reports under --save-raw, workload stderr logs
under logs/ beside --out, the printed tables to diagnosis_table.txt beside --out). It always exits
0 when it ran: the table is the result.

A workload counts as correct when diagnose's primary verdict for the workload's GPU
(`gpus[i].verdict`, and `gpus[i].cause` where the expectation names a cause; the job's cause when
the GPU entry has no "cause" key) matches its EXPECTED. Whether a finding of the expected kind
(and cause) exists for that GPU is reported beside it.

Modes:
  sequential (default)  one workload at a time on --gpu (default 0); allreduce, when there are >= 2
                        GPUs, over all of them.
  --concurrent          one different workload per GPU at once (workload k of a group on cuda:k),
                        one diagnose for the group; then allreduce alone over all GPUs.
  --dry-run             no GPU, no nodetune: CPU stand-ins that only print READY and sleep, and a
                        fake diagnose (bench/workloads/_fake_diagnose.py) that answers after W s.

Run from the repository root on the GPU machine:

    python3 -m bench.harness diagnosis --seconds 5
    python3 -m bench.harness diagnosis --seconds 5 --concurrent             # >= 2 GPUs
    python3 -m bench.harness diagnosis --seconds 5 --only compute_bound,io_starved \
        --snapshot-during compute_bound:examples/h200-compute-bound.json
    python3 -m bench.harness diagnosis --dry-run --seconds 2               # anywhere

(`python3 bench/run_diagnosis.py ...` is the same.) Uses the standard library and psutil only
(psutil optional: without it only the workload's own pid is known). Reads the GPUs only through
read-only `nvidia-smi --query-gpu` queries.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness.console import say
from bench.harness.gpus import nvsmi_query, wait_gpus_idle
from bench.harness.judge import Row
from bench.harness.record import default_nodetune_cmd
from bench.harness.results import Outputs, summarize
from bench.harness.rounds import Bench, RoundOptions
from bench.harness.workloads import (
    NO_MULTICAST,
    REPO,
    WORKLOAD_DIR,
    discover,
    plan_rounds,
    prepare_io,
    select,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    p.add_argument("--seconds", type=float, default=10.0, help="diagnose's sampling window W (default 10)")
    p.add_argument("--only", help="comma-separated workload names")
    p.add_argument("--skip", help="comma-separated workload names to leave out")
    p.add_argument("--concurrent", action="store_true",
                   help="one different workload per GPU at once, one diagnose per group")
    p.add_argument("--gpu", type=int, default=0, help="GPU for sequential mode (default 0)")
    p.add_argument("--nodetune-cmd", help="how to run nodetune, shlex-split (default: `nodetune` on "
                   "PATH, else python -c 'from nodetune.cli.app import main; main()')")
    p.add_argument("--python", default=sys.executable, help="interpreter for the workloads")
    p.add_argument("--workload-seconds", type=float, default=0.0,
                   help="--seconds passed to workloads (default: W + settle + 60; they are stopped anyway)")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for READY")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between READY and diagnose")
    p.add_argument("--stop-grace", type=float, default=10.0, help="SIGTERM -> SIGKILL delay")
    p.add_argument("--idle-quiet", type=float, default=2.0,
                   help="seconds the GPUs must read idle before the next workload")
    p.add_argument("--idle-timeout", type=float, default=60.0)
    p.add_argument("--diagnose-timeout", type=float, default=120.0,
                   help="seconds diagnose may run beyond W before it is killed")
    p.add_argument("--out", help="results JSON (default $OUT/diagnosis_results.json, else "
                   "bench/results/diagnosis_results.json)")
    p.add_argument("--save-raw", metavar="DIR", help="where to keep each raw diagnose report "
                   "(default: diagnose_raw/ beside --out)")
    p.add_argument("--save-windows", metavar="DIR", help="pass `--save DIR/NN-workload.json.gz` to each diagnose")
    p.add_argument("--snapshot-during", action="append", metavar="WORKLOAD:PATH",
                   help="while WORKLOAD runs, `nodetune snapshot -o PATH --seconds W` first")
    p.add_argument("--io-data-dir", help="--data-dir for io_starved")
    p.add_argument("--no-util-monitor", action="store_true",
                   help="do not run `nvidia-smi --query-gpu ... -lms 500` during diagnose (GPU util "
                   "then comes from diagnose's own metrics)")
    p.add_argument("--dry-run", action="store_true",
                   help="fake workloads and a fake diagnose: tests this runner without a GPU")
    p.add_argument("--fake-workloads", action="store_true",
                   help="fake workloads (print READY, sleep) with the real or given nodetune")
    p.add_argument("--fake-gpus", type=int, default=1, help="GPU count in a dry run (default 1)")
    p.add_argument("--fake-wrong", default="", help="dry run: workloads the fake diagnose gets wrong")
    p.add_argument("--workload-cmd-template",
                   help="command for each workload, formatted with {python} {path} {name} {seconds} "
                   "{device} {extra} and shlex-split")


def parse_snapshots(specs: list[str] | None) -> dict[str, str]:
    """--snapshot-during WORKLOAD:PATH, each to {workload: absolute path}."""
    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = spec.partition(":")
        if not sep or not name or not path:
            raise SystemExit(f"--snapshot-during {spec!r}: expected WORKLOAD:PATH")
        out[name] = os.path.abspath(path)
    return out


def options(a: argparse.Namespace) -> RoundOptions:
    """The rounds' options from the parsed command line."""
    if a.nodetune_cmd:
        nodetune = shlex.split(a.nodetune_cmd)
    elif a.dry_run:
        nodetune = [sys.executable, str(WORKLOAD_DIR / "_fake_diagnose.py")]
    else:
        nodetune = default_nodetune_cmd()
    return RoundOptions(
        window=a.seconds, nodetune=nodetune, nvsmi=None if a.dry_run else shutil.which("nvidia-smi"),
        env=dict(os.environ, PYTHONUNBUFFERED="1", **NO_MULTICAST), python=a.python,
        workload_seconds=a.workload_seconds, ready_timeout=a.ready_timeout, settle=a.settle,
        stop_grace=a.stop_grace, idle_quiet=a.idle_quiet, idle_timeout=a.idle_timeout,
        diagnose_timeout=a.diagnose_timeout, dry_run=a.dry_run, fake_workloads=a.fake_workloads,
        fake_wrong=frozenset(s.strip() for s in a.fake_wrong.split(",") if s.strip()),
        util_monitor=not a.no_util_monitor, save_windows=a.save_windows, io_data_dir=a.io_data_dir,
        template=a.workload_cmd_template, snapshots=parse_snapshots(a.snapshot_during))


def results_path(out: str | None) -> Path:
    """--out, else $OUT/diagnosis_results.json, else bench/results/diagnosis_results.json."""
    if out:
        return Path(out).resolve()
    base = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench" / "results"
    return (base / "diagnosis_results.json").resolve()


def count_gpus(a: argparse.Namespace, nvsmi: str | None) -> int:
    """--fake-gpus in a dry run; else what nvidia-smi lists (1 when it lists none)."""
    if a.dry_run:
        return int(a.fake_gpus)
    q = nvsmi_query(nvsmi)
    if q is None:
        say("warning: nvidia-smi gave no GPUs; assuming 1 (pass --dry-run to test without one)")
        return 1
    return len(q)


def run(a: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the results written to --out."""
    opts = options(a)
    out = Outputs(results_path(a.out))
    bench = Bench(opts, log_dir=out.results_json.parent / "logs",
                  raw_dir=Path(a.save_raw).resolve() if a.save_raw else out.results_json.parent / "diagnose_raw")
    found = discover()
    names = select(found, a.only, a.skip)
    bench.ngpus = count_gpus(a, opts.nvsmi)
    bench.baseline = nvsmi_query(opts.nvsmi)
    if bench.baseline and any(u > 0 or m > 1024 for u, m in bench.baseline.values()):
        say(f"warning: GPUs not idle at start (util %, MiB used): {bench.baseline}")
    t_start = time.monotonic()
    say(f"{len(names)} workload(s), {bench.ngpus} GPU(s), window {opts.window:g}s, "
        f"nodetune: {shlex.join(opts.nodetune)}{' [DRY RUN]' if a.dry_run else ''}")
    io_prep = None
    if "io_starved" in names and not (a.dry_run or a.fake_workloads) and not a.workload_cmd_template:
        io_prep = prepare_io(a.python, a.io_data_dir, opts.env)
    if opts.nvsmi:
        wait_gpus_idle(opts.nvsmi, bench.baseline, a.idle_quiet, a.idle_timeout)
    concurrent = a.concurrent
    if concurrent and bench.ngpus < 2:
        say("--concurrent needs >= 2 GPUs: running one workload at a time")
        concurrent = False
    plan = plan_rounds(names, found, bench.ngpus, concurrent, keep_order=bool(a.only), gpu=a.gpu)
    for slots in plan.rounds:
        bench.run_round(slots)
    for n in plan.skipped:
        say(f"{n}: skipped, needs >= 2 GPUs (this machine has {bench.ngpus})")
        bench.rows.append(Row(round=None, workload=n, device="all", gpu=None, status="skipped",
                              expected=list(found[n].expected), got=None, correct=None, error="needs >= 2 GPUs"))
    mode = "concurrent" if a.concurrent else "sequential"
    return summarize(bench, time.monotonic() - t_start, io_prep, mode, out)

