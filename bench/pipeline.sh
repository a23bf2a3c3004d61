#!/usr/bin/env bash
# The whole GSM8K bench on the 2-core machine, in the order and process layout that produced the
# README's figures: specialists (optionally on a fine-tuned backbone) → candidate selector and
# program verifier → held-out evaluation on GSM8K test and MATH test.
#
#   bash bench/pipeline.sh [LOG_DIR]      # default LOG_DIR: /work/bench_logs
#
# Environment: DATABASE_URL (default the bench database), MYCELIUM_HOME (default /work/bench_home),
# TRAIN_ARGS (bench/training.py options, default "--epochs 8 --finetune-epochs 3"),
# SELECTOR_TRAIN (TRAIN problems searched for the verifier, default 2100; a multiple of 300).
# Every step is idempotent (trained models, the fine-tuned backbone and searched candidates are
# reused), so a killed run is resumed by running it again. Each step's JSON line lands in
# LOG_DIR/<step>.json and its progress in LOG_DIR/<step>.err. Test is read only by the last step.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-/work/bench_logs}
mkdir -p "$LOG"
export DATABASE_URL=${DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/mycelium_bench}
export MYCELIUM_HOME=${MYCELIUM_HOME:-/work/bench_home}
TRAIN_ARGS=${TRAIN_ARGS:---epochs 8 --finetune-epochs 3}
SELECTOR_TRAIN=${SELECTOR_TRAIN:-2100}
PY="nice -n 5 .venv/bin/python"
step() { echo "$(date -Is) $*" >&2; }

# 1. Labels, the fine-tuned backbone and C3 (the longest head) in one process with both cores;
#    the encoding it caches is then shared by the other heads.
step "set-up, fine-tuning, C3"
# shellcheck disable=SC2086
$PY bench/training.py $TRAIN_ARGS --specialists C3 > "$LOG/train_c3.json" 2> "$LOG/train_c3.err"
# 2. The other five heads in two single-threaded processes.
step "C2, C6, C4 | C1, C5"
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 $PY bench/training.py $TRAIN_ARGS --specialists C2,C6,C4 > "$LOG/train_c2.json" 2> "$LOG/train_c2.err" &
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 $PY bench/training.py $TRAIN_ARGS --specialists C1,C5 > "$LOG/train_c1.json" 2> "$LOG/train_c1.err"
wait
# shellcheck disable=SC2086
$PY bench/training.py $TRAIN_ARGS > "$LOG/training.json" 2> "$LOG/training.err"  # trains nothing: the figures

# 3. Search DEV and TRAIN candidates in two processes (chunks of 300 problems, cached), then fit.
step "selector: search dev + train"
half=$(( (SELECTOR_TRAIN / 2 + 299) / 300 * 300 ))
( $PY -m training.selector --collect-only dev --threads 1 > "$LOG/collect_dev.json" 2> "$LOG/collect_dev.err"
  $PY -m training.selector --collect-only train --threads 1 --train-offset "$half" \
      --train-limit $(( SELECTOR_TRAIN - half )) > "$LOG/collect_train2.json" 2> "$LOG/collect_train2.err" ) &
$PY -m training.selector --collect-only train --threads 1 --train-limit "$half" \
    > "$LOG/collect_train1.json" 2> "$LOG/collect_train1.err"
wait
step "selector: verifier + fit"
$PY -m training.selector --train-limit "$SELECTOR_TRAIN" > "$LOG/selector.json" 2> "$LOG/selector.err"

# 4. Held-out evaluation (two processes, one thread each). MATH's splits are hashed from its
#    train file like GSM8K's (ingest is idempotent: content-hash dedup).
step "evaluate GSM8K test | MATH test"
nice -n 5 .venv/bin/mycelium ingest "${MATH_FILE:-../shared/data/math_train.jsonl}" --dataset math --json > "$LOG/ingest_math.json"
$PY bench/evaluate.py --dataset math --threads 1 > "$LOG/evaluate_math.json" 2> "$LOG/evaluate_math.err" &
$PY bench/evaluate.py --dataset gsm8k --threads 1 > "$LOG/evaluate_gsm8k.json" 2> "$LOG/evaluate_gsm8k.err"
wait
step "done"
cat "$LOG/selector.json" "$LOG/evaluate_gsm8k.json" "$LOG/evaluate_math.json"
