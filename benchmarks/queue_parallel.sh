#!/usr/bin/env bash
# Wall time of `dvc queue start -j 2` for two experiments against one experiment alone, on this machine.
#
# Copies the project into a fresh git repo under $WORK (default /tmp/queue-bench), shrinks the demo run
# so the measurement takes minutes (params below; every stage still runs, adaptation included), then:
#   1. one experiment alone:           dvc exp run --queue (world seed 1); dvc queue start -j 1
#   2. two experiments at once:        dvc exp run --queue (world seeds 2 and 3); dvc queue start -j 2
# Different world seeds make every stage of every experiment run (nothing is reused from the run cache
# or the generation cache). Prints both wall times and their ratio (the goal: <= 2.2 on 2 cores).
#
#   bash benchmarks/queue_parallel.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/queue-bench}
rm -rf "$WORK" && mkdir -p "$WORK"
cp -r "$ROOT/pipeline" "$ROOT/stages" "$ROOT/dvc.yaml" "$ROOT/params.yaml" "$ROOT/.gitignore" "$WORK/"
mkdir -p "$WORK/data" && cp -r "$ROOT/data/demo" "$WORK/data/"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
cd "$WORK"
python - <<'PY'
import yaml
params = yaml.safe_load(open("params.yaml"))
params["dataset"]["demo"].update(images_per_class=40, test_images_per_class=20)
params["adapt"].update(steps=60)
params["generate"].update(images_per_class=8)
params["pseudolabel"].update(rounds=3)
params["train"].update(epochs=10)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
PY
git init -q && git config user.email bench@example.invalid && git config user.name bench
dvc init -q && git add -A && git commit -qm bench

wait_queue() {  # until no task is queued or running
  # The status is read into a variable first: `dvc queue status | grep -q` under pipefail ends the loop
  # at once (grep -q closes the pipe, dvc dies of SIGPIPE, the pipeline "fails").
  local status
  while status=$(dvc queue status 2>&1) && grep -qE "Queued|Running" <<<"$status"; do sleep 5; done
}
run_queue() {  # $1 = workers, rest = world seeds; prints wall seconds
  local jobs=$1; shift
  for seed in "$@"; do dvc exp run --queue -q -S "dataset.demo.seed=$seed" >/dev/null; done
  local start=$(date +%s.%N)
  dvc queue start -j "$jobs" >/dev/null 2>&1
  sleep 5; wait_queue
  local end=$(date +%s.%N)
  dvc queue stop >/dev/null 2>&1 || true
  python -c "print(round($end - $start, 1))"
}
one=$(run_queue 1 1)
two=$(run_queue 2 2 3)
dvc queue status
for task in $(dvc queue status 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9a-f]+$/ {print $1}'); do
  echo "--- $task: stage times and torch threads"
  dvc queue logs "$task" 2>/dev/null | grep -E "done in|torch threads" || true
done
python - "$one" "$two" <<'PY'
import sys
one, two = map(float, sys.argv[1:])
print(f"one experiment alone: {one:.0f} s; two with dvc queue start -j 2: {two:.0f} s; ratio {two / one:.2f} (goal <= 2.2)")
PY
