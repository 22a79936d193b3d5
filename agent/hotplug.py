"""PCI and block device hot-plug through udev (pyudev): an add or remove asks for a re-probe.

The monitor runs in its own thread and only sets a flag through `on_change`; the sampling loop
re-probes the topology at its next tick, so a burst of events costs one re-probe. No pyudev, no
udev netlink socket (a container, a fake root): reported once through `on_status`, never a crash.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .wakeup import readable

POLL_S = 0.5
SUBSYSTEMS = ("pci", "block")


class Hotplug(threading.Thread):
    def __init__(self, on_change: Callable[[str, str], None], on_status: Callable[[bool, str | None], None],
                 stop: threading.Event, load: Callable[[str], ModuleType] = importlib.import_module) -> None:
        super().__init__(name="nodetune-hotplug", daemon=True)
        self.on_change = on_change
        self.on_status = on_status
        self.stop = stop
        self.load = load

    def _monitor(self) -> Any:
        pyudev = self.load("pyudev")
        mon = pyudev.Monitor.from_netlink(pyudev.Context())
        for sub in SUBSYSTEMS:
            mon.filter_by(sub)
        mon.start()
        return mon

    def run(self) -> None:
        try:
            mon = self._monitor()
        except Exception as exc:  # ImportError, OSError from netlink, pyudev's own errors: all one fact
            self.on_status(False, f"udev monitor unavailable: {type(exc).__name__}: {exc}")
            return
        self.on_status(True, None)
        while not self.stop.is_set():
            try:
                # Sleep until an event or a stop (a StopEvent is selectable); otherwise poll.
                if hasattr(self.stop, "fileno") and hasattr(mon, "fileno"):
                    ready = readable([mon.fileno(), self.stop.fileno()], None)
                    dev = mon.poll(timeout=0) if mon.fileno() in ready else None
                else:
                    dev = mon.poll(timeout=POLL_S)
            except Exception as exc:
                self.on_status(False, f"udev monitor failed: {type(exc).__name__}: {exc}")
                return
            if dev is None:
                continue
            action = getattr(dev, "action", None)
            if action in ("add", "remove"):
                self.on_change(str(getattr(dev, "subsystem", "?")), action)
