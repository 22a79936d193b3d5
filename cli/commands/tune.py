"""`nodetune tune ...` and `nodetune exec` (cli/tune.py, cli/tune_session.py, cli/render_tune.py)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    import typer

COMMANDS = {
    "tune": "Plan, apply, verify and roll back journaled tuning.",
    "exec": "Run a command on a GPU's local CPUs and NUMA node.",
}


def register(app: typer.Typer) -> None:
    """Mount `tune` and `exec`."""
    from ..tune import register as mount

    mount(app)
