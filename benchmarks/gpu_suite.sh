#!/usr/bin/env bash
# GPU benchmark suite, for the day a device is lent: one script, at most ~4 minutes on one H200
# (model construction included), random weights only (no download).
#
# Arms (benchmarks/gpu_suite.py; 512 px, fp16 on the GPU), each written to <out>/<arm>.json the moment
# it ends and printed:
#   prompt_{forward,reference}_{eager,compiled}  prompt-training steps/s, C = 102, ViT-B-32 text tower,
#                             16 random context tokens, batch 32: shared-prefix `PromptLearner.forward`
#                             vs `forward_reference`, eager vs torch.compile (compile arms run last)
#   prompt_fit                `fit_prompt` (the pipeline's loop, fp32) at GRIP's recipe: s/step
#   features_vitb32           ViT-B/32 feature extraction images/s (benchmarks/feature_throughput.py)
#   generate_{sd-turbo,sd15}  generation images/s: SD-Turbo 1 step, SD 1.5 25 steps (generation_throughput.py)
#   adapt_{sd-turbo,sd15}     LoRA adaptation steps/s, batch 4 (as benchmarks/adapt_sd.py times it)
# then the extrapolated wall time of full AiR on Flowers102 (<out>/extrapolation.json).
#
#   bash benchmarks/gpu_suite.sh                 # the GPU suite (cuda, fp16)
#   bash benchmarks/gpu_suite.sh --toy           # or TOY=1: CPU fp32, tiny models, 32 px: a smoke run (< 1 min)
#   bash benchmarks/gpu_suite.sh --arms features_vitb32,generate_sd-turbo   # a subset
#
# Output folder: $OUT if set, else results/gpu_suite/ (also --out DIR); the log is <out>/suite.log.
# BUDGET (seconds, default 220) caps the arms; a crashed process is restarted with the arms not yet
# recorded (the crashed one is marked as failed), and the extrapolation always runs at the end, from
# whatever arms finished. PYTHON picks the interpreter (default: .venv/bin/python if present, else python).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

TOY=${TOY:-0}
OUT_DIR=${OUT:-results/gpu_suite}
BUDGET=${BUDGET:-220}
pass=()
while [ $# -gt 0 ]; do
  case $1 in
    --toy) TOY=1 ;;
    --out) OUT_DIR=$2; shift ;;
    --out=*) OUT_DIR=${1#--out=} ;;
    *) pass+=("$1") ;;
  esac
  shift
done
if [ -z "${PYTHON:-}" ]; then
  if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python; fi
fi
toy=(); [ "$TOY" = 1 ] && toy=(--toy)
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/suite.log
: >"$LOG"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpu-suite-XXXXXX")   # the random-weights generators (GBs): not under $OUT
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error \
       DIFFUSERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
[ "$TOY" = 1 ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

deadline=$((SECONDS + BUDGET))
resume=()
for attempt in 1 2 3 4 5 6 7 8 9 10 11; do
  left=$((deadline - SECONDS))
  if [ "$left" -le 5 ]; then echo "suite: time budget of ${BUDGET} s spent" | tee -a "$LOG"; break; fi
  timeout -k 10 "$left" "$PYTHON" benchmarks/gpu_suite.py run --out "$OUT_DIR" --scratch "$SCRATCH" \
    "${toy[@]}" "${resume[@]}" "${pass[@]}" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] && break
  [ "$rc" -eq 2 ] && { echo "suite: bad arguments" | tee -a "$LOG"; exit 2; }
  if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ "$SECONDS" -ge "$((deadline - 1))" ]; }; then
    echo "suite: time budget of ${BUDGET} s spent; the running arm is recorded as unfinished" | tee -a "$LOG"; break
  fi
  echo "suite: the run process died (exit $rc); going on with the arms not yet recorded" | tee -a "$LOG"
  resume=(--resume)
done
"$PYTHON" benchmarks/gpu_suite.py extrapolate --out "$OUT_DIR" "${toy[@]}" "${pass[@]}" 2>&1 | tee -a "$LOG"
