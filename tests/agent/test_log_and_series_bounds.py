"""Bounded: Xid series however many distinct kernel lines arrive, and log lines of one kind per
interval however often a loop fails."""

from __future__ import annotations

import io
import logging

from nodetune.agent.kmsg import MAX_XID_SERIES, XidLabels, parse_xid
from nodetune.agent.ratelog import RepeatFilter, SafeFormatter


def test_100k_distinct_xid_lines_stay_a_bounded_label_set() -> None:
    labels = XidLabels()
    gpus = {"0000:18:00": "0", "0000:3b:00": "1"}
    seen = set()
    for i in range(100_000):
        got = parse_xid(f"NVRM: Xid (PCI:{i % 65536:04x}:{i % 256:02x}:00): {i}, junk")
        assert got is not None
        seen.add(labels.of(gpus.get(got[0]), got[1]))
    assert len(seen) <= MAX_XID_SERIES + 1  # the pairs, plus ("other", "other")
    assert ("other", "other") in seen


def test_xid_labels_keep_known_gpus_and_codes() -> None:
    labels = XidLabels()
    assert labels.of("3", "79") == ("3", "79")
    assert labels.of(None, "48") == ("other", "48")
    assert labels.of("3", "123456") == ("3", "other")


def _logger(clock: list[float]) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(SafeFormatter("%(message)s"))
    h.addFilter(RepeatFilter(interval_s=60, first_n=3, clock=lambda: clock[0]))
    lg = logging.getLogger(f"test.repeat.{id(buf)}")
    lg.propagate = False
    lg.addHandler(h)
    lg.setLevel(logging.INFO)
    return lg, buf


def test_out_of_fds_in_a_loop_logs_a_few_lines_and_one_traceback_per_interval() -> None:
    clock = [0.0]
    lg, buf = _logger(clock)
    for _ in range(6000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            lg.exception("accept failed")
    out = buf.getvalue()
    assert out.count("accept failed") == 3
    assert out.count("Traceback") == 1
    clock[0] = 61.0
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        lg.exception("accept failed")
    assert "accept failed (5997 more like this in the last 60 s not shown)" in buf.getvalue()


def test_xid_log_lines_bounded_per_interval() -> None:
    clock = [0.0]
    lg, buf = _logger(clock)
    for i in range(12_000):
        lg.warning("GPU %s: Xid %s in the kernel log", "0", str(i))
    assert len(buf.getvalue().splitlines()) == 3
