#!/usr/bin/env bash
# `nodetune prefetch --follow` on one GPU, one call, under 8 minutes: an io-bound loader (one thread,
# buffered reads of 1,536 files of 2 MiB in name order, a light GPU step per file, each file dropped
# from the page cache once read so every epoch is cold) run cold / warm / naive window / follower,
# 3 runs of 20 s each, page cache dropped before every run (after the loader's torch/CUDA start-up).
# The warm runs read the dataset in first and drop nothing: the page-cache ceiling of this loader (each
# run reports the share of pages cached when the loader opened its files, so a warm run that was not
# warm shows). The device's own ceiling through the page cache: `nodetune prefetch DIR` (io_uring, 64
# in flight) from a cold cache, 3 runs, and fio when it is here or its .deb is carried. Then the read paths of the follower
# (readahead(2), io_uring; fadvise is the main runs'), one run each, as time allows. `diagnose` runs in
# the first cold run (it must say data_starved io_input) and the first follower run; `tune recommend
# --advice` on the first must propose `nodetune prefetch --follow PID`. Every step's failure is
# reported, none is fatal. Result: $OUT/prefetch_follow.md (and the raw files, packed in one archive).
source bench/device/setup.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
D=${DATA:-/var/tmp/nodetune-follow}; N=${FILES:-1536}; S=${SECONDS_PER_RUN:-20}; R=${RUNS:-3}
DEV=${DEVICE:-cuda}
MD=$OUT/prefetch_follow.md; RAW=$OUT/raw; mkdir -p "$RAW"
B="python3 bench/bench_prefetch_follow.py --dir $D --files $N --seconds $S --device $DEV"
step() { echo "== $* (${SECONDS}s)" | tee -a "$RAW/steps.log"; }
fail() { echo "FAILED: $*" | tee -a "$RAW/steps.log" >&2; echo "- **failed**: $*" >> "$RAW/failures.md"; }
: > "$RAW/failures.md"

step "node"
{ uname -r; nproc; free -g | head -2; nvidia-smi -L 2>&1 | head -2; cat /sys/block/vda/queue/read_ahead_kb \
  /sys/block/vda/queue/scheduler /sys/block/vda/queue/nr_requests 2>&1; cat /proc/self/cgroup
  for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do [ -r $f ] && echo "$f $(cat $f)"; done
  df -h "$(dirname "$D")"; } > "$RAW/node.txt" 2>&1
python3 -c "import nodetune.prefetch.follow" 2>"$RAW/import.err" || fail "nodetune.prefetch not importable: $(tail -1 "$RAW/import.err")"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || fail "cannot drop the page cache (not root?): the runs are not cold"

step "dataset: $N files of 2 MiB in $D"
$B --prepare > "$RAW/prepare.txt" 2>&1 || fail "creating the dataset: $(tail -1 "$RAW/prepare.txt")"

step "device ceiling"
FIO=$(command -v fio || true)
if [ -z "$FIO" ]; then
  DEB=$(ls fio*.deb .deb/fio*.deb 2>/dev/null | head -1)
  if [ -n "$DEB" ]; then dpkg -x "$DEB" /tmp/fio >"$RAW/fio_unpack.txt" 2>&1 && FIO=/tmp/fio/usr/bin/fio; fi
fi
FIO_LINE="fio: not available (neither on PATH nor a carried fio*.deb)"
if [ -n "$FIO" ]; then
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
  # the dataset's own files, read once through, O_DIRECT, queue depth 32: what the disk gives
  if timeout 30 "$FIO" --name=ceiling --opendir="$D" --rw=read --bs=2M --ioengine=io_uring --iodepth=32 --direct=1 \
       --numjobs=1 --group_reporting --output-format=json > "$RAW/fio.json" 2>"$RAW/fio.err"; then
    FIO_LINE=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1]))['jobs'][0]['read']; print(f\"fio (O_DIRECT, io_uring, QD32, 2 MiB): {j['bw_bytes']/1e9:.2f} GB/s = {j['bw_bytes']/2**21:,.0f} files/s of 2 MiB\")" "$RAW/fio.json" 2>&1)
  else
    FIO_LINE="fio failed: $(tail -1 "$RAW/fio.err")"; fail "$FIO_LINE"
  fi
fi
echo "$FIO_LINE"

step "ceiling / cold / warm / naive / follower, $R runs of ${S}s (diagnose in the first cold and follower runs)"
MAIN_T=$((400 - SECONDS)); [ "$MAIN_T" -lt 240 ] && MAIN_T=240  # the whole script stays under 8 minutes
timeout "$MAIN_T" $B --runs "$R" --diag-dir "$RAW" --json "$RAW/runs.json" > "$RAW/table.txt" 2> "$RAW/runs.log" \
  || fail "the runs (rc $?; the table below is of the runs that finished): $(tail -2 "$RAW/runs.log" | tr '\n' ' ')"
cat "$RAW/runs.log"

# The read path by measurement: the follower with readahead(2) and io_uring, one run each, while time is left.
for M in ${METHODS:-io_uring readahead}; do
  if [ "$SECONDS" -lt 410 ]; then
    step "follower --method $M, 1 run"
    timeout $((450 - SECONDS)) $B --runs 1 --modes "follower:$M" --json "$RAW/runs_$M.json" > /dev/null 2> "$RAW/runs_$M.log" \
      || fail "follower --method $M: $(tail -1 "$RAW/runs_$M.log")"
    cat "$RAW/runs_$M.log"
  else
    echo "- follower --method $M: skipped, ${SECONDS}s already spent" >> "$RAW/failures.md"
  fi
done

step "recommend from the cold run's diagnosis"
if [ -s "$RAW/diag_cold.json" ]; then
  $NT tune recommend --advice "$RAW/diag_cold.json" > "$RAW/recommend.txt" 2>&1 || fail "tune recommend: $(tail -1 "$RAW/recommend.txt")"
else
  fail "no diagnosis of the cold run (see $RAW/runs.log)"
fi

step "report"
python3 - "$RAW" "$MD" "$FIO_LINE" "$N" "$S" "$R" <<'PY' || fail "writing the report"
import glob, json, os, subprocess, sys
raw, md, fio, n, s, r = sys.argv[1:7]
def load(name):
    try:
        return json.load(open(os.path.join(raw, name)))
    except (OSError, ValueError) as exc:
        return {"error": f"{name}: {exc}"}
def verdict(rep):
    if "error" in rep:
        return rep["error"], None, None
    gpus = rep.get("gpus", [])
    v = [f"GPU{g.get('index')}: {g.get('verdict')}/{g.get('cause')}" for g in gpus]
    m = gpus[0].get("metrics", {}) if gpus else {}
    return ", ".join(v) or "no GPU", m.get("idle_share"), m.get("util_pct")
def pid(mode):
    try:
        return open(os.path.join(raw, f"pid_{mode}.txt")).read().strip()
    except OSError:
        return "?"
runs = []
for f in ["runs.json", *sorted(os.path.basename(p) for p in glob.glob(os.path.join(raw, "runs_*.json")))]:
    got = load(f)
    runs += got if isinstance(got, list) else []
json.dump(runs, open(os.path.join(raw, "all_runs.json"), "w"), indent=1)
table = subprocess.run([sys.executable, "bench/bench_prefetch_follow.py", "--table-from", os.path.join(raw, "all_runs.json")],
                       capture_output=True, text=True).stdout.strip() if runs else "(no runs: see raw/runs.log)"
head = open(os.path.join(raw, "table.txt")).read().split("\n\n", 1)[0].strip() if os.path.exists(os.path.join(raw, "table.txt")) else ""
rec = open(os.path.join(raw, "recommend.txt")).read() if os.path.exists(os.path.join(raw, "recommend.txt")) else ""
want = f"nodetune prefetch --follow {pid('cold')}"
lines = ["# nodetune prefetch --follow on the GPU machine", "", f"{head}. {r} runs of each mode (the read paths io_uring and "
         "readahead: 1), page cache dropped before each run after the loader's start-up; warm runs read the dataset in "
         "first and drop nothing.", "", table, "",
         "ceiling: every file once, O_DIRECT, 16 reads of 2 MiB in flight (no loader, no page cache); `of ceiling` "
         "divides by the lower of it and warm: with every epoch cold no warming beats the device.", "", "- " + fio, ""]
for mode, label in (("cold", "before (cold, no follower)"), ("follower", "after (with the follower)")):
    v, idle, util = verdict(load(f"diag_{mode}.json"))
    lines.append(f"- diagnose {label}: {v}; GPU idle share {idle if idle is None else round(idle, 3)}; util {util}")
lines.append(f"- tune recommend proposes `{want}`: {'yes' if want in rec else 'NO'}")
lines += ["", "Follower summaries:", ""]
lines += [f"- {run['mode']} rc {run.get('follower_rc')}: {(run.get('follower') or [''])[0]}" for run in runs if str(run.get("mode")).startswith("follower")]
fails = open(os.path.join(raw, "failures.md")).read().strip()
lines += ["", "Failures:", "", fails or "- none"]
open(md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
tar czf "$OUT/prefetch_follow_raw.tgz" -C "$OUT" raw 2>/dev/null && rm -rf "$RAW"
echo "done in ${SECONDS}s"
