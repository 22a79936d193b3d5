"""`nodetune prefetch` (cli/prefetch.py)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    import typer

COMMANDS = {
    "prefetch": "Warm files into the page cache, or follow a job's reads.",
}


def register(app: typer.Typer) -> None:
    """Mount `prefetch`."""
    from ..prefetch import register as mount

    mount(app)
