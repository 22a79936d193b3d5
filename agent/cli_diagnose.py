"""`nodetune diagnose`: sample a window, then say what holds each GPU job back."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from typing import Annotated

import typer

from .errors import UserError


class FailOn(StrEnum):
    warning = "warning"
    critical = "critical"


def diagnose(
    seconds: Annotated[float, typer.Option("--seconds", min=1, max=3600, help="Length of the sampling window.")] = 10.0,
    interval: Annotated[float, typer.Option("--interval", min=0.11, max=10, help="Seconds between samples (GPM needs >= 0.1 s apart).")] = 0.5,
    root: Annotated[str, typer.Option("--root", help="Read /proc and /sys under this root.")] = "/",
    replay: Annotated[str | None, typer.Option("--replay", help="Diagnose a recorded snapshot instead of the node.", metavar="SNAPSHOT")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    fail_on: Annotated[FailOn | None, typer.Option("--fail-on", help="Exit 1 if a finding is at least this severe.")] = None,
    config: Annotated[str | None, typer.Option("--config", help="Config file (default /etc/nodetune/config.toml).")] = None,
    save: Annotated[str | None, typer.Option("--save", help="Also write the sampled window as a snapshot file.")] = None,
    stacks: Annotated[bool, typer.Option("--stacks/--no-stacks", help="Sample Python stacks of GPU jobs with py-spy.")] = True,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show each finding's evidence.")] = False,
) -> None:
    """Sample the node, then give a verdict per GPU and per job with the evidence and the fix."""
    from nodetune.probes.snapshot import save_snapshot, strip_identifiers

    from .config import load_config
    from .diagnosis import diagnose as run_rules
    from .diagnosis import diagnose_live
    from .progress import progress_bar
    from .source import open_source

    t0 = time.monotonic()
    src = open_source(root, replay)
    cfg = load_config(src.host, config)
    try:
        if src.snapshot is not None:
            snap = src.snapshot
            if snap.window is None or len(snap.window.samples) < 2:
                raise UserError(f"{replay}: snapshot has no sample window (record one with `nodetune snapshot --seconds N`)")
            report = run_rules(snap.topology, snap.window, cfg, f"replay:{replay}", snap.taken_at)
            wall = report.window_s
        else:
            with progress_bar(seconds, "sampling" if not as_json else "") as tick:
                snap, report = diagnose_live(src.host, src.backend, src.status, cfg, seconds, interval, tick, stacks)
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
        from nodetune.probes.serde import to_jsonable

        sys.stdout.write(json.dumps(to_jsonable(report), indent=1) + "\n")
    else:
        from rich.console import Console

        from .render_diagnosis import render_report

        render_report(report, Console(emoji=False, highlight=False), verbose)
    if fail_on is not None:
        from .findings import SEVERITY_ORDER

        worst = report.worst_severity()
        if worst is not None and SEVERITY_ORDER[worst] >= SEVERITY_ORDER[fail_on.value]:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(diagnose)
