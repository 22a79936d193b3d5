"""The per-sample records carry no per-object dict (slots) and still behave as plain dataclasses, and
the generated from-JSON converters build exactly what the classes' own constructors would."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from nodetune.diagnosis.window_stats import ProcessStats, ThreadStats
from nodetune.probes.cpu import CpuSample, CpuTimes
from nodetune.probes.gpu import GpmMetrics, GpuProcess, GpuSample
from nodetune.probes.io import DiskStat, IoSample, Psi, PsiLine
from nodetune.probes.memory import MemorySample, NodeMemory
from nodetune.probes.nic import NicPort, NicSample
from nodetune.probes.processes import Job, ProcessInfo, ProcessSample, ThreadSample
from nodetune.probes.serde import SchemaError, from_jsonable, to_jsonable
from nodetune.probes.snapshot import Sample, Window
from nodetune.probes.thermal import TempSensor, ThermalSample
from nodetune.probes.topology import HugePagePool

SLOTTED = (Sample, CpuTimes, CpuSample, MemorySample, NodeMemory, IoSample, Psi, PsiLine, DiskStat, ThermalSample,
           TempSensor, NicSample, NicPort, GpuSample, GpmMetrics, GpuProcess, ProcessSample, ThreadSample,
           ProcessInfo, Job, HugePagePool, ProcessStats, ThreadStats)


def _sample() -> Sample:
    return Sample(
        t=12.5, wall="2026-12-04T22:00:00+00:00",
        cpu=CpuSample(total=CpuTimes(-1, user=10, idle=90), per_cpu=[CpuTimes(0, user=5), CpuTimes(1, idle=7)],
                      procs_running=3, loadavg=[0.5, 0.25, 0.1]),
        memory=MemorySample(meminfo_kb={"MemTotal": 1 << 20}, nodes=[NodeMemory(0, total_kb=1 << 19)],
                            hugepages=[HugePagePool(2048, total=4)]),
        io=IoSample(psi={"io": Psi(some=PsiLine(1.0, 2.0, 3.0, 400))},
                    disks=[DiskStat("nvme0n1", 1, 2, 3, 4, 5, 6, 0, 7, 8)]),
        thermal=ThermalSample(sensors=[TempSensor("hwmon", "coretemp", "Package id 0", temp_c=55.0)]),
        gpus=[GpuSample(index=0, t=12.5, util_gpu_pct=97.0, clock_events=["sw_power_cap"],
                        gpm=GpmMetrics(interval_s=1.0, sm_util_pct=80.0), processes=[GpuProcess(4242, 1 << 30)])],
        processes=[ProcessSample(4242, state="R", utime=100, stime=10, read_bytes=4096,
                                 threads=[ThreadSample(4242, "python", "R", 90, 9, 3, 0),
                                          ThreadSample(4250, "pt_data", "D", 5, 1, None, None)],
                                 missing={"io": "permission denied"})],
        nics=NicSample(ports=[NicPort("mlx5_0", "infiniband", port=1, rx_bytes=10, counters={"port_xmit_wait": 3})]),
    )


@pytest.mark.parametrize("cls", SLOTTED, ids=lambda c: c.__name__)
def test_records_that_exist_in_thousands_have_no_instance_dict(cls: type) -> None:
    assert "__slots__" in cls.__dict__
    fields = dataclasses.fields(cls)
    required = {f.name: 0 for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    obj = cls(**required)
    assert not hasattr(obj, "__dict__")
    with pytest.raises(AttributeError):
        obj.not_a_field = 1  # a typo'd attribute fails loudly instead of growing a dict


def test_a_slotted_sample_copies_pickles_replaces_and_round_trips() -> None:
    s = _sample()
    assert copy.deepcopy(s) == s and copy.copy(s) == s
    assert pickle.loads(pickle.dumps(s)) == s
    r = dataclasses.replace(s, t=13.0)
    assert r.t == 13.0 and r.cpu is s.cpu
    assert dataclasses.asdict(s)["processes"][0]["threads"][1]["state"] == "D"
    assert from_jsonable(Sample, to_jsonable(s)) == s
    w = Window(seconds=1.0, interval_s=1.0, samples=[s],
               processes=[ProcessInfo(4242, "gpu", job=Job("slurm", "1", "/x"))])
    assert from_jsonable(Window, to_jsonable(w)) == w
    assert w.process(4242) is w.processes[0]  # Window keeps its dict: the pid index lives there


def test_a_subclass_without_slots_still_converts() -> None:
    @dataclass
    class Bigger(Sample):
        extra: int = 0

    b = Bigger(**{f.name: getattr(_sample(), f.name) for f in dataclasses.fields(Sample)}, extra=5)
    assert from_jsonable(Bigger, to_jsonable(b)) == b


# Classes whose __init__ does more than store fields: the converter must call it.
@dataclass
class _Post:
    a: int
    b: list[int] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen.append("post_init")


@dataclass(frozen=True)
class _Frozen:
    a: int
    b: str | None = None


@dataclass
class _KwOnly:
    a: int
    b: int = field(default=2, kw_only=True)
    c: dict[str, int] = field(default_factory=dict)


@dataclass
class _Custom:
    a: int

    def __init__(self, a: int) -> None:
        self.a = a * 10


@pytest.mark.parametrize(("cls", "data", "expected"), [
    (_Post, {"a": 1}, _Post(1)),
    (_Frozen, {"a": 1, "b": "x"}, _Frozen(1, "x")),
    (_KwOnly, {"a": 1, "b": 5, "c": {"k": 3}}, _KwOnly(1, b=5, c={"k": 3})),
    (_Custom, {"a": 2}, _Custom(2)),
])
def test_the_converter_calls_an_init_that_does_more(cls: type, data: dict[str, Any], expected: Any) -> None:
    got = from_jsonable(cls, data)
    assert got == expected
    if cls is _Post:
        assert got.seen == ["post_init"]
    if cls is _Custom:
        assert got.a == 20


def test_defaults_are_fresh_objects_per_instance() -> None:
    a = from_jsonable(ProcessSample, {"pid": 1})
    b = from_jsonable(ProcessSample, {"pid": 2})
    assert a.threads == [] and a.missing == {} and a.alive is True and a.state is None
    assert a.threads is not b.threads and a.missing is not b.missing
    c = from_jsonable(ProcessSample, {"pid": 3, "threads": [], "missing": {}})
    assert c.threads == [] and c.missing == {}


@pytest.mark.parametrize(("data", "where"), [
    ({"pid": 1, "threads": {}}, "$.threads: expected a list"),
    ({"pid": 1, "missing": []}, "$.missing: expected an object"),
    ({"pid": 1, "threads": [{"tid": 1, "name": "x", "state": "S", "utime": 1, "stime": 1, "processor": None}]},
     "$.threads[0].blkio_ticks: missing"),
    ({"pid": 1, "threads": [{"tid": 1, "name": "x", "state": "S", "utime": -1, "stime": 1, "processor": None,
                             "blkio_ticks": None}]}, "$.threads[0].utime: -1 is negative"),
    ({"pid": 1, "missing": {"io": 5}}, "$.missing.io: expected str"),
    ({"alive": True}, "$.pid: missing"),
])
def test_a_bad_value_in_a_sample_is_named_by_its_path(data: dict[str, Any], where: str) -> None:
    where = "$.processes[0]" + where[1:]  # under a Sample, where negative counters are refused
    with pytest.raises(SchemaError, match=re.escape(where)):
        from_jsonable(Sample, {"t": 1.0, "wall": "", "cpu": {}, "memory": {}, "io": {}, "thermal": {},
                               "processes": [data]}, "$")
