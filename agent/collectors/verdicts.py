"""The latest diagnosis: the verdict per GPU as a state set, findings by kind and severity."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, gauge, put
from nodetune.agent.lost_hours import has_data, verdict_of
from nodetune.agent.state import View
from nodetune.diagnosis.rules import ENGINE_VERDICTS, primary_order

# Verdicts the engine gives besides the rules' own: no finding on the GPU.
EXTRA = tuple(ENGINE_VERDICTS)
_verdicts: tuple[str, ...] | None = None


def verdict_names() -> tuple[str, ...]:
    global _verdicts
    if _verdicts is None:  # the rule registry does not change while the agent runs
        _verdicts = tuple(primary_order()) + EXTRA
    return _verdicts


@collector("verdicts")
def verdicts(v: View) -> Iterator[Metric]:
    r = v.report
    if r is None:
        return
    names = verdict_names()
    vd = gauge("nodetune_gpu_verdict", "1 for the GPU's verdict in the latest diagnosis, 0 for every other.",
               ["gpu", "verdict"])
    healthy = gauge("nodetune_gpu_healthy", "1 if the latest diagnosis found the GPU doing healthy work.", ["gpu"])
    conf = gauge("nodetune_gpu_verdict_confidence", "Confidence of the GPU's verdict (0-1).", ["gpu"])
    idle = gauge("nodetune_gpu_idle_ratio", "Share of the diagnosed window's samples in which the GPU was idle.",
                 ["gpu"])
    for g in r.gpus:
        i = [str(g.index)]
        verdict = verdict_of(g)
        for name in names:
            vd.add_metric([*i, name], 1.0 if verdict == name else 0.0)
        if verdict not in names:  # a verdict added after start-up: shown rather than dropped
            vd.add_metric([*i, verdict], 1.0)
        if not has_data(g):  # no NVML: neither healthy nor not, and no confidence in a verdict
            continue
        healthy.add_metric(i, 1.0 if g.healthy else 0.0)
        conf.add_metric(i, g.confidence)
        share = g.metrics.get("idle_share")
        put(idle, i, share if isinstance(share, int | float) else None)
    counts: dict[tuple[str, str], int] = {}
    for f in r.findings:
        counts[(f.kind, f.severity)] = counts.get((f.kind, f.severity), 0) + 1
    fam = gauge("nodetune_findings", "Findings of the latest diagnosis by kind and severity.", ["kind", "severity"])
    for (kind, sev), n in sorted(counts.items()):
        fam.add_metric([kind, sev], n)
    ts = gauge("nodetune_diagnosis_timestamp_seconds", "When the latest diagnosis finished (Unix time).")
    ts.add_metric([], v.report_wall)
    win = gauge("nodetune_diagnosis_window_seconds", "Seconds of samples the latest diagnosis judged.")
    win.add_metric([], r.window_s)
    yield from (vd, healthy, conf, idle, fam, ts, win)
