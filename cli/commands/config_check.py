"""`nodetune config check` (cli/config_cmd.py)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    import typer

COMMANDS = {
    "config": "Check nodetune's configuration (/etc/nodetune/config.toml).",
}


def register(app: typer.Typer) -> None:
    """Mount `config`."""
    from ..config_cmd import register as mount

    mount(app)
