"""Read py-spy stack samples: how much of the main thread's time goes to data loading."""

from __future__ import annotations

import re
from collections import Counter

from nodetune.probes.pystacks import StackSample

from .findings import StackEvidence

# Frames that mean "waiting for or producing the next batch": the DataLoader's iterator, dataset
# __getitem__, worker-queue waits, and file reads/decoding done in Python.
_LOADING_FUNCS = re.compile(
    r"^(?:\S+\.)?(__next__|_next_data|_get_data|_try_get_data|_process_data|fetch|__getitem__|__getitems__|"
    r"read\w*|load\w*|decode\w*|_recv\w*|recv\w*|get|poll|_poll|wait)\b"
)
_LOADING_FILES = ("torch/utils/data/", "multiprocessing/queues.py", "multiprocessing/connection.py",
                  "queue.py", "PIL/", "imageio/", "cv2", "datasets/", "webdataset/")


def is_loading_frame(frame: str) -> bool:
    """A frame "func (file)" that belongs to input loading."""
    func, _, rest = frame.partition(" (")
    file = rest.rstrip(")")
    if any(f in file for f in _LOADING_FILES):
        return True
    # Generic names (get/wait/read) count only outside torch's own compute paths.
    return bool(_LOADING_FUNCS.match(func)) and not file.startswith(("torch/nn/", "torch/_tensor", "torch/optim/"))


def stack_evidence(sample: StackSample) -> StackEvidence:
    """Share of the target process's main-thread samples inside data loading, and its top stack."""
    ev = StackEvidence(pid=sample.pid, ok=sample.ok, reason=sample.reason, samples=sample.samples)
    if not sample.ok:
        return ev
    main = [s for s in sample.stacks if s.pid == sample.pid and (s.tid == sample.pid or s.thread == "MainThread")]
    total = sum(s.count for s in main)
    ev.main_samples = total
    if total == 0:
        ev.reason = "no main-thread samples (py-spy saw only other threads)"
        return ev
    loading = sum(s.count for s in main if any(is_loading_frame(f) for f in s.frames))
    ev.data_loading_share = round(loading / total, 3)
    tops: Counter[tuple[str, ...]] = Counter()
    for s in main:
        tops[tuple(s.frames)] += s.count
    top, n = tops.most_common(1)[0]
    ev.top_stack = list(top[-8:])  # innermost frames tell the story
    ev.top_share = round(n / total, 3)
    return ev
