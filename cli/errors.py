"""The one error path: every bad input becomes `nodetune: error: <one line>` and exit 2."""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """Bad input or an unusable node state; `str(exc)` is the whole message."""

    exit_code = 2


# The error types of the layers below the CLI, by module, so that `--help` imports none of them:
# an exception can only be of a type whose module has been imported.
_LAYER_ERRORS = (
    ("nodetune.config.loader", "ConfigError"),
    ("nodetune.probes.host", "ProbeError"),
    ("nodetune.probes.snapshot", "SnapshotError"),
    ("nodetune.tuners.errors", "TuneError"),
    ("nodetune.prefetch.options", "PrefetchError"),
    ("nodetune.agent.history", "HistoryError"),  # named, not imported: cli and agent stay apart
)


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error a person caused (or can fix); None for a bug."""
    if isinstance(exc, UserError):
        return str(exc)
    for module, name in _LAYER_ERRORS:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            text = getattr(exc, "reason", None) or str(exc)
            return " ".join(str(text).split())
    return None


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `nodetune: error: MESSAGE` on stderr and exit with `code`."""
    sys.stderr.write(f"nodetune: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def interrupted() -> NoReturn:
    """Ctrl-C: one line and the shell's exit status for SIGINT."""
    sys.stderr.write("nodetune: interrupted\n")
    sys.stderr.flush()
    raise SystemExit(130)


def exit_for(exc: Exception) -> None:
    """Exit with one line where `exc` is a person's error (`user_message`); return for a bug, which
    the caller re-raises."""
    if isinstance(exc, UserError):
        fail(str(exc), exc.exit_code)
    text = user_message(exc)
    if text is not None:
        fail(text)
