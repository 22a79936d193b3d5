"""`nodetune tune ...` and `nodetune exec`: plan, apply, verify, roll back and hold tuning.

`register(app)` mounts the commands on the main app. Tuner errors (nodetune.tuners.errors.TuneError)
become one line and exit 2, and nothing is changed (a failed apply has rolled back).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from nodetune.probes.host import Host, format_cpulist

from . import render_tune as render
from .errors import UserError
from .options import ReplayOpt, SecondsOpt, number
from .output import console, print_json
from .tune_session import (
    TuneDeps,
    live_advice,
    load_target_profile,
    open_tune_session,
    read_report_advice,
    replay_advice,
    user_errors,
)

RootOpt = Annotated[str, typer.Option("--root",
                                      help="Act on the node under this root (a fake tree or a mounted image).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JournalOpt = Annotated[str | None, typer.Option("--journal",
                                                help="Journal file on this machine "
                                                     "(default: /var/lib/nodetune/journal.jsonl under --root).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p",
                                                help="Profile name (see `tune profiles`) or a .toml file.")]
PidOpt = Annotated[list[int] | None, typer.Option("--pid", help="Pin this process (and its children); repeatable.")]
CgroupOpt = Annotated[list[str] | None, typer.Option("--cgroup", help="Pin every process of this cgroup; repeatable.")]
GpuJobsOpt = Annotated[bool, typer.Option("--gpu-jobs", help="Pin every process NVML sees on a GPU.")]
GpuOpt = Annotated[list[int] | None, typer.Option("--gpu",
                                                  help="The GPU(s) the --pid/--cgroup processes use, "
                                                       "when NVML cannot tell.")]
PinCpusOpt = Annotated[str | None, typer.Option("--pin-cpus",
                                                help="Pin to this CPU list instead of the GPUs' local CPUs.")]
DataPathOpt = Annotated[list[str] | None, typer.Option("--data-path",
                                                       help="A data directory whose disks get the readahead "
                                                            "settings; repeatable.")]
AllowLowerOpt = Annotated[bool, typer.Option("--allow-lower", help="Lower numeric knobs the host already set higher.")]
AllowGpuOpt = Annotated[bool, typer.Option("--allow-gpu-power",
                                           help="Allow GPU power-limit and clock changes "
                                                "the profile asks for.")]


def targets(pid: list[int] | None, cgroup: list[str] | None, gpu_jobs: bool, gpu: list[int] | None,
            pin_cpus: str | None, data_path: list[str] | None) -> dict[str, Any]:
    """The target options, as the profile table and field each sets (tune_session.with_overrides)."""
    return {"pinning.pids": pid, "pinning.cgroups": cgroup, "pinning.gpu_jobs": gpu_jobs, "pinning.gpus": gpu,
            "pinning.cpus": pin_cpus, "readahead.paths": data_path}


def tune_help() -> str:
    """The `tune` help line, naming the tuners there are (listed without importing them)."""
    from nodetune.tuners.registry import tuner_modules

    return f"Plan, apply, verify and roll back journaled tuning ({', '.join(tuner_modules())})."


def build_tune_app(deps: TuneDeps) -> typer.Typer:
    """The `tune` sub-app over `deps`."""
    tune = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       help=tune_help())

    @tune.command("profiles")
    def profiles_cmd(root: RootOpt = "/", as_json: JsonOpt = False) -> None:
        """List the profiles a name can reach (node profiles in /etc/nodetune/profiles first)."""
        from nodetune.tuners.profiles import list_profiles

        items = list_profiles(Host(root))
        if as_json:
            print_json(items)
            return
        for p in items:
            typer.echo(f"{p.name:<22} {p.description}  ({p.source})")

    @tune.command("plan")
    def plan_cmd(profile: ProfileOpt = None, root: RootOpt = "/", journal: JournalOpt = None, pid: PidOpt = None,
                 cgroup: CgroupOpt = None, gpu_jobs: GpuJobsOpt = False, gpu: GpuOpt = None,
                 pin_cpus: PinCpusOpt = None, data_path: DataPathOpt = None, allow_lower: AllowLowerOpt = False,
                 allow_gpu_power: AllowGpuOpt = False, as_json: JsonOpt = False) -> None:
        """Show each knob's current value, the profile's target and what apply would do."""
        with open_tune_session(deps, root, journal) as s, user_errors():
            prof = load_target_profile(s, profile, targets(pid, cgroup, gpu_jobs, gpu, pin_cpus, data_path))
            plan = s.plan(prof, allow_lower=allow_lower, allow_gpu_power=allow_gpu_power)
        if as_json:
            print_json(plan)
        else:
            render.render_plan(plan, console())

    @tune.command("apply")
    def apply_cmd(profile: ProfileOpt = None, root: RootOpt = "/", journal: JournalOpt = None, pid: PidOpt = None,
                  cgroup: CgroupOpt = None, gpu_jobs: GpuJobsOpt = False, gpu: GpuOpt = None,
                  pin_cpus: PinCpusOpt = None, data_path: DataPathOpt = None, allow_lower: AllowLowerOpt = False,
                  allow_gpu_power: AllowGpuOpt = False,
                  force: Annotated[bool, typer.Option("--force",
                                                      help="Apply even where TuneD or power-profiles-daemon manages a "
                                                           "knob, over another profile's open transaction, or beside "
                                                           "another journal's.")] = False,
                  as_json: JsonOpt = False) -> None:
        """Apply a profile as one journaled transaction (rolled back if any knob fails)."""
        with open_tune_session(deps, root, journal) as s, user_errors():
            prof = load_target_profile(s, profile, targets(pid, cgroup, gpu_jobs, gpu, pin_cpus, data_path))
            plan = s.plan(prof, allow_lower=allow_lower, allow_gpu_power=allow_gpu_power)
            res = s.apply(plan, force=force)
        if as_json:
            print_json({"plan": plan, "result": res})
        else:
            render.render_apply(res, plan, console())

    def with_engine(root: str, journal: str | None, op: Callable[[Any], Any]) -> Any:
        """Run one journal operation in a session; tuner errors become one-line user errors."""
        with open_tune_session(deps, root, journal) as s, user_errors():
            return op(s.engine)

    @tune.command("verify")
    def verify_cmd(root: RootOpt = "/", journal: JournalOpt = None, as_json: JsonOpt = False) -> None:
        """Per-knob diff of what the journal says nodetune set vs the live node (exit 1 if a held knob moved)."""
        rep = with_engine(root, journal, lambda e: e.verify())
        if as_json:
            print_json(rep)
        else:
            render.render_verify(rep, console())
        if rep.exit_code or any(r.status in ("drifted", "absent") or (r.active and r.status == "restored")
                                for r in rep.rows):
            raise typer.Exit(1)  # what nodetune holds is no longer what it set, or a change is lost

    @tune.command("rollback")
    def rollback_cmd(root: RootOpt = "/", journal: JournalOpt = None,
                     txn: Annotated[str | None, typer.Option("--txn",
                                                             help="Roll back only this transaction "
                                                                  "(id or prefix).")] = None,
                     force: Annotated[bool, typer.Option("--force",
                                                         help="Also restore knobs someone changed after nodetune "
                                                              "set them, and give up on changes whose journal "
                                                              "lines are lost.")] = False,
                     as_json: JsonOpt = False) -> None:
        """Restore every original value nodetune changed, newest first (safe to re-run)."""
        res = with_engine(root, journal, lambda e: e.rollback(txn, force=force))
        if as_json:
            print_json(res)
        else:
            render.render_rollback(res, console())
        if res.failed:
            f = res.failed[0]
            what = {"drifted": "changed by someone after nodetune set it; left alone (--force restores it)",
                    "held": "changed later by another transaction; roll that back first",
                    "lost": "its journal line is damaged; restore it by hand (--force gives up on it)"}
            why = what.get(f.outcome, f"could not restore {f.original}: {f.reason}")
            raise UserError(f"{f.knob.label}: {why}"
                            + (f" (and {len(res.failed) - 1} more)" if len(res.failed) > 1 else "")
                            + "; it stays in the journal, run rollback again once fixed")

    @tune.command("status")
    def status_cmd(root: RootOpt = "/", journal: JournalOpt = None, as_json: JsonOpt = False) -> None:
        """What nodetune changed on this node, and when."""
        rep = with_engine(root, journal, lambda e: e.status())
        if as_json:
            print_json(rep)
        else:
            render.render_status(rep, console())
        if rep.exit_code:
            raise typer.Exit(rep.exit_code)  # a lost change: the node may hold knobs the journal cannot name

    @tune.command("compact")
    def compact_cmd(root: RootOpt = "/", journal: JournalOpt = None, as_json: JsonOpt = False) -> None:
        """Fold finished transactions into one record (apply and rollback do it past 1 MiB)."""
        res = with_engine(root, journal, lambda e: e.compact())
        if as_json:
            print_json(res)
        elif res.skipped:
            typer.echo(f"nothing compacted: {res.skipped}")
        else:
            typer.echo(f"folded {res.folded} finished transaction(s): {res.lines_before} -> {res.lines_after} lines, "
                       f"{res.size_before >> 10} -> {res.size_after >> 10} KiB ({res.path})")

    @tune.command("recommend")
    def recommend_cmd(root: RootOpt = "/", journal: JournalOpt = None,
                      advice: Annotated[str | None, typer.Option("--advice", metavar="REPORT.json",
                                                                 help="A report written by `nodetune diagnose --json` "
                                                                      "instead of a live diagnosis.")] = None,
                      seconds: SecondsOpt = 10.0,
                      allow_lower: AllowLowerOpt = False, allow_gpu_power: AllowGpuOpt = False,
                      as_json: JsonOpt = False, replay: ReplayOpt = None) -> None:
        """Turn the current diagnosis's advice into a plan (nothing is applied)."""
        from nodetune.tuners.profiles import load_profile
        from nodetune.tuners.recommend import advice_items, profile_from_advice

        if advice is not None and replay is not None:
            raise UserError("--advice and --replay: give one (a report, or a snapshot to diagnose)")
        if advice is not None:
            items = advice_items(read_report_advice(advice))
        elif replay is not None:
            items = advice_items(replay_advice(replay))
        else:
            items = advice_items((deps.diagnose or live_advice)(root, seconds))
        with open_tune_session(deps, root, journal) as s, user_errors():
            prof, notes = profile_from_advice(items, lambda name: load_profile(s.ctx.host, name))
            plan = s.plan(prof, allow_lower=allow_lower, allow_gpu_power=allow_gpu_power)
        plan.notes[:0] = notes
        if as_json:
            print_json(plan)
            return
        con = console()
        if not plan.changes:
            con.print("the diagnosis asks for no tuning a tuner can do")
            for n in plan.notes:
                con.print(f"  note: {n}")
            return
        render.render_plan(plan, con)
        con.print("apply it with `nodetune tune apply` and the same targets, or save it as a profile")

    @tune.command("hold-latency")
    def hold_latency_cmd(us: Annotated[int, typer.Option("--us", parser=number(0, 10**7, integer=True), metavar="US",
                                                         help="Maximum C-state exit latency, microseconds "
                                                              "(0: stay in C0/C1).")],
                         root: RootOpt = "/") -> None:
        """Hold a C-state latency cap via /dev/cpu_dma_latency until SIGTERM/SIGINT (run it as a service)."""
        from nodetune.tuners.knobs.power import hold_latency

        def ready() -> None:
            typer.echo(f"holding C-state latency cap {us} us (pid {os.getpid()}); SIGTERM or Ctrl-C releases it",
                       err=True)
            deps.ready()

        with user_errors():
            sig = hold_latency(Host(root), us, ready)
        typer.echo(f"released the latency cap (signal {sig})", err=True)

    return tune


def build_exec(deps: TuneDeps) -> Callable[..., None]:
    def exec_cmd(gpu: Annotated[int, typer.Option("--gpu", parser=number(0, 4095, integer=True), metavar="N",
                                                  help="Run on this GPU's local CPUs and NUMA node.")],
                 cmd: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
                 root: RootOpt = "/",
                 strict: Annotated[bool, typer.Option("--strict",
                                                      help="Refuse to start without libnuma's memory policy.")] = False,
                 dry_run: Annotated[bool, typer.Option("--dry-run",
                                                       help="Print the binding; do not bind or run.")] = False) -> None:
        """Run CMD bound to GPU N's local CPUs with memory preferred on its NUMA node (GPU-aware numactl)."""
        from nodetune.probes.cpufreq import online_cpus
        from nodetune.tuners.exec_numa import bind, binding_for_gpu, load_libnuma, run

        with open_tune_session(deps, root, None) as s, user_errors():
            allowed = sorted(os.sched_getaffinity(0)) if s.ctx.host.live else online_cpus(s.ctx.host)
            b = binding_for_gpu(s.ctx.host, s.ctx.gpus, gpu, allowed)
        if dry_run:
            typer.echo(f"GPU {b.gpu} ({b.address}): CPUs {format_cpulist(b.cpus)}, NUMA node "
                       f"{b.numa_node if b.numa_node is not None else 'unknown'}; would run: {' '.join(cmd)}")
            for n in b.notes:
                typer.echo(f"note: {n}")
            return
        with user_errors():
            for line in bind(b, strict, deps.set_affinity, deps.libnuma or load_libnuma):
                typer.echo(f"nodetune exec: {line}", err=True)
            run(list(cmd), deps.execvp)

    return exec_cmd


def register(app: typer.Typer, deps: TuneDeps | None = None) -> None:
    """Add `tune ...` and `exec` to the main app."""
    deps = deps or TuneDeps()
    app.add_typer(build_tune_app(deps), name="tune", help=tune_help())
    app.command("exec", context_settings={"allow_interspersed_args": False})(build_exec(deps))
