"""Diagnosis: a window of samples in, findings and a verdict per GPU and per job out.

Pure: it reads a Topology and a Window (live or replayed) and touches nothing else, so a recorded
snapshot gives the same report anywhere.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.node import Topology
from nodetune.probes.serde import gc_paused
from nodetune.probes.snapshot import Window, now_iso

from .attribution import Facts, classify, describe, prepare, process_index
from .findings import (
    SEVERITY_ORDER,
    Finding,
    GpuVerdict,
    IdleAttribution,
    JobReport,
    Phase,
    Report,
    StackEvidence,
)
from .host_stats import HostStats
from .job_windows import MIN_SPAN_SAMPLES, job_window, turns
from .jobs import JobGroup, group_jobs
from .phases import PhasePlan, find_phases, strip, trim
from .rules import UNKNOWN, all_rules, primary_order
from .rules.base import RuleContext
from .stack_timeline import Timeline, merged_evidence, timeline
from .window_stats import (
    GpuStats,
    WindowStats,
    gpu_stats,
    window_stats,
    with_idle_threshold,
)

REPORT_VERSION = 1
# A healthy GPU is hardly ever idle: a training loop keeps it fed between steps.
HEALTHY_MAX_IDLE_SHARE = 0.2
# A borderline verdict is a coin toss between neighbours: its confidence says so.
BORDERLINE_CONFIDENCE = 0.6
# The verdict of a GPU with no utilization reading in the window (no NVML, or one NVML cannot see).
NEVER_BORDERLINE = ("idle", "gpu_lost", UNKNOWN)

def _metrics(g: GpuStats) -> dict[str, object]:
    return {"util_pct": g.util_mean, "idle_share": g.idle_share, "sm_active_pct": g.sm_mean,
            "sm_occupancy_pct": g.occupancy_mean, "tensor_active_pct": g.tensor_mean, "dram_bw_pct": g.dram_mean,
            "fp32_active_pct": g.fp32_mean, "pcie_rx_mibps": g.pcie_rx_mibps, "pcie_tx_mibps": g.pcie_tx_mibps,
            "nvlink_rx_mibps": g.nvlink_rx_mibps, "nvlink_tx_mibps": g.nvlink_tx_mibps,
            "power_w": g.power_mean_w, "power_limit_w": g.power_limit_w, "temp_max_c": g.temp_max_c,
            "memory_used_gib": round(g.memory_used_bytes / 2**30, 2) if g.memory_used_bytes is not None else None,
            "gpm": g.gpm, "samples": g.samples}


def _pick(mine: list[Finding], startup_only: bool) -> Finding | None:
    """The decisive finding: the lowest-ranked kind; start-up only where the window is all start-up
    (then it outranks what the stacks of a starting process suggest), and never the note that a
    start-up was left out (the steady part after it has the verdict)."""
    cands = [f for f in mine if not (f.kind == "startup" and f.evidence.get("left_out_s") is not None)]
    if startup_only and not any(f.kind == "gpu_lost" for f in cands):
        first = next((f for f in cands if f.kind == "startup"), None)
        if first is not None:
            return first
    return next((f for kind in primary_order() for f in cands if f.kind == kind), None)


def _primary(index: int, findings: list[Finding], plan: PhasePlan | None = None) -> Finding | None:
    return _pick([f for f in findings if index in f.gpus], plan is not None and index in plan.startup_only)


def _no_data(g: GpuStats, topo: Topology) -> str | None:
    """Why a GPU has no telemetry in the window, in words (None: it has some)."""
    if g.util_mean is not None or g.lost:
        return None
    if not topo.backend.available:
        return f"no GPU telemetry ({topo.backend.reason})"
    why = g.missing.get("*") or next(iter(g.missing.values()), None)
    return f"NVML gave no utilization for this GPU ({why})" if why else None


def _gpu_verdict(g: GpuStats, findings: list[Finding], att: IdleAttribution | None, th: Thresholds,
                 plan: PhasePlan, no_data: str | None = None) -> GpuVerdict:
    mine = [f for f in findings if g.index in f.gpus]
    primary = _primary(g.index, findings, plan)
    if primary is None:
        if g.util_mean is None and not g.lost:
            # No utilization read at all (no NVML, or a GPU NVML cannot see): no verdict, not idle.
            verdict, conf = UNKNOWN, 0.0
            summary = f"unknown: {no_data or 'no utilization reading of this GPU in the window'}"
        elif not g.pids and (g.util_mean or 0) < 5:
            verdict, summary, conf = "idle", "idle: no GPU processes", 0.9
        else:
            verdict, conf = "unclassified", 0.5
            summary = (f"no single bottleneck: busy {g.util_mean or 0:.0f}% of the time, SMs "
                       f"{'?' if g.sm_mean is None else f'{g.sm_mean:.0f}%'} active")
        v = GpuVerdict(g.index, g.name, verdict, None, False, conf, summary, _metrics(g), [f.kind for f in mine])
    else:
        # Healthy: compute-bound on tensor pipes, hardly idle, and nothing on this GPU that asks for
        # action. Info-level notes (a power cap at the default limit) never count against it.
        healthy = bool(primary.kind == "compute_bound" and primary.severity == "info" and g.gpm
                       and (g.tensor_mean or 0) > 0 and (g.idle_share or 0) < HEALTHY_MAX_IDLE_SHARE
                       and not any(f.severity != "info" for f in mine))
        summary = primary.summary
        if not healthy and "and healthy" in summary:
            worse = sorted({f.kind for f in mine if f.severity != "info"})
            summary = summary.replace(" and healthy", "") + (f"; not healthy: {', '.join(worse)}" if worse else "")
        v = GpuVerdict(g.index, g.name, primary.kind, primary.cause, healthy, primary.confidence, summary,
                       _metrics(g), [f.kind for f in mine])
    if att is not None:
        if v.verdict in ("launch_bound", "transfer_bound"):
            # The host code a launch- or transfer-bound GPU waits on is the dispatch of its work.
            for c in att.causes:
                if c.cause == "host_other":
                    c.cause = "dispatch"
            att.text = describe(att)
        v.attribution = att
        if att.idle_share >= th.cause_min_share and att.text not in v.summary:
            v.summary += f" [{att.text}]"
    return v


@dataclass
class _Pass:
    stats: WindowStats
    attribution: dict[int, IdleAttribution]
    findings: list[Finding]


@dataclass
class _Prepared:
    """What a threshold does not change, computed once per window: statistics (their idle share
    aside) and each GPU's per-interval attribution facts."""

    stats: WindowStats
    facts: dict[int, Facts]
    idle_util_pct: float  # the threshold `stats` counted idle samples at


def _prepare(topo: Topology, win: Window, th: Thresholds, jobs: list[JobGroup], stacks: dict[int, StackEvidence],
             plan: PhasePlan, gpus: list[GpuStats] | None, t_shift: float, tl: Timeline) -> _Prepared:
    clk = topo.node.clk_tck or 100
    stats = window_stats(win, topo, th.idle_util_pct, gpus)
    index = process_index(win)
    # a multi-GPU job's counters, once for all its GPUs
    memo: dict[tuple[int, ...], list[tuple[int, int, int, list[float]]]] = {}
    facts: dict[int, Facts] = {}
    for g in stats.gpus:
        if g.lost or not g.pids:
            continue
        mine = [j for j in jobs if g.index in j.gpus]
        # start-up, counted from the diagnosed part's first sample (none left where it was trimmed)
        su = plan.startup_s.get(g.index)
        su = su - t_shift if su is not None and su - t_shift > 0 else None
        fx = prepare(win, g.index, mine, [stacks[p] for j in mine for p in j.pids if p in stacks], clk, index, su,
                     memo, tl, t_shift)
        if fx is not None:
            fx.startup_basis = plan.startup_basis.get(g.index, [])
            facts[g.index] = fx
    return _Prepared(stats, facts, th.idle_util_pct)


def _evaluate(topo: Topology, win: Window, th: Thresholds, jobs: list[JobGroup], stacks: dict[int, StackEvidence],
              plan: PhasePlan, prep: _Prepared) -> _Pass:
    """Attribution and every rule over (the diagnosed part of) a window, under thresholds `th`."""
    stats = prep.stats if th.idle_util_pct == prep.idle_util_pct else with_idle_threshold(prep.stats, th.idle_util_pct)
    att = {i: classify(fx, th) for i, fx in prep.facts.items()}
    ctx = RuleContext(topo=topo, window=win, stats=stats, th=th, jobs=jobs, stacks=stacks, attribution=att,
                      phases=plan)
    findings: list[Finding] = []
    for rule in all_rules():
        findings.extend(rule.evaluate(ctx))
    for f in findings:
        # No alarm without evidence: a cause nothing showed is never critical.
        if f.severity == "critical" and f.cause == "unknown":
            f.severity = "warning"
            f.notes.append("warning, not critical: no counter or stack shows the cause")
    findings.sort(key=lambda f: (-SEVERITY_ORDER[f.severity], f.gpus[:1] or [99], f.kind))
    return _Pass(stats, att, findings)


def _scaled(th: Thresholds, factor: float) -> Thresholds:
    """Every numeric threshold moved by `factor`, kept inside its documented range."""
    out = dataclasses.replace(th)
    for f in dataclasses.fields(th):
        v = getattr(th, f.name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and f.name != "borderline_margin":
            hi = f.metadata.get("hi")
            setattr(out, f.name, min(v * factor, hi) if hi is not None else v * factor)
    return out


def _phase_words(phases: list[Phase], steady: tuple[float, float] | None) -> str:
    if steady is None:
        return ""
    said = []
    for p in phases:
        if p.kind == "startup" and p.end_s <= steady[0] + 1e-6:
            said.append(f"first {p.end_s:.1f} s: start-up" + (f" ({p.note})" if p.note else ""))
        elif p.kind == "ended":
            said.append(f"after {p.start_s:.1f} s: job ended")
    return "; ".join(said)


def diagnose(topo: Topology, win: Window, th: Thresholds | None = None, source: str = "live",
             taken_at: str | None = None, per_job: bool = True) -> Report:
    """Find the window's phases, run every rule over its steady part and assemble the report.
    Jobs that took turns on a GPU are each diagnosed again over their own span (`per_job`)."""
    with gc_paused():  # it builds statistics of every process of the window, all acyclic
        return _diagnose(topo, win, th, source, taken_at, per_job)


def _diagnose(topo: Topology, win: Window, th: Thresholds | None, source: str, taken_at: str | None,
              per_job: bool) -> Report:
    t0 = time.monotonic()
    th = th or Thresholds()
    jobs = group_jobs(win)
    tl = timeline(win)
    # The GPU series of the whole window find the phases; the rest is computed for the diagnosed part only.
    full_gpus = gpu_stats(win, topo, th.idle_util_pct)
    full_s = round(win.samples[-1].t - win.samples[0].t, 3) if len(win.samples) >= 2 else 0.0
    plan = find_phases(win, full_gpus, jobs, th, topo.node.clk_tck or 100, tl)
    dwin = trim(win, plan)
    shift = dwin.samples[0].t - win.samples[0].t if plan.trims and dwin.samples else 0.0
    # The rules judge the diagnosed part: their stack evidence is the slices that overlap it.
    stacks = merged_evidence(win, shift, shift + dwin.seconds) if plan.trims else merged_evidence(win)
    prep = _prepare(topo, dwin, th, jobs, stacks, plan, None if plan.trims else full_gpus, shift, tl)
    base = _evaluate(topo, dwin, th, jobs, stacks, plan, prep)
    stats, findings = base.stats, base.findings

    report = Report(version=REPORT_VERSION, source=source, taken_at=taken_at or now_iso(), window_s=full_s,
                    elapsed_s=0.0, hostname=topo.node.hostname,
                    gpu_backend=topo.backend.source if topo.backend.available else f"none: {topo.backend.reason}",
                    findings=findings)
    report.gpus = [_gpu_verdict(g, findings, base.attribution.get(g.index), th, plan, _no_data(g, topo))
                   for g in stats.gpus]
    steady = None
    if plan.trims and dwin.samples:
        steady = (round(dwin.samples[0].t - win.samples[0].t, 2), round(dwin.samples[-1].t - win.samples[0].t, 2))
    # Stable verdicts: a verdict that a small move of the thresholds would change is borderline. The
    # phases and the per-interval facts stay as found; attribution and the rules run again.
    # Idle, lost and unknown GPUs are never borderline: a node with only those needs no second look.
    judged = any(v.verdict not in NEVER_BORDERLINE for v in report.gpus)
    alt = [_evaluate(topo, dwin, _scaled(th, 1 + k * th.borderline_margin), jobs, stacks, plan, prep)
           for k in (-1, 1)] if th.borderline_margin > 0 and judged else []
    for v, g in zip(report.gpus, full_gpus, strict=True):
        v.phases = plan.phases.get(g.index, [])
        v.strip = strip(g, v.phases)
        v.diagnosed_s = steady
        words = _phase_words(v.phases, steady)
        if words:
            v.summary = f"{words}; then {v.verdict}: {v.summary}"
        others = sorted({p.kind for a in alt if (p := _primary(v.index, a.findings, plan)) is not None} - {v.verdict})
        if others and v.verdict not in NEVER_BORDERLINE:
            v.borderline, v.leans = others, v.verdict
            v.confidence = min(v.confidence, BORDERLINE_CONFIDENCE)
            v.summary += f" (borderline: leans {v.verdict}, could read as {' or '.join(others)})"
    by_gpu = {v.index: v for v in report.gpus}
    for job in jobs:
        jf = [f for f in findings if f.job == job.id or set(f.pids) & set(job.all_pids)]
        verdicts = [by_gpu[i] for i in job.gpus if i in by_gpu]
        primary = _pick([f for f in jf if f.job in (None, job.id)], bool(set(job.gpus) & plan.startup_only))
        verdict = primary.kind if primary else (verdicts[0].verdict if verdicts else "unclassified")
        cause = primary.cause if primary else None
        healthy = bool(verdicts) and all(v.healthy for v in verdicts) and not any(f.severity != "info" for f in jf)
        report.jobs.append(JobReport(job.id, job.kind, job.user, job.command, job.all_pids, job.gpus, verdict, cause,
                                     healthy, sorted({f.kind for f in jf}),
                                     [stacks[p] for p in job.pids if p in stacks]))
    if per_job:
        _diagnose_turns(topo, win, th, jobs, report, source)
    worst = report.worst_severity()
    report.healthy = (all(j.healthy for j in report.jobs) and worst in (None, "info")) if report.jobs else None
    if plan.trimmed:
        report.notes.append("diagnosed the steady part; left out: " + "; ".join(plan.trimmed))
    for job in jobs:
        for pid in job.pids:
            ev = stacks.get(pid)
            if ev is not None and not ev.ok:
                report.notes.append(f"no stacks for pid {pid}: {ev.reason}; its verdict rests on counters alone")
            info = win.process(pid)
            if info is not None and info.worker_cap is not None:
                report.notes.append(f"pid {pid} ({job.id}) has more descendants than the {info.worker_cap} followed "
                                    "as its loader workers: the rest are not counted")
    h = stats.host
    report.host = {"psi_pct": h.psi_pct, "cpu_busy_pct": h.cpu_busy_pct, "iowait_pct": h.iowait_pct,
                   "steal_pct": h.steal_pct, "swap_in_pps": h.swap_in_pps, "swap_out_pps": h.swap_out_pps,
                   "mem_available_pct": h.mem_available_pct,
                   "busy_disks": [{"device": d.device, "util_pct": d.util_pct, "read_mbps": d.read_mbps}
                                  for d in h.disks if d.util_pct >= 10]}
    if h.nics:
        report.host["nics"] = [dataclasses.asdict(n) for n in h.nics if n.rx_mibps + n.tx_mibps >= 1]
    report.host["node"] = _node_summary(topo, win, h)
    if not topo.backend.available:
        report.notes.append(f"no GPU telemetry: {topo.backend.reason}; host-side findings only")
    report.notes += [f"{k}: {v}" for k, v in h.missing.items()]
    cost = sum(s.cost_s for s in win.samples) / max(len(win.samples), 1)
    report.host["nodetune_cpu_ms_per_sample"] = round(cost * 1000, 2)
    report.elapsed_s = round(time.monotonic() - t0, 4)
    return report


def _diagnose_turns(topo: Topology, win: Window, th: Thresholds, jobs: list[JobGroup], report: Report,
                    source: str) -> None:
    """Give each job that shared a GPU in turn the verdict of its own span (the GPU's verdict
    over the whole window mixes its end with the next job's start); a GPU held at the window's end
    by such a job takes that job's verdict over its span, the earlier turn named in words."""
    spans = turns(win, jobs)
    if not spans:
        return
    t0 = win.samples[0].t
    last = len(win.samples) - 1
    groups = {j.id: j for j in jobs}
    by_gpu = {v.index: n for n, v in enumerate(report.gpus)}
    for i, jr in enumerate(report.jobs):
        span = spans.get(jr.id)
        if span is None:
            continue
        jr.span_s = [round(win.samples[span.first].t - t0, 3), round(win.samples[span.last].t - t0, 3)]
        if span.last - span.first + 1 < MIN_SPAN_SAMPLES:
            continue
        sub = diagnose(topo, job_window(win, groups[jr.id], span), th, source, report.taken_at, per_job=False)
        own = next((j for j in sub.jobs if j.id == jr.id), None)
        if own is not None:
            own.span_s = jr.span_s
            report.jobs[i] = own
        if span.last < last or span.first == 0:
            continue  # gone before the window's end, or there from its start: the GPU's window is its own
        for v in sub.gpus:
            n = by_gpu.get(v.index)
            # a turn only where every other job on the GPU had gone before this one came (a job
            # running beside it, such as a child process with its own context, shares the window)
            beside = [o for o in jobs if o.id != jr.id and v.index in o.gpus
                      and (o.id not in spans or spans[o.id].last >= span.first)]
            if n is not None and v.index in groups[jr.id].gpus and not beside:
                v.summary = f"before {jr.span_s[0]:.1f} s: another job; then {v.verdict}: {v.summary}"
                report.gpus[n] = v


def _node_summary(topo: Topology, win: Window, hs: HostStats) -> dict[str, object]:
    """What a person wants to know about the node even when no GPU job runs: its shape and the
    state of the knobs nodetune tunes, with each disk's load over the window."""
    first = win.samples[0].memory if win.samples else None
    queues = {q.device: q for q in topo.block_devices}
    disk_load = {d.device: d for d in hs.disks}
    disks = []
    for name, q in sorted(queues.items()):
        if q.kind in ("loop", "other"):
            continue
        d = disk_load.get(name)
        disks.append({"device": name, "kind": q.kind, "read_ahead_kb": q.read_ahead_kb, "scheduler": q.scheduler,
                      "util_pct": d.util_pct if d else None, "read_mbps": d.read_mbps if d else None})
    return {"cpus": len(topo.cpu.online), "sockets": topo.cpu.packages, "numa_nodes": len(topo.cpu.numa_nodes),
            "gpus": len(topo.gpus), "thp_enabled": first.thp_enabled if first else None,
            "thp_defrag": first.thp_defrag if first else None,
            "mem_total_gib": round(first.meminfo_kb["MemTotal"] / 2**20, 1)
                             if first and "MemTotal" in first.meminfo_kb else None,
            "disks": disks}
