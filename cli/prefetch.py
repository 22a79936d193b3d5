"""`nodetune prefetch PATH...`: warm files into the page cache before a job reads them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from .errors import UserError
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


def prefetch(paths: Annotated[list[str] | None, typer.Argument(help="Files or directories (walked) to warm.",
                                                               metavar="[PATH...]")] = None,
             follow: Annotated[int | None, typer.Option("--follow", parser=number(1, 1 << 22, integer=True),
                                                        metavar="PID",
                                                        help="Follow this process's reads (and its children's): "
                                                             "keep the files it reads next in the page cache "
                                                             "until it exits.")] = None,
             follow_job: Annotated[str | None, typer.Option("--follow-job", metavar="JOBID",
                                                            help="Follow a job as `nodetune diagnose` names it: "
                                                                 "pid:PID@START or ranks:PPID@START (the start time "
                                                                 "tells it from a reused pid).")] = None,
             list_file: Annotated[str | None, typer.Option("--list", metavar="FILE",
                                                           help="With --follow: the order the job reads its files in, "
                                                                "one path a line (default: inferred).")] = None,
             lead: Annotated[float, typer.Option("--lead", parser=number(0.05, 600), metavar="S",
                                                 help="With --follow: seconds of the job's consumption "
                                                      "to keep warmed ahead.")] = 1.0,
             threads: Annotated[int, typer.Option("--threads", parser=number(0, 256, integer=True), metavar="N",
                                                  help="With --follow: files in flight.")] = 16,
             method: Annotated[str, typer.Option("--method", parser=choice("auto", "fadvise", "readahead", "io_uring"),
                                                 metavar="M",
                                                 help="With --follow: auto (fadvise for large files, io_uring for "
                                                      "small ones), fadvise, readahead, io_uring (whole files through "
                                                      "the ring).")] = "auto",
             seconds: Annotated[float | None, typer.Option("--seconds", parser=number(0.1, 30 * 86400), metavar="S",
                                                           help="With --follow: stop after this long even if the "
                                                                "process runs on.")] = None,
             depth: Annotated[int, typer.Option("--depth", parser=number(1, 4096, integer=True), metavar="N",
                                                help="Reads in flight (1-4096).")] = 32,
             block_size: Annotated[int, typer.Option("--block-size", parser=_size("--block-size"), metavar="SIZE",
                                                     help=f"Bytes per read ({SIZE_HELP}).")] = "1MiB",  # type: ignore[assignment]
             budget: Annotated[int, typer.Option("--budget", parser=_size("--budget"), metavar="SIZE",
                                                 help=f"Read at most this much ({SIZE_HELP}); with --follow, the most "
                                                      "warmed ahead at once; free memory above a floor "
                                                      "limits it too.")] = "8GiB",  # type: ignore[assignment]
             order: Annotated[str, typer.Option("--order", parser=choice("listed", "sorted"), metavar="listed|sorted",
                                                help="As given (directories in name order), "
                                                     "or sorted by path.")] = "listed",
             engine: Annotated[str, typer.Option("--engine", parser=choice("auto", "io_uring", "threads", "fadvise"),
                                                 metavar="E",
                                                 help="auto (io_uring where it works, else threads), io_uring, threads "
                                                      "(preads), fadvise (WILLNEED, unchecked).")] = "auto",
             allow_evict: Annotated[bool, typer.Option("--allow-evict",
                                                       help="Fill MemAvailable (reclaims cold cached pages) instead of "
                                                            "free memory only.")] = False,
             root: RootOpt = "/", as_json: JsonOpt = False) -> None:
    """Warm files into the page cache (a deep io_uring queue, bounded by a memory budget), or --follow a job's reads."""
    from nodetune.prefetch import PrefetchOptions, human, warm
    from nodetune.probes.host import Host

    if follow is not None or follow_job is not None:
        if paths:
            raise UserError("--follow: give a PID or paths to warm, not both")
        if follow is not None and follow_job is not None:
            raise UserError("--follow-job: give a PID or a job id, not both")
        host = Host(root)
        if follow is None:
            from nodetune.prefetch.procfiles import resolve_job

            follow = resolve_job(host, follow_job or "")  # a job that ended or a reused pid: one line, exit 2
        _follow(host, follow, list_file, budget, lead, threads, method, seconds, as_json)
        return
    if not paths:
        raise UserError("prefetch: expected PATH... to warm, or --follow PID, or --follow-job JOBID")
    if list_file is not None:
        raise UserError("--list: only with --follow PID")
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
        failed = {f"{f.path}:" for f in rep.files if f.status == "failed"}
        for n in rep.notes:
            if n.split(" ", 1)[0] not in failed:  # a path refused before it was read: no note on how it was read
                typer.echo(n, err=True)
        if rep.stopped:
            typer.echo(f"stopped: {rep.stopped}", err=True)
        counts = {s: sum(f.status == s for f in rep.files) for s in ("warmed", "partial", "skipped", "failed")}
        tail = ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "warmed")
        if not counts["warmed"] and not counts["partial"] and tail:  # nothing was read: no "warmed" line
            typer.echo(f"nothing warmed: {tail}")
        else:
            typer.echo(f"warmed {counts['warmed']} file(s), {human(rep.bytes_read)} in {rep.seconds:.2f}s "
                       f"({rep.gbps:.2f} GB/s) with {rep.engine_why}" + (f"; {tail}" if tail else ""))
    if rep.exit_code:
        raise SystemExit(rep.exit_code)


def _follow(host: Any, pid: int, list_file: str | None, budget: int, lead: float, threads: int, method: str,
            seconds: float | None, as_json: bool) -> None:
    """Follow until the process exits; a summary line (or JSON) at the end, exit 1 when following could not help."""
    import dataclasses
    import signal

    from nodetune.prefetch.follow import Follower, FollowOptions, summary

    opts = FollowOptions(list_file=list_file, budget=budget, lead_s=lead, threads=threads, method=method,
                         max_seconds=seconds)
    f = Follower(host, pid, opts)
    signal.signal(signal.SIGTERM, lambda *_: f.stop_event.set())
    if not as_json:
        typer.echo(f"following pid {pid} ({f.warmer.method}, {threads} in flight, lead {lead:g}s, budget "
                   f"{budget >> 20} MiB); Ctrl-C stops", err=True)
    try:
        rep = f.run()
    except KeyboardInterrupt:
        f.stop_event.set()
        rep = f.report
        rep.stopped = rep.stopped or "interrupted"
    if as_json:
        print_json({**dataclasses.asdict(rep), "exit_code": rep.exit_code})
    else:
        typer.echo(summary(rep), err=rep.exit_code != 0)
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
