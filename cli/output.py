"""How commands print: JSON for machines, a rich console for people."""

from __future__ import annotations

import os
import sys
from typing import Any


def print_json(obj: object) -> None:
    """`obj` (dataclasses, lists, dicts) as indented JSON on stdout."""
    import json  # here: the human-readable path never needs it

    from nodetune.probes.serde import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(obj), indent=1) + "\n")


# Piped or redirected output has no width to fit: lines are never broken (a command line, a PCI
# address cut mid-word helps nobody's grep) and tables get room for their widest cell.
PIPED_WIDTH = 250


def term_width() -> int:
    """The terminal's columns; COLUMNS where set; PIPED_WIDTH when stdout is not a terminal."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if not sys.stdout.isatty():
        return PIPED_WIDTH
    try:
        return os.get_terminal_size().columns
    except OSError:
        return PIPED_WIDTH


def plain_width() -> int | None:
    """The width `console()` lays out at where it would draw no styles (stdout is not a terminal,
    nothing forces colour, UTF-8 box characters), so a renderer may write the same text without
    rich; None where rich must draw."""
    env = os.environ
    terminal = env.get("TTY_COMPATIBLE") == "1" or (env.get("TTY_COMPATIBLE") != "0" and (
        bool(env.get("FORCE_COLOR")) if "FORCE_COLOR" in env else sys.stdout.isatty()))
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
    if terminal or sys.stdout.isatty() or not encoding.startswith("utf") or "IPython" in sys.modules:
        return None
    return max(term_width(), PIPED_WIDTH)


def console() -> Any:
    """The console every human-readable command prints to."""
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(emoji=False, highlight=False, soft_wrap=not tty,
                   width=max(100, min(200, term_width())) if tty else max(term_width(), PIPED_WIDTH))


def escape(text: str) -> str:
    """A node's string for a rich console: control characters written out, markup made literal."""
    from rich.markup import escape as markup_escape

    from nodetune.probes.host import inert as safe

    return markup_escape(safe(text))
