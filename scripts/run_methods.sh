#!/usr/bin/env bash
# The methods table: GRIP and CPL with and without AiR (UL and TRZSL), UPL with ensembles of 1 and 16,
# zero-shot; 3 seeds each, as queued DVC experiments run two at a time.
#   bash scripts/run_methods.sh
#   dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json
# Two workers on 2 cores: each torch process gets one thread, or they slow each other down ~10x.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
queue() {  # paradigm method selection ensemble seed [more -S]: every varying param set explicitly
  dvc exp run --queue -S paradigm="$1" -S method="$2" -S pseudolabel.selection="$3" -S train.ensemble="$4" \
    -S seed="$5" -S pseudolabel.fusion_lambda=1.0 -S train.synthetic_weight=1.0 "${@:6}"
}
for seed in 0 1 2; do
  for paradigm in ul trzsl; do
    queue "$paradigm" grip grip 1 "$seed"
    queue "$paradigm" cpl grip 1 "$seed"
    queue "$paradigm" air grip 1 "$seed"
    queue "$paradigm" air cpl 1 "$seed"
    queue "$paradigm" zeroshot grip 1 "$seed"
  done
  queue ul upl grip 1 "$seed"
  queue ul upl grip 16 "$seed"
done
for seed in 0 1 2; do  # UPL as its authors run it: 16 context vectors from random init, not "a photo of a"
  queue ul upl grip 1 "$seed" -S "train.ctx_init=''"
  queue ul upl grip 16 "$seed" -S "train.ctx_init=''"
done
dvc queue start -j "${JOBS:-2}"
