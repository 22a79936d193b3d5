"""The exporters the cost benchmarks set side by side: node_exporter's binary, an agent's config,
and the `NAME=PID:PORT` names the measuring scripts take.

The device scripts start the processes themselves: their pids are what they measure.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.harness.console import say

NODE_EXPORTER_NAMES = ("prometheus-node-exporter", "node_exporter")
CARRIED_DEB_GLOB = ".debs/prometheus-node-exporter_*.deb"


def find_node_exporter(repo: Path, unpack_dir: Path = Path("/tmp/ne")) -> Path | None:
    """node_exporter on PATH, else the Debian package carried in .debs/ unpacked (dpkg -x) under
    `unpack_dir`; None when neither is there."""
    for name in NODE_EXPORTER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    debs = sorted(repo.glob(CARRIED_DEB_GLOB))
    if not debs:
        return None
    shutil.rmtree(unpack_dir, ignore_errors=True)
    try:
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpack_dir)], check=True,  # noqa: S603, S607
                       capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"cannot unpack {debs[0]}: {exc}", tag="agents")
        return None
    binary = unpack_dir / "usr" / "bin" / "prometheus-node-exporter"
    return binary if binary.exists() else None


def agent_config(history_path: str, stacks: bool = True, listen: str | None = None) -> str:
    """An `[agent]` section: its own history file (two agents on one SQLite file would contend),
    stacks on or off, and the listen address where given."""
    lines = ["[agent]"]
    if listen:
        lines.append(f'listen = "{listen}"')
    lines += [f'history_path = "{history_path}"', f"stacks = {'true' if stacks else 'false'}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Exporter:
    """A running exporter as the measuring scripts name it: `name=PID:PORT`."""

    name: str
    pid: int
    port: int


def parse_target(text: str) -> Exporter:
    """`name=PID:PORT` (the name may hold `=`); ValueError when malformed."""
    name, sep, rest = text.rpartition("=")
    pid, sep2, port = rest.partition(":")
    if not sep or not sep2 or not name:
        raise ValueError(f"{text!r}: expected NAME=PID:PORT")
    return Exporter(name, int(pid), int(port))
