"""The `nodetune` command line: the typer app, its command groups and the one error path.

Heavy imports (NVML bindings, probes, rich renderers) happen inside the commands so that
`nodetune --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every user error is one line on stderr and exit 2."""
    register_commands()
    try:
        rc = app(args=argv, prog_name="nodetune", standalone_mode=False)
    except typer.BadParameter as exc:
        hint = exc.param.opts[0] if exc.param is not None and exc.param.opts else (exc.param_hint or "argument")
        if isinstance(hint, list | tuple):
            hint = hint[0]
        if not exc.message:  # a missing value: click's own sentence names the option
            _fail(" ".join(exc.format_message().split()))
        _fail(f"{hint}: {' '.join(exc.message.split())}")
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
        msg = user_message(exc)
        if msg is None:
            raise
        _fail(msg)
    if isinstance(rc, int) and rc:
        raise SystemExit(rc)


if __name__ == "__main__":
    main(sys.argv[1:])
