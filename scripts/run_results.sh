#!/usr/bin/env bash
# The results table of docs/results.md: methods on the demo target, 3 seeds each, as DVC experiments.
# Generation and feature extraction run once (cached); each experiment re-runs pseudolabel/train/evaluate.
#   bash scripts/run_results.sh
#   dvc exp show --json > /tmp/exps.json && python scripts/results_table.py /tmp/exps.json
set -euo pipefail
run() {  # method lambda beta seed: every varying param set explicitly, so no run inherits another's
  dvc exp run -S method="$1" -S pseudolabel.fusion_lambda="$2" -S train.synthetic_weight="$3" -S seed="$4"
}
for seed in 0 1 2; do
  run zeroshot 1.0 1.0 $seed
  run upl 1.0 1.0 $seed
  run grip 1.0 1.0 $seed
  run air 1.0 1.0 $seed   # the default
  run air 0.5 1.0 $seed   # weaker auxiliary vote
  run air 1.0 0.0 $seed   # no synthetic-image loss
done
git checkout -- params.yaml
