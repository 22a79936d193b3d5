"""Options shared by several commands, declared once, with the one-line messages of the error path.

Each value is parsed by a function here that raises `BadParameter` naming what was expected
(`expected a number between 1 and 3600, got 'abc'`); `cli.app.main` prints it as one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import typer


def number(lo: float, hi: float, integer: bool = False) -> Callable[[str], float]:
    """A parser for a finite number in [lo, hi] (whole with `integer`)."""
    kind = "a whole number" if integer else "a number"

    def parse(value: str | float) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v) or not lo <= v <= hi or (integer and not v.is_integer()):
            raise typer.BadParameter(f"expected {kind} between {lo:g} and {hi:g}, got {str(value)!r:.40}")
        return int(v) if integer else v

    parse.__name__ = f"number_{lo:g}_{hi:g}"
    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise typer.BadParameter(f"expected one of {', '.join(allowed)}, got {value!r:.40}")
        return value

    return parse


SECONDS = number(1, 3600)
INTERVAL = number(0.11, 60)

RootOpt = Annotated[str, typer.Option("--root",
                                      help="Read /proc, /sys, /dev and /etc under this root "
                                           "(a fake tree or a mounted image).")]
ReplayOpt = Annotated[str | None, typer.Option("--replay",
                                               help="Read everything from a snapshot file instead of the node.",
                                               metavar="SNAPSHOT")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ConfigOpt = Annotated[str | None, typer.Option("--config",
                                               help="Config file (default /etc/nodetune/config.toml under --root).")]
SecondsOpt = Annotated[float, typer.Option("--seconds", parser=SECONDS, metavar="S",
                                           help="Length of the sampling window, seconds (1-3600).")]
IntervalOpt = Annotated[float, typer.Option("--interval", parser=INTERVAL, metavar="S",
                                            help="Seconds between samples (0.11-60; GPM needs >= 0.1 s apart).")]
