"""`nodetune fleet` (cli/fleet.py: asks the Prometheus that scrapes the agents)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    import typer

COMMANDS = {
    "fleet": "Lost GPU-hours and problems across the fleet, from Prometheus.",
}


def register(app: typer.Typer) -> None:
    """Mount `fleet`."""
    from ..fleet import register as mount

    mount(app)
