"""CPU and memory of a process from /proc, for the device scripts that set exporters side by side."""

from __future__ import annotations


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks: an agent's py-spy runs
    are its children."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def rss_mb(pid: int) -> float:
    """Resident set size in MiB (nan where the status file has none)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
