"""Knobs that are files under /sys or /proc: their driver and the planned change of one.

Several tuners set sysfs knobs (huge pages, readahead, CPU power), so their shared driver lives
here rather than in one tuner's module. The value of a selector file ("always [madvise] never") is
its bracketed word.
"""

from __future__ import annotations

import os

from nodetune.probes.host import KnobWriteError, ProbeError
from nodetune.probes.memory import parse_selected

from .context import TuneContext
from .contract import CHANGE, SKIP, Change, Knob
from .errors import KnobAbsent, KnobFailed, TuneError
from .registry import driver


def selected(text: str, where: str) -> str:
    """The value of a sysfs file: the bracketed word of a selector, else the stripped text."""
    text = text.strip()
    if "[" in text:
        return parse_selected(text, where)
    return text


def options(text: str) -> list[str]:
    """The words a selector file offers ("always [madvise] never" -> all three)."""
    return [w.strip("[]") for w in text.split()]


@driver("sysfs")
class SysfsDriver:
    def __init__(self, ctx: TuneContext) -> None:
        self.host = ctx.host

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


def sysfs_change(ctx: TuneContext, tuner: str, knob: Knob, target: str) -> Change:
    """A planned change of a sysfs knob: its current value, or a skip saying why it has none.

    Selector files are checked against the words they offer, so a kernel that lacks an option
    shows up in the plan rather than as EINVAL half-way through an apply.
    """
    assert knob.path is not None
    drv = SysfsDriver(ctx)
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
