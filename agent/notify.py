"""sd_notify without libsystemd: datagrams to $NOTIFY_SOCKET (READY, STATUS, WATCHDOG, STOPPING).

The socket is opened once; a watchdog ping is one sendto. Not under systemd (no NOTIFY_SOCKET),
every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("nodetune.agent")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr  # '@': the abstract namespace
        self.errors = 0
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # systemd pings at half the timeout in its own examples; a quarter leaves room for a slow sample.
        mine = not pid or pid == str(os.getpid())
        self.watchdog_every_s = int(usec) / 4e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.addr)

    def send(self, msg: str) -> bool:
        if not self.addr:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(msg.encode(), self.addr)
            return True
        except OSError as exc:
            self.errors += 1
            if self.errors == 1:  # one line, then only the counter grows
                log.warning("sd_notify to %s failed: %s (counted in nodetune_agent_notify_errors_total)",
                            self.addr.replace("\0", "@"), exc)
            return False

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self, now: float | None = None) -> None:
        """Called from the sampling loop only: a stuck loop stops the pings and systemd restarts it."""
        if self.watchdog_every_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_every_s:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
