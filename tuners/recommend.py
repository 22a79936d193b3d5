"""Turn diagnosis advice into a profile, so `tune recommend` plans exactly what the findings ask.

Advice items look like {"tuner": "pinning", "params": {"pids": [1234], "gpus": [0]}, "text": "..."};
items for one tuner merge into its table (lists are joined, the first value of a scalar wins and
a different later value is reported), then the profile validator checks them like any profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .profiles import SECTIONS, Profile, profile_from_data

SOURCE = "diagnosis advice"


def advice_items(raw: Iterable[Any]) -> list[dict[str, Any]]:
    """Normalise advice given as dicts or objects with tuner/params/text attributes."""
    out = []
    for a in raw:
        if isinstance(a, Mapping):
            tuner, params, text = a.get("tuner"), a.get("params"), a.get("text")
        else:
            tuner, params, text = (getattr(a, k, None) for k in ("tuner", "params", "text"))
        out.append({"tuner": tuner, "params": dict(params or {}), "text": str(text or "")})
    return out


def profile_from_advice(items: list[dict[str, Any]]) -> tuple[Profile, list[str]]:
    """A validated profile and notes (advice without a tuner, tuners this build lacks, clashes)."""
    tables: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for a in items:
        tuner, text = a["tuner"], a["text"]
        if not tuner:
            if text:
                notes.append(f"advice (no tuner can act on it): {text}")
            continue
        if tuner not in SECTIONS:
            notes.append(f"advice names tuner {tuner!r}, which this nodetune does not have: {text}")
            continue
        t = tables.setdefault(tuner, {})
        for k, v in a["params"].items():
            if k not in t:
                t[k] = list(v) if isinstance(v, list) else v
            elif isinstance(v, list) and isinstance(t[k], list):
                t[k] += [x for x in v if x not in t[k]]
            elif t[k] != v:
                notes.append(f"advice for {tuner}.{k} asks {v!r} and {t[k]!r}; planning {t[k]!r}")
        if text:
            notes.append(f"{tuner}: {text}")
    return profile_from_data(tables, "recommended", SOURCE), notes
