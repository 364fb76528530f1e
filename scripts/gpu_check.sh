#!/usr/bin/env bash
# The one prepared GPU check: records every GPU figure the issues ask for, in under 8 minutes, under $OUT.
#
#   bash scripts/gpu_check.sh             # on the lent GPU machine (torch 2.11, transformers 5.17, peft, accelerate;
#                                         # no trl/datasets/network: carried wheels under .whl/ are installed first)
#   bash scripts/gpu_check.sh --dry-run   # the same code paths at tiny shapes on the CPU (tests/test_gpu_check.py)
#
# Steps (each under its own time limit; a failed step is recorded and the next one still runs):
#   1. scripts/gpu_bench_train.py: LoRA steps on a random Llama-3.1-8B-shaped bf16 model (tokens/s, MFU, memory),
#      then GRPO steps of the same model with the GRPO recipe (configs/train/llama31_8b_listwise_grpo.yaml: 8 answers
#      per window, 2 windows per step, transformers generation), s/step under "grpo" in its JSON
#   2. scripts/bench_rerank.py --random-8b: generation (ours) and first-token rows, first-token at several batch
#      sizes, DL19 BM25 top-100 (targets: first-token <= 0.6 s/query at the best batch size, >= 1.5x generation)
# Wheels (fill .whl/ on a machine with the registry, once; .whl/ is git-ignored, so carry it):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       trl==1.16.0 datasets==5.2.0 dill multiprocess xxhash
# Outputs: $OUT/gpu_bench_train.json, $OUT/bench_rerank_8b.json (+ .md), one log per step, steps.jsonl
# (step, exit code, seconds), environment.txt (GPU, versions).
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
if [[ -d .whl ]] && ! "$PY" -c "import trl, datasets" 2>/dev/null; then
  # pure-Python wheels carried with the working tree (trl, datasets and their small dependencies)
  "$PY" -m pip install --quiet --no-index --no-deps --target "$REPO/.gpu_site" .whl/*.whl >"$OUT/pip.log" 2>&1 \
    || echo "pip install from .whl failed (see pip.log)" >>"$OUT/pip.log"
  export PYTHONPATH="$REPO/.gpu_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" - <<'EOF'
import importlib
for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # report what is missing, never stop the check here
        print(name, "missing:", type(err).__name__, err)
EOF
} >"$OUT/environment.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record rc and seconds
  local name=$1 limit=$2
  shift 2
  local start rc
  start=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - start ))}" >>"$OUT/steps.jsonl"
  echo "$name: exit $rc after $(( $(date +%s) - start )) s"
}

: >"$OUT/steps.jsonl"
if [[ $DRY == 1 ]]; then
  step gpu_bench_train 300 "$PY" scripts/gpu_bench_train.py --dry-run --out "$OUT/gpu_bench_train.json"
  step bench_rerank_8b 300 "$PY" scripts/bench_rerank.py --dry-run --no-card --no-ablation \
    --first-token-batch-sizes 1 2 --json "$OUT/bench_rerank_8b.json"
else
  # SFT figures are written before the GRPO phase starts, so a GRPO overrun cannot lose them
  step gpu_bench_train 190 "$PY" scripts/gpu_bench_train.py --out "$OUT/gpu_bench_train.json"
  # 20 queries (180 windows): generation at batch 16, first-token at 1, 4 and 16 windows per forward
  step bench_rerank_8b 255 "$PY" scripts/bench_rerank.py --random-8b --device cuda --queries 20 --budgets 100 \
    --threads 8 --batch-size 16 --no-card --no-ablation --first-token-batch-sizes 1 4 16 \
    --json "$OUT/bench_rerank_8b.json"
fi
if [[ -f "$OUT/bench_rerank_8b.log" ]]; then
  sed -n '/^|/p' "$OUT/bench_rerank_8b.log" >"$OUT/bench_rerank_8b.md"
fi
cat "$OUT/steps.jsonl"
