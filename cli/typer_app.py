"""The `nodetune` command line: the typer app, its command groups and the one error path.

Reached through `cli/app.py` (the console entry point), which answers the top-level `--help` and
`--version`, and the commands' `FAST` forms, without importing this. The commands are the modules
of `cli/commands/` (and the plugins'); heavy imports (NVML bindings, probes, rich renderers)
happen inside the commands so that a subcommand's `--help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from .errors import exit_for, fail, interrupted


class _ByName(typer.core.TyperGroup):
    """The top-level group: commands listed by name, wherever they come from (cli/help_text.py
    lists them the same way without typer)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(self.commands)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("nodetune")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        typer.echo(f"nodetune {v}")
        raise typer.Exit(0)


def _root(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                                help="Print the version and exit.")] = False) -> None:
    """Profile and tune a Linux GPU node."""


def _mount(app: typer.Typer, module: str) -> None:
    """Mount one command module's commands, each listed with the summary the module declares (the
    one `nodetune --help` prints without typer); a module must mount what it declares."""
    from .commands import load

    mod = load(module)
    n_cmds, n_groups = len(app.registered_commands), len(app.registered_groups)
    mod.register(app)
    mounted: dict[str, Any] = {}
    for info in app.registered_commands[n_cmds:]:
        mounted[info.name or typer.main.get_command_name(info.callback.__name__)] = info  # type: ignore[union-attr]
    for group in app.registered_groups[n_groups:]:
        mounted[str(group.name or group.typer_instance.info.name)] = group  # type: ignore[union-attr]
    if set(mounted) != set(mod.COMMANDS):
        raise RuntimeError(f"{module} declares the commands {sorted(mod.COMMANDS)} but mounts {sorted(mounted)}")
    for name, info in mounted.items():
        info.short_help = mod.COMMANDS[name]


def build_app(command: str | None = None) -> typer.Typer:
    """The typer app with every command, or with only what `nodetune COMMAND` needs: the built-in
    module or the plugin that mounts COMMAND (every command where COMMAND is unknown, so typer's
    "no such command" and its suggestions see them all)."""
    from . import help_text, plugins
    from .commands import builtin_commands

    app = typer.Typer(
        name="nodetune",
        cls=_ByName,
        help=help_text.APP_HELP,
        no_args_is_help=True,
        add_completion=False,
        # Plain help: typer's rich help pulls in rich.markdown (~100 ms of imports) on every --help.
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        # `-h` as well as `--help`, inherited by every subcommand's context
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    builtin = builtin_commands()
    eps = plugins.command_entry_points()
    mods: tuple[str, ...]
    if command in builtin:
        mods, eps = (builtin[command].module,), []
    elif command is not None and command in {name for name, _ in eps}:
        mods, eps = (), [(n, v) for n, v in eps if n == command]
    else:
        mods = tuple(dict.fromkeys(d.module for d in builtin.values()))
    for mod in mods:
        _mount(app, mod)
    # Commands of other packages (the agent) plug in through an entry-point group, so the CLI
    # never imports them by name (DESIGN: cli and agent never import each other).
    for name, value in eps:
        try:
            plugins.load(value)(app)
        except Exception as exc:  # a broken plugin must not take the other commands down with it
            typer.echo(f"nodetune: warning: the '{name}' commands are unavailable: "
                       f"{type(exc).__name__}: {exc}", err=True)
    return app


_full: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """`app`: the typer app with every command (tests, `python -m`), built on first use;
    `BUILTIN`: built-in command name -> the module that mounts it (cli/commands/)."""
    global _full
    if name == "app":
        if _full is None:
            _full = build_app()
        return _full
    if name == "BUILTIN":
        from .commands import builtin_commands

        return {cmd: d.module for cmd, d in builtin_commands().items()}
    raise AttributeError(name)


def _name_metavars(cmd: Any) -> None:
    """Help shows each value by name (`--pid PID`, `--data-path DATA-PATH`), never a Python type
    such as `<list[int]>`: every parameter without a metavar of its own gets its name in capitals."""
    for p in getattr(cmd, "params", []):
        if getattr(p, "metavar", "") is None and not getattr(p, "is_flag", False) and not getattr(p, "count", False):
            longest = max(p.opts, key=len) if p.opts else (p.name or "value")
            p.metavar = longest.lstrip("-").upper().replace("_", "-") + ("..." if p.nargs == -1 else "")
        if getattr(p, "param_type_name", "") == "argument":
            p.display_type_rich = lambda ctx=None: None  # an argument's help names it once, not with its type
    for sub in getattr(cmd, "commands", {}).values():
        _name_metavars(sub)


def _runtime_param_type() -> type | None:
    """A typer RuntimeParam that hands back a value click already gave the annotated type (a str
    option's text, a flag's bool) and asks typer's own coercion otherwise.

    typer validates every value through a pydantic TypeAdapter, and importing pydantic is a third
    of a command's start-up (`topo`); for a str or bool of exactly that type, and no parser or
    bounds of ours, pydantic hands back that same value. None where typer's internals are not as
    expected (then nothing changes: every value goes through pydantic).
    """
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:
        return None

    class SameType(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is self.annotation:
                return value
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)

    return SameType


def _skip_pydantic(same: type) -> None:
    """Every typer parameter of type str or bool with no parser coerces through `same` (the help
    option click adds late included, which no walk of the command tree would reach)."""
    from typer.core import _TyperParameter

    if getattr(_TyperParameter.get_runtime_param, "_nodetune", False):
        return
    typer_own = _TyperParameter.get_runtime_param

    def get_runtime_param(self: Any) -> Any:
        td = self.type_descriptor
        if (self._runtime_param is None and td.annotation in (str, bool) and td.file_annotation is None
                and td.parameter_info.parser is None):  # a parser runs inside pydantic's coercion
            self._runtime_param = same(parameter_info=td.parameter_info, annotation=td.annotation)
        return typer_own(self)

    get_runtime_param._nodetune = True  # type: ignore[attr-defined]
    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]


# pydantic's sentences for a value of the wrong type, in the words every other option uses
_TYPE_WORDS = (("valid integer", "a whole number"), ("valid number", "a number"), ("valid boolean", "true or false"))


def _given(hint: str, argv: list[str]) -> str | None:
    """The value given to option `hint` on the command line (for the error line)."""
    for i, a in enumerate(argv):
        if a == hint and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(hint + "="):
            return a.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every user error is one line on stderr and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and not args[0].startswith("-") else None  # `nodetune CMD ...`
    try:
        cmd = typer.main.get_command(build_app(command))
        _name_metavars(cmd)
        same = _runtime_param_type()
        if same is not None:
            _skip_pydantic(same)
        rc = cmd.main(args=args, prog_name="nodetune", standalone_mode=False)
    except typer.BadParameter as exc:
        hint = exc.param.opts[0] if exc.param is not None and exc.param.opts else (exc.param_hint or "argument")
        if isinstance(hint, list | tuple):
            hint = hint[0]
        if not exc.message:  # a missing value: click's own sentence names the option
            fail(" ".join(exc.format_message().split()))
        msg = " ".join(exc.message.split())
        for pyd, words in _TYPE_WORDS:
            if msg.startswith(f"Input should be a {pyd}"):
                given = _given(str(hint), args)
                msg = f"expected {words}" + (f", got {given!r:.40}" if given is not None else "")
        fail(f"{hint}: {msg}")
    except typer.TyperException as exc:  # usage errors: no such option, missing value, ...
        if type(exc).__name__ == "NoArgsIsHelpError":  # `nodetune` or `nodetune tune` alone: the help
            typer.echo(exc.format_message())
            raise SystemExit(2) from None
        fail(" ".join(exc.format_message().split()))
    except (typer.Abort, KeyboardInterrupt):
        interrupted()
    except Exception as exc:
        exit_for(exc)
        raise
    if isinstance(rc, int) and rc:
        raise SystemExit(rc)


if __name__ == "__main__":
    main(sys.argv[1:])
