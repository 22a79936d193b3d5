"""[agent]: the `nodetune agent` daemon: cadences, the ring, the exporter's address and its security."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import flag, names, number, section, text

DEFAULT_PORT = 9847  # unassigned in the Prometheus exporter port list (github.com/prometheus/prometheus/wiki/Default-port-allocations)


@section("agent")
@dataclass
class AgentConfig:
    listen: str = text(f"0.0.0.0:{DEFAULT_PORT}", "address:port the exporter listens on ([::]:PORT for IPv6)")
    sample_interval_s: float = number(1.0, "seconds between fast samples (GPU, PSI, CPU, disks; GPM between two samples)",
                                      lo=0.11, hi=60)
    detail_every_s: float = number(30, "seconds between slow GPU counters (energy, ECC, row remaps, PCIe replays)",
                                   lo=1, hi=3600)
    worker_scan_every_s: float = number(5, "seconds between scans for DataLoader workers under GPU processes",
                                        lo=0.11, hi=3600)
    diagnose_every_s: float = number(15, "seconds between diagnoses (each verdict is at most this old)", lo=1, hi=3600)
    window_s: float = number(60, "seconds of samples each diagnosis judges (the ring holds this much)", lo=2, hi=3600)
    stacks_every_s: float = number(0, "seconds between py-spy stack samples of GPU jobs (0: never; needs CAP_SYS_PTRACE)",
                                   hi=86400)
    journal_every_s: float = number(60, "seconds between reads of the tuning journal (only when it changed)", lo=1, hi=86400)
    job_retention_s: float = number(3600, "seconds a job that ended keeps its per-verdict series", lo=0, hi=30 * 86400)
    max_jobs: int = number(256, "most jobs with per-verdict series at once (oldest-seen dropped first)", lo=1, hi=100_000)
    kmsg: bool = flag(True, "count GPU Xid events from /dev/kmsg")
    hotplug: bool = flag(True, "watch PCI and block devices through udev and re-probe the topology on add/remove")
    tls_cert_file: str = text("", "PEM certificate: serve HTTPS (with tls_key_file)")
    tls_key_file: str = text("", "PEM private key for tls_cert_file")
    basic_auth_file: str = text("", "file of user:pbkdf2_sha256$... lines; when set, every request needs one of them")
    history: bool = flag(True, "keep per-job verdict history in SQLite (`nodetune history`)")
    history_path: str = text("/var/lib/nodetune/history.sqlite", "the history database (under the node's root)")
    history_retention_days: float = number(90, "days a job stays in the history after it was last seen", lo=0, hi=3650)
    history_max_mib: float = number(256, "largest the history database may grow (oldest jobs dropped first)", lo=1,
                                    hi=1 << 20)
    autotune: list[str] = names([], "tuners the agent may apply from its own findings (off when empty; prefetch: "
                                "follow an io-starved job's reads); GPU power and clocks never", choices=("readahead", "hugepages", "pinning", "power", "prefetch"))
    autotune_hold_windows: int = number(3, "consecutive diagnoses a finding must hold before autotune acts", lo=1,
                                        hi=1000)
    autotune_max_per_hour: int = number(4, "most automatic tuning transactions an hour", lo=0, hi=1000)
