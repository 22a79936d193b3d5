"""The diagnosis workloads (bench/workloads/*.py): which exist, how they are grouped into rounds,
and each one's command line."""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness.console import say
from bench.harness.judge import Expected, read_expected

REPO = Path(__file__).resolve().parents[2]
WORKLOAD_DIR = REPO / "bench" / "workloads"
ORDER = ["compute_bound", "memory_bound", "cpu_starved", "io_starved", "pageable_h2d",
         "launch_bound", "idle_allocated", "healthy_training", "startup", "checkpoint", "cpu_eval", "half_host",
         "allreduce", "straggler_2gpu"]
# --concurrent on 2 GPUs pairs these: io_starved's node-wide I/O pressure (PSI io, a busy disk) is
# kept away from cpu_starved's GPU, whose cause it would otherwise blur; raise the pairing on purpose
# with --only in the order you want.
CONCURRENT_ORDER = ["compute_bound", "io_starved", "memory_bound", "cpu_starved", "pageable_h2d",
                    "launch_bound", "idle_allocated", "healthy_training"]
ALL_GPU_WORKLOADS = {"allreduce", "straggler_2gpu"}  # run alone, over every GPU
# NVLink multicast stays off for every workload, as bench/device/setup.sh exports it.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
# The CPU stand-in for every workload in a dry run: READY after 0.2 s, then sleeps.
CPU_STANDIN = WORKLOAD_DIR / "_cpu_standin.py"


@dataclass(frozen=True)
class Found:
    """A workload file and its expectation."""

    path: Path
    expected: Expected


@dataclass(frozen=True)
class Slot:
    """One workload placed in a round: on `device`, judged on `gpus`."""

    name: str
    path: Path
    expected: Expected
    device: str
    gpus: list[int]

    @property
    def where(self) -> str:
        """`cuda:N`, or `all` for a workload spread over every GPU."""
        return "all" if self.name in ALL_GPU_WORKLOADS else self.device


def discover(workload_dir: Path = WORKLOAD_DIR) -> dict[str, Found]:
    """Every workload with an EXPECTED, in ORDER first, then the rest by name."""
    names = [n for n in ORDER if (workload_dir / f"{n}.py").exists()]
    names += sorted(p.stem for p in workload_dir.glob("*.py")
                    if not p.name.startswith("_") and p.stem not in ORDER)
    found: dict[str, Found] = {}
    for name in names:
        path = workload_dir / f"{name}.py"
        exp = read_expected(path)
        if exp is not None:
            found[name] = Found(path, exp)
    return found


def select(found: dict[str, Found], only: str | None, skip: str | None) -> list[str]:
    """The names to run: --only's (in its order; unknown names are an error), less --skip's."""
    names = list(found)
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in found]
        if unknown:
            raise SystemExit(f"--only: unknown workload(s) {unknown}; known: {', '.join(found)}")
        names = wanted
    if skip:
        names = [n for n in names if n not in {s.strip() for s in skip.split(",")}]
    return names


@dataclass(frozen=True)
class Plan:
    """The rounds to run, and the all-GPU workloads skipped for want of GPUs."""

    rounds: list[list[Slot]]
    skipped: list[str]


def plan_rounds(names: list[str], found: dict[str, Found], ngpus: int, concurrent: bool,
                keep_order: bool, gpu: int = 0) -> Plan:
    """Sequential: one workload a round on cuda:`gpu`. Concurrent: one per GPU at once (workload k
    on cuda:k), in CONCURRENT_ORDER unless `keep_order`. All-GPU workloads last, alone, on every GPU."""
    single = [n for n in names if n not in ALL_GPU_WORKLOADS]
    multi = [n for n in names if n in ALL_GPU_WORKLOADS]
    rounds: list[list[Slot]] = []
    if concurrent:
        if not keep_order:
            rank = {n: i for i, n in enumerate(CONCURRENT_ORDER)}
            single.sort(key=lambda n: rank.get(n, len(rank)))
        for i in range(0, len(single), ngpus):
            group = single[i:i + ngpus]
            rounds.append([Slot(n, found[n].path, found[n].expected, f"cuda:{k}", [k])
                           for k, n in enumerate(group)])
    else:
        rounds += [[Slot(n, found[n].path, found[n].expected, f"cuda:{gpu}", [gpu])] for n in single]
    skipped = []
    for n in multi:
        if ngpus < 2:
            skipped.append(n)
            continue
        rounds.append([Slot(n, found[n].path, found[n].expected, "cuda:0", list(range(ngpus)))])
    return Plan(rounds, skipped)


@dataclass(frozen=True)
class ArgvOptions:
    """What shapes a workload's command line."""

    python: str
    seconds: float
    ngpus: int
    fake: bool = False
    io_data_dir: str | None = None
    template: str | None = None


def workload_argv(slot: Slot, o: ArgvOptions) -> list[str]:
    """The workload's command: its file (or the CPU stand-in), --seconds, --device, its extras."""
    extra: list[str] = []
    if slot.name == "io_starved" and o.io_data_dir:
        extra += ["--data-dir", o.io_data_dir]
    if slot.name in ALL_GPU_WORKLOADS:
        extra += ["--nproc", str(o.ngpus)]
    if o.template:
        return shlex.split(o.template.format(
            python=shlex.quote(o.python), path=shlex.quote(str(slot.path)), name=slot.name,
            seconds=o.seconds, device=slot.device, extra=shlex.join(extra)))
    if o.fake:
        return [o.python, str(CPU_STANDIN), "--seconds", str(o.seconds), "--device", slot.device]
    return [o.python, str(slot.path), "--seconds", str(o.seconds), "--device", slot.device] + extra


def prepare_io(python: str, io_data_dir: str | None, env: dict[str, str]) -> float | None:
    """Create io_starved's dataset before the clock starts (it is reused afterwards); seconds taken."""
    argv = [python, str(WORKLOAD_DIR / "io_starved.py"), "--prepare-only"]
    if io_data_dir:
        argv += ["--data-dir", io_data_dir]
    say("io_starved: preparing its dataset (once; reused on later runs)")
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=REPO, env=env, timeout=1200,  # noqa: S603
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        say("io_starved: dataset preparation timed out")
        return None
    dt = time.monotonic() - t0
    for line in p.stderr.splitlines()[-4:]:
        say(f"  {line}")
    say(f"io_starved: dataset ready in {dt:.1f}s (rc={p.returncode})")
    return dt
