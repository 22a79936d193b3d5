"""Which values each probe could not read in a sample, derived from `Sample`'s dataclass fields.

A field of `Sample` whose type carries a `missing` dict (or a list of such, or one holding a list
of such, as a NIC sample holds its ports) is a probe family; its label is the module of its type
(`nodetune.probes.gpu.GpuSample` counts as "gpu"). A probe added to `Sample` is counted and its
faults logged without a line here.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nodetune.probes.snapshot import Sample

log = logging.getLogger("nodetune.agent")
MAX_LOGGED = 1024  # (probe, field) pairs remembered as logged: a bound on the memory, not on faults


@dataclass(frozen=True)
class Family:
    """One probe family: the `Sample` field, its label, and where its `missing` dicts are."""

    field: str
    probe: str
    many: bool  # a list of samples (one a GPU, one a process): counted, logged by its own owner
    # (field, naming field): lists of parts with their own `missing` (a NIC's ports, named by device)
    nested: tuple[tuple[str, str], ...]


def _has_missing(cls: Any) -> bool:
    return dataclasses.is_dataclass(cls) and any(f.name == "missing" for f in dataclasses.fields(cls))


def _element(tp: Any) -> tuple[Any, bool]:
    """The dataclass inside `X`, `X | None` or `list[X]`, and whether it is a list."""
    origin = typing.get_origin(tp)
    if origin is list:
        return typing.get_args(tp)[0], True
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return (inner[0], False) if len(inner) == 1 else (None, False)
    return tp, False


def families(sample_cls: type = Sample) -> tuple[Family, ...]:
    """The probe families of a sample class, read from its type hints (once, at import)."""
    out = []
    for name, tp in typing.get_type_hints(sample_cls).items():
        cls, many = _element(tp)
        if not _has_missing(cls):
            continue
        nested = []
        for n, t in typing.get_type_hints(cls).items():
            part, is_list = _element(t)
            if is_list and _has_missing(part):
                nested.append((n, dataclasses.fields(part)[0].name))
        out.append(Family(name, cls.__module__.rsplit(".", 1)[-1], many, tuple(nested)))
    return tuple(out)


FAMILIES = families()


def _parts(value: Any, fam: Family) -> Iterator[tuple[str, dict[str, str]]]:
    """(prefix, missing) of a family's value and of its nested parts, each named by its first field."""
    yield "", value.missing
    for n, name in fam.nested:
        for part in getattr(value, n):
            yield f"{getattr(part, name)}.", part.missing


class Ledger:
    """Values missing per probe family in each sample, and one log line per (probe, field) that
    goes missing, never one per sample. What a node lacks from its first sample is how the node
    is, not a fault: remembered silently. GPUs and processes log their own faults (their state)."""

    def __init__(self) -> None:
        self.logged: set[tuple[str, str]] = set()

    def observe(self, s: Sample, first: bool = False) -> dict[str, int]:
        """Count the sample's missing values per family (zero included) and log new faults: one walk."""
        out: dict[str, int] = {}
        for fam in FAMILIES:
            value = getattr(s, fam.field)
            n = 0
            for item in (value if fam.many else () if value is None else (value,)):
                for prefix, miss in _parts(item, fam):
                    n += len(miss)
                    if miss and not fam.many:
                        self._log(fam.probe, prefix, miss, first)
            out[fam.probe] = out.get(fam.probe, 0) + n
        return out

    def _log(self, probe: str, prefix: str, miss: dict[str, str], first: bool) -> None:
        for k, reason in miss.items():
            key = (probe, prefix + k)
            if key in self.logged or len(self.logged) >= MAX_LOGGED:
                continue
            self.logged.add(key)
            if not first:
                log.warning("probe %s: %s unreadable: %s (nodetune_agent_probe_missing_fields)", probe, prefix + k,
                            reason)


def missing_counts(s: Sample) -> dict[str, int]:
    """Values missing in one sample, per probe family, logging nothing (a replayed window)."""
    return Ledger().observe(s, first=True)
