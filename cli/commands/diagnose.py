"""`nodetune diagnose` (cli/diagnose.py: `tune recommend` samples and diagnoses through it too)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    import typer

COMMANDS = {
    "diagnose": "Sample the node; a verdict per GPU and per job, with the fix.",
}


def register(app: typer.Typer) -> None:
    """Mount `diagnose`."""
    from ..diagnose import register as mount

    mount(app)
