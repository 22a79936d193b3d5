"""Page-cache warming by the autotune's followers: files and bytes warmed, how far ahead of the job they run."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, single_counter, single_gauge
from nodetune.agent.state import View


@collector("prefetch")
def prefetch(v: View) -> Iterator[Metric]:
    p = v.prefetch
    if p is None:
        return  # autotune may not start followers: no series at all
    yield single_gauge("nodetune_prefetch_followers", "Jobs whose reads a follower keeps warm now.", p.followers)
    yield single_counter("nodetune_prefetch_followers_started", "Followers the autotune started.", p.started_total)
    yield single_counter("nodetune_prefetch_files_warmed", "Files the followers read into the page cache ahead of "
                         "their jobs.", p.files_warmed_total)
    yield single_counter("nodetune_prefetch_warmed_bytes", "Bytes the followers read into the page cache ahead of "
                         "their jobs.", p.bytes_warmed_total)
    yield single_gauge("nodetune_prefetch_ahead_bytes", "Bytes warmed and not yet reached by the slowest reader, "
                       "summed over running followers.", p.ahead_bytes)
    yield single_gauge("nodetune_prefetch_ahead_seconds", "How far ahead of its job's slowest reader the furthest "
                       "running follower is, in seconds of that job's reading.", p.ahead_seconds)
    stopped = CounterMetricFamily("nodetune_prefetch_followers_stopped", "Followers that stopped, by why: exited "
                                  "(the job ended), random_access (nothing to follow), memory, other.",
                                  labels=["reason"])
    for why, n in sorted(p.stopped_total.items()):
        stopped.add_metric([why], n)
    yield stopped
