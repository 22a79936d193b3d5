"""Other owners of the knobs nodetune sets: TuneD, power-profiles-daemon, earlier nodetune runs.

A daemon that manages a knob will put it back on its next profile switch (or fight over it
continuously), so the plan warns and apply refuses without --force. irqbalance moves IRQs, not
any knob here, so it is not a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.probes.host import Host, ProbeError

from .registry import groups_managed_by

# The knob groups each daemon manages are declared by the tuners (`managed_by`: TuneD's cpu, vm and
# disk plugins; power-profiles-daemon's platform profile, EPP and on some drivers the governor).
TUNED = "TuneD"
PPD = "power-profiles-daemon"


@dataclass
class Owner:
    """A running program that manages some knob groups."""

    name: str
    pid: int | None
    groups: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def who(self) -> str:
        return f"{self.name} (pid {self.pid})" if self.pid else self.name


def _comms(host: Host) -> dict[int, str]:
    """pid -> comm of every process (kernel threads included; they never match)."""
    out: dict[int, str] = {}
    try:
        names = host.listdir("/proc")
    except ProbeError:
        return out
    for n in names:
        if n.isdigit():
            try:
                out[int(n)] = host.read_line(f"/proc/{n}/comm")
            except ProbeError:
                continue  # exited while we looked
    return out


def _alive(host: Host, pid: int) -> bool:
    return host.exists(f"/proc/{pid}/stat") or host.exists(f"/proc/{pid}/comm")


def detect_owners(host: Host) -> tuple[list[Owner], list[str]]:
    """Running knob owners, and notes (a stale pid file, irqbalance seen and not a conflict)."""
    owners: list[Owner] = []
    notes: list[str] = []
    comms = _comms(host)
    tuned_pids = [p for p, c in comms.items() if c == "tuned"]
    ev: list[str] = []
    pid_text: str | None = None
    if host.exists("/run/tuned/tuned.pid"):
        try:
            pid_text = host.read_line("/run/tuned/tuned.pid")
        except ProbeError as exc:
            notes.append(f"TuneD pid file unreadable: {exc.reason}")
    if pid_text is not None:
        if not pid_text.isdigit():
            notes.append(f"/run/tuned/tuned.pid holds {pid_text[:20]!r}, not a pid")
        elif _alive(host, int(pid_text)):
            pid = int(pid_text)
            ev.append(f"/run/tuned/tuned.pid -> {pid}")
            if pid not in tuned_pids:
                tuned_pids.insert(0, pid)
        else:
            notes.append(f"/run/tuned/tuned.pid names pid {pid_text}, which is not running (stale)")
    if tuned_pids:
        try:
            ev.append(f"active profile {host.read_line('/etc/tuned/active_profile')!r}")
        except ProbeError:
            ev.append("no /etc/tuned/active_profile")
        ev.append("process 'tuned'" if any(comms.get(p) == "tuned" for p in tuned_pids) else "")
        owners.append(Owner(TUNED, tuned_pids[0], groups_managed_by(TUNED), [e for e in ev if e]))
    # comm is truncated to 15 characters: "power-profiles-daemon" reads "power-profiles-".
    ppd = [p for p, c in comms.items() if c in ("power-profiles-", "power-profiles-daemon")]
    if ppd:
        owners.append(Owner(PPD, ppd[0], groups_managed_by(PPD), ["process 'power-profiles-daemon'"]))
    if any(c == "irqbalance" for c in comms.values()):
        notes.append("irqbalance is running: it moves IRQs, not these knobs (no conflict)")
    return owners, notes


def owners_of(owners: list[Owner], group: str) -> list[Owner]:
    return [o for o in owners if group in o.groups]
