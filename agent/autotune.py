"""Auto-tuning, off by default: the agent applies what its own findings advise, within limits.

Only tuners named in `[agent] autotune` act; GPU power and clocks never do (the GPU tuner is
refused by name and its keys are dropped from any advice).
With `prefetch` allowed, a job diagnosed data_starved (io_input) gets a follower that keeps the
files it reads next in the page cache (nodetune.prefetch; nothing to journal) and stops when the job
ends. A piece of advice must hold for `autotune_hold_windows` consecutive diagnoses (a flickering finding
never acts), at most `autotune_max_per_hour` transactions run an hour, and each piece of advice is
applied once: every change goes through the tuning journal, so `nodetune tune status` and
`nodetune tune rollback` see and undo it like any other.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodetune.diagnosis.findings import Report
from nodetune.probes.host import Host

if TYPE_CHECKING:  # the prefetch package loads only where autotune may start followers
    from nodetune.prefetch.pool import FollowerPool

log = logging.getLogger("nodetune.agent.autotune")

# Advice that may never act automatically: a whole profile (it bundles knobs the allowlist did not
# name), and the tuners that declare `autotune = False` (GPU power/clocks: opt-in twice).
NEVER = frozenset({"profile"})
_GPU_KEYS = frozenset({"gpu", "gpus", "gpu_power_limit_w", "gpu_locked_clocks_mhz"})
AUTOTUNE_PROFILE = "autotune"
DONE_FORGET_S = 86400.0


def never() -> frozenset[str]:
    """Advice names autotune refuses: NEVER and every tuner that is not autotune's to apply."""
    from nodetune.tuners.registry import autotune_names, sections

    return NEVER | (set(sections()) - set(autotune_names()))


@dataclass
class AutoChange:
    """One knob changed (or a transaction that failed) by the autotuner."""

    t: float
    tuner: str
    finding: str
    jobs: list[str]
    knob: str = ""
    original: str = ""
    target: str = ""
    ok: bool = True
    reason: str = ""
    txn: str = ""


@dataclass
class _Candidate:
    tuner: str
    params: dict[str, Any]
    finding: str
    jobs: list[str]
    text: str


@dataclass
class Autotuner:
    """Turns a stream of reports into journaled changes; `apply` is the seam tests replace."""

    host: Host
    allow: list[str]
    hold_windows: int = 3
    max_per_hour: int = 4
    journal_path: str | None = None
    clock: Callable[[], float] = time.time
    streaks: dict[str, int] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)  # advice applied (or failed) -> when: once each
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    changes_total: dict[tuple[str, str], int] = field(default_factory=dict)  # (tuner, knob group) -> n
    failures_total: int = 0
    rate_limited_total: int = 0
    followers: FollowerPool | None = None  # made when `prefetch` is allowed

    def __post_init__(self) -> None:
        if "prefetch" in self.allow and self.followers is None:
            from nodetune.prefetch.pool import FollowerPool

            self.followers = FollowerPool(self.host)
        bad = sorted(set(self.allow) & never()) if self.allow else []
        if bad:
            raise ValueError(f"autotune may not use {', '.join(bad)}: GPU power/clocks and whole profiles are "
                             "never applied automatically")

    @staticmethod
    def _key(c: _Candidate) -> str:
        return f"{c.finding}|{c.tuner}|{json.dumps(c.params, sort_keys=True, default=str)}"

    def candidates(self, report: Report) -> list[_Candidate]:
        """Advice of warning/critical findings that an allowed tuner can carry out."""
        out: list[_Candidate] = []
        for f in report.findings:
            if f.severity == "info":
                continue
            for a in f.advice:
                if not a.tuner or a.tuner not in self.allow:
                    continue
                params = {k: v for k, v in a.params.items() if k not in _GPU_KEYS}
                if not params:
                    continue
                out.append(_Candidate(a.tuner, params, f.kind, [f.job] if f.job else [], a.text))
        if "prefetch" in self.allow:
            from nodetune.tuners.recommend import follow_items

            for f in report.findings:
                if f.severity != "info":
                    for it in follow_items([f]):
                        out.append(_Candidate("prefetch", it["params"], f.kind, [f.job] if f.job else [], it["text"]))
        return out

    def observe(self, report: Report) -> list[AutoChange]:
        """Count each advice's streak; apply those that held long enough, within the rate limit."""
        if not self.allow:
            return []
        seen = {self._key(c): c for c in self.candidates(report)}
        now = self.clock()
        for k in [k for k, t in self.done.items() if now - t > DONE_FORGET_S and k not in seen]:
            del self.done[k]  # bounded: advice for jobs long gone is forgotten
        for k in list(self.streaks):
            if k not in seen:
                del self.streaks[k]  # the streak is broken: hysteresis starts over
        out: list[AutoChange] = []
        for k, c in seen.items():
            self.streaks[k] = self.streaks.get(k, 0) + 1
            if k in self.done or self.streaks[k] < self.hold_windows:
                continue
            while self.recent and now - self.recent[0] > 3600:
                self.recent.popleft()
            if len(self.recent) >= self.max_per_hour:
                self.rate_limited_total += 1
                continue
            self.recent.append(now)
            self.done[k] = now
            out += self.apply(c, now)
        return out

    def apply(self, c: _Candidate, now: float) -> list[AutoChange]:
        """Plan and apply one piece of advice as one journaled transaction (a follower: started, not journaled)."""
        if c.tuner == "prefetch":
            return [self._follow(c, now)]
        from nodetune.config.tune import TuneConfig
        from nodetune.tuners.errors import TuneError
        from nodetune.tuners.gpu_control import GpuControl
        from nodetune.tuners.recommend import advice_items, profile_from_advice
        from nodetune.tuners.session import open_session

        gpus = GpuControl.disabled("autotune never changes GPU power or clocks")
        try:
            with open_session(self.host, self.journal_path, gpus=gpus) as session:
                prof, _notes = profile_from_advice(advice_items([{"tuner": c.tuner, "params": c.params,
                                                                  "text": c.text}]))
                prof.name = AUTOTUNE_PROFILE
                plan = session.plan(prof, policy=TuneConfig(allow_gpu_power=False))
                if plan.conflicting():
                    raise TuneError(f"{plan.conflicting()[0].who} manages a knob of this plan; autotune never forces")
                res = session.apply(plan)
        except (TuneError, OSError, ValueError) as exc:
            self.failures_total += 1
            reason = getattr(exc, "reason", None) or str(exc)
            log.warning("autotune %s for %s failed (rolled back): %s", c.tuner, c.finding, reason)
            return [AutoChange(now, c.tuner, c.finding, c.jobs, ok=False, reason=reason)]
        out = []
        for a in res.applied:
            key = (c.tuner, a.knob.group)
            self.changes_total[key] = self.changes_total.get(key, 0) + 1
            log.info("autotune %s for %s: %s %s -> %s (txn %s; undo with `nodetune tune rollback --txn %s`)",
                     c.tuner, c.finding, a.knob.label, a.original, a.actual, res.txn, res.txn)
            out.append(AutoChange(now, c.tuner, c.finding, c.jobs, a.knob.label, a.original, a.actual, True, "",
                                  res.txn))
        return out

    def _follow(self, c: _Candidate, now: float) -> AutoChange:
        pid = int(c.params["pid"])
        why = self.followers.start(pid) if self.followers is not None else "prefetch not allowed"
        if why is not None:
            self.failures_total += 1
            log.warning("autotune prefetch for %s: %s", c.finding, why)
            return AutoChange(now, "prefetch", c.finding, c.jobs, f"follow pid {pid}", ok=False, reason=why)
        key = ("prefetch", "follow")
        self.changes_total[key] = self.changes_total.get(key, 0) + 1
        log.info("autotune prefetch for %s: following pid %d until it exits", c.finding, pid)
        return AutoChange(now, "prefetch", c.finding, c.jobs, f"follow pid {pid}", "", "following")

    def close(self) -> None:
        """Stop the followers this autotuner started (reload, shutdown)."""
        if self.followers is not None:
            self.followers.stop_all()
