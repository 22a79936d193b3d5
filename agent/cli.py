"""The `nodetune` command line.

Heavy imports (NVML bindings, probes, rich renderers) happen inside the commands so that
`nodetune --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .errors import UserError

app = typer.Typer(
    name="nodetune",
    help="Profile and tune a Linux GPU node: see its topology, explain what holds each GPU job back, "
    "and apply reversible tuning.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: typer's rich help pulls in rich.markdown (~100 ms of imports) on every --help.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

RootOpt = Annotated[str, typer.Option("--root", help="Read /proc, /sys, /dev and /etc under this root (a fake tree or a mounted image).")]
ReplayOpt = Annotated[str | None, typer.Option("--replay", help="Read everything from a snapshot file instead of the node.", metavar="SNAPSHOT")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _print_json(obj: object) -> None:
    from nodetune.probes.serde import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(obj), indent=1) + "\n")


@app.command()
def topo(root: RootOpt = "/", replay: ReplayOpt = None, as_json: JsonOpt = False) -> None:
    """Show sockets, NUMA nodes, GPUs with their local CPUs, the GPU link matrix, NICs and NVMe."""
    from nodetune.probes.node import probe_topology

    from .source import open_source

    src = open_source(root, replay)
    try:
        topology = src.snapshot.topology if src.snapshot else probe_topology(src.host, src.backend, src.status)
    finally:
        src.close()
    if as_json:
        _print_json(topology)
        return
    from rich.console import Console

    from .render_topo import render_topology

    render_topology(topology, Console(emoji=False))


@app.command()
def snapshot(
    output: Annotated[str, typer.Option("-o", "--output", help="Snapshot file to write (JSON).")],
    seconds: Annotated[float, typer.Option("--seconds", min=0, max=3600, help="Length of the sample window; 0 records topology only.")] = 10.0,
    interval: Annotated[float, typer.Option("--interval", min=0.11, max=60, help="Seconds between samples (GPM needs >= 0.1 s apart).")] = 1.0,
    root: RootOpt = "/",
    keep_ids: Annotated[bool, typer.Option("--keep-ids", help="Keep GPU serial numbers, UUIDs and the hostname.")] = False,
    note: Annotated[str | None, typer.Option("--note", help="Free text stored with the snapshot (what ran).")] = None,
) -> None:
    """Record topology and a window of samples to a versioned JSON file for `--replay`."""
    from nodetune.probes.snapshot import save_snapshot, take_snapshot

    from .progress import progress_bar
    from .source import open_source

    src = open_source(root)
    try:
        with progress_bar(seconds, "sampling") as tick:
            snap = take_snapshot(src.host, src.backend, src.status, seconds, interval, tick, anonymize=not keep_ids)
    finally:
        src.close()
    snap.note = note
    try:
        save_snapshot(snap, output)
    except OSError as exc:
        raise UserError(f"{output}: cannot write snapshot: {exc.strerror or exc}") from None
    n = len(snap.window.samples) if snap.window else 0
    typer.echo(f"wrote {output}: {len(snap.topology.gpus)} GPU(s), {n} sample(s)", err=True)


def _register_optional() -> None:
    """Commands that live in their own modules."""
    from . import cli_diagnose, cli_tune

    cli_diagnose.register(app)
    cli_tune.register(app)


def main() -> None:
    """Console entry point: user errors are one line on stderr and exit 2."""
    _register_optional()
    try:
        app()
    except UserError as exc:
        typer.echo(f"nodetune: error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("nodetune: interrupted", err=True)
        raise SystemExit(130) from None
