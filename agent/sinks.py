"""What happens to a report after a diagnosis: the job history (SQLite) and the autotuner.

Both run on the diagnosis thread. Neither may stop the diagnoses: their faults are metrics and
one log line each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import MappingProxyType

from nodetune.agent.autotune import Autotuner
from nodetune.agent.history import History, HistoryError
from nodetune.agent.state import State
from nodetune.config.agent import AgentConfig
from nodetune.diagnosis.findings import Report
from nodetune.probes.host import Host, ProbeError

log = logging.getLogger("nodetune.agent")
PRUNE_EVERY_S = 3600.0


class Sinks:
    """The history and the autotuner, configured from the [agent] section (again on each reload)."""

    def __init__(self, host: Host, state: State, on_tuned: Callable[[], None]) -> None:
        self.host = host
        self.state = state
        self.on_tuned = on_tuned  # the autotuner wrote the journal: read it again
        self.history: History | None = None
        self.autotuner: Autotuner | None = None
        self._cfg: AgentConfig | None = None
        self._logged: str | None = None  # the history fault last logged: one line per new fault
        self._last_prune = 0.0
        self._refused = False  # the file was damaged under us: no re-open before a reload
        self._done = (0, 0)  # writes and failed writes of histories closed before: the counters never fall

    def configure(self, a: AgentConfig) -> None:
        """Open (or re-open elsewhere, or close) the history and rebuild the autotuner."""
        self._cfg = a
        self._refused = False
        path = self.host.path(a.history_path)
        if a.history and (self.history is None or self.history.path != path):
            self._retire()
            self._open(path, a)
        elif not a.history:
            self._retire()
        if self.history is not None:
            self.history.retention_s = a.history_retention_days * 86400
            self.history.max_bytes = int(a.history_max_mib * 2**20)
            self.state.update(history_up=True, history_reason=None)
        elif not a.history:
            self.state.update(history_up=False, history_reason="[agent].history = false")
        if self.autotuner is not None:
            self.autotuner.close()  # its followers: a reload starts over from the new allowlist
        if a.autotune:
            self.autotuner = Autotuner(self.host, list(a.autotune), a.autotune_hold_windows, a.autotune_max_per_hour)
            log.warning("autotune on for %s: the agent applies its own findings through the tuning journal",
                        ", ".join(a.autotune))
        else:
            self.autotuner = None

    def _open(self, path: str, a: AgentConfig) -> bool:
        try:
            self.history = History(path, a.history_retention_days, int(a.history_max_mib * 2**20)).open()
        except (HistoryError, OSError) as exc:  # history is a convenience: sampling goes on
            self.history = None
            self._down(str(exc))
            return False
        self._logged = None  # open again: the next fault, even the same one, gets its line
        return True

    def _down(self, why: str) -> None:
        if why != self._logged:
            log.error("job history off: %s (nodetune_agent_history_up=0)", why)
            self._logged = why
        self.state.update(history_up=False, history_reason=why)

    def _usable_history(self) -> History | None:
        """The history, checked once a write batch: a file deleted or overwritten under the open
        connection takes history down for this batch; the next batch creates a deleted file again,
        an overwritten one waits for a reload (the agent does not write into a file it did not make)."""
        a = self._cfg
        if a is None or not a.history or self._refused:
            return None
        h = self.history
        if h is None:
            try:
                path = self.host.path(a.history_path)
            except ProbeError as exc:  # a symlink out of the root appeared since the config was taken
                self._down(f"[agent].history_path: {exc.reason}")
                return None
            if not self._open(path, a):
                return None
            log.warning("job history re-opened: %s (nodetune_agent_history_up=1)", path)
            self.state.update(history_up=True, history_reason=None)
            return self.history
        lost = h.file_lost()
        if lost is not None:
            self._retire()
            self._refused = not lost.reopen
            self._down(lost.reason)
            return None
        return h

    def _retire(self) -> None:
        h = self.history
        if h is not None:
            self._done = (self._done[0] + h.writes, self._done[1] + h.write_errors)
            h.close()
            self.history = None

    def remember(self, report: Report, t_start: float, t_end: float) -> None:
        """Record a diagnosis in the history and show it to the autotuner."""
        h = self._usable_history()
        if h is not None:
            ok = h.record(report, t_start, t_end)
            if t_end - self._last_prune > PRUNE_EVERY_S:
                self._last_prune = t_end
                h.prune()
            if not ok and h.paused != self._logged:
                log.error("%s (nodetune_agent_history_writes_failed_total)", h.paused)
            self._logged = h.paused
            self.state.update(history_writes_total=self._done[0] + h.writes,
                              history_write_errors_total=self._done[1] + h.write_errors,
                              history_paused=h.paused is not None, history_bytes=h.size_bytes())
        at = self.autotuner
        if at is None:
            return
        changes = at.observe(report)
        for c in changes:
            for job in c.jobs:
                if h is not None:
                    h.event(job, "autotune", f"{c.tuner}: {c.knob} {c.original} -> {c.target} (txn {c.txn})"
                            if c.ok else f"{c.tuner} failed, rolled back: {c.reason}")
        if changes:
            self.on_tuned()
        self.state.update(autotune_changes=MappingProxyType(dict(at.changes_total)),
                          autotune_failures_total=at.failures_total, autotune_rate_limited_total=at.rate_limited_total,
                          prefetch=at.followers.totals() if at.followers is not None else None)

    def close(self) -> None:
        """Close the history and stop the autotuner's followers (its knob changes stay: the journal
        holds them, `nodetune tune rollback` undoes them)."""
        self._retire()
        if self.autotuner is not None:
            self.autotuner.close()
            self.autotuner = None
