"""The one tuning pipeline: context -> journal -> plan -> apply, for the CLI and the agent alike.

`open_session` assembles what a tuning command acts through (the node, thread affinity, GPU
control, the journal and the engine over them); `TuneSession.plan` and `TuneSession.apply` are the
only way a profile reaches the node, so `nodetune tune apply` and the agent's autotune plan with
the same rules and refuse the same conflicts.
"""

from __future__ import annotations

from nodetune.config.tune import TuneConfig
from nodetune.probes.host import Host

from .affinity import Affinity, affinity_for
from .config import load_tune_config
from .context import TuneContext
from .errors import ConflictError
from .gpu_control import GpuControl
from .plan import Plan, make_plan
from .profiles import Profile
from .transaction.engine import Engine
from .transaction.journal import DEFAULT_JOURNAL, Journal
from .transaction.results import ApplyResult


class TuneSession:
    """One command's node, journal and engine; close it to release NVML."""

    def __init__(self, ctx: TuneContext, journal: Journal) -> None:
        self.ctx = ctx
        self.journal = journal
        self.engine = Engine(ctx, journal)

    def plan(self, profile: Profile, *, allow_lower: bool = False, allow_gpu_power: bool = False,
             policy: TuneConfig | None = None) -> Plan:
        """The plan of a profile on this node, the journal's warnings first.

        `policy`: the [tune] config section; None reads the node's config file, which may allow
        GPU power changes the command line did not ask for."""
        cfg = policy if policy is not None else load_tune_config(self.ctx.host)
        state = self.journal.load()
        plan = make_plan(self.ctx, profile, state, allow_lower=allow_lower,
                         allow_gpu_power=allow_gpu_power or cfg.allow_gpu_power)
        plan.warnings[:0] = state.warnings
        return plan

    def apply(self, plan: Plan, *, force: bool = False) -> ApplyResult:
        """Apply a plan as one transaction; ConflictError, before anything changes, when another
        daemon manages one of its knobs and `force` is not given."""
        clash = plan.conflicting()
        if clash and not force:
            raise ConflictError(f"{plan.warnings[-1] if plan.warnings else clash[0].who}; nothing changed")
        return self.engine.apply(plan.changes, plan.profile, force=force)

    def close(self) -> None:
        self.ctx.gpus.close()

    def __enter__(self) -> TuneSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(host: Host, journal: str | None = None, *, gpus: GpuControl | None = None,
                 affinity: Affinity | None = None) -> TuneSession:
    """A session on `host`: `journal` is a path on this machine (default: the node's journal under
    its root); `gpus` defaults to NVML, loaded on first use; `affinity` to the kernel's on the live
    root and the tree's under a fake one."""
    ctx = TuneContext(host, affinity or affinity_for(host), gpus if gpus is not None else GpuControl(None))
    return TuneSession(ctx, Journal(journal or host.path(DEFAULT_JOURNAL)))
