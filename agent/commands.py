"""The agent's commands on the `nodetune` CLI (mounted through the nodetune.commands entry point)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing yet: `nodetune agent` lands with the daemon."""
    del app
