"""`nodetune tune ...` and `nodetune exec`: plan, apply, verify, roll back and hold tuning.

`register(app)` mounts the commands on the main app. Tuner errors (nodetune.tuners.base.TuneError)
become `UserError`: one line, exit 2, and nothing changed (a failed apply has rolled back).
Everything a test needs to replace (NVML, thread affinity, the diagnosis, exec) comes in through
`TuneDeps`, so tests run the real commands against fake node trees.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer

from nodetune.probes.host import Host, format_cpulist, parse_cpulist

from .errors import UserError

RootOpt = Annotated[str, typer.Option("--root", help="Act on the node under this root (a fake tree or a mounted image).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JournalOpt = Annotated[str | None, typer.Option("--journal", help="Journal file on this machine (default: /var/lib/nodetune/journal.jsonl under --root).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="Profile name (see `tune profiles`) or a .toml file.")]
PidOpt = Annotated[list[int] | None, typer.Option("--pid", help="Pin this process (and its children); repeatable.")]
CgroupOpt = Annotated[list[str] | None, typer.Option("--cgroup", help="Pin every process of this cgroup; repeatable.")]
GpuJobsOpt = Annotated[bool, typer.Option("--gpu-jobs", help="Pin every process NVML sees on a GPU.")]
GpuOpt = Annotated[list[int] | None, typer.Option("--gpu", help="The GPU(s) the --pid/--cgroup processes use, when NVML cannot tell.")]
PinCpusOpt = Annotated[str | None, typer.Option("--pin-cpus", help="Pin to this CPU list instead of the GPUs' local CPUs.")]
DataPathOpt = Annotated[list[str] | None, typer.Option("--data-path", help="A data directory whose disks get the readahead settings; repeatable.")]
AllowLowerOpt = Annotated[bool, typer.Option("--allow-lower", help="Lower numeric knobs the host already set higher.")]
AllowGpuOpt = Annotated[bool, typer.Option("--allow-gpu-power", help="Allow GPU power-limit and clock changes the profile asks for.")]


@dataclass
class TuneDeps:
    """What the tune commands act through; the defaults are the real node's."""

    nvml: Any = None  # a pynvml-shaped module; None: pynvml on the live root, no NVML under a fake root
    affinity: Any = None  # tuners.affinity.Affinity; None: the kernel's (live) or the tree's (fake root)
    diagnose: Callable[[str, float], Iterable[Any]] | None = None  # (root, seconds) -> advice items
    set_affinity: Callable[[int, Sequence[int]], None] = os.sched_setaffinity
    libnuma: Callable[[], Any] | None = None
    execvp: Callable[[str, list[str]], Any] = os.execvp
    ready: Callable[[], None] = field(default=lambda: None)  # hold-latency: called once the cap is held
    host: Callable[[str], Host] = Host  # how a root becomes a Host (tests inject a failing kernel)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Tuner errors as one-line user errors."""
    from nodetune.tuners.base import TuneError

    try:
        yield
    except TuneError as exc:
        raise UserError(exc.reason) from None


def _print_json(obj: object) -> None:
    from nodetune.probes.serde import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(obj), indent=1) + "\n")


def _console() -> Any:
    from rich.console import Console

    return Console(emoji=False, highlight=False, soft_wrap=False, width=max(100, min(200, _term_width())))


def _term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


class _Session:
    """One command's node, journal and GPU access."""

    def __init__(self, deps: TuneDeps, root: str, journal: str | None) -> None:
        from nodetune.tuners.affinity import affinity_for
        from nodetune.tuners.base import TuneContext
        from nodetune.tuners.gpu_control import GpuControl
        from nodetune.tuners.journal import DEFAULT_JOURNAL, Journal

        if not os.path.isdir(root):
            raise UserError(f"--root {root}: not a directory")
        host = deps.host(root)
        if deps.nvml is not None:
            gpus = GpuControl(deps.nvml)
        elif host.live:
            gpus = GpuControl(None)  # pynvml, loaded only if a tuner asks a GPU question
        else:
            gpus = GpuControl.disabled(f"--root {root}: NVML describes the live node only")
        self.ctx = TuneContext(host, deps.affinity or affinity_for(host), gpus)
        self.journal = Journal(journal or host.path(DEFAULT_JOURNAL))

    def close(self) -> None:
        self.ctx.gpus.close()

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_overrides(prof: Any, pids: list[int] | None, cgroups: list[str] | None, gpu_jobs: bool,
                    gpus: list[int] | None, pin_cpus: str | None, data_paths: list[str] | None) -> Any:
    """The profile with the command line's targets added (pids, cgroups, data paths)."""
    from nodetune.tuners.base import ProfileError
    from nodetune.tuners.pinning import PinningParams
    from nodetune.tuners.readahead import ReadaheadParams

    if pids or cgroups or gpu_jobs or gpus or pin_cpus:
        pin = prof.pinning or PinningParams()
        pin.pids = sorted(set(pin.pids) | set(pids or []))
        pin.cgroups = list(dict.fromkeys([*pin.cgroups, *(cgroups or [])]))
        pin.gpu_jobs = pin.gpu_jobs or gpu_jobs
        if gpus:
            pin.gpus = list(gpus)
        if pin_cpus:
            pin.cpus = pin_cpus
        prof.pinning = pin
    if data_paths:
        ra = prof.readahead or ReadaheadParams()
        ra.paths = list(dict.fromkeys([*ra.paths, *data_paths]))
        prof.readahead = ra
    for name in ("pinning", "readahead"):
        params = getattr(prof, name)
        problems = params.check() if params is not None else []
        if problems:
            raise ProfileError(f"command line: [{name}] {problems[0]}")
    return prof


def _load(s: _Session, profile: str | None, overrides: dict[str, Any]) -> Any:
    from nodetune.tuners.profiles import Profile, list_profiles, load_profile

    if profile is None:
        if not any(v for v in overrides.values()):
            names = ", ".join(p.name for p in list_profiles(s.ctx.host))
            raise UserError(f"give --profile NAME (available: {names}) or targets such as --pid")
        prof = Profile(name="command-line", source="command line")
    else:
        prof = load_profile(s.ctx.host, profile)
    return _with_overrides(prof, **overrides)


def _make_plan(s: _Session, prof: Any, allow_lower: bool, allow_gpu_power: bool) -> Any:
    from nodetune.tuners.config import load_tune_config
    from nodetune.tuners.plan import make_plan

    cfg = load_tune_config(s.ctx.host)
    state = s.journal.load()
    plan = make_plan(s.ctx, prof, state, allow_lower=allow_lower,
                     allow_gpu_power=allow_gpu_power or cfg.allow_gpu_power)
    plan.warnings[:0] = state.warnings
    return plan


# -- rendering ------------------------------------------------------------------------------------

_CPU_LABEL = re.compile(r"^(.*\bcpu)([\d,\-]+)$")


def _merge_labels(labels: list[str]) -> str:
    """One label for a group of rows: "governor cpu0-223", "affinity pid 42 (python), 57 threads"."""
    if len(labels) == 1:
        return labels[0]
    ms = [_CPU_LABEL.match(lb) for lb in labels]
    if all(ms) and len({m.group(1) for m in ms if m}) == 1:
        cpus = sorted({c for m in ms if m for c in parse_cpulist(m.group(2))})
        return f"{ms[0].group(1) if ms[0] else ''}{format_cpulist(cpus)}"
    m = re.match(r"^affinity pid (\d+)", labels[0])
    if m and all(lb.startswith(f"affinity pid {m.group(1)}") for lb in labels):
        comm = re.search(r"\(([^)]*)\)$", labels[0])
        return f"affinity pid {m.group(1)}{f' ({comm.group(1)})' if comm else ''}, {len(labels)} threads"
    heads = {lb.rsplit(" ", 1)[0] for lb in labels}
    if len(heads) == 1 and len(labels) <= 8 and all(" " in lb for lb in labels):
        return f"{heads.pop()} {', '.join(lb.rsplit(' ', 1)[1] for lb in labels)}"
    return f"{labels[0]} (+{len(labels) - 1} more)"


def _grouped(rows: list[Any], key: Callable[[Any], tuple[Any, ...]], label: Callable[[Any], str]) -> list[tuple[str, Any]]:
    """Collapse rows that say the same thing (224 governors, 60 threads of one process)."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return [(_merge_labels([label(r) for r in g]), g[0]) for g in groups.values()]


def _val(v: str | None, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v} {unit}".strip() if unit and v.lstrip("-").isdigit() else v


def _render_plan(plan: Any, con: Any) -> None:
    from rich.table import Table

    t = Table(title=f"plan: {plan.profile} ({plan.source})", title_justify="left")
    for col in ("tuner", "knob", "current", "target", "action", "why / warnings"):
        t.add_column(col, overflow="fold")
    style = {"change": "bold yellow", "keep": "green", "skip": "dim", "hold": "cyan"}
    rows = _grouped(plan.changes,
                    lambda c: (c.tuner, c.knob.group, c.knob.pid, c.current, c.target, c.action, c.reason, tuple(c.warnings)),
                    lambda c: c.knob.label)
    for label, c in rows:
        why = "; ".join([c.reason] * bool(c.reason) + [f"[red]warning:[/red] {w}" for w in c.warnings])
        t.add_row(c.tuner, label, _val(c.current, c.knob.unit), _val(c.target, c.knob.unit),
                  f"[{style.get(c.action, '')}]{c.action}[/]", why)
    con.print(t)
    con.print(f"{plan.count('change')} to change, {plan.count('keep')} kept, {plan.count('skip')} skipped"
              + (f", {plan.count('hold')} held by a process" if plan.count("hold") else ""))
    for n in plan.notes:
        con.print(f"  note: {n}")
    for w in plan.warnings:
        con.print(f"  [red]warning:[/red] {w}")


def _render_apply(res: Any, plan: Any, con: Any) -> None:
    from rich.table import Table

    if not res.txn:
        con.print(f"nothing to change: {plan.count('keep')} knob(s) already as profile {plan.profile} wants")
    else:
        t = Table(title=f"applied {plan.profile}: transaction {res.txn} (journal {res.journal})", title_justify="left")
        for col in ("tuner", "knob", "was", "now"):
            t.add_column(col, overflow="fold")
        for label, a in _grouped(res.applied, lambda a: (a.tuner, a.knob.group, a.knob.pid, a.original, a.actual),
                                 lambda a: a.knob.label):
            t.add_row(a.tuner, label, _val(a.original, a.knob.unit), _val(a.actual, a.knob.unit))
        con.print(t)
        con.print(f"{len(res.applied)} change(s) applied; undo with `nodetune tune rollback`")
    for u in res.unchanged:
        con.print(f"  already at target when reached: {u}")
    for g in res.gone:
        con.print(f"  skipped, gone: {g}")
    for w in res.warnings:
        con.print(f"  [red]warning:[/red] {w}")
    for c in plan.changes:
        if c.action == "hold":
            con.print(f"  [cyan]not applied:[/cyan] {c.knob.label} {c.target} {c.knob.unit}: {c.reason}")


def _render_verify(rep: Any, con: Any) -> None:
    from rich.table import Table

    t = Table(title=f"verify: what nodetune set vs the live node ({rep.journal})", title_justify="left")
    for col in ("txn", "knob", "original", "nodetune set", "live", "status"):
        t.add_column(col, overflow="fold")
    style = {"ok": "green", "drifted": "bold red", "restored": "cyan"}
    for label, r in _grouped(rep.rows, lambda r: (r.txn, r.knob.group, r.knob.pid, r.original, r.set_value, r.live, r.status),
                             lambda r: r.knob.label):
        st = f"[{style.get(r.status, 'yellow')}]{r.status}[/]" + (f" ({r.note})" if r.note else "")
        t.add_row(r.txn, label, _val(r.original, r.knob.unit), _val(r.set_value, r.knob.unit),
                  _val(r.live, r.knob.unit), st)
    if rep.rows:
        con.print(t)
    else:
        con.print("nothing to verify: the journal holds no changes")
    for w in rep.warnings:
        con.print(f"  [red]warning:[/red] {w}")


def _render_status(rep: Any, con: Any) -> None:
    from rich.table import Table

    if not rep.txns:
        con.print(f"nodetune has changed nothing on this node (journal {rep.journal})")
    else:
        t = Table(title=f"transactions ({rep.journal})", title_justify="left")
        for col in ("txn", "started", "profile", "state", "changes", "still set"):
            t.add_column(col)
        for x in rep.txns:
            t.add_row(x.txn, _when(x.started), x.profile or "-", x.state, str(x.changes), str(x.active))
        con.print(t)
    if rep.active:
        t = Table(title="knobs nodetune holds now", title_justify="left")
        for col in ("knob", "original", "set to", "since", "txn"):
            t.add_column(col, overflow="fold")
        for label, a in _grouped(rep.active, lambda a: (a.txn, a.knob.group, a.knob.pid, a.original, a.set_value),
                                 lambda a: a.knob.label):
            t.add_row(label, _val(a.original, a.knob.unit), _val(a.set_value, a.knob.unit), _when(a.since), a.txn)
        con.print(t)
    for w in rep.warnings:
        con.print(f"  [red]warning:[/red] {w}")


def _render_rollback(res: Any, con: Any) -> None:
    from rich.table import Table

    if not res.rows:
        con.print(f"nothing to roll back (journal {res.journal})")
    else:
        t = Table(title=f"rollback ({res.journal})", title_justify="left")
        for col in ("txn", "knob", "restored to", "outcome"):
            t.add_column(col, overflow="fold")
        for label, r in _grouped(res.rows, lambda r: (r.txn, r.knob.group, r.knob.pid, r.original, r.outcome, r.reason),
                                 lambda r: r.knob.label):
            t.add_row(r.txn, label, _val(r.original, r.knob.unit), r.outcome + (f": {r.reason}" if r.reason else ""))
        con.print(t)
    for w in res.warnings:
        con.print(f"  [red]warning:[/red] {w}")


# -- diagnosis ------------------------------------------------------------------------------------

def _live_diagnosis(root: str, seconds: float) -> Iterable[Any]:
    """Advice items from a live diagnosis (nodetune.agent.diagnosis.diagnose_live)."""
    try:
        from .config import load_config
        from .diagnosis import diagnose_live
        from .source import open_source
    except ImportError as exc:
        raise UserError(f"the diagnosis engine is not available in this build ({exc}); use "
                        "`nodetune tune recommend --advice FILE.json` or `tune plan --profile NAME`") from None
    src = open_source(root)
    try:
        _, report = diagnose_live(src.host, src.backend, src.status, load_config(src.host), seconds, 1.0,
                                  stacks=False)
    finally:
        src.close()
    return [a for f in report.findings for a in f.advice]


# -- commands -------------------------------------------------------------------------------------

def build_tune_app(deps: TuneDeps) -> typer.Typer:
    """The `tune` sub-app over `deps`."""
    tune = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       help="Plan, apply, verify and roll back journaled tuning (pinning, huge pages, readahead, power).")

    @tune.command("profiles")
    def profiles_cmd(root: RootOpt = "/", as_json: JsonOpt = False) -> None:
        """List the profiles a name can reach (node profiles in /etc/nodetune/profiles first)."""
        from nodetune.tuners.profiles import list_profiles

        items = list_profiles(Host(root))
        if as_json:
            _print_json(items)
            return
        for p in items:
            typer.echo(f"{p.name:<22} {p.description}  ({p.source})")

    @tune.command("plan")
    def plan_cmd(profile: ProfileOpt = None, root: RootOpt = "/", journal: JournalOpt = None, pid: PidOpt = None,
                 cgroup: CgroupOpt = None, gpu_jobs: GpuJobsOpt = False, gpu: GpuOpt = None, pin_cpus: PinCpusOpt = None,
                 data_path: DataPathOpt = None, allow_lower: AllowLowerOpt = False,
                 allow_gpu_power: AllowGpuOpt = False, as_json: JsonOpt = False) -> None:
        """Show each knob's current value, the profile's target and what apply would do."""
        with _Session(deps, root, journal) as s, _user_errors():
            prof = _load(s, profile, dict(pids=pid, cgroups=cgroup, gpu_jobs=gpu_jobs, gpus=gpu,
                                          pin_cpus=pin_cpus, data_paths=data_path))
            plan = _make_plan(s, prof, allow_lower, allow_gpu_power)
        if as_json:
            _print_json(plan)
        else:
            _render_plan(plan, _console())

    @tune.command("apply")
    def apply_cmd(profile: ProfileOpt = None, root: RootOpt = "/", journal: JournalOpt = None, pid: PidOpt = None,
                  cgroup: CgroupOpt = None, gpu_jobs: GpuJobsOpt = False, gpu: GpuOpt = None,
                  pin_cpus: PinCpusOpt = None, data_path: DataPathOpt = None, allow_lower: AllowLowerOpt = False,
                  allow_gpu_power: AllowGpuOpt = False,
                  force: Annotated[bool, typer.Option("--force", help="Apply even where TuneD or power-profiles-daemon manages a knob.")] = False,
                  as_json: JsonOpt = False) -> None:
        """Apply a profile as one journaled transaction (rolled back if any knob fails)."""
        from nodetune.tuners.base import ConflictError
        from nodetune.tuners.transaction import Engine

        with _Session(deps, root, journal) as s, _user_errors():
            prof = _load(s, profile, dict(pids=pid, cgroups=cgroup, gpu_jobs=gpu_jobs, gpus=gpu,
                                          pin_cpus=pin_cpus, data_paths=data_path))
            plan = _make_plan(s, prof, allow_lower, allow_gpu_power)
            clash = plan.conflicting()
            if clash and not force:
                raise ConflictError(f"{plan.warnings[-1] if plan.warnings else clash[0].who}; nothing changed")
            res = Engine(s.ctx, s.journal).apply(plan.changes, prof.name)
        if as_json:
            _print_json({"plan": plan, "result": res})
        else:
            _render_apply(res, plan, _console())

    def with_engine(root: str, journal: str | None, op: Callable[[Any], Any]) -> Any:
        """Run one journal operation in a session; tuner errors become one-line user errors."""
        from nodetune.tuners.transaction import Engine

        with _Session(deps, root, journal) as s, _user_errors():
            return op(Engine(s.ctx, s.journal))

    @tune.command("verify")
    def verify_cmd(root: RootOpt = "/", journal: JournalOpt = None, as_json: JsonOpt = False) -> None:
        """Per-knob diff of what the journal says nodetune set vs the live node (exit 1 if a held knob moved)."""
        rep = with_engine(root, journal, lambda e: e.verify())
        if as_json:
            _print_json(rep)
        else:
            _render_verify(rep, _console())
        if any(r.status in ("drifted", "absent") or (r.active and r.status == "restored") for r in rep.rows):
            raise typer.Exit(1)  # what nodetune holds is no longer what it set

    @tune.command("rollback")
    def rollback_cmd(root: RootOpt = "/", journal: JournalOpt = None,
                     txn: Annotated[str | None, typer.Option("--txn", help="Roll back only this transaction (id or prefix).")] = None,
                     as_json: JsonOpt = False) -> None:
        """Restore every original value nodetune changed, newest first (safe to re-run)."""
        res = with_engine(root, journal, lambda e: e.rollback(txn))
        if as_json:
            _print_json(res)
        else:
            _render_rollback(res, _console())
        if res.failed:
            f = res.failed[0]
            raise UserError(f"{f.knob.label}: could not restore {f.original}: {f.reason}"
                            + (f" (and {len(res.failed) - 1} more)" if len(res.failed) > 1 else "")
                            + "; it stays in the journal, run rollback again once fixed")

    @tune.command("status")
    def status_cmd(root: RootOpt = "/", journal: JournalOpt = None, as_json: JsonOpt = False) -> None:
        """What nodetune changed on this node, and when."""
        rep = with_engine(root, journal, lambda e: e.status())
        if as_json:
            _print_json(rep)
        else:
            _render_status(rep, _console())

    @tune.command("recommend")
    def recommend_cmd(root: RootOpt = "/", journal: JournalOpt = None,
                      advice: Annotated[str | None, typer.Option("--advice", help="JSON file with advice items instead of a live diagnosis.")] = None,
                      seconds: Annotated[float, typer.Option("--seconds", min=1, max=600, help="Length of the live diagnosis window.")] = 10.0,
                      allow_lower: AllowLowerOpt = False, allow_gpu_power: AllowGpuOpt = False,
                      as_json: JsonOpt = False) -> None:
        """Turn the current diagnosis's advice into a plan (nothing is applied)."""
        from nodetune.tuners.profiles import load_profile
        from nodetune.tuners.recommend import advice_items, profile_from_advice

        if advice is not None:
            try:
                with open(advice, encoding="utf-8") as fh:
                    raw = json.load(fh)
            except (OSError, json.JSONDecodeError) as exc:
                raise UserError(f"{advice}: cannot read advice: {exc}") from None
            if isinstance(raw, dict):
                raw = raw.get("advice", [])
            if not isinstance(raw, list):
                raise UserError(f"{advice}: expected a list of advice items")
            items = advice_items(raw)
        else:
            items = advice_items((deps.diagnose or _live_diagnosis)(root, seconds))
        with _Session(deps, root, journal) as s, _user_errors():
            prof, notes = profile_from_advice(items, lambda name: load_profile(s.ctx.host, name))
            plan = _make_plan(s, prof, allow_lower, allow_gpu_power)
        plan.notes[:0] = notes
        if as_json:
            _print_json(plan)
            return
        con = _console()
        if not plan.changes:
            con.print("the diagnosis asks for no tuning a tuner can do")
            for n in plan.notes:
                con.print(f"  note: {n}")
            return
        _render_plan(plan, con)
        con.print("apply it with `nodetune tune apply` and the same targets, or save it as a profile")

    @tune.command("hold-latency")
    def hold_latency_cmd(us: Annotated[int, typer.Option("--us", min=0, help="Maximum C-state exit latency, microseconds (0: stay in C0/C1).")],
                         root: RootOpt = "/") -> None:
        """Hold a C-state latency cap via /dev/cpu_dma_latency until SIGTERM/SIGINT (run it as a service)."""
        from nodetune.tuners.power import hold_latency

        def ready() -> None:
            typer.echo(f"holding C-state latency cap {us} us (pid {os.getpid()}); SIGTERM or Ctrl-C releases it",
                       err=True)
            deps.ready()

        with _user_errors():
            sig = hold_latency(Host(root), us, ready)
        typer.echo(f"released the latency cap (signal {sig})", err=True)

    return tune


def build_exec(deps: TuneDeps) -> Callable[..., None]:
    def exec_cmd(gpu: Annotated[int, typer.Option("--gpu", help="Run on this GPU's local CPUs and NUMA node.")],
                 cmd: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
                 root: RootOpt = "/",
                 strict: Annotated[bool, typer.Option("--strict", help="Refuse to start without libnuma's memory policy.")] = False,
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the binding; do not bind or run.")] = False) -> None:
        """Run CMD bound to GPU N's local CPUs with memory preferred on its NUMA node (GPU-aware numactl)."""
        from nodetune.probes.cpufreq import online_cpus
        from nodetune.tuners.exec_numa import bind, binding_for_gpu, load_libnuma, run

        with _Session(deps, root, None) as s, _user_errors():
            allowed = sorted(os.sched_getaffinity(0)) if s.ctx.host.live else online_cpus(s.ctx.host)
            b = binding_for_gpu(s.ctx.host, s.ctx.gpus, gpu, allowed)
        if dry_run:
            typer.echo(f"GPU {b.gpu} ({b.address}): CPUs {format_cpulist(b.cpus)}, NUMA node "
                       f"{b.numa_node if b.numa_node is not None else 'unknown'}; would run: {' '.join(cmd)}")
            for n in b.notes:
                typer.echo(f"note: {n}")
            return
        with _user_errors():
            for line in bind(b, strict, deps.set_affinity, deps.libnuma or load_libnuma):
                typer.echo(f"nodetune exec: {line}", err=True)
            run(list(cmd), deps.execvp)

    return exec_cmd


def register(app: typer.Typer, deps: TuneDeps | None = None) -> None:
    """Add `tune ...` and `exec` to the main app."""
    deps = deps or TuneDeps()
    app.add_typer(build_tune_app(deps), name="tune",
                  help="Plan, apply, verify and roll back journaled tuning (pinning, huge pages, readahead, power).")
    app.command("exec", context_settings={"allow_interspersed_args": False})(build_exec(deps))

