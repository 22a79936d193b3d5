"""Loader workers past the cap: followed per GPU process up to a limit, the rest left out."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, single_gauge
from nodetune.agent.state import View
from nodetune.probes.processes import MAX_WORKERS


@collector("workers")
def workers(v: View) -> Iterator[Metric]:
    yield single_gauge("nodetune_agent_worker_cap", "Loader workers followed per GPU process at most.", MAX_WORKERS)
    yield single_gauge("nodetune_agent_worker_cap_reached_processes", "GPU processes whose workers reached the cap "
                       "(the workers past it are not followed; their jobs' verdicts see only the first ones).",
                       v.workers_capped)
