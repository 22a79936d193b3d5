"""`nodetune diagnose` (cli/diagnose.py: `tune recommend` samples and diagnoses through it too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

COMMANDS = {
    "diagnose": "Sample the node; a verdict per GPU and per job, with the fix.",
}


def register(app: typer.Typer) -> None:
    """Mount `diagnose`."""
    from ..diagnose import register as mount

    mount(app)
