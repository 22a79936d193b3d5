"""Per job: seconds under each verdict, lost GPU-seconds by cause, its GPUs and kind.

The label is `job_id` (Prometheus keeps `job` for the scrape job): the scheduler's id (Slurm job,
pod, unit), or `program:NAME` for a bare process, so a program run again continues its series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge
from nodetune.agent.state import View


@collector("jobs")
def jobs(v: View) -> Iterator[Metric]:
    secs = CounterMetricFamily("nodetune_job_verdict_seconds", "Seconds each job spent under each verdict "
                               "(series of a job that ended drop out after job_retention_s).",
                               labels=["job_id", "verdict"])
    lost = CounterMetricFamily("nodetune_job_lost_gpu_seconds", "GPU-seconds the job's GPUs lost, by state (idle: "
                               "by what the host side was doing; busy: under a verdict that is not productive work) "
                               "and cause; the README's one definition of lost GPU-hours.",
                               labels=["job_id", "state", "cause"])
    gpus = gauge("nodetune_job_gpu", "1 for each GPU the job uses.", ["job_id", "gpu"])
    kind = gauge("nodetune_job_kind", "1 for the job's kind (slurm, kubernetes, docker, systemd, ranks, process).",
                 ["job_id", "kind"])
    for j in v.jobs:
        for verdict, s in sorted(j.seconds.items()):
            secs.add_metric([j.job, verdict], s)
        for (state, cause), s in sorted(j.lost.items()):
            lost.add_metric([j.job, state, cause], s)
        for g in j.gpus:
            gpus.add_metric([j.job, str(g)], 1.0)
        kind.add_metric([j.job, j.kind], 1.0)
    yield from (secs, lost, gpus, kind)
