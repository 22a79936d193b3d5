"""Page-cache warming: read what a job reads next before it asks, inside a memory budget.

`warm()` reads a list of files (engine), `Prefetcher` does it from a DataLoader sampler's order
(loader), `follow()` watches a running job's open files and keeps a window of the files it reads
next in the page cache (follow). Not a tuner: nothing here is journaled, nothing to roll back.
"""

from __future__ import annotations

from .engine import choose_engine, warm
from .guard import MemoryGuard
from .loader import Prefetcher, PrefetcherStats, SamplerFeed
from .options import (
           FileResult,
           GiB,
           KiB,
           MiB,
           PrefetchError,
           PrefetchOptions,
           PrefetchReport,
           human,
           parse_size,
)

__all__ = ["GiB", "KiB", "MiB", "FileResult", "MemoryGuard", "PrefetchError", "PrefetchOptions", "PrefetchReport",
           "Prefetcher", "PrefetcherStats", "SamplerFeed", "choose_engine", "human", "parse_size", "warm"]
