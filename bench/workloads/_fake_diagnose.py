"""A stand-in for `nodetune` used by `bench/run_diagnosis.py --dry-run` (no GPU, no nodetune needed).

`diagnose --json --seconds W` sleeps W seconds (plus NODETUNE_FAKE_EXTRA_S, default 0.05) and
prints a report in nodetune's diagnose JSON shape. What it "finds" comes from the runner through
NODETUNE_FAKE_EXPECT: a JSON object {"<gpu index>": {"verdict": ..., "cause": ..., "pids": [...]}}
(the expectation, so a dry run comes out correct), except for the GPUs listed in
NODETUNE_FAKE_WRONG (comma-separated indices), which come out "compute_bound" and healthy, to
exercise the runner's mismatch and goal-check paths. `snapshot -o PATH --seconds W` sleeps and
writes a tiny JSON file; so does `diagnose --save PATH`. `--interval` is accepted and ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def report(window: float, expect: dict[str, dict], wrong: set[str]) -> dict:
    gpus, jobs, findings = [], [], []
    for key in sorted(expect, key=int):
        want = expect[key]
        idx = int(key)
        verdict, cause = want.get("verdict", "compute_bound"), want.get("cause")
        if key in wrong:
            verdict, cause = "compute_bound", None
        healthy = verdict == "compute_bound"
        util = 97.0 if healthy else 3.0
        evidence = {"gpm_sm_pct": 1.5, "nvml_util_pct": util, "tensor_pct": 0.0}
        finding = {"kind": verdict, "cause": cause, "severity": "info" if healthy else "warning",
                   "confidence": 0.8, "gpus": [idx], "pids": want.get("pids", []),
                   "evidence": evidence, "advice": [{"text": "fake advice"}]}
        findings.append(finding)
        gpus.append({"index": idx, "verdict": verdict, "cause": cause, "healthy": healthy,
                     "confidence": 0.8, "borderline": False,
                     "attribution": {"idle_share": 1 - util / 100, "unexplained_share": 0.0, "text": "fake"},
                     "metrics": {"nvml_util_pct": util, "gpm_sm_pct": 1.5}})
        jobs.append({"id": f"fake-job-{idx}", "pids": want.get("pids", []), "gpus": [idx],
                     "verdict": verdict, "cause": cause, "findings": [finding]})
    return {"gpus": gpus, "jobs": jobs, "findings": findings, "window_s": window,
            "elapsed_s": window + 0.02}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fake nodetune for dry runs")
    p.add_argument("command", choices=["diagnose", "snapshot"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("-o", "--output")
    p.add_argument("--note")
    p.add_argument("--interval", type=float)
    p.add_argument("--save")
    args = p.parse_args(argv)
    time.sleep(args.seconds + float(os.environ.get("NODETUNE_FAKE_EXTRA_S", "0.05")))
    expect = json.loads(os.environ.get("NODETUNE_FAKE_EXPECT", '{"0": {}}'))
    wrong = {w.strip() for w in os.environ.get("NODETUNE_FAKE_WRONG", "").split(",") if w.strip()}
    if args.command == "snapshot":
        if not args.output:
            print("fake nodetune: snapshot needs -o", file=sys.stderr)
            return 2
        with open(args.output, "w") as f:
            json.dump({"fake_snapshot": True, "seconds": args.seconds, "note": args.note}, f)
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"fake_snapshot": True, "seconds": args.seconds}, f)
    sys.stdout.write(json.dumps(report(args.seconds, expect, wrong), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
