"""The tuners and their knob drivers, found rather than listed.

A tuner is one module `tuners/knobs/NAME.py` holding one class decorated `@tuner` whose `name` is
NAME (the profile table it reads, e.g. [readahead]). It declares `params` (the dataclass of that
table) and `order` (when it applies: memory and I/O first, CPU power before EPP, pinning last), and
may declare `autotune = False` (the agent never applies it), `opt_in_groups` (knob groups changed
only when the config allows GPU power changes), `managed_by` (knob group -> other daemons that
manage it) and `command(params)` (the command line that carries out its advice). The drivers of
its knobs live in the same module, decorated `@driver("kind")`.

Profiles, plans, conflicts, advice, the agent's autotune choices and the `tune` help all derive
from here, so adding a tuner is adding one file (as TuneD loads a plugin by its module name).
Discovery imports the modules of `tuners/knobs/` and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache
from typing import Any

KNOBS_PACKAGE = "nodetune.tuners.knobs"

_CLASSES: dict[str, type] = {}
_DRIVERS: dict[str, type] = {}


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


def driver(kind: str) -> Callable[[type], type]:
    """Class decorator: the driver of knobs whose `Knob.kind` is `kind`; made with `cls(ctx)`.

    A driver may have a static `same(a, b)` saying when two values of its knobs are equal (cpulists
    compare as sets); without one, values compare as stripped text."""

    def register(cls: type) -> type:
        if kind in _DRIVERS and _DRIVERS[kind] is not cls:
            raise RuntimeError(f"driver {kind!r} declared twice: {_DRIVERS[kind].__module__}, {cls.__module__}")
        _DRIVERS[kind] = cls
        return cls

    return register


def tuner_modules() -> list[str]:
    """Names of the tuner modules, found without importing them (a tuner's name is its module's)."""
    pkg = importlib.import_module(KNOBS_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


@cache
def _discover() -> tuple[type, ...]:
    for name in tuner_modules():
        mod = importlib.import_module(f"{KNOBS_PACKAGE}.{name}")
        found = [c for c in _CLASSES.values() if c.__module__ == mod.__name__]
        if [c.name for c in found] != [name]:  # type: ignore[attr-defined]
            raise RuntimeError(f"{mod.__name__}: a tuner module holds one @tuner class named {name!r}, "
                               f"found {[c.name for c in found]}")  # type: ignore[attr-defined]
    return tuple(sorted(_CLASSES.values(), key=lambda c: c.order))  # type: ignore[attr-defined]


@cache
def all_tuners() -> dict[str, Any]:
    """name -> tuner instance, in the order they apply."""
    return {c.name: c() for c in _discover()}  # type: ignore[attr-defined]


def sections() -> dict[str, type]:
    """Profile table name -> its parameter dataclass."""
    return {c.name: c.params for c in _discover()}  # type: ignore[attr-defined]


def drivers() -> dict[str, type]:
    """Knob kind -> its driver class (every tuner module loaded)."""
    _discover()
    return dict(_DRIVERS)


def autotune_names() -> list[str]:
    """Tuners the agent may apply from its own findings (GPU power and clocks never)."""
    return [c.name for c in _discover() if getattr(c, "autotune", True)]  # type: ignore[attr-defined]


def opt_in_groups() -> set[str]:
    """Knob groups changed only when the config (or the command line) allows GPU power changes."""
    return {g for c in _discover() for g in getattr(c, "opt_in_groups", ())}


def groups_managed_by(owner: str) -> list[str]:
    """Knob groups another daemon (TuneD, power-profiles-daemon) manages, as the tuners declare."""
    out: list[str] = []
    for c in _discover():
        for group, owners in getattr(c, "managed_by", {}).items():
            if owner in owners and group not in out:
                out.append(group)
    return out
