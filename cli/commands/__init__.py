"""The built-in commands: one module each, found by listing this package.

A command module declares, in its first lines and with no import heavier than the standard
library's light ones:
- `COMMANDS`: command name -> its one-line summary (what `nodetune --help` lists);
- `register(app)`: mounts exactly those commands on the typer app, importing typer, the options
  and whatever the commands need inside the function (or from a helper module it imports there);
- optionally `FAST`: command name -> `cli.fast.FastCommand`, for invocations simple enough that
  `cli/app.py` runs them without typer (start-up time).

So `nodetune --help` reads every summary by importing these small modules alone, `nodetune CMD`
builds the typer app with only CMD's module, and adding a command is adding one file here.
Commands of other packages plug in through the `nodetune.commands` entry points (cli/plugins.py).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


class Declared:
    """A built-in command as its module declares it.

    A plain class, not a dataclass: `dataclasses` imports `inspect`, several times what the rest
    of `nodetune --help` costs."""

    __slots__ = ("module", "summary")

    def __init__(self, module: str, summary: str) -> None:
        self.module = module  # the module's full name
        self.summary = summary


def command_modules() -> list[str]:
    """Full names of the command modules, in name order (listing `__path__`, which a test or a
    vendor may extend with a folder of its own)."""
    names: set[str] = set()
    for folder in __path__:
        try:
            entries = os.listdir(folder)
        except OSError:  # a folder that is gone: its modules cannot be imported either
            continue
        names.update(e[:-3] for e in entries if e.endswith(".py") and not e.startswith("_"))
    return [f"{__name__}.{n}" for n in sorted(names)]


def load(module: str) -> ModuleType:
    """A command module, checked for the declarations every one makes."""
    mod = importlib.import_module(module)
    commands = getattr(mod, "COMMANDS", None)
    if not isinstance(commands, dict) or not commands or not callable(getattr(mod, "register", None)):
        raise RuntimeError(f"command module {module} lacks COMMANDS (name -> summary) or register(app)")
    return mod


def builtin_commands() -> dict[str, Declared]:
    """Command name -> the module that mounts it and its summary, for every built-in command."""
    out: dict[str, Declared] = {}
    for module in command_modules():
        for name, summary in load(module).COMMANDS.items():
            if name in out:
                raise RuntimeError(f"command {name!r} declared twice: {out[name].module}, {module}")
            out[name] = Declared(module, summary)
    return out
