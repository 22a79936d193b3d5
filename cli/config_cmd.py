"""`nodetune config check [FILE]`: validate a config file and print the effective values."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import JsonOpt, RootOpt
from .output import print_json

config_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                         help="Check nodetune's configuration (/etc/nodetune/config.toml).")


@config_app.command("check")
def check(file: Annotated[str | None, typer.Argument(help="Config file to check (default: the node's "
                                                          "/etc/nodetune/config.toml).")] = None,
          root: RootOpt = "/", as_json: JsonOpt = False) -> None:
    """Validate every section and key (exit 2 naming file, key and line); print the effective values."""
    from nodetune.config.loader import effective, load_config
    from nodetune.probes.host import Host

    cfg = load_config(Host(root), file)
    values = effective(cfg)
    if as_json:
        print_json({"source": cfg.source, "sections": values})
        return
    typer.echo(f"# {cfg.source or 'no config file: built-in defaults'}: ok")
    for name, table in values.items():
        typer.echo(f"\n[{name}]")
        for key, val in table.items():
            typer.echo(f"{key} = {_toml(val)}")


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
