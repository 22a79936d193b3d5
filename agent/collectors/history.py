"""The job history database's health: up, writes, failed writes (a full disk pauses it), size."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, single_counter, single_gauge
from nodetune.agent.state import View


@collector("history")
def history(v: View) -> Iterator[Metric]:
    yield single_gauge("nodetune_agent_history_up", "1 if the job history database is open and being written.",
                       1.0 if v.history_up and not v.history_paused else 0.0)
    yield single_counter("nodetune_agent_history_writes", "Diagnosis intervals written to the job history.",
                         v.history_writes_total)
    yield single_counter("nodetune_agent_history_writes_failed",
                         "History writes that failed (disk full or I/O error); sampling goes on.",
                         v.history_write_errors_total)
    yield single_gauge("nodetune_agent_history_size_bytes", "Size of the job history database (with its WAL).",
                       v.history_bytes)
