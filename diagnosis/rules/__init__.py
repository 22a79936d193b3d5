"""Diagnosis rules: one module per verdict, found by walking this package.

A rule module defines `evaluate(ctx) -> list[Finding]` and `PRIMARY_RANK` (an int where its finding
can be a GPU's verdict, lower wins; None for findings reported beside the verdict). Adding a
verdict is adding one file here; nothing else lists the rules.
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
        if not hasattr(mod, "evaluate") or not hasattr(mod, "PRIMARY_RANK"):
            raise RuntimeError(f"rule module {mod.__name__} lacks evaluate() or PRIMARY_RANK")
        mods.append(mod)
    return tuple(mods)


@cache
def primary_order() -> tuple[str, ...]:
    """Kinds that can be a GPU's primary verdict, most decisive first."""
    ranked = [(m.PRIMARY_RANK, m.__name__.rsplit(".", 1)[1]) for m in all_rules() if m.PRIMARY_RANK is not None]
    return tuple(kind for _, kind in sorted(ranked))
