"""Turn a profile into a plan: every knob's current value, target and action, with warnings.

The tuners propose; this module decides `keep` for knobs already at target and for `>`
semantics (a floor knob the host already set higher is not lowered unless allowed), skips GPU
power and clock changes the config does not allow, and marks knobs another owner manages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .conflicts import Owner, detect_owners, owners_of
from .context import TuneContext
from .contract import CHANGE, KEEP, SKIP, Change
from .drivers import same_value
from .profiles import Profile
from .registry import all_tuners, opt_in_groups
from .transaction.fold import JournalState

# Tuners apply in their declared `order` (tuners/registry.py): memory and I/O first, CPU power
# before EPP (intel_pstate refuses some EPP values under the performance governor), pinning last.
NOT_ALLOWED = ("not allowed: GPU power and clock changes need allow_gpu_power = true in "
               "/etc/nodetune/config.toml or --allow-gpu-power")


@dataclass
class Plan:
    profile: str
    source: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    owners: list[Owner] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def conflicting(self) -> list[Owner]:
        """Running owners of knobs this plan would change."""
        groups = {c.knob.group for c in self.changes if c.action == CHANGE}
        return [o for o in self.owners if groups & set(o.groups)]


def decide(c: Change, allow_lower: bool) -> None:
    """Turn a proposed change into keep where the knob is already there or `>` semantics hold."""
    if c.action != CHANGE or not c.knob.readable:
        return
    if same_value(c.knob, c.current, c.target):
        c.action, c.reason = KEEP, "already at target"
        return
    if c.knob.floor and c.current is not None and not allow_lower:
        try:
            cur, want = int(c.current), int(c.target)
        except ValueError:
            return
        if cur > want:
            c.action = KEEP
            c.reason = f"the host already has {cur} > {want}: not lowered (use --allow-lower)"


def make_plan(ctx: TuneContext, profile: Profile, journal: JournalState | None = None, *,
              allow_lower: bool = False, allow_gpu_power: bool = False) -> Plan:
    """Plan a profile on a node; raises TuneError for targets that do not exist."""
    plan = Plan(profile=profile.name, source=profile.source)
    seen: set[str] = set()
    guarded = opt_in_groups()
    for name, tuner in all_tuners().items():
        params = profile.tables.get(name)
        if params is None:
            continue
        proposed = tuner.plan(ctx, params)
        lower = allow_lower or profile.allow_lower or bool(getattr(params, "allow_lower", False))
        for c in proposed.changes:
            if c.knob.id in seen:
                continue  # e.g. a disk under two data paths, a worker under two named pids
            seen.add(c.knob.id)
            decide(c, lower)
            if c.knob.group in guarded and c.action == CHANGE and not allow_gpu_power:
                c.action, c.reason = SKIP, NOT_ALLOWED
            plan.changes.append(c)
        plan.notes += proposed.notes
    plan.owners, notes = detect_owners(ctx.host)
    plan.notes += notes
    held = {e.knob.id: e for e in journal.active()} if journal is not None else {}
    for c in plan.changes:
        if c.action != CHANGE:
            continue
        for o in owners_of(plan.owners, c.knob.group):
            c.warnings.append(f"{o.who} also manages {c.knob.group}")
        e = held.get(c.knob.id)
        if e is not None:
            c.warnings.append(f"nodetune transaction {e.txn} already set this knob to {e.set_value}; "
                              f"this change stacks on it (rollback undoes both, newest first)")
    for o in plan.conflicting():
        groups = sorted({c.knob.group for c in plan.changes if c.action == CHANGE} & set(o.groups))
        plan.warnings.append(f"{o.who} manages {', '.join(groups)} ({'; '.join(o.evidence)}): it may undo "
                             f"these changes; stop it or apply with --force")
    return plan
