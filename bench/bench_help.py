"""Wall time of `nodetune --help`, `--version` and `topo` against a bare `python -c pass` of the same
venv, interleaved (one run of each in turn, so a busy machine slows all alike), and the slowest
imports behind `topo`.

    python bench/bench_help.py            # 10 rounds
    python bench/bench_help.py -n 30
    python bench/bench_help.py -n 15 --before /work/main/.venv/bin/python   # two venvs, interleaved

Goals: --help and --version at most 2x the bare interpreter, topo at most 3x. The import
breakdown comes from `python -X importtime` and only hints at where the time goes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tables import print_table

ENTRY = "from nodetune.cli.app import main; main()"
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def _commands(python: str = sys.executable) -> list[tuple[str, list[str], float | None]]:
    """(label, argv, goal as a multiple of the bare interpreter) of each command timed."""
    script = Path(python).parent / "nodetune"
    if not script.exists() and python == sys.executable:
        found = shutil.which("nodetune")
        script = Path(found) if found else script
    nt = [str(script)] if script.exists() else [python, "-c", ENTRY]
    return [("python -c pass (same venv)", [python, "-c", "pass"], None),
            ("nodetune --help", [*nt, "--help"], 2.0), ("nodetune --version", [*nt, "--version"], 2.0),
            ("nodetune topo", [*nt, "topo"], 3.0)]


# `topo` built up a layer at a time: what each layer below the CLI adds to a bare interpreter.
_LAYERS = (("python -c pass", "pass"),
           ("+ import probes.node, probes.source", "import nodetune.probes.node, nodetune.probes.source"),
           ("+ import pynvml (NvmlBackend.open imports it)",
            "import nodetune.probes.node, nodetune.probes.source, pynvml"),
           ("+ open_source('/') and probe_topology",
            "from nodetune.probes.node import probe_topology; "
            "from nodetune.probes.source import open_source; s = open_source('/'); "
            "probe_topology(s.host, s.backend, s.status)"),
           ("+ the CLI: nodetune topo", None))


def layers(n: int, pycache: str | None) -> list[tuple[str, ...]]:
    """(layer, median ms, min ms) of `topo` built up from a bare interpreter, interleaved."""
    cmds = [[sys.executable, "-c", code] if code else [*_commands()[-1][1]] for _, code in _LAYERS]
    runs: list[list[float]] = [[] for _ in cmds]
    for k in range(n + 1):
        for i, cmd in enumerate(cmds):
            ms = _once(cmd, pycache)
            if k:
                runs[i].append(ms)
    return [(label, f"{statistics.median(r):.1f}", f"{min(r):.1f}")
            for (label, _), r in zip(_LAYERS, runs, strict=True)]


def _once(cmd: list[str], pycache: str | None = None) -> float:
    env = dict(os.environ, COLUMNS="100")
    if pycache is not None:  # bytecode as an installed nodetune has it, kept out of the checkout
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(pycache, str(Path(cmd[0]).parents[1]).strip("/").replace("/", "_"))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    ms = (time.perf_counter() - t0) * 1e3
    if r.returncode != 0:
        raise SystemExit(f"bench_help: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return ms


def import_breakdown(top: int = 5) -> tuple[float, list[tuple[str, int, float, float]]]:
    """(total ms, [(module, depth, self ms, cumulative ms)]) of the slowest imports of `topo`."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", ENTRY, "topo"], capture_output=True,
                       text=True, check=False)
    rows = []
    for line in r.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((m.group(4), len(m.group(3)) // 2, int(m.group(1)) / 1e3, int(m.group(2)) / 1e3))
    total = sum(cum for _, depth, _, cum in rows if depth == 0)
    return total, sorted(rows, key=lambda x: -x[3])[:top]


def _rows(cmds: list[tuple[str, list[str], float | None]], runs: dict[str, list[float]],
          before: dict[str, list[float]] | None) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    base = statistics.median(runs[cmds[0][0]])
    rows = []
    for label, _, goal in cmds:
        med = statistics.median(runs[label])
        row: tuple[str, ...] = (label, str(len(runs[label])))
        if before is not None:
            b = statistics.median(before[label])
            row += (f"{b:.1f}", f"{min(before[label]):.1f}", f"{b / statistics.median(before[cmds[0][0]]):.2f}")
        row += (f"{med:.1f}", f"{min(runs[label]):.1f}", f"{med / base:.2f}",
                "-" if goal is None else f"<= {goal:g}x: {'yes' if med <= goal * base else 'NO'}")
        rows.append(row)
    head: tuple[str, ...] = ("command", "runs")
    if before is not None:
        head += ("before median ms", "before min ms", "before x bare")
    head += ("median ms", "min ms", "x bare python", "goal")
    return head, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=10, help="timed runs of each command (default 10)")
    ap.add_argument("--pycache", metavar="DIR", help="let the commands write and use bytecode under DIR "
                    "(PYTHONPYCACHEPREFIX, one folder a venv; the warm-up round writes it) even where "
                    "PYTHONDONTWRITEBYTECODE is set: every module is otherwise compiled on every run")
    ap.add_argument("--layers", action="store_true", help="also time topo a layer at a time (probe imports, "
                    "pynvml, probing, the CLI)")
    ap.add_argument("--before", metavar="PYTHON", help="another venv's python (the code before a change): its "
                    "commands run interleaved with these, each against its own bare interpreter")
    args = ap.parse_args(argv)
    n = max(1, args.runs)
    cmds = _commands()
    old = _commands(args.before) if args.before else []
    runs: dict[str, list[float]] = {label: [] for label, _, _ in cmds}
    before: dict[str, list[float]] = {label: [] for label, _, _ in old}
    load0 = os.getloadavg()
    for k in range(n + 1):
        for i, (label, cmd, _) in enumerate(cmds):
            for into, argv_ in ((before, old[i][1]) if old else (None, None), (runs, cmd)):
                if into is None or argv_ is None:
                    continue
                ms = _once(argv_, args.pycache)
                if k:  # the first round warms the page cache and .pyc files
                    into[label].append(ms)
    load1 = os.getloadavg()
    bytecode = "written and used" if args.pycache or not os.environ.get("PYTHONDONTWRITEBYTECODE") else \
        "not written (PYTHONDONTWRITEBYTECODE): the project's modules compiled on every run"
    print(f"bytecode: {bytecode}\n")
    head, rows = _rows(cmds, runs, before if old else None)
    print_table(head, rows)
    print(f"\nload average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load0)} before the runs, "
          f"{' '.join(f'{x:.2f}' for x in load1)} after")

    if args.layers:
        print("\n`nodetune topo` a layer at a time:")
        print_table(("layer", "median ms", "min ms"), layers(n, args.pycache))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    total, top = import_breakdown()
    print(f"\nslowest imports of `topo` under `-X importtime` (all imports: {total:.1f} ms):")
    print_table(("module", "depth", "self ms", "cumulative ms"),
           [(mod, str(depth), f"{s:.1f}", f"{c:.1f}") for mod, depth, s, c in top])
    return 0


if __name__ == "__main__":
    sys.exit(main())
