"""Drivers: how each kind of knob is read and written.

The transaction engine looks a driver up by `Knob.kind`, so a knob recorded in the journal can be
read, verified and restored by a later process that knows nothing about the tuner that planned it.
Values cross this boundary as strings in one canonical form per kind (the selected word of a
sysfs selector, a decimal integer, a kernel cpulist, "LO-HI" MHz).
"""

from __future__ import annotations

import os
from typing import Protocol

from nodetune.probes.host import Host, KnobWriteError, ProbeError, format_cpulist, parse_cpulist
from nodetune.probes.memory import parse_selected

from .affinity import Affinity, thread_starttime
from .base import (
    CHANGE,
    SKIP,
    UNREADABLE,
    Change,
    Knob,
    KnobAbsent,
    KnobFailed,
    KnobGone,
    TuneContext,
    TuneError,
)
from .gpu_control import GpuControl, GpuControlError

UNLOCKED = "unlocked"


class Driver(Protocol):
    def read(self, knob: Knob) -> str:
        """The knob's value now; KnobAbsent, KnobGone or KnobFailed when it cannot be read."""
        ...

    def write(self, knob: Knob, value: str) -> None:
        """Set the knob; KnobGone or KnobFailed with one line when it cannot be set."""
        ...

    def preflight(self, knob: Knob) -> str | None:
        """Why the knob cannot be written, found before anything changes; None if it looks writable."""
        ...


def selected(text: str, where: str) -> str:
    """The value of a sysfs file: the bracketed word of a selector, else the stripped text."""
    text = text.strip()
    if "[" in text:
        return parse_selected(text, where)
    return text


def options(text: str) -> list[str]:
    """The words a selector file offers ("always [madvise] never" -> all three)."""
    return [w.strip("[]") for w in text.split()]


class SysfsDriver:
    def __init__(self, host: Host) -> None:
        self.host = host

    def read(self, knob: Knob) -> str:
        assert knob.path is not None
        try:
            text = self.host.read(knob.path)
            return selected(text, knob.path) if knob.selector else text.strip()
        except ProbeError as exc:
            if exc.reason.endswith("not present"):
                raise KnobAbsent(exc.reason) from None
            raise KnobFailed(exc.reason) from None

    def write(self, knob: Knob, value: str) -> None:
        assert knob.path is not None
        try:
            self.host.write(knob.path, value)
        except KnobWriteError as exc:
            raise KnobFailed(exc.reason) from None

    def preflight(self, knob: Knob) -> str | None:
        assert knob.path is not None
        try:
            real = self.host.path(knob.path)  # resolved inside the root
        except ProbeError as exc:  # PathOutsideRoot: a crafted path, or a symlink out of the tree
            return exc.reason
        if not os.path.exists(real):
            return f"{knob.path}: not present on this node"
        if os.access(real, os.W_OK):
            return None
        try:
            if os.statvfs(real).f_flag & os.ST_RDONLY:
                return f"{knob.path}: read-only file system (is /sys mounted ro, e.g. in a container?)"
        except OSError as exc:
            return f"{knob.path}: {exc.strerror or exc}"
        return f"{knob.path}: permission denied (needs root)"


class AffinityDriver:
    def __init__(self, host: Host, affinity: Affinity) -> None:
        self.host = host
        self.affinity = affinity

    def _same_thread(self, knob: Knob) -> tuple[int, int]:
        assert knob.pid is not None and knob.tid is not None
        start = thread_starttime(self.host, knob.pid, knob.tid)
        if knob.starttime is not None and start != knob.starttime:
            raise KnobGone(f"pid {knob.pid} tid {knob.tid} now belongs to another process (PID reused)")
        return knob.pid, knob.tid

    def read(self, knob: Knob) -> str:
        pid, tid = self._same_thread(knob)
        return format_cpulist(self.affinity.get(pid, tid))

    def write(self, knob: Knob, value: str) -> None:
        pid, tid = self._same_thread(knob)
        self.affinity.set(pid, tid, parse_cpulist(value, knob.label))

    def preflight(self, knob: Knob) -> str | None:
        return None  # only the kernel knows (CAP_SYS_NICE, cpusets); a failure rolls back


class GpuPowerLimitDriver:
    def __init__(self, gpus: GpuControl) -> None:
        self.gpus = gpus

    def read(self, knob: Knob) -> str:
        assert knob.gpu is not None
        try:
            return str(self.gpus.power_limit_mw(knob.gpu))
        except GpuControlError as exc:
            raise KnobFailed(exc.reason) from None

    def write(self, knob: Knob, value: str) -> None:
        assert knob.gpu is not None
        try:
            self.gpus.set_power_limit_mw(knob.gpu, int(value))
        except GpuControlError as exc:
            raise KnobFailed(exc.reason) from None

    def preflight(self, knob: Knob) -> str | None:
        return self.gpus.available()


class GpuLockedClocksDriver:
    """Locked SM clocks. NVML cannot read them back, so the original is UNREADABLE and restoring
    it resets the clocks to the driver's default (unlocked)."""

    def __init__(self, gpus: GpuControl) -> None:
        self.gpus = gpus

    def read(self, knob: Knob) -> str:
        return UNREADABLE

    def write(self, knob: Knob, value: str) -> None:
        assert knob.gpu is not None
        try:
            if value in (UNREADABLE, UNLOCKED):
                self.gpus.reset_clocks(knob.gpu)
            else:
                lo, hi = (int(v) for v in value.split("-", 1))
                self.gpus.lock_clocks(knob.gpu, lo, hi)
        except GpuControlError as exc:
            raise KnobFailed(exc.reason) from None
        except ValueError:
            raise KnobFailed(f"{knob.label}: {value!r} is not LO-HI MHz") from None

    def preflight(self, knob: Knob) -> str | None:
        return self.gpus.available()


def drivers_for(ctx: TuneContext) -> dict[str, Driver]:
    """Every driver, keyed by the `Knob.kind` it handles."""
    return {
        "sysfs": SysfsDriver(ctx.host),
        "affinity": AffinityDriver(ctx.host, ctx.affinity),
        "gpu_power_limit": GpuPowerLimitDriver(ctx.gpus),
        "gpu_locked_clocks": GpuLockedClocksDriver(ctx.gpus),
    }


def same_value(knob: Knob, a: str | None, b: str | None) -> bool:
    """Equal values of a knob (cpulists compare as sets: "0,1,2" is "0-2")."""
    if a is None or b is None:
        return a == b
    if knob.kind == "affinity":
        try:
            return parse_cpulist(a) == parse_cpulist(b)
        except ProbeError:  # a damaged journal value: compare as text
            return a == b
    return a.strip() == b.strip()


def sysfs_change(ctx: TuneContext, tuner: str, knob: Knob, target: str) -> Change:
    """A planned change of a sysfs knob: its current value, or a skip saying why it has none.

    Selector files are checked against the words they offer, so a kernel that lacks an option
    shows up in the plan rather than as EINVAL half-way through an apply.
    """
    assert knob.path is not None
    drv = SysfsDriver(ctx.host)
    try:
        raw = ctx.host.read(knob.path)
    except ProbeError as exc:
        return Change(tuner, knob, None, target, SKIP, exc.reason)
    if knob.selector:
        offered = options(raw)
        if target not in offered:
            return Change(tuner, knob, selected(raw, knob.path) if "[" in raw else raw.strip(), target, SKIP,
                          f"{target!r} not offered by this kernel (offers: {', '.join(offered)})")
    try:
        current = drv.read(knob)
    except TuneError as exc:
        return Change(tuner, knob, None, target, SKIP, exc.reason)
    return Change(tuner, knob, current, target, CHANGE)
