"""`python -m bench.harness COMMAND`: the entry the benchmarks and the device scripts share.

    diagnosis      every bench workload diagnosed, judged and tabled (bench/run_diagnosis.py)
    window         one workload launched, one diagnose or snapshot at an offset, stopped
    v2-table       the verdict table of diagnosis_v2_run.sh's reports in a folder
    node-exporter  print node_exporter's binary (on PATH, or the carried .deb unpacked)
    agent-config   write an agent config for a side-by-side run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness import agents, diagnosis, tables, window
from bench.harness.workloads import REPO


def parser() -> argparse.ArgumentParser:
    """The command line, one subcommand per job."""
    p = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diagnosis", help="diagnose every bench workload",
                       description=(diagnosis.__doc__ or "").split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=(diagnosis.__doc__ or "").split("Run from the repository root", 1)[-1])
    diagnosis.add_arguments(d)
    w = sub.add_parser("window", help="launch one workload, record one window, stop it",
                       description=(window.__doc__ or "").splitlines()[0])
    window.add_arguments(w)
    t = sub.add_parser("v2-table", help="verdicts of NAME-POSITION-N.json reports")
    t.add_argument("dir", type=Path)
    sub.add_parser("node-exporter", help="print node_exporter's binary; exit 1 when there is none")
    c = sub.add_parser("agent-config", help="write an [agent] config")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--history", required=True, help="its own history file")
    c.add_argument("--listen")
    c.add_argument("--stacks", choices=("on", "off"), default="on")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status."""
    p = parser()
    a = p.parse_args(argv)
    if a.command == "diagnosis":
        if a.seconds <= 0:
            p.error("--seconds must be > 0")
        diagnosis.run(a)
        return 0
    if a.command == "window":
        return window.run(a)
    if a.command == "v2-table":
        print(tables.positions(a.dir))
        return 0
    if a.command == "node-exporter":
        found = agents.find_node_exporter(REPO)
        if found is None:
            print("no node_exporter (install prometheus-node-exporter or carry its .deb in .debs/)",
                  file=sys.stderr)
            return 1
        print(found)
        return 0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(agents.agent_config(a.history, stacks=a.stacks == "on", listen=a.listen))
    return 0
