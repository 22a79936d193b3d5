"""The job history database's health: up, writes, failed writes (a full disk pauses it), size."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge
from nodetune.agent.state import View


@collector("history")
def history(v: View) -> Iterator[Metric]:
    up = gauge("nodetune_agent_history_up", "1 if the job history database is open and being written.")
    up.add_metric([], 1.0 if v.history_up and not v.history_paused else 0.0)
    writes = CounterMetricFamily("nodetune_agent_history_writes", "Diagnosis intervals written to the job history.")
    writes.add_metric([], v.history_writes_total)
    failed = CounterMetricFamily("nodetune_agent_history_writes_failed",
                                 "History writes that failed (disk full or I/O error); sampling goes on.")
    failed.add_metric([], v.history_write_errors_total)
    size = gauge("nodetune_agent_history_size_bytes", "Size of the job history database (with its WAL).")
    size.add_metric([], v.history_bytes)
    yield from (up, writes, failed, size)
