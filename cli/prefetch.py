"""`nodetune prefetch PATH...`: warm files into the page cache before a job reads them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from .options import JsonOpt, RootOpt, choice, number
from .output import print_json

SIZE_HELP = "binary units: 512K, 1MiB, 8GiB"


def _size(what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        from nodetune.prefetch import PrefetchError, parse_size

        try:
            return parse_size(value, what)
        except PrefetchError as exc:
            raise typer.BadParameter(str(exc).split(": ", 1)[1]) from None

    return parse


@contextmanager
def _bar(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A bar of bytes, GB/s and time left on stderr when it is a terminal; a no-op otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("prefetch"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("prefetch", total=None)
        yield lambda done, total: prog.update(task, completed=done, total=max(total, done))


def prefetch(paths: Annotated[list[str], typer.Argument(help="Files or directories (walked) to warm.", metavar="PATH...")],
             depth: Annotated[int, typer.Option("--depth", parser=number(1, 4096, integer=True), metavar="N", help="Reads in flight (1-4096).")] = 32,
             block_size: Annotated[int, typer.Option("--block-size", parser=_size("--block-size"), metavar="SIZE", help=f"Bytes per read ({SIZE_HELP}).")] = "1MiB",  # type: ignore[assignment]
             budget: Annotated[int, typer.Option("--budget", parser=_size("--budget"), metavar="SIZE", help=f"Read at most this much ({SIZE_HELP}); free memory above a floor limits it too.")] = "8GiB",  # type: ignore[assignment]
             order: Annotated[str, typer.Option("--order", parser=choice("listed", "sorted"), metavar="listed|sorted", help="As given (directories in name order), or sorted by path.")] = "listed",
             engine: Annotated[str, typer.Option("--engine", parser=choice("auto", "io_uring", "threads", "fadvise"), metavar="E", help="auto (io_uring where it works, else threads), io_uring, threads (preads), fadvise (WILLNEED, unchecked).")] = "auto",
             allow_evict: Annotated[bool, typer.Option("--allow-evict", help="Fill MemAvailable (reclaims cold cached pages) instead of free memory only.")] = False,
             root: RootOpt = "/", as_json: JsonOpt = False) -> None:
    """Read files into the page cache with a deep queue (io_uring), bounded by a memory budget."""
    from nodetune.prefetch import PrefetchOptions, human, warm
    from nodetune.probes.host import Host

    opts = PrefetchOptions(depth=depth, block_size=block_size, budget=budget, order=order, engine=engine,
                           allow_evict=allow_evict)
    with _bar(not as_json) as tick:
        rep = warm(paths, opts, Host(root), progress=tick)
    if as_json:
        print_json(_jsonable(rep))
    else:
        for f in rep.files:
            if f.status == "failed" or f.note:
                typer.echo(f"{f.path}: {f.status}: {f.note}", err=True)
        for n in rep.notes:
            typer.echo(n, err=True)
        if rep.stopped:
            typer.echo(f"stopped: {rep.stopped}", err=True)
        counts = {s: sum(f.status == s for f in rep.files) for s in ("warmed", "partial", "skipped", "failed")}
        tail = ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "warmed")
        typer.echo(f"warmed {counts['warmed']} file(s), {human(rep.bytes_read)} in {rep.seconds:.2f}s "
                   f"({rep.gbps:.2f} GB/s) with {rep.engine_why}" + (f"; {tail}" if tail else ""))
    if rep.exit_code:
        raise SystemExit(rep.exit_code)


def _jsonable(rep: Any) -> dict[str, Any]:
    import dataclasses

    out = dataclasses.asdict(rep)
    keep = ("MemTotal", "MemFree", "MemAvailable", "Cached")
    for k in ("mem_before", "mem_after"):
        out[k] = {m: v for m, v in out[k].items() if m in keep}
    out.update(gbps=round(rep.gbps, 3), failed=len(rep.failed), exit_code=rep.exit_code)
    return out


def register(app: typer.Typer) -> None:
    app.command()(prefetch)
