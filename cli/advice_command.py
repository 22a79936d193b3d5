"""Advice as a command a person can paste: `nodetune tune apply --pid 567`, not a Python dict."""

from __future__ import annotations

import shlex
from typing import Any


def advice_command(tuner: str | None, params: dict[str, Any]) -> str | None:
    """The nodetune command that carries out one advice item, or None where nothing acts on it.

    Targets the command line can name go there; anything else (a governor, a GPU power limit)
    goes through `tune recommend`, which plans exactly what the findings ask.
    """
    if not tuner:
        return None
    if tuner == "profile" and isinstance(params.get("profile"), str):
        return f"nodetune tune apply --profile {shlex.quote(params['profile'])}"
    if tuner == "prefetch":
        from nodetune.tuners.recommend import prefetch_command

        return prefetch_command(params)
    from nodetune.tuners.registry import all_tuners

    command = getattr(all_tuners().get(tuner), "command", None)  # a tuner may name its own command
    return (command(params) if command is not None else None) or "nodetune tune recommend"
