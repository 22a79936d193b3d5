"""NvmlBackend over FakeNvml: every NVML error is a value (a status reason, a `missing` entry,
`state="lost"`), NOT_SUPPORTED is asked once, GPM metrics come from two samples."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nodetune.probes.gpu import decode_clock_events
from nodetune.probes.nvml_backend import MIN_GPM_INTERVAL_S, NvmlBackend
from tests.support.fakenvml import (
    HOPPER_IDLE_GPM,
    FakeGpu,
    FakeNvml,
    NVMLError,
    hgx_gpus,
    nvlink_pair_gpus,
)

BUS = "00000000:18:00.0"


def _open(gpus: list[FakeGpu], **kw: Any) -> tuple[NvmlBackend, FakeNvml]:
    nv = FakeNvml(gpus, **kw)
    b = NvmlBackend(nv)
    st = b.open()
    assert st.available, st.reason
    for i in range(len(gpus)):
        b.static(i)
    return b, nv


def _gpu(**kw: Any) -> FakeGpu:
    kw.setdefault("gpm", dict(HOPPER_IDLE_GPM))
    return FakeGpu(bus_id=BUS, **kw)


# -- opening ----------------------------------------------------------------------------------

def test_open_reports_driver_and_count() -> None:
    nv = FakeNvml([_gpu(), _gpu()])
    st = NvmlBackend(nv).open()
    assert (st.available, st.source, st.reason, st.device_count) == (True, "nvml", None, 2)
    assert (st.driver_version, st.nvml_version, st.cuda_driver_version) == ("580.159.04", "13.580.159.04", 13000)
    assert nv.initialized


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (12, "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this node"),
        (9, "NVIDIA driver is installed but not loaded (is the nvidia module loaded?)"),
        (4, "no permission to open /dev/nvidia* (run as root or join the video group)"),
        (999, "nvmlInit failed: Unknown Error (NVML error 999)"),
    ],
)
def test_init_failure_is_a_status(code: int, reason: str) -> None:
    b = NvmlBackend(FakeNvml([], init_error=code))
    st = b.open()
    assert (st.available, st.source, st.reason, st.device_count) == (False, "none", reason, 0)
    b.close()  # closing a backend that never opened is harmless


def test_bindings_that_cannot_load_the_library() -> None:
    class OldBindings(FakeNvml):
        def nvmlInit(self) -> None:
            raise OSError("libnvidia-ml.so.1: cannot open shared object file: No such file or directory")

    st = NvmlBackend(OldBindings([])).open()
    assert not st.available
    assert st.reason == ("NVML could not load: libnvidia-ml.so.1: cannot open shared object file: "
                         "No such file or directory")


def test_device_count_failure() -> None:
    class NoCount(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise NVMLError(999)

    st = NvmlBackend(NoCount([_gpu()])).open()
    assert (st.available, st.reason, st.driver_version) == (False, "nvmlDeviceGetCount: Unknown Error (NVML error 999)",
                                                             "580.159.04")


def test_close_frees_gpm_samples_and_shuts_down() -> None:
    b, nv = _open([_gpu()])
    b.prime(0)
    time.sleep(MIN_GPM_INTERVAL_S + 0.01)
    b.sample(0)
    assert nv.gpm_allocated == 1  # the latest sample is kept for the next interval
    b.close()
    assert nv.gpm_allocated == 0 and not nv.initialized
    b.close()


# -- static -----------------------------------------------------------------------------------

def test_static_fields() -> None:
    b, _ = _open([_gpu()])
    s = b.static(0)
    assert (s.name, s.uuid, s.serial, s.bus_id, s.architecture) == (
        "NVIDIA H100 80GB HBM3", "GPU-11111111-2222-3333-4444-555555555555", "1654922001234", "0000:18:00.0", "hopper")
    assert s.memory_total_bytes == 81559 * 2**20
    assert (s.power_limit_default_w, s.power_limit_min_w, s.power_limit_max_w) == (700.0, 200.0, 700.0)
    assert (s.sm_clock_max_mhz, s.mem_clock_max_mhz) == (1980, 2619)
    assert (s.temp_slowdown_c, s.temp_shutdown_c, s.temp_gpu_max_c, s.temp_mem_max_c) == (89, 92, 87, 95)
    assert (s.pcie_max_gen, s.pcie_max_width, s.gpm_supported) == (5, 16, True)
    assert s.missing == {}


def test_static_unknown_arch_and_unsupported_fields() -> None:
    b, _ = _open([_gpu(arch=42, fail={"nvmlDeviceGetSerial": 3, "nvmlDeviceGetPowerManagementLimitConstraints": 4})])
    s = b.static(0)
    assert s.architecture == "unknown(42)"
    assert s.serial is None and s.power_limit_min_w is None and s.power_limit_default_w == 700.0
    assert s.missing == {"serial": "not supported on this GPU", "power_limit_range": "no permission (needs root)"}


def test_static_of_a_bad_index() -> None:
    b, _ = _open([_gpu()])
    assert b.static(3).missing == {"*": "nvmlDeviceGetHandleByIndex(3): Invalid Argument (NVML error 2)"}


# -- one sample --------------------------------------------------------------------------------

def test_sample_fields() -> None:
    g = _gpu(util_gpu=97, util_mem=41, mem_used=70 * 2**30, power_mw=650123, temp=71, mem_temp=80,
             sm_clock=1755, reasons=0x4 | 0x40, pcie_gen=4, pcie_width=8, replay=12)
    b, nv = _open([g])
    s = b.sample(0)
    assert s.state == "ok" and s.index == 0
    assert (s.util_gpu_pct, s.util_mem_pct) == (97.0, 41.0)
    assert (s.memory_used_bytes, s.memory_total_bytes) == (70 * 2**30, 81559 * 2**20)
    assert (s.power_w, s.power_limit_w, s.energy_j) == (650.123, 700.0, 123456.789)
    assert (s.temp_gpu_c, s.temp_mem_c, s.sm_clock_mhz, s.mem_clock_mhz) == (71.0, 80.0, 1755, 2619)
    assert (s.clock_event_mask, s.clock_events) == (0x44, ["sw_power_cap", "hw_thermal_slowdown"])
    assert (s.pcie_gen, s.pcie_width, s.pcie_replay_count) == (4, 8, 12)
    # With GPM the 20 ms NVML PCIe throughput window is not read: GPM has the bytes.
    assert (s.pcie_tx_kibps, s.pcie_rx_kibps) == (None, None)
    assert "nvmlDeviceGetPcieThroughput" not in nv.calls


def test_clock_event_names() -> None:
    assert decode_clock_events(0) == []
    assert decode_clock_events(0x1) == ["gpu_idle"]
    assert decode_clock_events(0x8 | 0x80 | 0x100) == [
        "hw_slowdown", "hw_power_brake_slowdown", "display_clock_setting"]
    assert decode_clock_events(0x2 | 0x10 | 0x20 | 0x1000) == [
        "applications_clocks_setting", "sync_boost", "sw_thermal_slowdown", "0x1000"]


def test_ecc_and_remapped_rows() -> None:
    b, nv = _open([_gpu(ecc=(3, 1), remapped=(2, 1, 1, 0))])
    s = b.sample(0)
    assert (s.ecc_corrected, s.ecc_uncorrected) == (3, 1)
    assert (s.remapped_rows_correctable, s.remapped_rows_uncorrectable) == (2, 1)
    assert (s.remapped_rows_pending, s.remapped_rows_failed) == (True, False)
    # Hopper retires no pages (it remaps rows): NVML says NOT_SUPPORTED, recorded once.
    assert (s.retired_pages_sbe, s.retired_pages_dbe) == (None, None)
    assert s.missing["retired_pages"] == "not supported on this GPU"


def test_retired_pages_on_a_pre_ampere_gpu() -> None:
    b, _ = _open([_gpu(arch=5, gpm=None, remapped=None)])  # Volta
    s = b.sample(0)
    assert (s.retired_pages_sbe, s.retired_pages_dbe) == (0, 0)
    assert s.remapped_rows_correctable is None and s.missing["remapped_rows"] == "not supported on this GPU"


def test_ecc_disabled() -> None:
    b, nv = _open([_gpu(ecc=None)])
    s = b.sample(0)
    assert (s.ecc_corrected, s.ecc_uncorrected) == (None, None)
    assert s.missing["ecc"] == "not supported on this GPU"
    assert nv.calls.count("nvmlDeviceGetTotalEccErrors") == 1  # the uncorrected count is not asked


def test_processes_with_memory_nvml_cannot_attribute() -> None:
    # Raw NVML_VALUE_NOT_AVAILABLE (older bindings) and None (nvidia-ml-py converts it) both mean unknown.
    b, _ = _open([_gpu(processes=[(4242, 2 * 2**30), (4243, 2**64 - 1), (4244, None)])])
    procs = b.sample(0).processes
    assert [(p.pid, p.used_memory_bytes, p.kind) for p in procs] == [
        (4242, 2 * 2**30, "compute"), (4243, None, "compute"), (4244, None, "compute")]


def test_not_supported_fields_are_asked_once() -> None:
    g = _gpu(fail={"nvmlDeviceGetPowerUsage": 3, "nvmlDeviceGetTotalEnergyConsumption": 4,
                   "nvmlDeviceGetFieldValues": 3, "nvmlDeviceGetPcieReplayCounter": 999})
    b, nv = _open([g])
    for _ in range(4):
        s = b.sample(0)
        assert s.state == "ok"
        assert s.power_w is None and s.energy_j is None and s.temp_mem_c is None
        assert s.missing["power"] == "not supported on this GPU"
        assert s.missing["energy"] == "no permission (needs root)"
        assert s.missing["temp_mem"] == "not supported on this GPU"
        assert s.missing["pcie_replay"] == "Unknown Error (NVML error 999)"
        assert s.temp_gpu_c == 33.0
    for fn in ("nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetFieldValues",
               "nvmlDeviceGetRetiredPages"):
        assert nv.calls.count(fn) == 1, fn
    # A transient error is asked again next time.
    assert nv.calls.count("nvmlDeviceGetPcieReplayCounter") == 4
    assert nv.calls.count("nvmlDeviceGetUtilizationRates") == 4


def test_field_value_error_inside_the_struct() -> None:
    class MemTempNotSupported(FakeNvml):
        def nvmlDeviceGetFieldValues(self, h: int, ids: list[int]) -> list[Any]:
            out = super().nvmlDeviceGetFieldValues(h, ids)
            out[0].nvmlReturn = 3
            return out

    nv = MemTempNotSupported([_gpu()])
    b = NvmlBackend(nv)
    b.open()
    b.static(0)
    for _ in range(2):
        s = b.sample(0)
        assert s.temp_mem_c is None and s.missing["temp_mem"] == "not supported on this GPU"
    assert nv.calls.count("nvmlDeviceGetFieldValues") == 1


# -- GPM ---------------------------------------------------------------------------------------

def test_gpm_metrics_from_two_samples() -> None:
    gpm = {2: 96.0, 3: 48.5, 5: 93.25, 10: 17.0, 11: 0.0, 12: 3.0, 13: 0.5, 20: 13.0, 21: 8500.0, 60: 1.5, 61: 2.5}
    b, nv = _open([_gpu(gpm=gpm)])
    b.prime(0)
    time.sleep(MIN_GPM_INTERVAL_S + 0.02)
    s = b.sample(0)
    m = s.gpm
    assert m is not None and "gpm" not in s.missing
    assert m.interval_s >= MIN_GPM_INTERVAL_S
    assert (m.sm_util_pct, m.sm_occupancy_pct, m.tensor_pct, m.dram_bw_pct) == (96.0, 48.5, 93.25, 17.0)
    assert (m.fp64_pct, m.fp32_pct, m.fp16_pct) == (0.0, 3.0, 0.5)
    assert (m.pcie_tx_mibps, m.pcie_rx_mibps, m.nvlink_rx_mibps, m.nvlink_tx_mibps) == (13.0, 8500.0, 1.5, 2.5)
    assert m.missing == {}
    assert nv.calls.count("nvmlGpmMetricsGet") == 1


def test_gpm_metric_the_gpu_does_not_have() -> None:
    b, _ = _open([_gpu()])  # HOPPER_IDLE_GPM has no FP64 metric
    b.prime(0)
    time.sleep(MIN_GPM_INTERVAL_S + 0.02)
    m = b.sample(0).gpm
    assert m is not None
    assert m.fp64_pct is None and m.missing == {"fp64_pct": "GPM metric 11: NVML error 3"}
    assert (m.pcie_tx_mibps, m.pcie_rx_mibps) == (1.0, 2.0)


def test_gpm_first_sample_and_too_close_samples() -> None:
    b, nv = _open([_gpu()])
    s1 = b.sample(0)  # not primed: this sample only starts the interval
    assert s1.gpm is None and s1.missing["gpm"] == "first GPM sample of the window: metrics need two"
    s2 = b.sample(0)
    assert s2.gpm is None
    assert s2.missing["gpm"].startswith("samples 0.0") and s2.missing["gpm"].endswith("apart; GPM needs >= 0.1 s")
    assert nv.calls.count("nvmlGpmSampleGet") == 1  # the too-early sample did not replace the first one
    time.sleep(MIN_GPM_INTERVAL_S + 0.02)
    s3 = b.sample(0)
    assert s3.gpm is not None and s3.gpm.interval_s >= MIN_GPM_INTERVAL_S and "gpm" not in s3.missing


def test_gpm_unsupported_falls_back_to_nvml_pcie_throughput() -> None:
    b, nv = _open([_gpu(gpm=None, arch=7, name="NVIDIA A100-SXM4-80GB")])
    st = b.static(0)
    assert st.gpm_supported is False
    assert st.missing["gpm"] == "GPM not supported on this GPU (needs Hopper or newer)"
    b.prime(0)
    time.sleep(MIN_GPM_INTERVAL_S + 0.01)
    s = b.sample(0)
    assert s.gpm is None and s.missing["gpm"] == "GPM not supported on this GPU"
    assert (s.pcie_tx_kibps, s.pcie_rx_kibps) == (1000.0, 2000.0)
    assert "nvmlGpmSampleGet" not in nv.calls and nv.gpm_allocated == 0


def test_gpm_sample_not_supported_is_asked_once() -> None:
    # Supported on paper, refused in practice (e.g. a VM without profiling rights).
    b, nv = _open([_gpu(fail={"nvmlGpmSampleGet": 3})])
    b.prime(0)
    for _ in range(3):
        time.sleep(MIN_GPM_INTERVAL_S + 0.01)
        s = b.sample(0)
        assert s.gpm is None and s.missing["gpm"] == "not supported on this GPU"
    assert nv.calls.count("nvmlGpmSampleGet") == 1


def test_gpm_metrics_get_failure() -> None:
    b, nv = _open([_gpu(fail={"nvmlGpmMetricsGet": 999})])
    b.prime(0)
    time.sleep(MIN_GPM_INTERVAL_S + 0.01)
    s = b.sample(0)
    assert s.gpm is None and s.missing["gpm"] == "Unknown Error (NVML error 999)"
    assert nv.gpm_allocated == 1  # the older sample is freed, the newer kept


# -- a GPU that falls off the bus ------------------------------------------------------------------

def test_gpu_lost_in_mid_sample() -> None:
    gpus = [_gpu(lost_after_samples=2), _gpu()]
    b, nv = _open(gpus)
    assert b.sample(0).state == "ok"
    s = b.sample(0)  # utilization still answers, then every call says GPU_IS_LOST
    assert s.state == "lost"
    assert s.util_gpu_pct == 0.0 and s.memory_used_bytes is None
    assert s.missing["*"] == "GPU 0 is lost (fell off the bus): GPU is lost (NVML error 15)"
    n = len(nv.calls)
    s3 = b.sample(0)
    assert s3.state == "lost" and s3.missing == {"*": s.missing["*"]}
    assert len(nv.calls) == n  # a lost GPU is not asked again
    assert b.static(0).missing == {"*": s.missing["*"]}
    assert b.nvlinks(0) == []
    b.prime(0)
    assert b.sample(1).state == "ok"  # the other GPU carries on


def test_gpu_lost_before_static() -> None:
    b = NvmlBackend(FakeNvml([_gpu(lost_after_samples=0)]))
    b.open()
    st = b.static(0)
    assert st.name is None and st.missing == {"*": "GPU 0 is lost (fell off the bus): GPU is lost (NVML error 15)"}
    assert b.sample(0).state == "lost"


def test_sample_of_a_bad_index_is_an_error_state() -> None:
    b, _ = _open([_gpu()])
    s = b.sample(5)
    assert (s.state, s.missing) == ("error", {"*": "GPU 5: Invalid Argument (NVML error 2)"})


# -- links -------------------------------------------------------------------------------------

def test_nvlinks_to_nvswitch() -> None:
    b, _ = _open(hgx_gpus(["0000:18:00.0", "0000:2a:00.0"]))
    links = b.nvlinks(0)
    assert len(links) == 18 and all(nl.active and nl.remote_kind == "switch" and nl.version == 4 for nl in links)
    assert links[0].remote_bus_id == "0000:90:00.0"


def test_direct_nvlinks_and_inactive_ones() -> None:
    gpus = nvlink_pair_gpus(["0000:00:05.0", "0000:00:06.0"])
    gpus[1].nvlinks_down = {0}
    b, nv = _open(gpus)
    a = b.nvlinks(0)
    assert [(nl.remote_kind, nl.remote_bus_id) for nl in a] == [("gpu", "0000:00:06.0")] * 18
    c = b.nvlinks(1)
    assert (c[0].active, c[0].remote_bus_id, c[0].remote_kind, c[0].version) == (False, None, None, None)
    assert sum(nl.active for nl in c) == 17


def test_no_nvlink() -> None:
    b, _ = _open([_gpu()])
    assert b.nvlinks(0) == []


def test_common_ancestor_levels() -> None:
    b, _ = _open([_gpu(), _gpu(), _gpu()], levels={(0, 1): 10, (0, 2): 30, (1, 2): 50})
    assert [b.common_ancestor(0, 1), b.common_ancestor(2, 0), b.common_ancestor(1, 2)] == ["PIX", "PHB", "SYS"]
    b2, _ = _open([_gpu(), _gpu()])
    assert b2.common_ancestor(0, 1) is None
