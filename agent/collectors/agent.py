"""The agent about itself: sampling cost and cadence, errors by probe, freshness, reloads, helpers' health."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge, single_counter, single_gauge
from nodetune.agent.state import LATENESS_BUCKETS, View


@collector("agent")
def agent(v: View) -> Iterator[Metric]:
    yield single_gauge("nodetune_agent_start_time_seconds", "When the agent started (Unix time).", v.start_wall)
    yield single_gauge("nodetune_agent_sample_interval_seconds", "The configured fast-sample interval.", v.interval_s)
    yield single_gauge("nodetune_agent_last_sample_timestamp_seconds", "When the latest successful sample finished "
                 "(Unix time; 0 before the first). Stale: the sampling loop is stuck.", v.sample_wall)
    yield single_gauge("nodetune_agent_sample_duration_seconds", "Wall time the latest sample took.",
                 v.sample_duration_s)
    yield single_gauge("nodetune_agent_sample_cpu_seconds", "CPU time the latest sample cost the agent.",
                 v.sample_cpu_s)
    yield single_counter("nodetune_agent_samples", "Samples taken.", v.samples_total)
    yield single_counter("nodetune_agent_sample_overruns", "Sample slots skipped because a sample ran into the "
                   "next slot.", v.overruns_total)
    err = CounterMetricFamily("nodetune_agent_sample_errors", "Samples in which a probe raised (the sample is dropped; "
                              "the loop goes on).", labels=["probe"])
    for probe, n in sorted(v.sample_errors.items()):
        err.add_metric([probe], n)
    yield err
    miss = gauge("nodetune_agent_probe_missing_fields", "Values a probe could not read in the latest sample (a file "
                 "absent or unreadable, an NVML field not supported).", ["probe"])
    for probe, n in sorted(v.missing_fields.items()):
        miss.add_metric([probe], n)
    yield miss
    buckets, acc = [], 0
    for ub, n in zip((*map(str, LATENESS_BUCKETS), "+Inf"), v.lateness_counts, strict=True):
        acc += n
        buckets.append((ub, float(acc)))
    yield HistogramMetricFamily("nodetune_agent_sample_lateness_seconds", "How late each sample started after its "
                                "slot (cadence jitter).", buckets=buckets, sum_value=v.lateness_sum_s)
    yield single_gauge("nodetune_agent_ring_samples", "Samples held in the ring.", v.ring_len)
    yield single_gauge("nodetune_agent_followed_processes", "GPU processes and their workers being followed.",
                 v.followed)
    yield single_gauge("nodetune_agent_diagnosis_duration_seconds", "Time the latest diagnosis took.",
                 v.diagnosis_duration_s)
    yield single_counter("nodetune_agent_diagnoses", "Diagnoses run.", v.diagnoses_total)
    yield single_counter("nodetune_agent_diagnosis_errors", "Diagnoses that raised.", v.diagnosis_errors_total)
    yield single_counter("nodetune_agent_diagnoses_skipped", "Diagnoses skipped because the previous one was "
                   "still running.", v.diagnoses_skipped_total)
    reload = CounterMetricFamily("nodetune_agent_config_reloads", "SIGHUP reloads by result (refused: the file did "
                                 "not load; the previous config stays).", labels=["result"])
    for res in ("ok", "refused"):
        reload.add_metric([res], v.config_reloads.get(res, 0))
    yield reload
    yield single_gauge("nodetune_agent_config_last_reload_success", "0 if the latest reload was refused.",
                 float(v.config_ok))
    yield single_gauge("nodetune_agent_hotplug_up", "1 while udev hot-plug events are watched.", float(v.hotplug_up))
    hp = CounterMetricFamily("nodetune_agent_hotplug_events", "udev add/remove events seen.",
                             labels=["subsystem", "action"])
    for (sub, action), n in sorted(v.hotplug_events.items()):
        hp.add_metric([sub, action], n)
    yield hp
    yield single_counter("nodetune_agent_topology_reprobes", "Topology re-probes (hot-plug, GPU lost).",
                   v.topology_reprobes_total)
    yield single_counter("nodetune_agent_notify_errors", "sd_notify messages that could not be sent.",
                   v.notify_errors_total)
