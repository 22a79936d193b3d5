"""A stand-in for the `pynvml` module: the same names, error codes and return shapes.

`NvmlBackend` takes its NVML module as a constructor argument, so tests hand it this object and
exercise every error path (library missing, init failure, NOT_SUPPORTED, GPU lost mid-window,
GPM unsupported) without a GPU and without patching anything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

ERRORS = {
    1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
    9: "Driver Not Loaded", 12: "NVML Shared Library Not Found", 15: "GPU is lost", 999: "Unknown Error",
}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return ERRORS.get(self.value, f"error {self.value}")


@dataclass
class FakeGpu:
    bus_id: str  # NVML form "00000000:18:00.0"
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    serial: str = "1654922001234"
    arch: int = 9
    mem_total: int = 81559 * 2**20
    mem_used: int = 512 * 2**20
    util_gpu: int = 0
    util_mem: int = 0
    power_mw: int = 70000
    limit_mw: int = 700000
    default_limit_mw: int = 700000
    limit_range_mw: tuple[int, int] = (200000, 700000)
    energy_mj: int = 123456789
    temp: int = 33
    mem_temp: int = 30
    sm_clock: int = 345
    mem_clock: int = 2619
    sm_max: int = 1980
    mem_max: int = 2619
    reasons: int = 0x1
    pcie_gen: int = 5
    pcie_width: int = 16
    pcie_max_gen: int = 5
    pcie_max_width: int = 16
    pcie_tx_kb: int = 1000
    pcie_rx_kb: int = 2000
    replay: int = 0
    ecc: tuple[int, int] | None = (0, 0)
    remapped: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes or None/2**64-1: n/a)
    gpm: dict[int, float] | None = field(default_factory=dict)  # metric id -> value; None: unsupported
    nvlinks: list[tuple[str, int]] = field(default_factory=list)  # (remote NVML bus id, remote type)
    nvlinks_down: set[int] = field(default_factory=set)  # link numbers whose state reads 0 (inactive)
    fail: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code
    lost_after_samples: int | None = None  # GPU falls off the bus after this many utilization reads
    power_limit_set_mw: int | None = None
    locked_clocks: tuple[int, int] | None = None


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class _Metric:
    def __init__(self) -> None:
        self.metricId = 0
        self.nvmlReturn = 0
        self.value = 0.0


class MetricsGet:
    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: Any = None
        self.sample2: Any = None
        self.metrics = [_Metric() for _ in range(210)]


class FakeNvml:
    """Module-shaped fake of pynvml over a list of FakeGpu."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_GPU_IS_LOST = 15
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVML_TEMPERATURE_THRESHOLD_MEM_MAX = 2
    NVML_TEMPERATURE_THRESHOLD_GPU_MAX = 3
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    NVML_FI_DEV_MEMORY_TEMP = 82
    NVML_NVLINK_MAX_LINKS = 18
    NVML_GPM_METRICS_GET_VERSION = 1
    c_nvmlGpmMetricsGet_t = MetricsGet

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None,
                 levels: dict[tuple[int, int], int] | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.levels = levels or {}
        # bounded: a soak of 20,000 samples would otherwise keep every call it ever made
        self.calls: deque[str] = deque(maxlen=50_000)
        self.initialized = False
        self._samples = 0
        self.gpm_allocated = 0

    # -- helpers -------------------------------------------------------------------------
    def _gpu(self, h: int, fn: str) -> FakeGpu:
        self.calls.append(fn)
        g = self.gpus[h]
        if g.lost_after_samples is not None and g.lost_after_samples <= 0:
            raise NVMLError(15)
        if fn in g.fail:
            raise NVMLError(g.fail[fn])
        return g

    # -- system --------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "13.580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i >= len(self.gpus):
            raise NVMLError(2)
        return i

    # -- static --------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: int) -> str:
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetSerial(self, h: int) -> str:
        return self._gpu(h, "nvmlDeviceGetSerial").serial

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return _Obj(busId=self._gpu(h, "nvmlDeviceGetPciInfo").bus_id.encode())

    def nvmlDeviceGetArchitecture(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetArchitecture").arch

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        return _Obj(total=g.mem_total, used=g.mem_used, free=g.mem_total - g.mem_used)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerManagementDefaultLimit").default_limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: int) -> list[int]:
        return list(self._gpu(h, "nvmlDeviceGetPowerManagementLimitConstraints").limit_range_mw)

    def nvmlDeviceGetMaxClockInfo(self, h: int, clk: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetMaxClockInfo")
        return g.sm_max if clk == 1 else g.mem_max

    def nvmlDeviceGetTemperatureThreshold(self, h: int, kind: int) -> int:
        self._gpu(h, "nvmlDeviceGetTemperatureThreshold")
        return {0: 92, 1: 89, 2: 95, 3: 87}[kind]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetMaxPcieLinkGeneration").pcie_max_gen

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetMaxPcieLinkWidth").pcie_max_width

    def nvmlGpmQueryDeviceSupport(self, h: int) -> Any:
        g = self._gpu(h, "nvmlGpmQueryDeviceSupport")
        return _Obj(isSupportedDevice=0 if g.gpm is None else 1)

    # -- sampled -------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        g = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        if g.lost_after_samples is not None:
            g.lost_after_samples -= 1
        return _Obj(gpu=g.util_gpu, memory=g.util_mem)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit")
        return g.power_limit_set_mw or g.limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature").temp

    def nvmlDeviceGetFieldValues(self, h: int, ids: list[int]) -> list[Any]:
        g = self._gpu(h, "nvmlDeviceGetFieldValues")
        return [_Obj(nvmlReturn=0, valueType=1, value=_Obj(uiVal=g.mem_temp))]

    def nvmlDeviceGetClockInfo(self, h: int, clk: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetClockInfo")
        return g.sm_clock if clk == 1 else g.mem_clock

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrPcieLinkGeneration").pcie_gen

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrPcieLinkWidth").pcie_width

    def nvmlDeviceGetPcieReplayCounter(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetPcieReplayCounter").replay

    def nvmlDeviceGetPcieThroughput(self, h: int, counter: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetPcieThroughput")
        return g.pcie_tx_kb if counter == 0 else g.pcie_rx_kb

    def nvmlDeviceGetTotalEccErrors(self, h: int, kind: int, counter: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetTotalEccErrors")
        if g.ecc is None:
            raise NVMLError(3)
        return g.ecc[kind]

    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, int, int]:
        g = self._gpu(h, "nvmlDeviceGetRemappedRows")
        if g.remapped is None:
            raise NVMLError(3)
        return g.remapped

    def nvmlDeviceGetRetiredPages(self, h: int, cause: int) -> list[int]:
        g = self._gpu(h, "nvmlDeviceGetRetiredPages")
        if g.arch >= 7:
            raise NVMLError(3)  # Ampere+ remap rows instead
        return []

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        g = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        return [_Obj(pid=pid, usedGpuMemory=mem) for pid, mem in g.processes]

    # -- GPM -----------------------------------------------------------------------------
    def nvmlGpmSampleAlloc(self) -> Any:
        self.gpm_allocated += 1
        return _Obj(gpu=None)

    def nvmlGpmSampleGet(self, h: int, sample: Any) -> Any:
        g = self._gpu(h, "nvmlGpmSampleGet")
        if g.gpm is None:
            raise NVMLError(3)
        sample.gpu = h
        return sample

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self.gpm_allocated -= 1

    def nvmlGpmMetricsGet(self, req: MetricsGet) -> MetricsGet:
        g = self._gpu(req.sample2.gpu, "nvmlGpmMetricsGet")
        for i in range(req.numMetrics):
            m = req.metrics[i]
            if g.gpm is not None and m.metricId in g.gpm:
                m.value, m.nvmlReturn = g.gpm[m.metricId], 0
            else:
                m.nvmlReturn = 3
        return req

    # -- links ---------------------------------------------------------------------------
    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetNvLinkState")
        if link >= len(g.nvlinks):
            raise NVMLError(2 if g.nvlinks else 3)
        return 0 if link in g.nvlinks_down else 1

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: int, link: int) -> Any:
        return _Obj(busId=self._gpu(h, "nvmlDeviceGetNvLinkRemotePciInfo").nvlinks[link][0])

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h: int, link: int) -> int:
        return self._gpu(h, "nvmlDeviceGetNvLinkRemoteDeviceType").nvlinks[link][1]

    def nvmlDeviceGetNvLinkVersion(self, h: int, link: int) -> int:
        self._gpu(h, "nvmlDeviceGetNvLinkVersion")
        return 4

    def nvmlDeviceGetTopologyCommonAncestor(self, a: int, b: int) -> int:
        self.calls.append("nvmlDeviceGetTopologyCommonAncestor")
        if (a, b) in self.levels:
            return self.levels[(a, b)]
        if (b, a) in self.levels:
            return self.levels[(b, a)]
        raise NVMLError(3)

    # -- setters (for tuner tests; never called on the shared GPU machine) -----------------
    def nvmlDeviceSetPowerManagementLimit(self, h: int, limit_mw: int) -> None:
        g = self._gpu(h, "nvmlDeviceSetPowerManagementLimit")
        lo, hi = g.limit_range_mw
        if not lo <= limit_mw <= hi:
            raise NVMLError(2)
        g.power_limit_set_mw = limit_mw

    def nvmlDeviceSetGpuLockedClocks(self, h: int, lo: int, hi: int) -> None:
        self._gpu(h, "nvmlDeviceSetGpuLockedClocks").locked_clocks = (lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, h: int) -> None:
        self._gpu(h, "nvmlDeviceResetGpuLockedClocks").locked_clocks = None


def hgx_gpus(addresses: list[str], **kw: Any) -> list[FakeGpu]:
    """FakeGpus for sysfs addresses, each with 18 NVLinks to NVSwitches (as on HGX H100)."""
    out = []
    for i, a in enumerate(addresses):
        bus = nvml_bus_id(a)
        switch = [(f"00000000:{0x90 + (k % 4):02X}:00.0", 2) for k in range(18)]
        args: dict[str, Any] = {"nvlinks": switch, "gpm": dict(HOPPER_IDLE_GPM)}
        args.update(kw)  # a caller's gpm=None (GPM unsupported) or nvlinks=[] wins
        out.append(FakeGpu(bus_id=bus, uuid=f"GPU-{i:08d}-aaaa-bbbb-cccc-dddddddddddd", serial=f"16549220{i:05d}",
                           **args))
    return out


HOPPER_IDLE_GPM: dict[int, float] = {2: 0.0, 3: 0.0, 5: 0.0, 10: 0.0, 12: 0.0, 13: 0.0, 20: 1.0, 21: 2.0,
                                     60: 0.0, 61: 0.0}


def nvml_bus_id(address: str) -> str:
    """sysfs "0000:18:00.0" -> NVML "00000000:18:00.0" (8-digit domain, upper-case hex)."""
    return "0000" + address.upper()


def nvlink_pair_gpus(addresses: list[str], links: int = 18, **kw: Any) -> list[FakeGpu]:
    """Two H200s joined by `links` direct NVLinks (remote type GPU), as on the real 2-GPU machine."""
    a, b = addresses
    out = []
    for i, (mine, other) in enumerate(((a, b), (b, a))):
        args: dict[str, Any] = {"name": "NVIDIA H200", "mem_total": 143771 * 2**20, "gpm": dict(HOPPER_IDLE_GPM)}
        args.update(kw)
        out.append(FakeGpu(bus_id=nvml_bus_id(mine), uuid=f"GPU-{i:08d}-eeee-ffff-0000-111111111111",
                           serial=f"16549330{i:05d}", nvlinks=[(nvml_bus_id(other), 0)] * links, **args))
    return out
