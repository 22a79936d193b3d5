"""The error a person sees: one line, naming what and where, and a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an unusable node state; `str(exc)` is the whole message."""

    exit_code = 2
