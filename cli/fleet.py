"""`nodetune fleet --prometheus URL`: the fleet's view, asked of the Prometheus that scrapes it.

No store of our own: every number comes from Prometheus's HTTP API (/api/v1/query) over the
agents' `nodetune_` series. It answers, for a time range:
- GPU-hours lost per node and per job, by verdict: a job's seconds under each verdict
  (`nodetune_job_verdict_seconds_total`) times the GPUs it holds (`nodetune_job_gpu`); a node's
  from each GPU's verdict (`nodetune_gpu_verdict`, a state set) and idle share
  (`nodetune_gpu_idle_ratio`) averaged over the range;
- problems: PCIe links below their width (`nodetune_gpu_pcie_link_width` < `..._max_width`), GPUs
  lost (`nodetune_gpu_state{state="lost"}`, Xid 79), tuning that no longer holds (changes that
  failed to restore, an unreadable journal, applied changes that went away), agents down.
Exit 0: no problem; 1: problems found (scripts); 2: bad input or Prometheus unreachable.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from .errors import UserError
from .options import JsonOpt

# Lost GPU-hours are the agents' counters (agent/lost_hours.py defines them); this only names the
# verdicts that count as productive in the output.
PRODUCTIVE = frozenset({"compute_bound", "memory_bound"})


def parse_range(value: str | int) -> int:
    """The CLI's one duration grammar (90s, 30m, 1.5h, 7d, 1w) -> whole seconds for PromQL."""
    if isinstance(value, int):  # the default
        return value
    from nodetune.config.fields import parse_duration

    try:
        return max(1, round(parse_duration(value)))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _url(value: str) -> str:
    import urllib.parse  # here, not at the top: every command's start would pay for urllib and email

    u = urllib.parse.urlsplit(value)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise typer.BadParameter(f"expected an http(s)://HOST:PORT URL of a Prometheus server, got {value!r:.60}")
    return value.rstrip("/")


class Prometheus:
    """The few calls of the HTTP API this command makes; every failure is a UserError."""

    def __init__(self, base: str, timeout: float) -> None:
        self.base, self.timeout = base, timeout

    def query(self, promql: str) -> list[dict[str, Any]]:
        import urllib.error
        import urllib.parse
        import urllib.request

        data = urllib.parse.urlencode({"query": promql}).encode()
        req = urllib.request.Request(f"{self.base}/api/v1/query", data=data,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310 - the URL the user gave
                body = json.load(r)
        except urllib.error.HTTPError as exc:  # 400/422: Prometheus's own error in the body
            try:
                err = json.load(exc)
                detail = err.get("error") if isinstance(err, dict) else None
            except (ValueError, OSError):
                detail = None
            if not detail:  # no Prometheus error document: something else answers at that address
                raise UserError(f"{self.base}: not a Prometheus server (HTTP {exc.code} {exc.reason} for "
                                "/api/v1/query; give the Prometheus URL, e.g. http://HOST:9090, "
                                "not an agent's)") from None
            raise UserError(f"{self.base}: query failed (HTTP {exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"{self.base}: cannot reach Prometheus: {reason}") from None
        except ValueError:
            raise UserError(f"{self.base}: not a Prometheus API (the answer is not JSON)") from None
        if not isinstance(body, dict) or "status" not in body:
            raise UserError(f"{self.base}: not a Prometheus server (its answer to /api/v1/query has no status)")
        if body.get("status") != "success":
            raise UserError(f"{self.base}: query failed: {body.get('error', body) if isinstance(body, dict) else body}")
        result = body.get("data", {}).get("result", [])
        return [r for r in result if isinstance(r, dict)]


def _val(r: dict[str, Any]) -> float:
    try:
        v = float(r["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan
    return v


def _node(m: dict[str, str]) -> str:
    """The node's name: the `node` target label the role's file_sd sets, else the scrape address."""
    return m.get("node") or m.get("instance", "?")


def _job(m: dict[str, str]) -> str:
    """The agent's `job_id` label (`exported_job`: an agent from before the rename)."""
    return m.get("job_id") or m.get("exported_job", "?")


def _lost(row: dict[str, Any], m: dict[str, str], secs: float) -> None:
    """Add lost GPU-seconds of one (state, cause) series to a node's or job's row, in hours."""
    h = secs / 3600
    cause = m.get("cause", "?")
    row["by_cause"][cause] = row["by_cause"].get(cause, 0.0) + h
    row["gpu_hours_lost"] += h
    if m.get("state") == "idle":
        row["idle_gpu_hours"] += h


@dataclass
class FleetReport:
    prometheus: str
    range_s: int
    productive: list[str]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    pcie_degraded: list[dict[str, Any]] = field(default_factory=list)
    gpus_lost: list[dict[str, Any]] = field(default_factory=list)
    tuning: list[dict[str, Any]] = field(default_factory=list)
    agents_down: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.pcie_degraded) + len(self.gpus_lost) + len(self.tuning) + len(self.agents_down)


def collect(prom: Prometheus, range_s: int, node_re: re.Pattern[str] | None = None) -> FleetReport:
    rng = f"[{range_s}s]"
    keep = (lambda m: bool(node_re.search(_node(m)))) if node_re else (lambda m: True)
    rep = FleetReport(prom.base, range_s, sorted(PRODUCTIVE))

    # Per node, from counters of seconds (increase() over the range counts only the time the agent
    # was there): each GPU's seconds by verdict, and its lost GPU-seconds by state and cause.
    nodes: dict[str, dict[str, Any]] = {}

    def node(m: dict[str, str]) -> dict[str, Any]:
        return nodes.setdefault(_node(m), {"node": _node(m), "gpus": set(), "by_verdict": {}, "by_cause": {},
                                           "gpu_hours_lost": 0.0, "idle_gpu_hours": 0.0})

    for r in prom.query(f"increase(nodetune_gpu_verdict_seconds_total{rng})"):
        m, secs = r.get("metric", {}), _val(r)
        if not keep(m) or not secs > 0:
            continue
        n = node(m)
        n["gpus"].add(m.get("gpu", "?"))
        v = m.get("verdict", "?")
        n["by_verdict"][v] = n["by_verdict"].get(v, 0.0) + secs / 3600
    for r in prom.query(f"increase(nodetune_gpu_lost_seconds_total{rng})"):
        m, secs = r.get("metric", {}), _val(r)
        if not keep(m) or not secs > 0:
            continue
        n = node(m)
        n["gpus"].add(m.get("gpu", "?"))
        _lost(n, m, secs)
    for n in nodes.values():
        n["gpus"] = len(n["gpus"])
    rep.nodes = sorted(nodes.values(), key=lambda n: (-n["gpu_hours_lost"], n["node"]))

    # Per job: its GPUs' lost GPU-seconds by cause and its seconds under each verdict.
    gpus: dict[tuple[str, str], int] = {}
    for r in prom.query(f"max_over_time(nodetune_job_gpu{rng})"):
        m = r.get("metric", {})
        key = (_node(m), _job(m))
        gpus[key] = gpus.get(key, 0) + 1
    jobs: dict[tuple[str, str], dict[str, Any]] = {}

    def job(m: dict[str, str]) -> dict[str, Any]:
        key = (_node(m), _job(m))
        return jobs.setdefault(key, {"node": key[0], "job": key[1], "gpus": gpus.get(key, 0), "by_verdict": {},
                                     "by_cause": {}, "gpu_hours_lost": 0.0, "idle_gpu_hours": 0.0})

    for r in prom.query(f"increase(nodetune_job_verdict_seconds_total{rng})"):
        m, secs = r.get("metric", {}), _val(r)
        if keep(m) and secs > 0:
            j = job(m)
            v = m.get("verdict", "?")
            j["by_verdict"][v] = j["by_verdict"].get(v, 0.0) + secs / 3600  # hours of the job, not GPU-hours
    for r in prom.query(f"increase(nodetune_job_lost_gpu_seconds_total{rng})"):
        m, secs = r.get("metric", {}), _val(r)
        if keep(m) and secs > 0:
            _lost(job(m), m, secs)
    rep.jobs = sorted(jobs.values(), key=lambda j: (-j["gpu_hours_lost"], j["node"], j["job"]))

    # PCIe: the narrowest width seen in the range below the GPU's maximum (width never drops at
    # idle; the generation does, to save power, so it is not judged here).
    width = {(_node(r["metric"]), r["metric"].get("gpu", "?")): _val(r)
             for r in prom.query(f"min_over_time(nodetune_gpu_pcie_link_width{rng})") if keep(r.get("metric", {}))}
    for r in prom.query(f"max_over_time(nodetune_gpu_pcie_link_max_width{rng})"):
        key = (_node(r.get("metric", {})), r.get("metric", {}).get("gpu", "?"))
        if key in width and width[key] < _val(r):
            rep.pcie_degraded.append({"node": key[0], "gpu": key[1], "width": int(width[key]),
                                      "max_width": int(_val(r))})

    lost: dict[tuple[str, str], str] = {}
    for r in prom.query(f'max_over_time(nodetune_gpu_state{{state="lost"}}{rng}) == 1'):
        if keep(r.get("metric", {})):
            lost[(_node(r["metric"]), r["metric"].get("gpu", "?"))] = "fell off the bus (nodetune_gpu_state lost)"
    for r in prom.query(f'increase(nodetune_gpu_xid_errors_total{{code="79"}}{rng}) > 0'):
        if keep(r.get("metric", {})):
            lost.setdefault((_node(r["metric"]), r["metric"].get("gpu", "?")), "Xid 79 (GPU fell off the bus)")
    rep.gpus_lost = [{"node": n, "gpu": g, "reason": why} for (n, g), why in sorted(lost.items())]

    tuning: list[dict[str, Any]] = []
    for r in prom.query(f'max_over_time(nodetune_tuning_journal_changes{{state="restore_failed"}}{rng}) > 0'):
        if keep(r.get("metric", {})):
            tuning.append({"node": _node(r["metric"]), "reason": f"{int(_val(r))} change(s) could not be restored "
                           "(`nodetune tune rollback` on the node names them)"})
    for r in prom.query(f"min_over_time(nodetune_tuning_journal_readable{rng}) == 0"):
        if keep(r.get("metric", {})):
            tuning.append({"node": _node(r["metric"]),
                           "reason": "tuning journal unreadable (nodetune_tuning_journal_readable 0)"})
    # Changes nodetune applied that went away within the range: rolled back, or knobs that moved.
    applied = "sum by (instance, node) (nodetune_tuning_changes_applied)"
    peak = {_node(r["metric"]): _val(r) for r in prom.query(f"max_over_time(({applied})[{range_s}s:])")}
    for r in prom.query(applied):
        name = _node(r.get("metric", {}))
        if keep(r.get("metric", {})) and name in peak and _val(r) < peak[name]:
            tuning.append({"node": name,
                           "reason": f"applied tuning changes fell from {int(peak[name])} to {int(_val(r))}"})
    rep.tuning = sorted(tuning, key=lambda t: (t["node"], t["reason"]))

    for r in prom.query('up{job="nodetune"} == 0'):
        if keep(r.get("metric", {})):
            rep.agents_down.append({"node": _node(r["metric"]), "instance": r["metric"].get("instance", "?")})
    return rep


def _span(s: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


def _hours(h: float) -> str:
    return f"{h:.3f}" if h < 10 else f"{h:.1f}"


def _top(by_cause: dict[str, float]) -> str:
    lost = sorted(((h, c) for c, h in by_cause.items() if h > 0), reverse=True)
    return ", ".join(f"{_hours(h)} to {c}" for h, c in lost[:3]) or "-"


def _table(rows: list[list[str]], head: list[str]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
    for row in [head, *rows]:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def render(rep: FleetReport, top: int) -> None:
    typer.echo(f"fleet from {rep.prometheus}, last {_span(rep.range_s)} (GPU-hours lost: idle GPU time by cause "
               f"plus time under verdicts other than {' and '.join(rep.productive)})")
    typer.echo("\nGPU-hours lost by node")
    if rep.nodes:
        _table([[n["node"], str(n["gpus"]), _hours(n["gpu_hours_lost"]), _hours(n["idle_gpu_hours"]),
                 _top(n["by_cause"])]
                for n in rep.nodes[:top]], ["node", "gpus", "lost", "idle", "lost to"])
    else:
        typer.echo("  no nodetune_gpu_verdict_seconds_total series in the range")
    typer.echo("\nGPU-hours lost by job")
    if rep.jobs:
        _table([[j["node"], j["job"], str(j["gpus"]), _hours(j["gpu_hours_lost"]), _top(j["by_cause"])]
                for j in rep.jobs[:top]], ["node", "job", "gpus", "lost", "lost to"])
    else:
        typer.echo("  no nodetune_job_verdict_seconds_total series in the range")
    typer.echo(f"\nProblems: {rep.problems}")
    for p in rep.pcie_degraded:
        typer.echo(f"  {p['node']} GPU {p['gpu']}: PCIe x{p['width']} of x{p['max_width']}")
    for p in rep.gpus_lost:
        typer.echo(f"  {p['node']} GPU {p['gpu']}: lost: {p['reason']}")
    for p in rep.tuning:
        typer.echo(f"  {p['node']}: tuning: {p['reason']}")
    for p in rep.agents_down:
        typer.echo(f"  {p['node']}: agent down (up == 0 at {p['instance']})")


def fleet(
    prometheus: Annotated[str, typer.Option("--prometheus", parser=_url, metavar="URL",
                                            help="The Prometheus server that scrapes the agents (http://HOST:9090).")],
    range_: Annotated[int, typer.Option("--range", parser=parse_range, metavar="DURATION",
                                        help="How far back to look: 30m, 24h, 7d.")] = 86400,
    nodes: Annotated[str | None, typer.Option("--nodes", metavar="REGEX",
                                              help="Only nodes whose name "
                                                   "(node label, else instance) matches.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows per table.")] = 20,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=300, help="Seconds per query.")] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Which nodes and jobs lost the most GPU-hours, and which nodes have problems (exit 1)."""
    try:
        node_re = re.compile(nodes) if nodes else None
    except re.error as exc:
        raise UserError(f"--nodes: not a regular expression: {exc}") from None
    rep = collect(Prometheus(prometheus, timeout), range_, node_re)
    if as_json:
        from .output import print_json

        print_json({"prometheus": rep.prometheus, "range_s": rep.range_s, "productive": rep.productive,
                    "nodes": rep.nodes, "jobs": rep.jobs, "problems": rep.problems,
                    "pcie_degraded": rep.pcie_degraded, "gpus_lost": rep.gpus_lost, "tuning": rep.tuning,
                    "agents_down": rep.agents_down})
    else:
        render(rep, top)
    if rep.problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("fleet")(fleet)
