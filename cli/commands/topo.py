"""`nodetune topo` and `nodetune snapshot`: what the node is, and a recorded window of it.

`topo` with only --root, --replay and --json runs without typer (`FAST`): it is the command people
and scripts run most, and typer and rich were most of its start-up.
"""

import sys

from ..fast import FastCommand

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    import typer

COMMANDS = {
    "topo": "Sockets, NUMA nodes, GPUs and their links, NICs and NVMe.",
    "snapshot": "Record topology and a sample window to a file for --replay.",
}


def run_topo(root: str = "/", replay: str | None = None, as_json: bool = False) -> None:
    """Print the node's topology (probed under `root`, or read from the snapshot `replay`)."""
    from nodetune.probes.node import probe_topology
    from nodetune.probes.source import open_source

    from ..output import print_json

    src = open_source(root, replay)
    try:
        topology = src.snapshot.topology if src.snapshot else probe_topology(src.host, src.backend, src.status)
    finally:
        src.close()
    if as_json:
        print_json(topology)
        return
    from ..output import plain_width
    from ..render_topo import plain_topology

    width = plain_width()
    text = plain_topology(topology, width) if width is not None else None
    if text is not None:  # what rich would draw, without importing it
        sys.stdout.write(text)
        return
    from ..output import console
    from ..render_topo import render_topology

    render_topology(topology, console())


FAST = {"topo": FastCommand(run_topo, values={"--root": "root", "--replay": "replay"}, flags={"--json": "as_json"})}


def register(app: "typer.Typer") -> None:
    """Mount `topo` and `snapshot`."""
    from typing import Annotated

    import typer

    from ..errors import UserError
    from ..options import INTERVAL, JsonOpt, ReplayOpt, RootOpt, number

    def topo(root: RootOpt = "/", replay: ReplayOpt = None, as_json: JsonOpt = False) -> None:
        """Show sockets, NUMA nodes, GPUs with their local CPUs, the GPU link matrix, NICs and NVMe."""
        run_topo(root, replay, as_json)

    def snapshot(
        output: Annotated[str, typer.Option("-o", "--output", help="Snapshot file to write (JSON; .gz compresses).")],
        seconds: Annotated[float, typer.Option("--seconds", parser=number(0, 3600), metavar="S",
                                               help="Length of the sample window (0-3600); "
                                                    "0 records topology only.")] = 10.0,
        interval: Annotated[float, typer.Option("--interval", parser=INTERVAL, metavar="S",
                                                help="Seconds between samples (0.11-60; "
                                                     "GPM needs >= 0.1 s apart).")] = 1.0,
        root: RootOpt = "/",
        keep_ids: Annotated[bool, typer.Option("--keep-ids",
                                               help="Keep GPU serial numbers, UUIDs and the hostname.")] = False,
        note: Annotated[str | None, typer.Option("--note",
                                                 help="Free text stored with the snapshot (what ran).")] = None,
    ) -> None:
        """Record topology and a window of samples to a versioned JSON file for `--replay`."""
        from nodetune.probes.sampler import take_snapshot
        from nodetune.probes.snapshot import save_snapshot
        from nodetune.probes.source import open_source

        from ..progress import progress_bar

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

    app.command()(topo)
    app.command()(snapshot)
