"""Diagnose each bench workload with nodetune and print a confusion table: the diagnosis benchmark
of bench/harness/diagnosis.py, kept at this path for the device scripts and the records that cite it.

    python3 bench/run_diagnosis.py --dry-run --seconds 2      # = python3 -m bench.harness diagnosis ...
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, the repository root is not on the path: the harness lives there as bench.harness.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["diagnosis", *sys.argv[1:]]))
