"""Tables for the `tune` commands: plan, apply, verify, status and rollback, rows that say the
same thing grouped (224 governors, 60 threads of one process).

Every string that came from the node or the journal (a thread's name, a command line in a warning,
a knob's value) goes through `escape`: control characters written out (`\r`, `\x1b`), markup
literal, so none can forge a line or a colour in the output."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nodetune.probes.host import format_cpulist, parse_cpulist

from .output import escape


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


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


def _grouped(rows: list[Any], key: Callable[[Any], tuple[Any, ...]],
             label: Callable[[Any], str]) -> list[tuple[str, Any]]:
    """Collapse rows that say the same thing (224 governors, 60 threads of one process)."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return [(_merge_labels([label(r) for r in g]), g[0]) for g in groups.values()]


def _val(v: str | None, unit: str = "") -> str:
    """A knob's value for a cell (escaped)."""
    if v is None:
        return "-"
    return _e(f"{v} {unit}".strip() if unit and v.lstrip("-").isdigit() else v)


def _e(x: object) -> str:
    """A value from the node or the journal, safe in a rich cell or line."""
    return escape(x if isinstance(x, str) else str(x))


def _warn(w: str) -> str:
    return f"[red]warning:[/red] {_e(w)}"


def render_plan(plan: Any, con: Any) -> None:
    from rich.table import Table

    t = Table(title=f"plan: {_e(plan.profile)} ({_e(plan.source)})", title_justify="left")
    for col in ("tuner", "knob", "current", "target", "action", "why / warnings"):
        t.add_column(col, overflow="fold")
    style = {"change": "bold yellow", "keep": "green", "skip": "dim", "hold": "cyan"}
    rows = _grouped(plan.changes,
                    lambda c: (c.tuner, c.knob.group, c.knob.pid, c.current, c.target, c.action, c.reason,
                               tuple(c.warnings)),
                    lambda c: c.knob.label)
    for label, c in rows:
        why = "; ".join([_e(c.reason)] * bool(c.reason) + [_warn(w) for w in c.warnings])
        t.add_row(_e(c.tuner), _e(label), _val(c.current, c.knob.unit), _val(c.target, c.knob.unit),
                  f"[{style.get(c.action, '')}]{_e(c.action)}[/]", why)
    con.print(t)
    con.print(f"{plan.count('change')} to change, {plan.count('keep')} kept, {plan.count('skip')} skipped"
              + (f", {plan.count('hold')} held by a process" if plan.count("hold") else ""))
    for n in plan.notes:
        con.print(f"  note: {_e(n)}")
    for w in plan.warnings:
        con.print(f"  {_warn(w)}")


def render_apply(res: Any, plan: Any, con: Any) -> None:
    from rich.table import Table

    if not res.txn:
        con.print(f"nothing to change: {plan.count('keep')} knob(s) already as profile {_e(plan.profile)} wants")
    else:
        t = Table(title=f"applied {_e(plan.profile)}: transaction {_e(res.txn)} (journal {_e(res.journal)})",
                  title_justify="left")
        for col in ("tuner", "knob", "was", "now"):
            t.add_column(col, overflow="fold")
        for label, a in _grouped(res.applied, lambda a: (a.tuner, a.knob.group, a.knob.pid, a.original, a.actual),
                                 lambda a: a.knob.label):
            t.add_row(_e(a.tuner), _e(label), _val(a.original, a.knob.unit), _val(a.actual, a.knob.unit))
        con.print(t)
        con.print(f"{len(res.applied)} change(s) applied; undo with `nodetune tune rollback`")
    for u in res.unchanged:
        con.print(f"  already at target when reached: {_e(u)}")
    for g in res.gone:
        con.print(f"  skipped, gone: {_e(g)}")
    for w in res.warnings:
        con.print(f"  {_warn(w)}")
    for c in plan.changes:
        if c.action == "hold":
            con.print(f"  [cyan]not applied:[/cyan] {_e(f'{c.knob.label} {c.target} {c.knob.unit}: {c.reason}')}")


def render_verify(rep: Any, con: Any) -> None:
    from rich.table import Table

    t = Table(title=f"verify: what nodetune set vs the live node ({_e(rep.journal)})", title_justify="left")
    for col in ("txn", "knob", "original", "nodetune set", "live", "status"):
        t.add_column(col, overflow="fold")
    style = {"ok": "green", "drifted": "bold red", "restored": "cyan"}
    for label, r in _grouped(rep.rows,
                             lambda r: (r.txn, r.knob.group, r.knob.pid, r.original, r.set_value, r.live, r.status),
                             lambda r: r.knob.label):
        st = f"[{style.get(r.status, 'yellow')}]{_e(r.status)}[/]" + (f" ({_e(r.note)})" if r.note else "")
        t.add_row(_e(r.txn), _e(label), _val(r.original, r.knob.unit), _val(r.set_value, r.knob.unit),
                  _val(r.live, r.knob.unit), st)
    if rep.rows:
        con.print(t)
    else:
        con.print("nothing to verify: the journal holds no changes")
    for w in rep.warnings:
        con.print(f"  {_warn(w)}")


def render_status(rep: Any, con: Any) -> None:
    from rich.table import Table

    if not rep.txns:
        con.print(f"nodetune has changed nothing on this node (journal {_e(rep.journal)})")
    else:
        t = Table(title=f"transactions ({_e(rep.journal)})", title_justify="left")
        for col in ("txn", "started", "profile", "state", "changes", "still set"):
            t.add_column(col)
        for x in rep.txns:
            t.add_row(_e(x.txn), _when(x.started), _e(x.profile or "-"), _e(x.state), str(x.changes),
                      str(x.active))
        con.print(t)
    if rep.active:
        t = Table(title="knobs nodetune holds now", title_justify="left")
        for col in ("knob", "original", "set to", "since", "txn"):
            t.add_column(col, overflow="fold")
        for label, a in _grouped(rep.active, lambda a: (a.txn, a.knob.group, a.knob.pid, a.original, a.set_value),
                                 lambda a: a.knob.label):
            t.add_row(_e(label), _val(a.original, a.knob.unit), _val(a.set_value, a.knob.unit), _when(a.since),
                      _e(a.txn))
        con.print(t)
    for w in rep.warnings:
        con.print(f"  {_warn(w)}")


def render_rollback(res: Any, con: Any) -> None:
    from rich.table import Table

    if not res.rows:
        con.print(f"nothing to roll back (journal {_e(res.journal)})")
    else:
        t = Table(title=f"rollback ({_e(res.journal)})", title_justify="left")
        for col in ("txn", "knob", "restored to", "outcome"):
            t.add_column(col, overflow="fold")
        for label, r in _grouped(res.rows, lambda r: (r.txn, r.knob.group, r.knob.pid, r.original, r.outcome, r.reason),
                                 lambda r: r.knob.label):
            t.add_row(_e(r.txn), _e(label), _val(r.original, r.knob.unit),
                      _e(r.outcome + (f": {r.reason}" if r.reason else "")))
        con.print(t)
    for w in res.warnings:
        con.print(f"  {_warn(w)}")
