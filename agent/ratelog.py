"""The agent's log lines: control characters written out, and the same error at most a few times
per interval with a count of the rest (a loop failing thousands of times a second, out of file
descriptors, or a flood of distinct kernel messages, stays a handful of lines)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from nodetune.probes.host import inert as safe

INTERVAL_S = 60.0
FIRST_N = 3  # lines of one kind shown per interval before the rest are counted
MAX_KINDS = 1024


class SafeFormatter(logging.Formatter):
    """A formatter whose every record is one inert line (a node's \\r\\n or escape codes written out)."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record))


class RepeatFilter(logging.Filter):
    """Per kind of line (logger, level, message template): the first FIRST_N of each interval pass,
    only the first with its traceback; the next line after the interval says how many were held back."""

    def __init__(self, interval_s: float = INTERVAL_S, first_n: int = FIRST_N,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.first_n = first_n
        self._clock = clock or time.monotonic
        self._kinds: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()  # [start, shown, held]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            k = self._kinds.get(key)
            if k is None or now - k[0] >= self.interval_s:
                held = int(k[2]) if k is not None else 0
                self._kinds[key] = [now, 1.0, 0.0]
                self._kinds.move_to_end(key)
                while len(self._kinds) > MAX_KINDS:
                    self._kinds.popitem(last=False)
                if held:
                    record.msg = f"{record.msg} ({held} more like this in the last {self.interval_s:g} s not shown)"
                return True
            if k[1] >= self.first_n:
                k[2] += 1
                return False
            k[1] += 1
        record.exc_info, record.exc_text, record.stack_info = None, None, None  # the traceback once an interval
        return True


def install(level: int, fmt: str) -> None:
    """The agent's stderr handler (journald reads it): safe lines, repeats bounded, every logger."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(fmt))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
