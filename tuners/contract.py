"""The tuner contract: knobs, planned changes, the Tuner and the Driver.

A tuner *plans*: it reads each knob's current value and proposes a target (`Change`). Reading and
writing a knob is the job of its driver, chosen by `Knob.kind` (`registry.driver`), so that apply,
verify and rollback (`tuners.transaction`) work the same for every tuner and can restore a knob
from nothing but its journal record, in a later process, after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .context import TuneContext

# What a planned change will do.
CHANGE = "change"  # the knob is written
KEEP = "keep"  # already at target, or `>` semantics keep a higher value
SKIP = "skip"  # cannot or may not be changed; `reason` says why
HOLD = "hold"  # only holds while a process keeps it (cpu_dma_latency); apply does not touch it
ACTIONS = (CHANGE, KEEP, SKIP, HOLD)

# Placeholder for the original of a knob that cannot be read back (NVML has no getter for
# locked clocks): restoring it means resetting to the driver default.
UNREADABLE = "unreadable"


@dataclass
class Knob:
    """One thing nodetune can set; enough to read and restore it from the journal alone."""

    id: str  # unique and stable: "sysfs:/sys/...", "affinity:PID:TID", "gpu_power_limit:0"
    kind: str  # driver: sysfs | affinity | gpu_power_limit | gpu_locked_clocks | cpu_latency
    group: str  # what it controls, for conflicts: thp, hugetlb, readahead, scheduler, governor, ...
    label: str  # what a person reads: "THP enabled", "read_ahead_kb nvme0n1"
    path: str | None = None  # sysfs/dev node path
    selector: bool = False  # "always [madvise] never": reads give the bracketed word
    floor: bool = False  # numeric; `>` semantics: never lowered unless allowed
    granted: bool = False  # the kernel may grant less than asked (nr_hugepages)
    readable: bool = True  # False: the current value cannot be read (NVML locked clocks)
    unit: str = ""  # shown after values: "kB", "mW", "MHz"
    pid: int | None = None
    tid: int | None = None
    starttime: int | None = None  # the thread's start (stat field 22): detects PID reuse
    gpu: int | None = None


@dataclass
class Change:
    """A knob, its value now, the value a profile wants, and what apply will do."""

    tuner: str
    knob: Knob
    current: str | None
    target: str
    action: str = CHANGE
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class TunerPlan:
    """What one tuner proposes for one profile section."""

    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Tuner(Protocol):
    """Plans changes for one profile section; the drivers do the reading and writing."""

    name: str

    def plan(self, ctx: TuneContext, section: Any) -> TunerPlan: ...


class Driver(Protocol):
    """Reads and writes one kind of knob; made from a TuneContext by its registered factory."""

    def read(self, knob: Knob) -> str:
        """The knob's value now; KnobAbsent, KnobGone or KnobFailed when it cannot be read."""
        ...

    def write(self, knob: Knob, value: str) -> None:
        """Set the knob; KnobGone or KnobFailed with one line when it cannot be set."""
        ...

    def preflight(self, knob: Knob) -> str | None:
        """Why the knob cannot be written, found before anything changes; None if it looks writable."""
        ...
