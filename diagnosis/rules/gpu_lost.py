"""gpu_lost: NVML reports the GPU fell off the bus (NVML_ERROR_GPU_IS_LOST) during the window."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 10
STRIP_LETTER: str | None = "X"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    return [Finding("gpu_lost", "critical", 0.99, f"GPU{g.index} lost: {g.lost_reason}", gpus=[g.index],
                    evidence={"samples": g.samples},
                    advice=[Advice("The GPU needs a reset or a node reboot; check `dmesg` for Xid 79 and the "
                                   "BMC log.")])
            for g in ctx.stats.gpus if g.lost]
