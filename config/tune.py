"""[tune]: what tuning may do on this node."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import flag, section


@section("tune")
@dataclass
class TuneConfig:
    allow_gpu_power: bool = flag(False, "allow GPU power-limit and clock changes a profile asks for")
