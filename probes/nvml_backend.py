"""GPU telemetry through NVML (nvidia-ml-py).

Every NVML error becomes a recorded value: a field NVML does not support is listed in `missing`
once and not asked again (that also keeps the per-sample cost down), a GPU that falls off the bus
turns its samples into `state="lost"`, and a node without a driver gets a status that says so.
"""

from __future__ import annotations

import ctypes
import importlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .gpu import (
    BackendStatus,
    GpmMetrics,
    GpuProcess,
    GpuSample,
    GpuStatic,
    NvLink,
    decode_clock_events,
)
from .pci import normalize_bus_id

T = TypeVar("T")

_ARCH = {2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada",
         9: "hopper", 10: "blackwell", 13: "rubin"}
_LEVEL = {0: "X", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
_REMOTE = {0: "gpu", 1: "npu", 2: "switch", 0xFF: "unknown"}

# GPM metric ids (nvmlGpmMetricId_t) and the GpmMetrics field each fills.
GPM_FIELDS: dict[int, str] = {
    2: "sm_util_pct",
    3: "sm_occupancy_pct",
    5: "tensor_pct",
    10: "dram_bw_pct",
    11: "fp64_pct",
    12: "fp32_pct",
    13: "fp16_pct",
    20: "pcie_tx_mibps",
    21: "pcie_rx_mibps",
    60: "nvlink_rx_mibps",
    61: "nvlink_tx_mibps",
}
MIN_GPM_INTERVAL_S = 0.1
# nvmlValueType_t -> the member of nvmlValue_t that holds it.
_FIELD_VALUE_ATTR = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class GpuLost(Exception):
    pass


LIBRARY_NOT_FOUND = "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this node"


class NvmlBackend:
    """`GpuBackend` over a pynvml-compatible module (the real one unless a test passes one)."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._handles: dict[int, Any] = {}
        self._unsupported: dict[int, dict[str, str]] = {}
        self._lost: dict[int, str] = {}
        self._gpm_prev: dict[int, tuple[Any, float]] = {}
        self._gpm_ok: dict[int, bool] = {}
        self._count = 0
        self._open = False
        self._mem_v2: bool | None = None

    # -- life cycle -------------------------------------------------------------------------
    def open(self) -> BackendStatus:
        """Initialise NVML; the status says why there is no GPU backend where there is none."""
        if self._nvml is None:
            # The library the bindings load (they try this name alone on Linux): on a node with no
            # driver, answering before importing them saves ~15 ms of `nodetune topo`.
            try:
                ctypes.CDLL("libnvidia-ml.so.1")
            except OSError:
                return BackendStatus(False, "none", LIBRARY_NOT_FOUND)
            try:
                self._nvml = importlib.import_module("pynvml")
            except ImportError:
                return BackendStatus(False, "none", "nvidia-ml-py (pynvml) is not installed")
        n = self._nvml
        try:
            n.nvmlInit()
        except n.NVMLError as exc:
            return BackendStatus(False, "none", self._init_reason(exc))
        except OSError as exc:  # older bindings raise OSError when the library cannot load
            return BackendStatus(False, "none", f"NVML could not load: {exc}")
        self._open = True
        st = BackendStatus(True, "nvml")
        try:
            st.driver_version = _text(n.nvmlSystemGetDriverVersion())
            st.nvml_version = _text(n.nvmlSystemGetNVMLVersion())
            st.cuda_driver_version = int(n.nvmlSystemGetCudaDriverVersion())
        except n.NVMLError as exc:
            st.reason = f"driver version: {self._err(exc)}"
        try:
            self._count = int(n.nvmlDeviceGetCount())
        except n.NVMLError as exc:
            return BackendStatus(False, "nvml", f"nvmlDeviceGetCount: {self._err(exc)}", st.driver_version)
        st.device_count = self._count
        return st

    def close(self) -> None:
        if not self._open:
            return
        for prev, _ in self._gpm_prev.values():
            try:
                self._nvml.nvmlGpmSampleFree(prev)
            except self._nvml.NVMLError:
                pass  # freeing is best effort; the driver frees on shutdown anyway
        self._gpm_prev.clear()
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass  # shutting down a library we no longer use: nothing to report to anyone
        self._open = False

    def _init_reason(self, exc: Any) -> str:
        n = self._nvml
        code = getattr(exc, "value", None)
        if code == getattr(n, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
            return LIBRARY_NOT_FOUND
        if code == getattr(n, "NVML_ERROR_DRIVER_NOT_LOADED", 9):
            return "NVIDIA driver is installed but not loaded (is the nvidia module loaded?)"
        if code == getattr(n, "NVML_ERROR_NO_PERMISSION", 4):
            return "no permission to open /dev/nvidia* (run as root or join the video group)"
        return f"nvmlInit failed: {self._err(exc)}"

    def _err(self, exc: Any) -> str:
        code = getattr(exc, "value", None)
        return f"{exc} (NVML error {code})" if code is not None else str(exc)

    # -- calls with error accounting --------------------------------------------------------
    def _handle(self, index: int) -> Any:
        h = self._handles.get(index)
        if h is None:
            h = self._nvml.nvmlDeviceGetHandleByIndex(index)
            self._handles[index] = h
        return h

    def _call(self, index: int, missing: dict[str, str], name: str, fn: Callable[[], T]) -> T | None:
        """Call NVML for one field; remember NOT_SUPPORTED so it is not asked again."""
        n = self._nvml
        unsupported = self._unsupported.setdefault(index, {})
        if name in unsupported:
            missing[name] = unsupported[name]
            return None
        try:
            return fn()
        except n.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == n.NVML_ERROR_GPU_IS_LOST:
                self._lost[index] = f"GPU {index} is lost (fell off the bus): {self._err(exc)}"
                raise GpuLost() from None
            reason = self._err(exc)
            if code == n.NVML_ERROR_NOT_SUPPORTED:
                reason = "not supported on this GPU"
                unsupported[name] = reason
            elif code == n.NVML_ERROR_NO_PERMISSION:
                reason = "no permission (needs root)"
                unsupported[name] = reason
            missing[name] = reason
            return None

    # -- static ---------------------------------------------------------------------------
    def static(self, index: int) -> GpuStatic:
        n = self._nvml
        s = GpuStatic(index=index)
        if index in self._lost:
            s.missing["*"] = self._lost[index]
            return s
        try:
            h = self._handle(index)
        except n.NVMLError as exc:
            s.missing["*"] = f"nvmlDeviceGetHandleByIndex({index}): {self._err(exc)}"
            return s
        m = s.missing
        try:
            s.name = self._call(index, m, "name", lambda: _text(n.nvmlDeviceGetName(h)))
            s.uuid = self._call(index, m, "uuid", lambda: _text(n.nvmlDeviceGetUUID(h)))
            s.serial = self._call(index, m, "serial", lambda: _text(n.nvmlDeviceGetSerial(h)))
            bus = self._call(index, m, "bus_id", lambda: _text(n.nvmlDeviceGetPciInfo(h).busId))
            s.bus_id = normalize_bus_id(bus) if bus else None
            arch = self._call(index, m, "architecture", lambda: n.nvmlDeviceGetArchitecture(h))
            s.architecture = _ARCH.get(arch, f"unknown({arch})") if arch is not None else None
            mem = self._call(index, m, "memory_total", lambda: n.nvmlDeviceGetMemoryInfo(h))
            s.memory_total_bytes = int(mem.total) if mem is not None else None
            dflt = self._call(index, m, "power_limit_default", lambda: n.nvmlDeviceGetPowerManagementDefaultLimit(h))
            s.power_limit_default_w = dflt / 1000 if dflt is not None else None
            cons = self._call(index, m, "power_limit_range", lambda: n.nvmlDeviceGetPowerManagementLimitConstraints(h))
            if cons is not None:
                s.power_limit_min_w, s.power_limit_max_w = cons[0] / 1000, cons[1] / 1000
            s.sm_clock_max_mhz = self._call(index, m, "sm_clock_max",
                                            lambda: int(n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)))
            s.mem_clock_max_mhz = self._call(index, m, "mem_clock_max",
                                             lambda: int(n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM)))
            thr = n.nvmlDeviceGetTemperatureThreshold
            s.temp_slowdown_c = self._call(index, m, "temp_slowdown",
                                           lambda: int(thr(h, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)))
            s.temp_shutdown_c = self._call(index, m, "temp_shutdown",
                                           lambda: int(thr(h, n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)))
            s.temp_gpu_max_c = self._call(index, m, "temp_gpu_max",
                                          lambda: int(thr(h, n.NVML_TEMPERATURE_THRESHOLD_GPU_MAX)))
            s.temp_mem_max_c = self._call(index, m, "temp_mem_max",
                                          lambda: int(thr(h, n.NVML_TEMPERATURE_THRESHOLD_MEM_MAX)))
            s.pcie_max_gen = self._call(index, m, "pcie_max_gen", lambda: int(n.nvmlDeviceGetMaxPcieLinkGeneration(h)))
            s.pcie_max_width = self._call(index, m, "pcie_max_width", lambda: int(n.nvmlDeviceGetMaxPcieLinkWidth(h)))
            sup = self._call(index, m, "gpm", lambda: n.nvmlGpmQueryDeviceSupport(h))
            s.gpm_supported = bool(sup.isSupportedDevice) if sup is not None else False
            if sup is not None and not s.gpm_supported:
                m["gpm"] = "GPM not supported on this GPU (needs Hopper or newer)"
            self._gpm_ok[index] = bool(s.gpm_supported)
        except GpuLost:
            s.missing["*"] = self._lost[index]
        return s

    # -- GPM ------------------------------------------------------------------------------
    def prime(self, index: int) -> None:
        if not self._gpm_ok.get(index) or index in self._lost:
            return
        try:
            self._gpm_take(index, {})
        except GpuLost:
            return

    def _gpm_take(self, index: int, missing: dict[str, str]) -> GpmMetrics | None:
        """Take a GPM sample; return metrics since the previous one (>= 100 ms apart)."""
        n = self._nvml
        h = self._handle(index)
        prev = self._gpm_prev.get(index)
        now = time.monotonic()
        if prev is not None and now - prev[1] < MIN_GPM_INTERVAL_S:
            missing["gpm"] = f"samples {now - prev[1]:.3f} s apart; GPM needs >= {MIN_GPM_INTERVAL_S} s"
            return None
        sample = self._call(index, missing, "gpm", lambda: n.nvmlGpmSampleGet(h, n.nvmlGpmSampleAlloc()))
        if sample is None:
            return None
        self._gpm_prev[index] = (sample, now)
        if prev is None:
            missing["gpm"] = "first GPM sample of the window: metrics need two"
            return None
        old, t_old = prev
        out = GpmMetrics(interval_s=round(now - t_old, 4))
        req = n.c_nvmlGpmMetricsGet_t()
        req.version = n.NVML_GPM_METRICS_GET_VERSION
        req.numMetrics = len(GPM_FIELDS)
        req.sample1 = old
        req.sample2 = sample
        for i, mid in enumerate(GPM_FIELDS):
            req.metrics[i].metricId = mid
        got = self._call(index, missing, "gpm", lambda: n.nvmlGpmMetricsGet(req))
        try:
            n.nvmlGpmSampleFree(old)
        except n.NVMLError as exc:
            missing["gpm.free"] = self._err(exc)
        if got is None:
            return None
        for i, (mid, fname) in enumerate(GPM_FIELDS.items()):
            metric = got.metrics[i]
            if int(metric.nvmlReturn) == 0 and metric.metricId == mid:
                setattr(out, fname, round(float(metric.value), 3))
            else:
                out.missing[fname] = f"GPM metric {mid}: NVML error {int(metric.nvmlReturn)}"
        return out

    # -- sample ---------------------------------------------------------------------------
    def sample(self, index: int, detail: bool = True) -> GpuSample:
        """One reading. Without `detail`, counters that change slowly and cost much to read
        (energy: ~4 ms of CPU per call on Hopper; ECC, row remaps, PCIe replays) are left out:
        a window reads them on its first and last sample only."""
        n = self._nvml
        s = GpuSample(index=index, t=time.monotonic())
        if index in self._lost:
            s.state, s.missing["*"] = "lost", self._lost[index]
            return s
        m = s.missing
        try:
            h = self._handle(index)
            util = self._call(index, m, "utilization", lambda: n.nvmlDeviceGetUtilizationRates(h))
            if util is not None:
                s.util_gpu_pct, s.util_mem_pct = float(util.gpu), float(util.memory)
            mem = self._call(index, m, "memory", lambda: self._memory_info(h))
            if mem is not None:
                s.memory_used_bytes, s.memory_total_bytes = int(mem.used), int(mem.total)
            p = self._call(index, m, "power", lambda: n.nvmlDeviceGetPowerUsage(h))
            s.power_w = p / 1000 if p is not None else None
            lim = self._call(index, m, "power_limit", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h))
            s.power_limit_w = lim / 1000 if lim is not None else None
            if detail:
                e = self._call(index, m, "energy", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h))
                s.energy_j = e / 1000 if e is not None else None
            t = self._call(index, m, "temp_gpu", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))
            s.temp_gpu_c = float(t) if t is not None else None
            s.temp_mem_c = self._memory_temp(index, h, m)
            s.sm_clock_mhz = self._call(index, m, "sm_clock", lambda: int(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)))
            s.mem_clock_mhz = self._call(index, m, "mem_clock",
                                         lambda: int(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)))
            mask = self._call(index, m, "clock_events", lambda: int(n.nvmlDeviceGetCurrentClocksEventReasons(h)))
            if mask is not None:
                s.clock_event_mask, s.clock_events = mask, decode_clock_events(mask)
            s.pcie_gen = self._call(index, m, "pcie_gen", lambda: int(n.nvmlDeviceGetCurrPcieLinkGeneration(h)))
            s.pcie_width = self._call(index, m, "pcie_width", lambda: int(n.nvmlDeviceGetCurrPcieLinkWidth(h)))
            if detail:
                s.pcie_replay_count = self._call(index, m, "pcie_replay",
                                                 lambda: int(n.nvmlDeviceGetPcieReplayCounter(h)))
                self._ecc(index, h, s)
            if not self._gpm_ok.get(index):
                # Without GPM, NVML's 20 ms PCIe throughput window is the only transfer signal.
                tx = self._call(index, m, "pcie_tx",
                                lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_TX_BYTES))
                rx = self._call(index, m, "pcie_rx",
                                lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_RX_BYTES))
                s.pcie_tx_kibps = float(tx) if tx is not None else None
                s.pcie_rx_kibps = float(rx) if rx is not None else None
            s.processes = self._processes(index, h, m)
            if self._gpm_ok.get(index):
                s.gpm = self._gpm_take(index, m)
            elif index in self._gpm_ok:
                m["gpm"] = "GPM not supported on this GPU"
        except GpuLost:
            s.state, s.missing["*"] = "lost", self._lost[index]
        except n.NVMLError as exc:
            s.state, s.missing["*"] = "error", f"GPU {index}: {self._err(exc)}"
        return s

    def _memory_info(self, h: Any) -> Any:
        """Memory info v2 where the bindings have it: its `used` leaves out the driver's reserved
        memory, as nvidia-smi does (v1 counted ~600 MiB on an idle H200)."""
        n = self._nvml
        version = getattr(n, "nvmlMemory_v2", None)
        if version is not None and self._mem_v2 is not False:
            try:
                info = n.nvmlDeviceGetMemoryInfo(h, version=version)
                self._mem_v2 = True
                return info
            except n.NVMLError as exc:
                if getattr(exc, "value", None) not in (n.NVML_ERROR_NOT_SUPPORTED,
                                                       getattr(n, "NVML_ERROR_FUNCTION_NOT_FOUND", 13)):
                    raise
                self._mem_v2 = False
        return n.nvmlDeviceGetMemoryInfo(h)

    def _memory_temp(self, index: int, h: Any, m: dict[str, str]) -> float | None:
        n = self._nvml

        def read() -> float | None:
            vals = n.nvmlDeviceGetFieldValues(h, [n.NVML_FI_DEV_MEMORY_TEMP])
            v = vals[0]
            if int(v.nvmlReturn) != 0:
                raise n.NVMLError(int(v.nvmlReturn))
            return float(getattr(v.value, _FIELD_VALUE_ATTR.get(int(v.valueType), "uiVal")))

        return self._call(index, m, "temp_mem", read)

    def _ecc(self, index: int, h: Any, s: GpuSample) -> None:
        n, m = self._nvml, s.missing
        s.ecc_corrected = self._call(index, m, "ecc", lambda: int(n.nvmlDeviceGetTotalEccErrors(
            h, n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_VOLATILE_ECC)))
        if "ecc" not in m:
            s.ecc_uncorrected = self._call(index, m, "ecc", lambda: int(n.nvmlDeviceGetTotalEccErrors(
                h, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC)))
        rows = self._call(index, m, "remapped_rows", lambda: n.nvmlDeviceGetRemappedRows(h))
        if rows is not None:
            corr, unc, pending, failed = rows
            s.remapped_rows_correctable, s.remapped_rows_uncorrectable = int(corr), int(unc)
            s.remapped_rows_pending, s.remapped_rows_failed = bool(pending), bool(failed)
        # Retired pages predate row remapping (pre-Ampere); Hopper says NOT_SUPPORTED once.
        sbe = self._call(index, m, "retired_pages", lambda: n.nvmlDeviceGetRetiredPages(
            h, n.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS))
        if sbe is not None:
            s.retired_pages_sbe = len(sbe)
            dbe = self._call(index, m, "retired_pages", lambda: n.nvmlDeviceGetRetiredPages(
                h, n.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR))
            s.retired_pages_dbe = len(dbe) if dbe is not None else None

    def _processes(self, index: int, h: Any, m: dict[str, str]) -> list[GpuProcess]:
        n = self._nvml
        procs = self._call(index, m, "processes", lambda: n.nvmlDeviceGetComputeRunningProcesses(h)) or []
        out = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            # NVML reports NVML_VALUE_NOT_AVAILABLE (2**64-1) for memory it cannot attribute.
            out.append(GpuProcess(pid=int(p.pid),
                                  used_memory_bytes=int(used) if used is not None and used < 2**63 else None))
        return out

    # -- topology -------------------------------------------------------------------------
    def nvlinks(self, index: int) -> list[NvLink]:
        n = self._nvml
        out: list[NvLink] = []
        if index in self._lost:
            return out
        try:
            h = self._handle(index)
        except n.NVMLError:
            return out
        max_links = int(getattr(n, "NVML_NVLINK_MAX_LINKS", 18))
        for link in range(max_links):
            try:
                state = int(n.nvmlDeviceGetNvLinkState(h, link))
            except n.NVMLError:
                # NOT_SUPPORTED / INVALID_ARGUMENT past the last link the GPU has.
                continue
            nl = NvLink(gpu=index, link=link, active=state == 1)
            if nl.active:
                try:
                    nl.remote_bus_id = normalize_bus_id(_text(n.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId))
                except n.NVMLError:
                    nl.remote_bus_id = None
                try:
                    nl.remote_kind = _REMOTE.get(int(n.nvmlDeviceGetNvLinkRemoteDeviceType(h, link)), "unknown")
                except (n.NVMLError, AttributeError):
                    nl.remote_kind = None
                try:
                    nl.version = int(n.nvmlDeviceGetNvLinkVersion(h, link))
                except n.NVMLError:
                    nl.version = None
            out.append(nl)
        return out

    def common_ancestor(self, a: int, b: int) -> str | None:
        n = self._nvml
        try:
            level = int(n.nvmlDeviceGetTopologyCommonAncestor(self._handle(a), self._handle(b)))
        except n.NVMLError:
            return None
        return _LEVEL.get(level)
