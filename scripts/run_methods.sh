#!/usr/bin/env bash
# The methods table: GRIP and CPL with and without AiR (UL and TRZSL), UPL with ensembles of 1 and 16,
# zero-shot; 3 seeds each, as queued DVC experiments run two at a time.
#   bash scripts/run_methods.sh
#   dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json
# Two workers on 2 cores: each torch process gets one thread, or they slow each other down ~10x.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
queue() {  # paradigm method selection ensemble seed: every varying param set explicitly
  dvc exp run --queue -S paradigm="$1" -S method="$2" -S pseudolabel.selection="$3" -S train.ensemble="$4" \
    -S seed="$5" -S pseudolabel.fusion_lambda=1.0 -S train.synthetic_weight=1.0
}
for seed in 0 1 2; do
  for paradigm in ul trzsl; do
    queue "$paradigm" grip grip 1 "$seed"
    queue "$paradigm" cpl grip 1 "$seed"
    queue "$paradigm" air grip 1 "$seed"
    queue "$paradigm" air cpl 1 "$seed"
    if [ "$seed" = 0 ]; then queue "$paradigm" zeroshot grip 1 0; fi   # trains nothing: one seed says all
  done
  queue ul upl grip 1 "$seed"
  queue ul upl grip 16 "$seed"
done
dvc queue start -j "${JOBS:-2}"
