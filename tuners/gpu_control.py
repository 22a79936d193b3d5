"""GPU power limit, locked clocks and GPU processes through an NVML module.

The module is injected (tests pass `tests/support/fakenvml.FakeNvml`); on the live node it is pynvml,
imported and initialised on first use so that tuning a node without GPUs never loads NVML.
Every NVML error becomes a `GpuControlError` with one readable line.
"""

from __future__ import annotations

import importlib
from typing import Any

from nodetune.probes.pci import normalize_bus_id

from .errors import TuneError

# NVML return codes (nvmlReturn_t) that deserve their own words.
_NO_PERMISSION = 4
_NOT_SUPPORTED = 3
_INVALID_ARGUMENT = 2


class GpuControlError(TuneError):
    """NVML is unavailable or refused a GPU call."""


class GpuControl:
    """A thin, typed face on the NVML calls the tuners need."""

    def __init__(self, nvml: Any = None, enabled: bool = True, reason: str | None = None) -> None:
        self._nvml = nvml
        self._enabled = enabled
        self._reason = reason
        self._ready = False
        self._error: str | None = None
        self.shutdown_error: str | None = None

    @classmethod
    def disabled(cls, reason: str) -> GpuControl:
        """A control that reports NVML as unavailable (fake roots without an injected NVML)."""
        return cls(None, enabled=False, reason=reason)

    def _lib(self) -> Any:
        if self._ready:
            return self._nvml
        if not self._enabled:
            raise GpuControlError(self._reason or "NVML not available")
        if self._error is not None:
            raise GpuControlError(self._error)
        if self._nvml is None:
            try:
                self._nvml = importlib.import_module("pynvml")
            except ImportError:
                self._error = "NVML not available: nvidia-ml-py (pynvml) is not installed"
                raise GpuControlError(self._error) from None
        try:
            self._nvml.nvmlInit()
        except OSError as exc:
            self._error = f"NVML not available: {exc}"
            raise GpuControlError(self._error) from None
        except Exception as exc:  # pynvml.NVMLError: no driver, driver not loaded, no permission
            self._error = f"NVML not available: {exc}"
            raise GpuControlError(self._error) from None
        self._ready = True
        return self._nvml

    def available(self) -> str | None:
        """None when NVML works, else why not."""
        try:
            self._lib()
        except GpuControlError as exc:
            return exc.reason
        return None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        n = self._lib()
        try:
            return fn(*args)
        except n.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == _NO_PERMISSION:
                raise GpuControlError(f"{what}: permission denied (needs root)") from None
            if code == _NOT_SUPPORTED:
                raise GpuControlError(f"{what}: not supported on this GPU") from None
            if code == _INVALID_ARGUMENT:
                raise GpuControlError(f"{what}: NVML rejected the value (invalid argument)") from None
            raise GpuControlError(f"{what}: {exc}") from None

    def _handle(self, index: int) -> Any:
        n = self._lib()
        return self._call(f"GPU {index}", n.nvmlDeviceGetHandleByIndex, index)

    def count(self) -> int:
        n = self._lib()
        return int(self._call("GPU count", n.nvmlDeviceGetCount))

    def bus_id(self, index: int) -> str:
        """The GPU's PCI address in sysfs form."""
        n = self._lib()
        info = self._call(f"GPU {index} PCI info", n.nvmlDeviceGetPciInfo, self._handle(index))
        bus = info.busId.decode() if isinstance(info.busId, bytes) else str(info.busId)
        return normalize_bus_id(bus)

    def process_pids(self, index: int) -> list[int]:
        """PIDs holding a compute context on the GPU."""
        n = self._lib()
        procs = self._call(f"GPU {index} processes", n.nvmlDeviceGetComputeRunningProcesses, self._handle(index))
        return sorted({int(p.pid) for p in procs})

    def power_limit_mw(self, index: int) -> int:
        n = self._lib()
        return int(self._call(f"GPU {index} power limit", n.nvmlDeviceGetEnforcedPowerLimit, self._handle(index)))

    def default_power_limit_mw(self, index: int) -> int:
        n = self._lib()
        return int(self._call(f"GPU {index} default power limit", n.nvmlDeviceGetPowerManagementDefaultLimit,
                              self._handle(index)))

    def power_range_mw(self, index: int) -> tuple[int, int]:
        n = self._lib()
        lo, hi = self._call(f"GPU {index} power limit range", n.nvmlDeviceGetPowerManagementLimitConstraints,
                            self._handle(index))
        return int(lo), int(hi)

    def set_power_limit_mw(self, index: int, mw: int) -> None:
        n = self._lib()
        self._call(f"GPU {index} power limit", n.nvmlDeviceSetPowerManagementLimit, self._handle(index), mw)

    def lock_clocks(self, index: int, lo: int, hi: int) -> None:
        n = self._lib()
        self._call(f"GPU {index} locked clocks", n.nvmlDeviceSetGpuLockedClocks, self._handle(index), lo, hi)

    def reset_clocks(self, index: int) -> None:
        n = self._lib()
        self._call(f"GPU {index} locked clocks", n.nvmlDeviceResetGpuLockedClocks, self._handle(index))

    def close(self) -> None:
        if self._ready:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:  # shutting down a library we are done with: keep it for display
                self.shutdown_error = f"nvmlShutdown: {exc}"
            self._ready = False
