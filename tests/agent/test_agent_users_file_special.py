"""The web users file is read through the shared regular-file reader: a FIFO or a device is refused
with one line, at once (never a hang on the open or an endless read)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nodetune.agent.web_auth import load_users
from nodetune.config.loader import ConfigError


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_users_file_that_is_not_a_regular_file_is_one_line(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = str(tmp_path / "users")
        os.mkfifo(path)
    elif kind == "device":
        path = "/dev/zero"
    else:
        path = str(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_users(path)
    assert time.monotonic() - t0 < 2
    msg = str(e.value)
    assert path in msg and "not a regular file" in msg and "\n" not in msg, msg


def test_users_file_too_large_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "users"
    big.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_users(str(big))
