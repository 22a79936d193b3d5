"""Plumbing shared by the framework workloads: the bench's CLI and run clock, found one folder up."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _common import Meter, Run, log, parse_args, sync, torch_device  # noqa: E402

__all__ = ["Meter", "Run", "log", "parse_args", "sync", "torch_device"]
