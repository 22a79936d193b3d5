"""The drivers of one node, by knob kind, and how each kind compares values.

The transaction engine looks a driver up by `Knob.kind`, so a knob recorded in the journal can be
read, verified and restored by a later process that knows nothing about the tuner that planned it.
Values cross this boundary as strings in one canonical form per kind (the selected word of a
sysfs selector, a decimal integer, a kernel cpulist, "LO-HI" MHz).
"""

from __future__ import annotations

from .context import TuneContext
from .contract import Driver, Knob
from .registry import drivers


def drivers_for(ctx: TuneContext) -> dict[str, Driver]:
    """Every registered driver made for this node, keyed by the `Knob.kind` it handles."""
    return {kind: cls(ctx) for kind, cls in drivers().items()}


def same_value(knob: Knob, a: str | None, b: str | None) -> bool:
    """Equal values of a knob, as its driver compares them (else as stripped text)."""
    if a is None or b is None:
        return a == b
    same = getattr(drivers().get(knob.kind), "same", None)
    if same is not None:
        return bool(same(a, b))
    return a.strip() == b.strip()
