"""Seconds per job and verdict (job: the identity diagnosis gives: Slurm job, pod, unit, process group)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge
from nodetune.agent.state import View


@collector("jobs")
def jobs(v: View) -> Iterator[Metric]:
    secs = CounterMetricFamily("nodetune_job_verdict_seconds", "Seconds each job spent under each verdict "
                               "(series of a job that ended drop out after job_retention_s).", labels=["job", "verdict"])
    gpus = gauge("nodetune_job_gpu", "1 for each GPU the job uses.", ["job", "gpu"])
    kind = gauge("nodetune_job_kind", "1 for the job's kind (slurm, kubernetes, docker, systemd, ranks, process).",
                 ["job", "kind"])
    for j in v.jobs:
        for verdict, s in sorted(j.seconds.items()):
            secs.add_metric([j.job, verdict], s)
        for g in j.gpus:
            gpus.add_metric([j.job, str(g)], 1.0)
        kind.add_metric([j.job, j.kind], 1.0)
    yield from (secs, gpus, kind)
