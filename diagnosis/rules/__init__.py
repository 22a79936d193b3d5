"""Diagnosis rules: one module per verdict, found by walking this package.

A rule module defines `evaluate(ctx) -> list[Finding]`, `PRIMARY_RANK` (an int where its finding
can be a GPU's verdict, lower wins; None for findings reported beside the verdict) and
`STRIP_LETTER` (the one character `nodetune history JOB` draws for the verdict; None beside it).
Adding a verdict is adding one file here; nothing else lists the rules.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType


@cache
def all_rules() -> tuple[ModuleType, ...]:
    """Every rule module, in name order (evaluation order does not matter: rules only read)."""
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if not hasattr(mod, "evaluate") or not hasattr(mod, "PRIMARY_RANK") or not hasattr(mod, "STRIP_LETTER"):
            raise RuntimeError(f"rule module {mod.__name__} lacks evaluate(), PRIMARY_RANK or STRIP_LETTER")
        letter = mod.STRIP_LETTER
        if (mod.PRIMARY_RANK is not None and letter is None) or (letter is not None and len(letter) != 1):
            raise RuntimeError(f"rule module {mod.__name__}: STRIP_LETTER must be one character for a verdict")
        mods.append(mod)
    return tuple(mods)


# The verdict of a GPU with no utilization reading in the window: no verdict at all, never idle.
UNKNOWN = "unknown"
# Verdicts the engine gives without a rule: what each means and the letter the history strip draws.
ENGINE_VERDICTS = {
    "idle": ("no GPU process, and the GPU idle", "."),
    "unclassified": ("GPU processes, but no rule's evidence fits: the summary gives utilization and SM activity", "?"),
    UNKNOWN: ("no utilization reading of the GPU in the window (no NVML, or a GPU NVML cannot see): no verdict, "
                "confidence 0, never counted as idle", "-"),
}
ENGINE_STRIP_LETTERS = {name: letter for name, (_, letter) in ENGINE_VERDICTS.items()}


@cache
def strip_letters() -> dict[str, str]:
    """Verdict -> the letter the history strip draws for it, from each rule's STRIP_LETTER."""
    letters = dict(ENGINE_STRIP_LETTERS)
    for m in all_rules():
        if m.STRIP_LETTER is not None:
            letters[m.__name__.rsplit(".", 1)[1]] = m.STRIP_LETTER
    return letters


@cache
def primary_order() -> tuple[str, ...]:
    """Kinds that can be a GPU's primary verdict, most decisive first."""
    ranked = [(m.PRIMARY_RANK, m.__name__.rsplit(".", 1)[1]) for m in all_rules() if m.PRIMARY_RANK is not None]
    return tuple(kind for _, kind in sorted(ranked))


def _when(mod: ModuleType) -> str:
    """A rule's README row: its docstring's first paragraph, less the leading `name:`."""
    name = mod.__name__.rsplit(".", 1)[1]
    text = " ".join((mod.__doc__ or "").split("\n\n")[0].split())
    return text.removeprefix(f"{name}:").strip()


def verdict_table() -> str:
    """The README's table of verdicts, from the rules themselves: the verdicts in the order they
    win, then the findings reported beside a verdict, then those the engine gives without a rule."""
    rows = ["| verdict | when |", "|---|---|"]
    ranked = sorted((m for m in all_rules() if m.PRIMARY_RANK is not None), key=lambda m: m.PRIMARY_RANK)
    for m in ranked:
        rows.append(f"| `{m.__name__.rsplit('.', 1)[1]}` | {_when(m)} |")
    for m in all_rules():
        if m.PRIMARY_RANK is None:
            rows.append(f"| `{m.__name__.rsplit('.', 1)[1]}` | {_when(m)} (a finding beside the verdict) |")
    for name, (text, _) in ENGINE_VERDICTS.items():
        rows.append(f"| `{name}` | {text} |")
    return "\n".join(rows)
