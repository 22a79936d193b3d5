"""What the node's config allows tuning to do (/etc/nodetune/config.toml, read through Host).

Only the tuning keys are read here, at the top level or in a [tune] table; the rest of the file
belongs to other parts of nodetune and is left to them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from nodetune.probes.host import Host, ProbeError

from .base import ProfileError

CONFIG = "/etc/nodetune/config.toml"


@dataclass
class TuneConfig:
    allow_gpu_power: bool = False
    source: str | None = None  # the file it came from; None: defaults


def load_tune_config(host: Host, path: str = CONFIG) -> TuneConfig:
    """The tuning policy; a missing file means the defaults (GPU power changes not allowed)."""
    if not host.exists(path):
        return TuneConfig()
    try:
        data: dict[str, Any] = tomllib.loads(host.read(path))
    except ProbeError as exc:
        raise ProfileError(f"{path}: {exc.reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    cfg = TuneConfig(source=path)
    tune = data.get("tune", {})
    if not isinstance(tune, dict):
        raise ProfileError(f"{path}: tune: expected a table")
    for where, table in (("allow_gpu_power", data), ("[tune] allow_gpu_power", tune)):
        if "allow_gpu_power" in table:
            v = table["allow_gpu_power"]
            if not isinstance(v, bool):
                raise ProfileError(f"{path}: {where}: expected true or false, found {v!r:.40}")
            cfg.allow_gpu_power = cfg.allow_gpu_power or v
    return cfg
