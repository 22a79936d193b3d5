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
    if tuner == "pinning" and params.get("pids") and set(params) <= {"pids", "gpus"}:
        args = [f"--pid {int(p)}" for p in params["pids"]]
        args += [f"--gpu {int(g)}" for g in params.get("gpus") or []]
        return "nodetune tune apply " + " ".join(args)
    if tuner == "prefetch":
        from nodetune.tuners.recommend import prefetch_command

        return prefetch_command(params)
    if tuner == "readahead" and params.get("paths"):
        args = [f"--data-path {shlex.quote(str(p))}" for p in params["paths"]]
        return "nodetune tune apply --profile data-loading " + " ".join(args)
    return "nodetune tune recommend"
