"""GPU power limit and locked SM clocks, through NVML (`GpuControl`).

The planner skips these knobs unless the node's config (or --allow-gpu-power) allows GPU power
changes, and the agent never applies them. NVML cannot read locked clocks back: their original is
UNREADABLE and restoring it resets the clocks to the driver's default.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..context import TuneContext
from ..contract import SKIP, UNREADABLE, Change, Knob, TunerPlan
from ..errors import KnobFailed, TargetError
from ..gpu_control import GpuControlError
from ..registry import driver, tuner

UNLOCKED = "unlocked"


@dataclass
class GpuParams:
    gpus: list[int] | None = None  # default: every GPU
    power_limit_w: int | None = None
    power_limit_pct: int | None = None  # of the GPU's default limit: one profile fits every model
    locked_clocks_mhz: list[int] | None = None  # [min, max] SM clock
    allow_lower: bool = False

    def check(self) -> list[str]:
        out = []
        if self.power_limit_w is not None and self.power_limit_w <= 0:
            out.append("power_limit_w: must be > 0")
        if self.power_limit_pct is not None and not 10 <= self.power_limit_pct <= 100:
            out.append(f"power_limit_pct: {self.power_limit_pct} is outside 10..100")
        if self.power_limit_pct is not None and self.power_limit_w is not None:
            out.append("power_limit_pct: give power_limit_w or power_limit_pct, not both")
        lc = self.locked_clocks_mhz
        if lc is not None and (len(lc) != 2 or lc[0] > lc[1] or lc[0] <= 0):
            out.append("locked_clocks_mhz: expected [min, max] MHz with 0 < min <= max")
        return out


def power_limit_knob(gpu: int) -> Knob:
    return Knob(id=f"gpu_power_limit:{gpu}", kind="gpu_power_limit", group="gpu_power",
                label=f"GPU{gpu} power limit", floor=True, unit="mW", gpu=gpu)


def locked_clocks_knob(gpu: int) -> Knob:
    return Knob(id=f"gpu_locked_clocks:{gpu}", kind="gpu_locked_clocks", group="gpu_clocks",
                label=f"GPU{gpu} locked SM clocks", readable=False, unit="MHz", gpu=gpu)


@tuner
class GpuPowerTuner:
    name = "gpu"
    params = GpuParams
    order = 40
    autotune = False  # GPU power and clocks are opt-in twice: never applied by the agent
    opt_in_groups = ("gpu_power", "gpu_clocks")

    def plan(self, ctx: TuneContext, p: GpuParams) -> TunerPlan:
        out = TunerPlan()
        why = ctx.gpus.available()
        if why is not None:
            if p.power_limit_w is not None or p.power_limit_pct is not None:
                want = str(p.power_limit_w * 1000) if p.power_limit_w is not None else f"{p.power_limit_pct}%"
                out.changes.append(Change(self.name, power_limit_knob(0), None, want, SKIP, why))
            if p.locked_clocks_mhz is not None:
                out.changes.append(Change(self.name, locked_clocks_knob(0), None, _clocks(p.locked_clocks_mhz),
                                          SKIP, why))
            return out
        try:
            count = ctx.gpus.count()
        except GpuControlError as exc:
            out.notes.append(exc.reason)
            return out
        indices = p.gpus if p.gpus is not None else list(range(count))
        for i in indices:
            if not 0 <= i < count:
                raise TargetError(f"GPU {i}: no such GPU on this node ({count} GPU(s))")
            if p.power_limit_w is not None:
                out.changes.append(self._power(ctx, i, p.power_limit_w * 1000, None))
            elif p.power_limit_pct is not None:
                out.changes.append(self._power(ctx, i, None, p.power_limit_pct))
            if p.locked_clocks_mhz is not None:
                out.changes.append(Change(self.name, locked_clocks_knob(i), UNREADABLE, _clocks(p.locked_clocks_mhz)))
        if p.locked_clocks_mhz is not None:
            out.notes.append("NVML cannot read locked clocks back: rollback resets them to the driver default")
        return out

    def _power(self, ctx: TuneContext, i: int, mw: int | None, pct: int | None) -> Change:
        knob = power_limit_knob(i)
        try:
            cur = ctx.gpus.power_limit_mw(i)
            lo, hi = ctx.gpus.power_range_mw(i)
            if mw is None:
                assert pct is not None
                mw = ctx.gpus.default_power_limit_mw(i) * pct // 100
        except GpuControlError as exc:
            return Change(self.name, knob, None, str(mw) if mw is not None else f"{pct}%", SKIP, exc.reason)
        if not lo <= mw <= hi:
            return Change(self.name, knob, str(cur), str(mw), SKIP,
                          f"{mw // 1000} W is outside this GPU's range {lo // 1000}-{hi // 1000} W")
        return Change(self.name, knob, str(cur), str(mw))


def _clocks(mhz: list[int]) -> str:
    return f"{mhz[0]}-{mhz[1]}"


@driver("gpu_power_limit")
class GpuPowerLimitDriver:
    def __init__(self, ctx: TuneContext) -> None:
        self.gpus = ctx.gpus

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


@driver("gpu_locked_clocks")
class GpuLockedClocksDriver:
    """Locked SM clocks. NVML cannot read them back, so the original is UNREADABLE and restoring
    it resets the clocks to the driver's default (unlocked)."""

    def __init__(self, ctx: TuneContext) -> None:
        self.gpus = ctx.gpus

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
