"""The tuning journal, read-only: changes by state and active changes by knob group."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, gauge
from nodetune.agent.state import View


@collector("tuning")
def tuning(v: View) -> Iterator[Metric]:
    t = v.tuning
    if t is None:
        return
    changes = gauge("nodetune_tuning_journal_changes", "Changes in the tuning journal by their last state (applied, "
                    "rolled_back, restore_failed, ...).", ["state"])
    for st, n in sorted(t.by_state.items()):
        changes.add_metric([st], n)
    applied = gauge("nodetune_tuning_changes_applied", "Changes nodetune applied that still hold their knob.", ["knob"])
    for group, n in sorted(t.active_by_group.items()):
        applied.add_metric([group], n)
    ok = gauge("nodetune_tuning_journal_readable", "1 if the tuning journal could be read (or does not exist).")
    ok.add_metric([], 0.0 if t.error else 1.0)
    yield from (changes, applied, ok)
