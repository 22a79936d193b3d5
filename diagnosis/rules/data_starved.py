"""data_starved: the GPU waits for input while its job is busy on the host. The cause says where the
input pipeline is stuck: `cpu_input` (loader threads/workers saturated), `io_input` (stalled on
storage: PSI io, D-state threads, block-I/O delay, a busy backing device) or `unknown`."""

from __future__ import annotations

from nodetune.probes.storage import mount_for_path

from ..findings import Advice, Finding, StackEvidence
from ..jobs import JobGroup
from ..window_stats import GpuStats, ProcessStats
from .base import RuleContext, active, confidence, free_cpus, pct, pinning_helps, scale, sm_busy

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 80
STRIP_LETTER: str | None = "D"  # what `nodetune history JOB`'s strip draws for this verdict


def _io_signals(ctx: RuleContext, job: JobGroup, procs: list[ProcessStats]) -> tuple[list[str], dict[str, object]]:
    th, host = ctx.th, ctx.stats.host
    signals: list[str] = []
    ev: dict[str, object] = {}
    psi_io = host.psi_pct.get("io.some")
    ev["psi_io_some_pct"] = psi_io
    if psi_io is not None and psi_io >= th.io_psi_pct:
        signals.append(f"PSI io stalls {psi_io:.0f}% of the window")
    d_share = max((t.d_share for p in procs for t in p.threads), default=0.0)
    d_mean = sum(p.d_threads_mean for p in procs)
    ev["d_state_threads_mean"] = round(d_mean, 2)
    ev["d_state_max_thread_share"] = d_share
    if d_share >= th.io_d_state_share or d_mean >= 1:
        signals.append(f"{d_mean:.1f} job threads in D state on average")
    blk = sum(p.blkio_pct or 0 for p in procs)
    ev["blkio_delay_pct"] = round(blk, 1)
    if blk >= th.io_blkio_pct:
        signals.append(f"block-I/O delay {blk:.0f}% of wall time")
    disks = _backing_disks(ctx, job)
    busy = [d for d in host.disks if d.util_pct >= th.disk_busy_pct and (not disks or d.device in disks)]
    if busy:
        d = max(busy, key=lambda d: d.util_pct)
        ev["disk"] = d.device
        ev["disk_util_pct"] = d.util_pct
        ev["disk_read_mbps"] = d.read_mbps
        signals.append(f"{d.device} busy {d.util_pct:.0f}% ({d.read_mbps:.0f} MB/s, {d.read_iops:.0f} reads/s)")
    return signals, ev


def _backing_disks(ctx: RuleContext, job: JobGroup) -> set[str]:
    """Disks behind the files the job's processes hold open (each path's mount looked up once: a
    job's loader workers hold the same dataset files)."""
    paths: set[str] = set()
    for pid in job.all_pids:
        info = ctx.window.process(pid)
        if info is not None:
            paths.update(info.open_files)
    out: set[str] = set()
    for f in paths:
        m = mount_for_path(ctx.topo.mounts, f)
        if m is not None:
            out.update(m.disks)
            if m.device:
                out.add(m.device)
    return out


# With the GPU's idle time shown to be loading, workers this busy (% of a core) are the
# pipeline's limit: a worker also spends time handing batches over (pickling into shared memory).
WAITED_ON_WORKER_PCT = 50.0


def _cpu_signals(ctx: RuleContext, job: JobGroup, procs: list[ProcessStats],
                 waited_on: bool = False) -> tuple[list[str], dict[str, object]]:
    th = ctx.th
    signals: list[str] = []
    main = [p for p in procs if p.role == "gpu"]
    workers = [p for p in procs if p.role == "worker" and p.alive_samples >= 2]
    busy_pct = th.loader_busy_pct
    if waited_on:
        busy_pct = min(busy_pct, WAITED_ON_WORKER_PCT)
    busy_workers = [w for w in workers if (w.cpu_pct or 0) >= busy_pct]
    main_pct = max((p.main_thread_pct or 0 for p in main), default=0.0)
    busiest = max((p.busiest_thread_pct or 0 for p in main), default=0.0)
    ev: dict[str, object] = {"main_thread_cpu_pct": main_pct, "busiest_thread_cpu_pct": busiest,
                             "workers": len(workers), "busy_workers": len(busy_workers),
                             "job_cpu_pct": round(sum(p.cpu_pct or 0 for p in procs), 1)}
    if workers and len(busy_workers) >= max(1, len(workers) * 0.75):
        signals.append(f"{len(busy_workers)}/{len(workers)} loader workers saturated (>= {busy_pct:.0f}% of a core)")
    if not workers and max(main_pct, busiest) >= th.loader_busy_pct:
        signals.append(f"loading runs in the training process: a thread at {max(main_pct, busiest):.0f}% of a core, "
                       "no workers")
    return signals, ev


def _workers_to_add(ctx: RuleContext, g: GpuStats, workers: int) -> int:
    """Workers the CPUs near the GPU can take: the idle CPU time there (less one CPU for the
    training thread); without per-CPU counters, an even share of the local CPUs per GPU."""
    free = free_cpus(ctx, g.index)
    if free is not None:
        return max(0, int(free) - 1)
    gpu = ctx.topo.gpu(g.index)
    cpus = gpu.local_cpus if gpu and gpu.local_cpus else ctx.topo.cpu.online
    ngpu = max(1, sum(1 for x in ctx.topo.gpus if not gpu or x.numa_node == gpu.numa_node))
    return max(1, len(cpus) // ngpu - 1 - workers)


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost or not g.pids or sm_busy(g, th):
            continue
        idle = g.idle_share or 0.0
        if (g.util_mean or 0) >= th.starved_util_pct and idle < th.starved_idle_share:
            continue
        for job in ctx.jobs_on(g.index):
            procs = ctx.job_procs(job)
            if not procs or not active(procs, th):
                continue  # a job doing nothing anywhere is idle_allocated's case
            io, io_ev = _io_signals(ctx, job, procs)
            stacks = [ctx.stacks[p] for p in job.pids if p in ctx.stacks]
            loading = _stack_share(stacks)
            att = ctx.attribution.get(g.index)
            loading_share = att.share("data_loading") if att else 0.0
            top = att.top() if att else None
            # The idle time is loading, by stacks or by the workers' counters over the idle intervals:
            # then workers half busy are what the GPU waits on.
            waited_on = (loading is not None and loading >= th.stack_loading_share) or (
                top is not None and top.cause == "data_loading" and top.share >= th.cause_min_share)
            cpu, cpu_ev = _cpu_signals(ctx, job, procs, waited_on)
            notes: list[str] = []
            if cpu and not io and loading is not None and loading < DISPATCH_SHARE:
                # py-spy shows the busy thread dispatching GPU work (copies, kernels), not loading
                # input: the GPU is not waiting for data (transfer/launch rules speak for it).
                continue
            if top is not None and top.cause != "data_loading" and top.share >= th.cause_min_share \
                    and top.share > loading_share:
                continue  # the evidence shows something else holding the GPU: its own rule names it
            if cpu and not cpu_ev["busy_workers"] and (loading is None or loading < th.stack_loading_share):
                # A saturated training thread is host work, not necessarily loading: without stacks
                # that show loading it names no cause.
                notes.append(f"the training process's busiest thread runs at {cpu_ev['busiest_thread_cpu_pct']:.0f}% "
                             "of a core, but no stack samples show it loading data")
                cpu = []
            if len(io) >= 2 or (io and not cpu):
                cause, signals = "io_input", io
            elif cpu:
                cause, signals = "cpu_input", cpu
            else:
                cause, signals = "unknown", []
                notes.append("no host-side signal explains the idle GPU: check for a sleep, a lock, a remote "
                             "data source or a synchronisation with another job")
            base = scale(idle, th.starved_idle_share, 0.9) if idle >= th.starved_idle_share else 0.6
            if cause == "unknown":
                base = min(base, UNKNOWN_CAUSE_CONFIDENCE)  # an idle GPU beside a busy job, nothing showing why
            if loading is not None and loading >= th.stack_loading_share:
                base += 0.05
                signals.append(f"{loading:.0%} of main-thread stack samples inside data loading")
            for s in stacks:
                if not s.ok:
                    notes.append(f"no stack evidence for pid {s.pid}: {s.reason}")
            # Critical only with positive evidence: a named cause, and the idle time it explains.
            sev = "critical" if idle >= 0.7 and cause != "unknown" and (
                loading_share >= th.cause_critical_share or att is None or not att.causes) else "warning"
            out.append(Finding(
                "data_starved", sev, confidence(base, g, notes),
                f"data-starved ({cause}): GPU idle {idle:.0%} of the window (mean utilization {pct(g.util_mean)})"
                + (": " + "; ".join(signals) if signals else ""),
                cause=cause, gpus=[g.index], pids=job.all_pids, job=job.id,
                evidence={"gpu_idle_share": idle, "util_pct": g.util_mean, "sm_active_pct": g.sm_mean,
                          "stack_data_loading_share": loading, "cause_share": round(loading_share, 3),
                          **cpu_ev, **io_ev},
                advice=_advice(ctx, g, job, cause, cpu_ev, io_ev), notes=notes))
    return out


# Without a cause, "waits for input" is one reading of an idle GPU beside a busy job among several
# (a stall, a lock, a checkpoint not yet on disk): no more sure than a borderline verdict.
UNKNOWN_CAUSE_CONFIDENCE = 0.6

# Below this share of main-thread samples in data loading, a busy thread is doing something else.
DISPATCH_SHARE = 0.1


def _stack_share(stacks: list[StackEvidence]) -> float | None:
    shares = [s.data_loading_share for s in stacks if s.ok and s.data_loading_share is not None]
    return max(shares) if shares else None


def _advice(ctx: RuleContext, g: GpuStats, job: JobGroup, cause: str, cpu_ev: dict[str, object],
            io_ev: dict[str, object]) -> list[Advice]:
    adv: list[Advice] = []
    if cause == "cpu_input":
        have = int(cpu_ev.get("workers") or 0)  # type: ignore[call-overload]
        extra = _workers_to_add(ctx, g, have)
        free = free_cpus(ctx, g.index)
        if extra > 0:
            adv.append(Advice(f"Move decoding off the training thread: DataLoader(num_workers={have + extra}, "
                              f"persistent_workers=True, prefetch_factor=4) (currently {have} workers"
                              + (f"; {free:.0f} CPUs near GPU{g.index} idle" if free is not None else "") + "); "
                              "or decode on the GPU (NVIDIA DALI, torchvision.io.decode_jpeg(device='cuda'))."))
        else:
            adv.append(Advice(f"The CPUs near GPU{g.index} are busy ({free or 0:.0f} idle): more workers would only "
                              "compete; make decoding cheaper (smaller images, a faster decoder) or decode on the GPU "
                              "(NVIDIA DALI, torchvision.io.decode_jpeg(device='cuda'))."))
        if pinning_helps(ctx, job.all_pids, job.gpus):
            adv.append(Advice("Pin the job's threads to CPUs local to its GPU.", tuner="pinning",
                              params={"pids": job.pids}))
        adv.append(Advice("Apply the data-loading profile (CPU governor, THP, read-ahead).", tuner="profile",
                          params={"profile": "data-loading"}))
    elif cause == "io_input":
        dev = io_ev.get("disk")
        paths = sorted({f.rsplit("/", 1)[0] for pid in job.all_pids
                        if (info := ctx.window.process(pid)) for f in info.open_files})[:4]
        adv.append(Advice("Raise read-ahead on the data's block device for sequential reads"
                          + (f" ({dev})" if dev else ""), tuner="readahead",
                          params={"paths": paths or ["/"], "read_ahead_kb": 4096}))
        adv.append(Advice("Overlap I/O: more DataLoader workers, larger sequential reads, posix_fadvise(SEQUENTIAL/"
                          "WILLNEED) on shards; cache the dataset on local NVMe or in RAM if it fits."))
    else:
        adv.append(Advice("Profile the input pipeline (py-spy dump --pid PID) to see where the job waits."))
    return adv
