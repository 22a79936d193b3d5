"""Files the agent's web configuration names (users file, web config file): regular, small, UTF-8."""

from __future__ import annotations

import errno

from nodetune.config.loader import ConfigError
from nodetune.probes.host import read_regular_file

MAX_FILE_BYTES = 1 << 20


def read_small_file(path: str, what: str) -> str:
    """A regular UTF-8 file of at most 1 MiB, read through probes.host.read_regular_file;
    ConfigError naming `what` and `path` otherwise (a FIFO or device is refused without being
    read: it could block start-up forever)."""
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except OSError as exc:
        why = f"larger than {MAX_FILE_BYTES >> 20} MiB" if exc.errno == errno.EFBIG else \
            f"cannot read: {exc.strerror or exc}"
        raise ConfigError(f"{what} {path}: {why}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 (byte {exc.start})") from None
