"""What a `tune` command acts through: the node, its journal, GPU access, the loaded profile and plan.

Everything a test needs to replace (NVML, thread affinity, the diagnosis, exec) comes in through
`TuneDeps`, so tests run the real commands against fake node trees.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import Host

from .errors import UserError


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
def user_errors() -> Iterator[None]:
    """Tuner errors as one-line user errors."""
    from nodetune.tuners.errors import TuneError

    try:
        yield
    except TuneError as exc:
        err = UserError(exc.reason)
        # an apply stopped by SIGINT/SIGTERM (and rolled back) exits 130/143, as the shell expects
        err.exit_code = getattr(exc, "exit_code", 2) if getattr(exc, "signum", None) else 2
        raise err from None


def open_tune_session(deps: TuneDeps, root: str, journal: str | None) -> Any:
    """The tuners' session (`tuners.session`) for one command, with what `deps` replaces."""
    from nodetune.tuners.gpu_control import GpuControl
    from nodetune.tuners.session import open_session

    if not os.path.isdir(root):
        raise UserError(f"--root {root}: not a directory")
    host = deps.host(root)
    if deps.nvml is not None:
        gpus = GpuControl(deps.nvml)
    elif host.live:
        gpus = GpuControl(None)  # pynvml, loaded only if a tuner asks a GPU question
    else:
        gpus = GpuControl.disabled(f"--root {root}: NVML describes the live node only")
    return open_session(host, journal, gpus=gpus, affinity=deps.affinity)


def _joined(hint: Any, old: Any, new: Any) -> Any:
    """A profile's value joined with the command line's, by the field's type: a flag is set by
    either; a list gains the new items once each (ids sorted, names and paths in the order given:
    their order may matter); anything else (an optional value, a list that may be None) is
    replaced."""
    from typing import get_args, get_origin

    if hint is bool:
        return bool(old) or bool(new)
    if get_origin(hint) is list:
        items = [*old, *new]
        return sorted(set(items)) if get_args(hint) == (int,) else list(dict.fromkeys(items))
    return list(new) if isinstance(new, list) else new


def with_overrides(prof: Any, targets: dict[str, Any]) -> Any:
    """The profile with the command line's targets added: `targets` maps "table.field" (a tuner's
    profile table and a field of its params dataclass, tuners.registry.sections()) to a value,
    None or empty where the option was not given. Every table the command line can target is
    checked, as a profile's own tables are."""
    import dataclasses
    from typing import get_type_hints

    from nodetune.tuners.errors import ProfileError
    from nodetune.tuners.registry import sections

    tables = sections()
    for key, value in targets.items():
        table, _, name = key.partition(".")
        cls = tables.get(table)
        if cls is None or name not in {f.name for f in dataclasses.fields(cls)}:
            raise RuntimeError(f"command-line target {key!r}: no tuner's profile table has that field")
        if not value:
            continue
        params = getattr(prof, table) or cls()
        setattr(params, name, _joined(get_type_hints(cls)[name], getattr(params, name), value))
        prof.set(table, params)
    for table in dict.fromkeys(key.partition(".")[0] for key in targets):
        params = getattr(prof, table)
        problems = params.check() if params is not None else []
        if problems:
            raise ProfileError(f"command line: [{table}] {problems[0]}")
    return prof


def load_target_profile(s: Any, profile: str | None, targets: dict[str, Any]) -> Any:
    """The profile named (or one made of the command line's targets alone) with `targets` added
    (`with_overrides`)."""
    from nodetune.tuners.profiles import Profile, list_profiles, load_profile

    if profile is None:
        if not any(v for v in targets.values()):
            names = ", ".join(p.name for p in list_profiles(s.ctx.host))
            raise UserError(f"give --profile NAME (available: {names}) or targets such as --pid")
        prof = Profile(name="command-line", source="command line")
    else:
        prof = load_profile(s.ctx.host, profile)
    return with_overrides(prof, targets)


def live_advice(root: str, seconds: float) -> Iterable[Any]:
    """Advice items from a live diagnosis of the node under `root`."""
    from nodetune.config.diagnosis import Thresholds
    from nodetune.config.loader import load_config
    from nodetune.probes.source import open_source

    from .diagnose import sample_and_diagnose

    src = open_source(root)
    try:
        _, report = sample_and_diagnose(src, load_config(src.host).get(Thresholds), seconds, 1.0, stacks=False)
    finally:
        src.close()
    from nodetune.tuners.recommend import follow_items

    return [a for f in report.findings for a in f.advice] + follow_items(report.findings)


def replay_advice(path: str) -> list[Any]:
    """Advice items from the diagnosis of a snapshot file (`--replay`), as `diagnose --replay` gives it."""
    from nodetune.config.diagnosis import Thresholds
    from nodetune.config.loader import defaults
    from nodetune.diagnosis.engine import diagnose
    from nodetune.probes.snapshot import load_snapshot

    snap = load_snapshot(path)
    if snap.window is None:
        raise UserError(f"{path}: snapshot has no sample window (record one with `nodetune snapshot --seconds N`)")
    report = diagnose(snap.topology, snap.window, defaults().get(Thresholds), f"replay:{path}")
    return [a for f in report.findings for a in f.advice]


def read_report_advice(path: str) -> list[dict[str, Any]]:
    """The advice items of a report written by `nodetune diagnose --json`; anything else is an error."""
    import errno
    import json

    limit = 64 << 20  # a report is kilobytes; refuse to load anything absurd into memory
    from nodetune.probes.host import read_regular_file

    try:
        data = read_regular_file(path, limit)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise UserError(f"--advice {path}: larger than {limit >> 20} MiB; not a diagnosis report") from None
        raise UserError(f"--advice {path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UserError(f"--advice {path}: larger than {limit >> 20} MiB; not a diagnosis report")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"--advice {path}: not UTF-8 JSON text (gzip or binary?)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--advice {path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (RecursionError, ValueError) as exc:
        raise UserError(f"--advice {path}: JSON nested too deep or numbers too large ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("findings"), list) or "gpus" not in raw:
        shape = type(raw).__name__ if not isinstance(raw, dict) else f"keys {', '.join(sorted(raw)[:5]) or 'none'}"
        raise UserError(f"--advice {path}: not a report from `nodetune diagnose --json` (found a JSON {shape})")
    items: list[dict[str, Any]] = []
    for n, f in enumerate(raw["findings"]):
        advice = f.get("advice", []) if isinstance(f, dict) else None
        if not isinstance(advice, list) or not all(isinstance(a, dict) for a in advice):
            raise UserError(f"--advice {path}: findings[{n}].advice is not a list of advice objects")
        items += advice
    from nodetune.tuners.recommend import follow_items

    return items + follow_items(f for f in raw["findings"] if isinstance(f, dict))
