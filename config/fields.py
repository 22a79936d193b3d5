"""Declaring a section's keys: type, default, documented meaning and the range a value may take."""

from __future__ import annotations

import importlib
import re
from dataclasses import field
from typing import Any

# Every section dataclass registered by `section()`: name -> class. Filled as modules import.
SECTIONS: dict[str, type] = {}


def section(name: str) -> Any:
    """Class decorator: the dataclass is the `[name]` table of the config file."""

    def register(cls: type) -> type:
        if name in SECTIONS and SECTIONS[name] is not cls:
            raise RuntimeError(f"config section [{name}] declared twice: {SECTIONS[name].__module__}, {cls.__module__}")
        SECTIONS[name] = cls
        cls.__config_section__ = name  # type: ignore[attr-defined]
        return cls

    return register


def number(default: float, doc: str, *, lo: float = 0.0, hi: float | None = None) -> Any:
    """A finite number in [lo, hi]; `hi=None` leaves it unbounded above (but finite)."""
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi})


def share(default: float, doc: str) -> Any:
    """A fraction in [0, 1]."""
    return field(default=default, metadata={"doc": doc, "lo": 0.0, "hi": 1.0})


def percent(default: float, doc: str) -> Any:
    """A percentage in [0, 100]."""
    return field(default=default, metadata={"doc": doc, "lo": 0.0, "hi": 100.0})


def flag(default: bool, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


def text(default: str, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


def names(default: list[str], doc: str, choices: tuple[str, ...] | None = None,
          choices_from: str | None = None) -> Any:
    """A list of strings, optionally from a set: fixed `choices`, plus those the function named by
    `choices_from` ("module:function", imported only when a value is checked) returns."""
    return field(default_factory=lambda: list(default),
                 metadata={"doc": doc, "choices": choices, "choices_from": choices_from})


def allowed_names(meta: Any) -> tuple[str, ...]:
    """The names a `names` field accepts (empty: any)."""
    out: tuple[str, ...] = ()
    ref = meta.get("choices_from")
    if ref:
        module, _, func = ref.partition(":")
        out = tuple(getattr(importlib.import_module(module), func)())
    return out + tuple(meta.get("choices") or ())


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1.5h', '7d', '1w' -> seconds (> 0); ValueError naming the grammar otherwise.

    The one duration grammar of the command line (`fleet --range`, `history --since`)."""
    m = _DURATION.fullmatch(text or "")
    secs = float(m.group(1)) * _DURATION_UNITS[m.group(2)] if m else 0.0
    if not m or secs <= 0:
        raise ValueError(f"expected a duration such as 90s, 30m, 1.5h, 7d or 1w, got {text!r:.40}")
    return secs
