"""What the node's config allows tuning to do: the [tune] section, read by the one config loader."""

from __future__ import annotations

from nodetune.config.loader import ConfigError, load_config
from nodetune.config.tune import TuneConfig
from nodetune.probes.host import Host

from .errors import ProfileError

__all__ = ["TuneConfig", "load_tune_config"]


def load_tune_config(host: Host) -> TuneConfig:
    """The tuning policy; a missing file means the defaults (GPU power changes not allowed)."""
    try:
        return load_config(host).get(TuneConfig)
    except ConfigError as exc:
        raise ProfileError(str(exc)) from None
