"""[agent]: the `nodetune agent` daemon: cadences, the ring, the exporter's address and its security."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass

from .fields import flag, names, number, section, text

# unassigned in the Prometheus exporter port list (github.com/prometheus/prometheus/wiki/Default-port-allocations)
DEFAULT_PORT = 9847


@section("agent")
@dataclass
class AgentConfig:
    listen: str = text(f"0.0.0.0:{DEFAULT_PORT}", "address:port the exporter listens on ([::]:PORT for IPv6)")
    sample_interval_s: float = number(1.0, "seconds between fast samples (GPU, PSI, CPU, disks; GPM between two "
                                      "samples)", lo=0.11, hi=60)
    detail_every_s: float = number(30, "seconds between slow GPU counters (energy, ECC, row remaps, PCIe replays)",
                                   lo=1, hi=3600)
    worker_scan_every_s: float = number(5, "seconds between scans for DataLoader workers under GPU processes",
                                        lo=0.11, hi=3600)
    diagnose_every_s: float = number(15, "seconds between diagnoses (each verdict is at most this old)", lo=1, hi=3600)
    window_s: float = number(60, "seconds of samples each diagnosis judges (the ring holds this much)", lo=2, hi=3600)
    stacks: bool = flag(True, "sample GPU jobs' Python stacks with py-spy across each window (needs CAP_SYS_PTRACE; "
                        "py-spy reads memory without pausing the job)")
    stacks_rate_hz: int = number(5, "py-spy samples per second of each GPU process", lo=1, hi=100)
    stacks_slice_s: float = number(10, "seconds of each py-spy run (one child process per slice and GPU process)",
                                   lo=1, hi=60)
    journal_every_s: float = number(60, "seconds between reads of the tuning journal (only when it changed)",
                                    lo=1, hi=86400)
    job_retention_s: float = number(3600, "seconds a job that ended keeps its per-verdict series", lo=0, hi=30 * 86400)
    max_jobs: int = number(256, "most jobs with per-verdict series at once (oldest-seen dropped first)",
                           lo=1, hi=100_000)
    kmsg: bool = flag(True, "count GPU Xid events from /dev/kmsg")
    hotplug: bool = flag(True, "watch PCI and block devices through udev and re-probe the topology on add/remove")
    tls_cert_file: str = text("", "PEM certificate: serve HTTPS (with tls_key_file)")
    tls_key_file: str = text("", "PEM private key for tls_cert_file")
    basic_auth_file: str = text("", "file of user:HASH lines (pbkdf2_sha256$... or bcrypt); when set, every request "
                                "needs one of them")
    web_config_file: str = text("", "node_exporter's web configuration file (TLS, bcrypt basic_auth_users, headers); "
                                "instead of tls_*_file and basic_auth_file")
    max_connections: int = number(64, "most open HTTP connections; past it the longest-idle one is closed", lo=4,
                                  hi=4096)
    idle_timeout_s: float = number(60, "seconds a kept-alive connection may wait for its next request", lo=1, hi=3600)
    header_timeout_s: float = number(10, "seconds a client has to send a request's headers (and TLS handshake)",
                                     lo=0.5, hi=300)
    write_timeout_s: float = number(10, "seconds a client has to take a response before it is dropped", lo=0.5, hi=300)
    history: bool = flag(True, "keep per-job verdict history in SQLite (`nodetune history`)")
    history_path: str = text("/var/lib/nodetune/history.sqlite", "the history database (under the node's root)")
    history_retention_days: float = number(90, "days a job stays in the history after it was last seen", lo=0, hi=3650)
    history_max_mib: float = number(256, "largest the history database may grow (oldest jobs dropped first)", lo=1,
                                    hi=1 << 20)
    autotune: list[str] = names([], "tuners the agent may apply from its own findings (off when empty; prefetch: "
                                "follow an io-starved job's reads); GPU power and clocks never", choices=("prefetch",),
                                choices_from="nodetune.tuners.registry:autotune_names")
    autotune_hold_windows: int = number(3, "consecutive diagnoses a finding must hold before autotune acts", lo=1,
                                        hi=1000)
    autotune_max_per_hour: int = number(4, "most automatic tuning transactions an hour", lo=0, hi=1000)

    def check(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for every value the agent would refuse: `config check`, the agent and
        the Ansible role (which runs `config check`) share this one validator."""
        errors: list[tuple[str, str]] = []
        try:
            parse_listen(self.listen)
        except ValueError as exc:
            errors.append(("listen", str(exc)))
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            key, other = ("tls_cert_file", "tls_key_file") if self.tls_cert_file else ("tls_key_file", "tls_cert_file")
            errors.append((key, f"set {other} too (TLS needs both the certificate and its key)"))
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, key)
            if path and (why := _unreadable(path)):
                errors.append((key, f"{path}: {why}"))
        if self.basic_auth_file:
            try:
                read_users(self.basic_auth_file)
            except ValueError as exc:
                errors.append(("basic_auth_file", str(exc)))
        return errors


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def parse_listen(text: str) -> tuple[str, int]:
    """"ADDR:PORT", "[V6]:PORT" or ":PORT" (every IPv4 address) -> (host, port); ValueError naming
    what is wrong. A host name must resolve: the agent binds what it names."""
    t = text.strip()
    if t.startswith("["):
        host, sep, port = t[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPV6]:PORT, got {text!r:.60}")
    else:
        host, sep, port = t.rpartition(":")
        if not sep:
            raise ValueError(f"expected ADDRESS:PORT, got {text!r:.60}")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets ([::1]:{DEFAULT_PORT}), got {text!r:.60}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected a port 0-65535, got {port!r:.20}")
    host = host or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError(f"{host!r:.60} is not an IP address or host name") from None
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ValueError(f"cannot resolve host {host!r:.60}: {getattr(exc, 'strerror', None) or exc}") from None
    return host, int(port)


def _read_regular(path: str, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file; OSError for anything else (a FIFO would block an open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _unreadable(path: str) -> str | None:
    try:
        _read_regular(path, 1)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return None


def read_users(path: str) -> dict[str, str]:
    """A basic_auth_file: user -> stored hash (pbkdf2_sha256 or bcrypt); ValueError naming the file and line."""
    try:
        lines = _read_regular(path, 1 << 20).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    users: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        user, sep, stored = s.partition(":")
        parts = stored.split("$")
        if stored.startswith(("$2a$", "$2b$", "$2y$")) and sep and user:
            users[user] = stored  # bcrypt (htpasswd -B); its cost is checked where it is loaded
            continue
        if not sep or not user or len(parts) != 4 or parts[0] != "pbkdf2_sha256" or not parts[1].isdigit():
            raise ValueError(f"{path}:{n}: expected user:pbkdf2_sha256$ITERATIONS$SALT$HASH "
                             "(make one with `python3 -m nodetune.agent.web_auth USER`)")
        users[user] = stored
    if not users:
        raise ValueError(f"{path}: no users (a basic_auth_file with no user would lock every scraper out)")
    return users
