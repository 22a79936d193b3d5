"""`nodetune diagnose`: sample a window (probes), judge it (diagnosis), print the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from nodetune.config.diagnosis import Thresholds

if TYPE_CHECKING:
    from nodetune.diagnosis.findings import Report
    from nodetune.probes.snapshot import Snapshot
    from nodetune.probes.source import Source

from .errors import UserError
from .options import ConfigOpt, IntervalOpt, JsonOpt, ReplayOpt, RootOpt, SecondsOpt, choice
from .output import print_json


def sample_and_diagnose(src: Source, th: Thresholds, seconds: float, interval_s: float,
                        progress: Callable[[float], None] | None = None,
                        stacks: bool = True) -> tuple[Snapshot, Report]:
    """Sample the live node for `seconds` through the probes, then diagnose the window.

    Returns (snapshot, report); the snapshot is kept for `--save`.
    """
    from nodetune.diagnosis.engine import diagnose
    from nodetune.probes.node import probe_topology
    from nodetune.probes.sampler import record_window
    from nodetune.probes.snapshot import SNAPSHOT_VERSION, Snapshot, now_iso

    topo = probe_topology(src.host, src.backend, src.status)
    win = record_window(src.host, src.backend, topo, seconds, interval_s, progress, stacks=stacks)
    snap = Snapshot(version=SNAPSHOT_VERSION, taken_at=now_iso(), topology=topo, window=win)
    return snap, diagnose(topo, win, th, "live", snap.taken_at)


def diagnose(
    seconds: SecondsOpt = 10.0,
    interval: IntervalOpt = 0.5,
    root: RootOpt = "/",
    replay: ReplayOpt = None,
    as_json: JsonOpt = False,
    fail_on: Annotated[str | None, typer.Option("--fail-on", parser=choice("warning", "critical"), metavar="SEVERITY",
                                                help="Exit 1 if a finding is at least this severe "
                                                     "(warning, critical).")] = None,
    config: ConfigOpt = None,
    save: Annotated[str | None, typer.Option("--save",
                                             help="Also write the sampled window as a snapshot file.")] = None,
    stacks: Annotated[bool, typer.Option("--stacks/--no-stacks",
                                         help="Sample Python stacks of GPU jobs with py-spy.")] = True,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show each finding's evidence.")] = False,
) -> None:
    """Sample the node, then give a verdict per GPU and per job with the evidence and the fix."""
    from nodetune.config.loader import load_config
    from nodetune.diagnosis.engine import diagnose as judge
    from nodetune.probes.snapshot import save_snapshot, strip_identifiers
    from nodetune.probes.source import open_source

    from .progress import progress_bar

    t0 = time.monotonic()
    src = open_source(root, replay)
    th = load_config(src.host, config).get(Thresholds)
    try:
        if src.snapshot is not None:
            snap = src.snapshot
            if snap.window is None or len(snap.window.samples) < 2:
                raise UserError(f"{replay}: snapshot has no sample window "
                                "(record one with `nodetune snapshot --seconds N`)")
            report = judge(snap.topology, snap.window, th, f"replay:{replay}", snap.taken_at)
            wall = report.window_s
        else:
            with progress_bar(seconds, "sampling" if not as_json else "") as tick:
                snap, report = sample_and_diagnose(src, th, seconds, interval, tick, stacks)
            wall = seconds
    finally:
        src.close()
    if save:
        try:
            save_snapshot(strip_identifiers(snap), save)
        except OSError as exc:
            raise UserError(f"{save}: cannot write snapshot: {exc.strerror or exc}") from None
    report.elapsed_s = round(time.monotonic() - t0, 3)
    if src.snapshot is None:
        report.host["beyond_window_s"] = round(report.elapsed_s - wall, 3)
    if as_json:
        print_json(report)
    else:
        from .output import console
        from .render_diagnosis import render_report

        render_report(report, console(), verbose)
    if fail_on is not None:
        from nodetune.diagnosis.findings import SEVERITY_ORDER

        worst = report.worst_severity()
        if worst is not None and SEVERITY_ORDER[worst] >= SEVERITY_ORDER[fail_on]:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(diagnose)
