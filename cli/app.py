"""The `nodetune` command line: the typer app, its command groups and the one error path.

Heavy imports (NVML bindings, probes, rich renderers) happen inside the commands so that
`nodetune --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
import typer.main

from .errors import UserError, user_message

app = typer.Typer(
    name="nodetune",
    help="Profile and tune a Linux GPU node: see its topology, explain what holds each GPU job back, "
    "and apply reversible tuning.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: typer's rich help pulls in rich.markdown (~100 ms of imports) on every --help.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    # `-h` as well as `--help`, inherited by every subcommand's context
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("nodetune")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        typer.echo(f"nodetune {v}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                                help="Print the version and exit.")] = False) -> None:
    """Profile and tune a Linux GPU node."""


def _mount_builtin() -> None:
    from . import config_cmd, diagnose, fleet, prefetch, topo, tune

    for mod in (topo, diagnose, tune, config_cmd, prefetch, fleet):
        mod.register(app)


_mount_builtin()
_plugins_loaded = False


def register_commands() -> None:
    """Mount commands of other packages (the agent), once.

    They plug in through an entry-point group, so the CLI never imports them by name (DESIGN:
    cli and agent never import each other).
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group="nodetune.commands"):
        try:
            ep.load()(app)
        except Exception as exc:  # a broken plugin must not take the other commands down with it
            typer.echo(f"nodetune: warning: the '{ep.name}' commands are unavailable: "
                       f"{type(exc).__name__}: {exc}", err=True)
    _plugins_loaded = True


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"nodetune: error: {message}", err=True)
    raise SystemExit(code)


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
    register_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cmd = typer.main.get_command(app)
        _name_metavars(cmd)
        rc = cmd.main(args=args, prog_name="nodetune", standalone_mode=False)
    except typer.BadParameter as exc:
        hint = exc.param.opts[0] if exc.param is not None and exc.param.opts else (exc.param_hint or "argument")
        if isinstance(hint, list | tuple):
            hint = hint[0]
        if not exc.message:  # a missing value: click's own sentence names the option
            _fail(" ".join(exc.format_message().split()))
        msg = " ".join(exc.message.split())
        for pyd, words in _TYPE_WORDS:
            if msg.startswith(f"Input should be a {pyd}"):
                given = _given(str(hint), args)
                msg = f"expected {words}" + (f", got {given!r:.40}" if given is not None else "")
        _fail(f"{hint}: {msg}")
    except typer.TyperException as exc:  # usage errors: no such option, missing value, ...
        if type(exc).__name__ == "NoArgsIsHelpError":  # `nodetune` or `nodetune tune` alone: the help
            typer.echo(exc.format_message())
            raise SystemExit(2) from None
        _fail(" ".join(exc.format_message().split()))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("nodetune: interrupted", err=True)
        raise SystemExit(130) from None
    except UserError as exc:
        _fail(str(exc), exc.exit_code)
    except Exception as exc:
        text = user_message(exc)
        if text is None:
            raise
        _fail(text)
    if isinstance(rc, int) and rc:
        raise SystemExit(rc)


if __name__ == "__main__":
    main(sys.argv[1:])
