#!/usr/bin/env bash
# The demo-world study of image-space training and CoFT / CoFT+ (docs/methods.md "Visual prompts, adapters,
# full fine-tuning" and "CoFT / CoFT+"): UL, 3 seeds, one experiment each, run one after another in
# the workspace (2 CPU cores: parallel experiments only slow each other down).
# Budget cut, the same as the protocol study's: 5 re-labelling rounds (GRIP, AiR), 5 epochs a round.
# Table: python scripts/results_table.py (or dvc exp show).
set -euo pipefail
COMMON=(-S paradigm=ul -S protocol=project -S pseudolabel.rounds=5 -S train.epochs=5 -S coft.iterations=2
        -S coft.descriptions_file=null)
run() { echo "== $*"; dvc exp run "${COMMON[@]}" "$@" > /dev/null; }
for seed in 0 1 2; do
  run -S method=coft -S train.prompt=text -S seed=$seed
  run -S method=coft_plus -S train.prompt=text -S seed=$seed -S coft.descriptions_file=pipeline/demo/descriptions.json
done
for prompt in visual multimodal; do
  for method in grip air; do
    for seed in 0 1 2; do run -S method=$method -S train.prompt=$prompt -S seed=$seed; done
  done
done
run -S method=zeroshot -S train.prompt=text -S seed=0
for method in grip air; do
  for seed in 0 1 2; do run -S method=$method -S train.prompt=text -S seed=$seed; done
done
git checkout params.yaml
