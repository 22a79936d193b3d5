"""Turn diagnosis advice into a profile, so `tune recommend` plans exactly what the findings ask.

Advice items look like {"tuner": "pinning", "params": {"pids": [1234]}, "text": "..."}. A
"profile" item ({"profile": "data-loading"}) starts from that profile; items for one tuner merge
into its table (lists are joined, the first value of a scalar wins and a different later value is
reported). The power tuner's GPU keys ("gpu", "gpu_power_limit_w") go to the [gpu] table. Advice
comes from another module, so a key no tuner knows is reported and dropped, not fatal.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any, get_type_hints

from .errors import ProfileError
from .profiles import Profile, fits, profile_from_data
from .registry import sections

SOURCE = "diagnosis advice"
# power-advice key -> (table, key) in a profile
_POWER_GPU_KEYS = {"gpu": ("gpu", "gpus"), "gpus": ("gpu", "gpus"), "gpu_power_limit_w": ("gpu", "power_limit_w"),
                   "gpu_locked_clocks_mhz": ("gpu", "locked_clocks_mhz")}


def advice_items(raw: Iterable[Any]) -> list[dict[str, Any]]:
    """Normalise advice given as dicts or objects with tuner/params/text attributes."""
    out = []
    for a in raw:
        if isinstance(a, Mapping):
            tuner, params, text = a.get("tuner"), a.get("params"), a.get("text")
        else:
            tuner, params, text = (getattr(a, k, None) for k in ("tuner", "params", "text"))
        out.append({"tuner": tuner, "params": dict(params or {}), "text": str(text or "")})
    return out


def follow_items(findings: Iterable[Any]) -> list[dict[str, Any]]:
    """A `prefetch` advice item for each job diagnosed data_starved (io_input): follow its main process.

    Findings come as objects or as the dicts of a `diagnose --json` report; the job's pids list its
    GPU processes first and its loader workers after, and the follower takes the workers with their parent.
    """
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for f in findings:
        get = f.get if isinstance(f, Mapping) else (lambda k, f=f: getattr(f, k, None))
        pids = get("pids") or []
        if get("kind") != "data_starved" or get("cause") != "io_input" or not pids or not isinstance(pids[0], int):
            continue
        if pids[0] not in seen:
            seen.add(pids[0])
            out.append({"tuner": "prefetch", "params": {"pid": pids[0]}, "text": f"job {get('job') or pids[0]} "
                        "waits on reads: keep the files it reads next in the page cache while it runs"})
    return out


def prefetch_command(params: dict[str, Any]) -> str | None:
    """`nodetune prefetch --follow PID` for a prefetch advice item, or None when it names no process."""
    pid = params.get("pid")
    return f"nodetune prefetch --follow {pid}" if isinstance(pid, int) and pid > 0 else None


def prefetch_notes(params: dict[str, Any]) -> list[str]:
    """Read-ahead advice names the directories a job reads: warming them is `nodetune prefetch`'s job.

    A note, not a planned change: the prefetcher reads user data, so it is run by a person (or the
    job, or the agent's autotune when `[agent] autotune` names prefetch), never by a tune transaction.
    """
    paths = [p for p in params.get("paths") or [] if isinstance(p, str) and p != "/"]
    if not paths:
        return []
    return [f"prefetch: warm the job's data before it reads it: nodetune prefetch --budget 8GiB "
            f"{' '.join(shlex.quote(p) for p in paths)}  (or nodetune.prefetch.Prefetcher in the loader)"]


def _merge(tables: dict[str, dict[str, Any]], table: str, key: str, value: Any, notes: list[str]) -> None:
    t = tables.setdefault(table, {})
    if key not in t:
        t[key] = list(value) if isinstance(value, list) else value
    elif isinstance(value, list) and isinstance(t[key], list):
        t[key] += [x for x in value if x not in t[key]]
    elif t[key] != value:
        notes.append(f"advice asks {table}.{key} = {value!r} and {t[key]!r}; planning {t[key]!r}")


def profile_from_advice(items: list[dict[str, Any]],
                        load: Callable[[str], Profile] | None = None) -> tuple[Profile, list[str]]:
    """A validated profile and notes (advice without a tuner, unknown tuners or keys, clashes)."""
    tables: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for a in items:
        tuner, text, params = a["tuner"], a["text"], a["params"]
        if not tuner:
            if text:
                notes.append(f"advice (no tuner acts on it): {text}")
            continue
        if tuner == "profile" and load is not None and isinstance(params.get("profile"), str):
            base = load(params["profile"])
            for name in sections():
                sec = getattr(base, name)
                if sec is not None:
                    default = type(sec)()
                    for k, v in dataclasses.asdict(sec).items():
                        if v != getattr(default, k):  # only what the profile sets
                            _merge(tables, name, k, v, notes)
            notes.append(f"profile {params['profile']}: {text}" if text else f"profile {params['profile']}")
            continue
        if tuner == "prefetch":
            cmd = prefetch_command(params)
            if cmd:
                notes.append(f"prefetch: {cmd}  ({text})")
            continue
        if tuner == "readahead" and not any(i["tuner"] == "prefetch" for i in items):
            notes.extend(prefetch_notes(params))
        if tuner not in sections():
            notes.append(f"advice names tuner {tuner!r}, which nodetune cannot run here: {text}")
            continue
        for k, v in params.items():
            table, key = _POWER_GPU_KEYS.get(k, (tuner, k)) if tuner == "power" else (tuner, k)
            if key == "gpus" and isinstance(v, int):
                v = [v]
            hints = get_type_hints(sections()[table])
            if key not in hints or not fits(v, hints[key]):
                notes.append(f"advice for {tuner}: {k} = {v!r:.40} is not a {table} setting; not planned")
                continue
            _merge(tables, table, key, v, notes)
        if text:
            notes.append(f"{tuner}: {text}")
    try:
        return profile_from_data(tables, "recommended", SOURCE), notes
    except ProfileError as exc:
        raise ProfileError(f"the diagnosis's advice does not make a valid plan: {exc.reason}") from None
