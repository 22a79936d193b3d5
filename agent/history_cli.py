"""`nodetune history [JOB]`: recent jobs with their dominant verdict and lost GPU-hours, or one
job's timeline as a per-minute strip of verdicts. Mounted through the nodetune.commands entry point."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .history import Interval, JobSummary, JobTimeline



def parse_since(text: str, now: float) -> float:
    """A duration back from now (the CLI's one grammar: 90s, 30m, 1.5h, 7d, 1w), or an ISO date/time."""
    from nodetune.config.fields import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError as exc:
        why = str(exc)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise typer.BadParameter(f"{why.replace(', got', ' or an ISO date, got')}") from None


def strip(intervals: list[Interval], start: float, end: float, width: int = 120) -> tuple[str, float]:
    """One character a minute (or coarser, to fit `width`): the verdict that held most of it, drawn
    with its rule's STRIP_LETTER ('?' for a verdict no rule of this version knows)."""
    from nodetune.diagnosis.rules import strip_letters

    letters = strip_letters()
    minutes = max(1, int((end - start + 59) // 60))
    step = 60.0 * max(1, -(-minutes // width))
    cells = []
    t = start
    while t < end:
        share: dict[str, float] = {}
        for iv in intervals:
            ov = min(iv.t_end, t + step) - max(iv.t_start, t)
            if ov > 0:
                share[iv.verdict] = share.get(iv.verdict, 0.0) + ov
        cells.append(letters.get(max(share, key=lambda k: share[k]), "?") if share else " ")
        t += step
    return "".join(cells), step


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _dur(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def history(job: Annotated[str | None, typer.Argument(help="A job id (or its start) for its timeline.")] = None,
            since: Annotated[float | None, typer.Option("--since", parser=lambda v: parse_since(v, time.time()),
                                                        metavar="WHEN", help="Only jobs seen since (90m, 24h, 7d, "
                                                        "or an ISO date).")] = None,
            user: Annotated[str | None, typer.Option("--user", help="Only this user's jobs.")] = None,
            db: Annotated[str | None, typer.Option("--db", help="History database (default "
                                                   "/var/lib/nodetune/history.sqlite under --root).")] = None,
            root: Annotated[str, typer.Option("--root", help="The node's root.")] = "/",
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Recent jobs with their dominant verdict and lost GPU-hours; with JOB, its verdict timeline."""
    from nodetune.probes.host import Host

    from .history import DEFAULT_HISTORY, History

    path = db or Host(root).path(DEFAULT_HISTORY)
    jobs: list[JobSummary] = []
    tl: JobTimeline | None = None
    h = History(path).open(create=False)  # HistoryError: the CLI's one-line error, exit 2
    try:
        if job is None:
            jobs = h.jobs(since, user)
        else:
            tl = h.timeline(job)
    finally:
        h.close()
    if as_json:
        data = dataclasses.asdict(tl) if tl is not None else [dataclasses.asdict(j) for j in jobs]
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    if tl is None:
        _print_jobs(jobs)
    else:
        _print_timeline(tl)


def _gpus(gpus: list[int]) -> str:
    """'2 GPUs (0,1)': the count first (a list of indices reads as a count: GPU 0 is not 0 GPUs)."""
    if not gpus:
        return "no GPUs"
    return f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} ({','.join(map(str, gpus))})"


def _print_jobs(jobs: list[JobSummary]) -> None:
    if not jobs:
        typer.echo("no jobs in the history for that filter")
        return
    typer.echo(f"{'job':<28} {'kind':<10} {'user':<10} {'GPUs':<6} {'last seen':<16} {'for':>8}  "
               f"{'dominant verdict':<20} {'lost GPU-h':>10}  seconds by verdict")
    for j in jobs:
        secs = ", ".join(f"{k} {v:.0f}" for k, v in list(j.seconds.items())[:4])
        typer.echo(f"{j.job[:28]:<28} {j.kind[:10]:<10} {(j.user or '-')[:10]:<10} "
                   f"{len(j.gpus):<6} {_when(j.last_seen):<16} {_dur(j.last_seen - j.first_seen):>8}  "
                   f"{j.dominant:<20} {j.lost_gpu_hours:>10.3f}  {secs}")


def _print_timeline(tl: JobTimeline) -> None:
    j = tl.job
    ivs = tl.intervals
    typer.echo(f"job {j.job} ({j.kind}, user {j.user or '-'}, {_gpus(j.gpus)})")
    if j.command:
        typer.echo(f"  {j.command[:160]}")
    typer.echo(f"  {_when(j.first_seen)} .. {_when(j.last_seen)} ({_dur(j.last_seen - j.first_seen)}); dominant "
               f"{j.dominant}; lost {j.lost_gpu_hours:.3f} GPU-h"
               + (f"; {j.energy_kwh:.3f} kWh" if j.energy_kwh is not None else ""))
    m = j.mean
    typer.echo(f"  mean util {m.get('util_pct')}%  SM {m.get('sm_pct')}%  tensor {m.get('tensor_pct')}%  "
               f"DRAM {m.get('dram_pct')}%")
    if ivs:
        line, step = strip(ivs, ivs[0].t_start, ivs[-1].t_end)
        typer.echo(f"\n  |{line}|  (one character = {_dur(step)})")
        used = sorted({c for c in line if c.strip()})
        from nodetune.diagnosis.rules import strip_letters

        legend = ", ".join(f"{c} {v}" for v, c in strip_letters().items() if c in used)
        typer.echo(f"   {legend}")
    typer.echo("\n  seconds by verdict: " + (", ".join(f"{k} {v:.0f}" for k, v in j.seconds.items()) or "-"))
    causes: dict[str, float] = {}
    for iv in ivs:
        for c, s in iv.idle_by_cause.items():
            causes[c] = causes.get(c, 0.0) + s
    typer.echo("  idle GPU-seconds by cause: " + (", ".join(
        f"{c} {s:.0f}" for c, s in sorted(causes.items(), key=lambda kv: -kv[1])) or "none recorded"))
    for e in tl.events:
        typer.echo(f"  {_when(e.t)}  {e.kind}: {e.text}")


def register(app: typer.Typer) -> None:
    app.command("history")(history)
