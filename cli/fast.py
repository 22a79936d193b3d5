"""Commands run without typer: a command module's `FAST` entries, with the few option forms
they take parsed here.

Anything this parser is not sure of (an unknown option, a missing value, an option given twice,
`--help`, a positional argument) hands the command line to typer, so every usage error still
gets click's own message and exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    from typing import Any


class FastCommand:
    """A command and the options it takes without typer: option -> the function's keyword.
    (A plain class for the reason `commands.Declared` is one.)"""

    __slots__ = ("run", "values", "flags")

    def __init__(self, run: Callable[..., None], values: Mapping[str, str], flags: Mapping[str, str]) -> None:
        self.run = run
        self.values = values  # options followed by a value: `--root DIR` or `--root=DIR`
        self.flags = flags  # options that stand alone: `--json`


def parse(cmd: FastCommand, args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of `cmd.run` for `args` (after the command name); None where typer
    should parse them."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        val: str | bool
        if not eq and arg in cmd.flags:
            key, val = cmd.flags[arg], True
        elif name in cmd.values and (eq or i + 1 < len(args)):
            if not eq:
                i += 1
                value = args[i]
                if value.startswith("-"):  # an option or a value like one: click decides which
                    return None
            key, val = cmd.values[name], value
        else:
            return None
        if key in out:
            return None
        out[key] = val
        i += 1
    return out
