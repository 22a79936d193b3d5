"""What tuners and drivers act on: the node's root, thread affinity and GPU control."""

from __future__ import annotations

from dataclasses import dataclass

from nodetune.probes.host import Host

from .affinity import Affinity
from .gpu_control import GpuControl


@dataclass
class TuneContext:
    """What tuners and drivers act on: the node's root, thread affinity, and GPU control."""

    host: Host
    affinity: Affinity
    gpus: GpuControl
