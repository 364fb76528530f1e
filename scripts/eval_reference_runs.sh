#!/usr/bin/env bash
# docs/evaluation.md's worked example: BM25, SPLADE++ and three rank_llm reference rerankings of TREC DL19/DL20,
# compared with BM25 as the baseline (paired t-test, Holm over runs x metrics), with the per-query chart.
#
#   scripts/eval_reference_runs.sh RANK_LLM_CLONE [OUT_DIR]
#
# RANK_LLM_CLONE: a git clone of https://github.com/castorini/rank_llm (full history: the run files were
# removed from the tree later; they are read from the commits below). BM25 and SPLADE++ come from
# ../shared/data (DEAR_SHARED_DATA overrides). Writes OUT_DIR/{dl19,dl20}/{eval.md,eval.json,plots/}.
set -euo pipefail
clone=${1:?usage: $0 RANK_LLM_CLONE [OUT_DIR]}
out=${2:-eval_reference_runs}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${DEAR_SHARED_DATA:-$here/../shared/data}
dear=${DEAR:-dear}

vicuna=87e65ef4781df573c988a27e729970c020147f1b  # RankVicuna-7B (output_v2_aug), the published runs
gpt=26fcf1cd1b437aef3cd198cd88cacdf3674f70d0     # RankGPT, gpt-3.5-turbo, window 20 over the BM25 top 100
declare -A files=(
  [dl19/rankgpt35_bm25.trec]="$gpt:rerank_results/BM25/gpt-3.5-turbo_4096_100_PromptMode.RANK_GPT_dl19_2023-08-05T00:13:30.871852.txt"
  [dl19/rankvicuna_bm25.trec]="$vicuna:rerank_results/BM25/output_v2_aug_vicuna_7b_4096_100_PromptMode.RANK_GPT_dl19_2023-09-13T16:36:10.051205.txt"
  [dl19/rankvicuna_splade.trec]="$vicuna:rerank_results/SPLADE_P_P_ENSEMBLE_DISTIL/output_v2_aug_vicuna_7b_4096_100_PromptMode.RANK_GPT_dl19_2023-09-13T16:36:20.039367.txt"
  [dl20/rankgpt35_bm25.trec]="$gpt:rerank_results/BM25/gpt-3.5-turbo_4096_100_PromptMode.RANK_GPT_dl20_2023-08-06T12:07:46.070998.txt"
  [dl20/rankvicuna_bm25.trec]="$vicuna:rerank_results/BM25/output_v2_aug_vicuna_7b_4096_100_PromptMode.RANK_GPT_dl20_2023-09-13T17:08:29.753514.txt"
  [dl20/rankvicuna_splade.trec]="$vicuna:rerank_results/SPLADE_P_P_ENSEMBLE_DISTIL/output_v2_aug_vicuna_7b_4096_100_PromptMode.RANK_GPT_dl20_2023-09-13T17:07:27.976373.txt"
)
for year in dl19 dl20; do
  mkdir -p "$out/$year"
  cp "$data/trec-$year/trec_results_${year}_top100.txt" "$out/$year/bm25.trec"
  cp "$data/trec-$year/splade_pp_ed.retrieve_results_${year}_top100.json" "$out/$year/splade.json"
done
for name in "${!files[@]}"; do
  git -C "$clone" show "${files[$name]}" > "$out/$name"
done
for year in dl19 dl20; do
  qrels=$(ls "$data/trec-$year"/qrels.*)
  d="$out/$year"
  $dear eval --run "$d/bm25.trec" "$d/splade.json" "$d/rankgpt35_bm25.trec" "$d/rankvicuna_bm25.trec" \
      "$d/rankvicuna_splade.trec" --qrels "$qrels" --baseline "$d/bm25.trec" --test t --correction holm \
      --metrics ndcg@10 map --format markdown --plot "$d/plots" --out "$d/eval.json" > "$d/eval.md"
  cat "$d/eval.md"
done
