"""Wall time of `nodetune --help` (median of N runs) and the slowest imports behind it.

    python bench/bench_help.py            # 10 runs of each way to start the CLI
    python bench/bench_help.py -n 20

Goal: under 300 ms. The import breakdown comes from `python -X importtime` and only hints at
where the time goes (it adds its own overhead).
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

GOAL_MS = 300.0
ENTRY = "from nodetune.cli.app import main; main()"
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def _commands() -> list[tuple[str, list[str]]]:
    out = []
    script = Path(sys.executable).parent / "nodetune"
    if not script.exists():
        found = shutil.which("nodetune")
        script = Path(found) if found else script
    if script.exists():
        out.append(("nodetune --help (console script)", [str(script), "--help"]))
    out.append(("python -c main() --help", [sys.executable, "-c", ENTRY, "--help"]))
    return out


def _time(cmd: list[str], n: int) -> list[float]:
    env = dict(os.environ, COLUMNS="100")
    runs = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        runs.append((time.perf_counter() - t0) * 1e3)
        if r.returncode != 0 or "Usage" not in r.stdout:
            raise SystemExit(f"bench_help: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return runs[1:]  # the first run warms the page cache and .pyc files


def import_breakdown(top: int = 5) -> tuple[float, list[tuple[str, int, float, float]]]:
    """(total ms, [(module, depth, self ms, cumulative ms)]) of the slowest imports of `--help`."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", ENTRY, "--help"], capture_output=True,
                       text=True, check=False)
    rows = []
    for line in r.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((m.group(4), len(m.group(3)) // 2, int(m.group(1)) / 1e3, int(m.group(2)) / 1e3))
    total = sum(cum for _, depth, _, cum in rows if depth == 0)
    return total, sorted(rows, key=lambda x: -x[3])[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=10, help="timed runs of each command (default 10)")
    args = ap.parse_args(argv)
    n = max(1, args.runs)
    rows = []
    for label, cmd in _commands():
        runs = _time(cmd, n)
        med = statistics.median(runs)
        rows.append((label, str(n), f"{med:.1f}", f"{min(runs):.1f}", f"{max(runs):.1f}",
                     "yes" if med < GOAL_MS else "NO"))
    print_table(("command", "runs", "median ms", "min ms", "max ms", f"< {GOAL_MS:.0f} ms"), rows)

    total, top = import_breakdown()
    print(f"\nslowest imports under `-X importtime` (all imports: {total:.1f} ms):")
    print_table(("module", "depth", "self ms", "cumulative ms"),
           [(mod, str(depth), f"{s:.1f}", f"{c:.1f}") for mod, depth, s, c in top])
    return 0


if __name__ == "__main__":
    sys.exit(main())
