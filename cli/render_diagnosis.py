"""`nodetune diagnose` for a person: advice first, one line per GPU, a block per job."""

from __future__ import annotations

from rich.console import Console

from nodetune.cli.output import escape
from nodetune.diagnosis.findings import Finding, Report

from .advice_command import advice_command

_STYLE = {"info": "green", "warning": "yellow", "critical": "bold red"}


def _verdict(v: str, cause: str | None) -> str:
    return f"{v} ({cause})" if cause else v


def render_report(r: Report, console: Console, verbose: bool = False) -> None:
    src = "replay of " + r.source.removeprefix("replay:") if r.source.startswith("replay:") else "this node"
    console.print(f"[bold]nodetune diagnose[/] {escape(src)} ({escape(r.hostname or '?')}), "
                  f"{r.window_s:.1f} s window, GPU telemetry: {escape(r.gpu_backend)}")
    actionable = [f for f in r.findings if f.severity != "info" or f.advice and f.kind != "compute_bound"]
    if actionable:
        console.print("\n[bold]Do this first[/]")
        seen: set[str] = set()
        for f in actionable:
            for a in f.advice[:2]:
                if a.text in seen:
                    continue
                seen.add(a.text)
                cmd = advice_command(a.tuner, a.params)
                tuner = f"\n      [dim]$ {escape(cmd)}[/]" if cmd else ""
                console.print(f"  [{_STYLE[f.severity]}]*[/] {escape(a.text)}{tuner}")
    console.print("\n[bold]GPUs[/]")
    if not r.gpus:
        console.print("  none visible")
    for g in r.gpus:
        m = g.metrics
        style = "green" if g.healthy else "yellow" if g.verdict not in ("idle",) else "dim"
        line = (f"  GPU{g.index} [{style}]{_verdict(g.verdict, g.cause)}[/] ({g.confidence:.0%})  "
                f"util {_n(m.get('util_pct'))}%  SM {_n(m.get('sm_active_pct'))}%  "
                f"tensor {_n(m.get('tensor_active_pct'))}%  "
                f"DRAM {_n(m.get('dram_bw_pct'))}%  PCIe rx {_n(m.get('pcie_rx_mibps'))} MiB/s  "
                f"NVLink {_n(_sum(m.get('nvlink_rx_mibps'), m.get('nvlink_tx_mibps')))} MiB/s  "
                f"{_n(m.get('power_w'))}/{_n(m.get('power_limit_w'))} W")
        console.print(line)
        console.print(f"       {escape(g.summary)}", style="dim")
        if g.strip:
            marks = "  ".join(f"{p.kind} {p.start_s:.0f}-{p.end_s:.0f}s" for p in g.phases) if len(g.phases) > 1 else ""
            console.print(f"       SM |{escape(g.strip)}| {r.window_s:.0f} s" + (f"  {escape(marks)}" if marks else ""))
        a = g.attribution
        if a is not None and a.idle_share >= 0.05 and a.text not in g.summary:
            console.print(f"       {escape(a.text)}" + "".join(f"\n       [dim]note: {escape(n)}[/]" for n in a.notes))
    if r.jobs:
        console.print("\n[bold]Jobs[/]")
    for j in r.jobs:
        style = "green" if j.healthy else "yellow"
        console.print(f"  [{style}]{escape(_verdict(j.verdict, j.cause))}[/]  {escape(j.id)}  "
                      f"user {escape(j.user or '?')}  "
                      f"GPU {','.join(map(str, j.gpus))}  pids {' '.join(map(str, j.pids[:8]))}"
                      + (" ..." if len(j.pids) > 8 else ""))
        console.print(f"      {escape(j.command[:120])}", style="dim")
        for f in [f for f in r.findings if f.job == j.id or set(f.pids) & set(j.pids)]:
            _finding(console, f, verbose)
        for s in j.stacks:
            if s.ok and s.data_loading_share is not None:
                console.print(f"      stacks (pid {s.pid}, {s.main_samples} samples): "
                              f"{s.data_loading_share:.0%} in data loading; "
                              f"top ({(s.top_share or 0):.0%}): {escape(' > '.join(s.top_stack[-4:]))}")
            elif not s.ok:
                console.print(f"      stacks (pid {s.pid}): {escape(s.reason or 'unavailable')}", style="dim")
    host = [f for f in r.findings if not f.gpus and not f.job]
    gpu_only = [f for f in r.findings if f.gpus and not f.job and not any(set(f.pids) & set(j.pids) for j in r.jobs)]
    if host or gpu_only:
        console.print("\n[bold]Node[/]")
        for f in host + gpu_only:
            _finding(console, f, verbose)
    if not r.findings:
        console.print("\nNo findings: nothing holds the node back in this window.")
    if r.healthy is not None:
        console.print(f"\n[bold]Overall[/]: {'[green]healthy[/]' if r.healthy else '[yellow]not healthy[/]'}"
                      + ("" if r.healthy else f" (worst finding: {r.worst_severity() or 'none'})"))
    h = r.host
    node = h.get("node") or {}
    if node:
        console.print(f"\n[bold]Node[/] {node.get('cpus')} CPUs, {node.get('sockets')} socket(s), "
                      f"{node.get('numa_nodes')} NUMA node(s), {node.get('mem_total_gib')} GiB, "
                      f"{node.get('gpus')} GPU(s); THP {node.get('thp_enabled')}/{node.get('thp_defrag')}")
        for d in node.get("disks", []):
            console.print(f"  {escape(str(d['device']))} ({d['kind']}): read-ahead {d['read_ahead_kb']} kB, scheduler "
                          f"{d['scheduler']}, busy {_n(d['util_pct'])}% reading {_n(d['read_mbps'])} MB/s")
    psi = h.get("psi_pct", {})
    console.print(f"\n[dim]host: CPU busy {_n(h.get('cpu_busy_pct'))}%, "
                  f"iowait {_n(h.get('iowait_pct'))}%, steal {_n(h.get('steal_pct'))}%, "
                  f"PSI cpu/io/mem some {_n(psi.get('cpu.some'))}/{_n(psi.get('io.some'))}/"
                  f"{_n(psi.get('memory.some'))}%, "
                  f"nodetune {h.get('nodetune_cpu_ms_per_sample', '?')} ms CPU/sample[/]")
    for n in r.notes:
        console.print(f"[dim]note: {escape(n)}[/]")


def _finding(console: Console, f: Finding, verbose: bool) -> None:
    console.print(f"    [{_STYLE[f.severity]}]{f.severity}[/] {escape(f.summary)} [dim]({f.confidence:.0%})[/]")
    for n in f.notes:
        console.print(f"      note: {escape(n)}", style="dim")
    if verbose:
        ev = ", ".join(f"{k}={v}" for k, v in f.evidence.items() if v is not None)
        console.print(f"      evidence: {escape(ev)}", style="dim")


def _n(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}"
    return str(v)


def _sum(a: object, b: object) -> float | None:
    if a is None and b is None:
        return None
    return float(a or 0) + float(b or 0)  # type: ignore[arg-type]
