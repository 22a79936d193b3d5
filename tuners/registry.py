"""The tuners, found rather than listed: each tuner class is decorated `@tuner` in its own module.

A tuner declares its `name` (the profile table it reads, e.g. [readahead]), `params` (the
dataclass of that table) and `order` (when it applies: memory and I/O first, CPU power before EPP,
pinning last). Profiles, plans and advice all derive the list from here, so adding a tuner is
adding one file (as TuneD loads a plugin by its module name).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

_CLASSES: dict[str, type] = {}


def tuner(cls: type) -> type:
    """Class decorator: register a tuner by its `name`; `params` and `order` must be set."""
    for attr in ("name", "params", "order"):
        if not hasattr(cls, attr):
            raise TypeError(f"tuner {cls.__name__} lacks {attr}")
    name = cls.name  # type: ignore[attr-defined]
    if name in _CLASSES and _CLASSES[name] is not cls:
        raise RuntimeError(f"tuner {name!r} declared twice: {_CLASSES[name].__module__}, {cls.__module__}")
    _CLASSES[name] = cls
    return cls


@cache
def _discover() -> tuple[type, ...]:
    pkg = importlib.import_module(__package__ or "nodetune.tuners")
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return tuple(sorted(_CLASSES.values(), key=lambda c: c.order))  # type: ignore[attr-defined]


@cache
def all_tuners() -> dict[str, Any]:
    """name -> tuner instance, in the order they apply."""
    return {c.name: c() for c in _discover()}  # type: ignore[attr-defined]


def sections() -> dict[str, type]:
    """Profile table name -> its parameter dataclass."""
    return {c.name: c.params for c in _discover()}  # type: ignore[attr-defined]
