"""The `nodetune` console entry point.

The top-level `--help`, `-h` and `--version`, and the simple forms of the commands whose modules
declare them (`FAST` in cli/commands/), are answered here from the standard library alone: typer,
click and rich take several times a bare interpreter's start-up to import. Everything else (and
these too where the fast answer cannot be sure it is the same) goes to the typer app in
`cli/typer_app.py`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    from typing import Any


def __getattr__(name: str) -> Any:
    """`from nodetune.cli.app import app` (and the rest of the typer app's names) still works."""
    if name.startswith("__"):
        raise AttributeError(name)
    from . import typer_app

    return getattr(typer_app, name)


def _columns() -> int:
    """The width click lays help out for (shutil.get_terminal_size's rules, without shutil)."""
    try:
        cols = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        cols = 0
    if cols <= 0:
        try:
            cols = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            cols = 0
    return cols or 80


def fast_help() -> str | None:
    """The top-level help where it is the typer app's to the character: a terminal of 80 columns
    or more (click lays help out at most 78 wide) and plugins whose help `help_text` knows."""
    if _columns() < 80:
        return None
    from . import help_text, plugins

    plugged = {name for name, _ in plugins.command_entry_points()}
    if not plugged <= help_text.PLUGIN_COMMANDS:
        return None
    from .commands import builtin_commands

    summaries = {name: d.summary for name, d in builtin_commands().items()}
    return help_text.top_help(summaries, {n: t for n, t in help_text.PLUGIN_HELP.items() if n in plugged})


def run_fast(args: list[str]) -> bool:
    """Run `nodetune CMD ...` without typer where CMD's module declares a fast form that takes
    these arguments (cli/fast.py); False where typer must parse them."""
    from . import fast
    from .commands import builtin_commands, load
    from .errors import exit_for, interrupted

    declared = builtin_commands().get(args[0])
    cmd = getattr(load(declared.module), "FAST", {}).get(args[0]) if declared else None
    kwargs = fast.parse(cmd, args[1:]) if cmd is not None else None
    if cmd is None or kwargs is None:
        return False
    try:
        cmd.run(**kwargs)
    except KeyboardInterrupt:
        interrupted()
    except Exception as exc:
        exit_for(exc)
        raise
    return True


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every user error is one line on stderr and exit 2 (cli/typer_app.py)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from . import plugins  # here: `nodetune CMD` needs neither it nor the help text

        v = plugins.version("nodetune")
        if v is not None:
            sys.stdout.write(f"nodetune {v}\n")
            return
    elif len(args) == 1 and args[0] in ("--help", "-h"):
        text = fast_help()
        if text is not None:
            sys.stdout.write(text)
            return
    elif args and not args[0].startswith("-") and run_fast(args):
        return
    from .typer_app import main as typer_main

    typer_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
