"""numa_misplaced: a job's threads run, or its memory sits, away from its GPU's NUMA node."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# A secondary finding: reported beside the GPU's verdict, never as it.
PRIMARY_RANK: int | None = None
STRIP_LETTER: str | None = None  # a finding beside the verdict: nothing in the history strip


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    if len(ctx.topo.cpu.numa_nodes) < 2:
        return out  # one node: nothing can be remote
    for job in ctx.jobs:
        nodes = {g.numa_node for i in job.gpus if (g := ctx.topo.gpu(i)) is not None}
        if None in nodes or not nodes:
            continue  # a GPU with numa_node -1: placement cannot be judged
        local = {c for i in job.gpus if (g := ctx.topo.gpu(i)) for c in g.local_cpus}
        remote_threads = total_threads = 0
        mem_local = mem_total = 0
        allowed_remote = False
        for pid in job.all_pids:
            info = ctx.window.process(pid)
            last = next((p for s in reversed(ctx.window.samples) for p in s.processes if p.pid == pid and p.alive),
                        None)
            if last:
                for t in last.threads:
                    if t.processor is not None:
                        total_threads += 1
                        remote_threads += t.processor not in local
            if info:
                if info.cpus_allowed and not set(info.cpus_allowed) <= local:
                    allowed_remote = True
                for node, kb in info.numa_pages_kb.items():
                    mem_total += kb
                    mem_local += kb if int(node) in nodes else 0
        thread_share = remote_threads / total_threads if total_threads else 0.0
        mem_share = 1 - mem_local / mem_total if mem_total else 0.0
        if thread_share < th.numa_remote_share and mem_share < th.numa_remote_share:
            continue
        what = []
        if thread_share >= th.numa_remote_share:
            what.append(f"{thread_share:.0%} of threads last ran on CPUs remote to GPU{','.join(map(str, job.gpus))}")
        if mem_share >= th.numa_remote_share:
            what.append(f"{mem_share:.0%} of resident memory on a remote node")
        out.append(Finding(
            "numa_misplaced", "warning", 0.8 if allowed_remote else 0.65, "NUMA-misplaced: " + "; ".join(what),
            gpus=job.gpus, pids=job.all_pids, job=job.id,
            evidence={"remote_thread_share": round(thread_share, 3), "remote_memory_share": round(mem_share, 3),
                      "gpu_numa_nodes": sorted(n for n in nodes if n is not None),
                      "affinity_allows_remote": allowed_remote,
                      "threads_seen": total_threads, "memory_kb": mem_total},
            advice=[Advice("Pin the job to its GPU's local CPUs.", tuner="pinning", params={"pids": job.pids}),
                    Advice(f"Start it bound to the GPU's node: nodetune exec --gpu {job.gpus[0]} -- <command> "
                           "(CPUs and preferred memory on that node).")]))
    return out
