"""`nodetune exec --gpu N -- CMD`: run a command on its GPU's local CPUs, memory preferred there.

Like `numactl --cpunodebind --preferred`, but the node comes from the GPU's PCI position. The
CPU binding uses sched_setaffinity; the memory policy uses libnuma through py-libnuma, imported
only here so a node without libnuma still binds CPUs and says what to install. Both survive
execve, so the command starts already placed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import Host, format_cpulist

from .errors import TargetError, TuneError
from .gpu_control import GpuControl
from .locality import gpu_place

NO_LIBNUMA = "libnuma not available: install libnuma1 (apt) / numactl"


@dataclass
class ExecBinding:
    gpu: int
    address: str
    cpus: list[int]
    numa_node: int | None
    notes: list[str] = field(default_factory=list)


def binding_for_gpu(host: Host, gpus: GpuControl, index: int, allowed: Sequence[int]) -> ExecBinding:
    """The CPUs (local to the GPU and allowed to this process) and NUMA node to bind to."""
    place = gpu_place(host, gpus, index)
    if not place.local_cpus:
        raise TargetError(f"GPU {index} ({place.address}): local_cpulist is empty or unreadable")
    cpus = sorted(set(place.local_cpus) & set(allowed))
    if not cpus:
        raise TargetError(f"GPU {index}: none of its local CPUs {format_cpulist(place.local_cpus)} is "
                          f"allowed to this process ({format_cpulist(list(allowed))})")
    b = ExecBinding(index, place.address, cpus, place.numa_node)
    if len(cpus) < len(set(place.local_cpus)):
        b.notes.append(f"warning: only {len(cpus)} of GPU {index}'s {len(set(place.local_cpus))} local CPUs "
                       f"({format_cpulist(place.local_cpus)}) are allowed to this process (its cpuset or "
                       f"affinity): bound to {format_cpulist(cpus)}")
    if place.numa_node is None:
        b.notes.append(f"GPU {index}'s NUMA node is unknown (numa_node -1): CPUs bound to its "
                       f"local_cpulist, memory policy left alone")
    return b


def load_libnuma() -> Any:
    """py-libnuma's scheduling module; raises TuneError(NO_LIBNUMA) when the library is missing."""
    try:
        import numa  # noqa: F401  (loads libnuma.so via ctypes at import)
        import numa.info
        import numa.schedule
    except (ImportError, OSError, AttributeError) as exc:
        # Without libnuma.so, ctypes loads nothing and the module fails on its first symbol.
        raise TuneError(f"{NO_LIBNUMA} ({type(exc).__name__}: {exc})") from None
    if not numa.info.numa_available():
        raise TuneError(f"{NO_LIBNUMA} (numa_available() says the kernel has no NUMA support)")
    return numa.schedule


def bind(b: ExecBinding, strict: bool, set_affinity: Callable[[int, Sequence[int]], None] = os.sched_setaffinity,
         libnuma: Callable[[], Any] = load_libnuma) -> list[str]:
    """Bind this process (and what it execs) per the binding; returns what was done, in words."""
    done = list(b.notes)
    if b.numa_node is not None:
        try:
            sched = libnuma()
        except TuneError as exc:
            if strict:
                raise TuneError(f"{exc.reason}; --strict: not starting the command") from None
            done.append(f"{exc.reason}: memory policy left alone, CPUs bound only")
        else:
            sched.set_preferred_node(b.numa_node)
            done.append(f"memory: preferred NUMA node {b.numa_node}")
    try:
        set_affinity(0, b.cpus)
    except OSError as exc:
        raise TuneError(f"cannot bind to CPUs {format_cpulist(b.cpus)}: {exc.strerror or exc}") from None
    done.append(f"CPUs: {format_cpulist(b.cpus)} (local to GPU {b.gpu} at {b.address})")
    return done


def run(argv: list[str], execvp: Callable[[str, list[str]], Any] = os.execvp) -> None:
    """Replace this process with the command; TuneError if it cannot be started."""
    try:
        execvp(argv[0], argv)
    except FileNotFoundError:
        raise TuneError(f"{argv[0]}: command not found") from None
    except PermissionError:
        raise TuneError(f"{argv[0]}: permission denied") from None
    except OSError as exc:
        raise TuneError(f"{argv[0]}: {exc.strerror or exc}") from None
