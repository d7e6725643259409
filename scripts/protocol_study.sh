#!/usr/bin/env bash
# The demo table of docs/protocols.md "protocol: project vs protocol: grip": zero-shot, GRIP and AiR under UL, SSL
# and TRZSL, 3 seeds, as DVC experiments through the benchmark matrix command.
#
# Budget (2 CPU cores): 5 re-labelling rounds instead of 10 and a tenth of each protocol's epochs
# (project 5 of 50, grip 15 of 150); everything else is each protocol's own. The two protocols run as
# two matrices (their epochs differ), and one --table-only call over both writes the table.
#   bash scripts/protocol_study.sh      # ~1 h on 2 cores
set -euo pipefail
common=(--methods zeroshot,grip,air --paradigms ul,ssl,trzsl --seeds 0,1,2 --set pseudolabel.rounds=5
        --jobs "${JOBS:-2}")
python -m pipeline.experiments.matrix "${common[@]}" --set protocol=project --set train.epochs=5
python -m pipeline.experiments.matrix "${common[@]}" --set protocol=grip --set train.epochs=15
python -m pipeline.experiments.matrix --methods zeroshot,grip,air --paradigms ul,ssl,trzsl --seeds 0,1,2 \
  --set pseudolabel.rounds=5 --grid protocol=project,grip --table-only --out results/protocols_demo.md
