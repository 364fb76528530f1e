"""Pointwise scoring throughput and the two-stage pipeline's per-stage wall time, on real DL19 candidates.

Part 1, pairs/s: the tiny sequence-classification Llama (random weights; the figure is the toolkit's
overhead + a small forward pass, not an 8B's speed) scores DL19 BM25 (query, passage) pairs with DeAR's
input (32 + 196 tokens, fixed length), batched (``--batch-size``) against the baseline of one pair per
forward pass, in the same run.

Part 2, two-stage: `inference.TwoStageReranker` on all 43 DL19 queries -- pointwise scores of the BM25
top-100, then the listwise model (tiny causal Llama, dear-card prompt) reorders the top 30 with window 20 /
stride 10 -- with the wall time of each stage and its share. Baseline in the same run: the listwise model
alone over the BM25 top-100 (window 20 / stride 10, 9 windows per query), which is what the two-stage
pipeline replaces. Both tiny models are random, so generations run to their token budget: the listwise
stage's cost is the cost of full-length window generations, as with a real model that writes the complete
ranking.

    PYTHONPATH=. python scripts/bench_pointwise.py [--queries 43] [--threads 1] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "trec-dl19"


def build_models(tmp: Path) -> tuple[Path, Path]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from dear_train.tiny_model import build_tiny_model

    causal = build_tiny_model(tmp / "tiny")
    torch.manual_seed(0)
    cls = AutoModelForSequenceClassification.from_pretrained(causal, num_labels=1)
    cls.save_pretrained(tmp / "cls")
    AutoTokenizer.from_pretrained(causal).save_pretrained(tmp / "cls")
    return causal, tmp / "cls"


CASES = (("one pair per forward (baseline)", 1, None),
         ("batched, fixed length 228 (released DeAR layout)", None, False),
         ("batched, length-sorted, padded to the batch's longest", None, True))


def pairs_per_second(cls_dir: Path, requests, batch_size: int, n_pairs: int) -> dict:
    from inference.pointwise import PointwiseReranker

    pairs = [(r.query, c.text) for r in requests for c in r.candidates][:n_pairs]
    rows = []
    for name, bs, dynamic in CASES:
        ranker = PointwiseReranker.from_pretrained(cls_dir, batch_size=bs or batch_size, dynamic_padding=dynamic)
        ranker.score_pairs(pairs[: min(8, len(pairs))])  # warm-up
        t = time.perf_counter()
        ranker.score_pairs(pairs)
        sec = time.perf_counter() - t
        rows.append({"case": name, "batch_size": bs or batch_size, "pairs": len(pairs), "seconds": round(sec, 3),
                     "pairs_per_s": round(len(pairs) / sec, 1)})
    for r in rows:
        r["vs_baseline"] = round(r["pairs_per_s"] / rows[0]["pairs_per_s"], 2)
    return {"cases": rows}


def two_stage(causal: Path, cls_dir: Path, requests, qrels, batch_size: int, listwise_batch: int) -> dict:
    from inference.metrics import evaluate
    from inference.pointwise import PointwiseReranker
    from inference.reranker import ListwiseReranker
    from inference.two_stage import TwoStageReranker

    pointwise = PointwiseReranker.from_pretrained(cls_dir, batch_size=batch_size)
    listwise = ListwiseReranker.from_pretrained(str(causal), device_map=None, window=20, stride=10,
                                                batch_size=listwise_batch)
    pipeline = TwoStageReranker(pointwise, listwise, pointwise_depth=100, listwise_depth=30)
    results, timings = pipeline.rerank_batch(requests)
    t = timings.as_dict()
    t["windows"] = sum(len(r.windows) for r in results)
    t["generated_tokens"] = sum(r.generated_tokens for r in results)
    t["ndcg@10"] = round(evaluate({r.qid: r.ranked() for r in results}, qrels, ["ndcg@10"])["ndcg@10"], 4)

    listwise.top_k = 100
    start = time.perf_counter()
    base = listwise.rerank_batch(requests)
    t["baseline_listwise_top100"] = {"wall_s": round(time.perf_counter() - start, 3),
                                     "windows": sum(len(r.windows) for r in base),
                                     "generated_tokens": sum(r.generated_tokens for r in base)}
    t["two_stage_over_baseline"] = round(t["total_s"] / t["baseline_listwise_top100"]["wall_s"], 3)
    return t


def markdown(res: dict) -> str:
    p = res["pairs"]
    s = res["two_stage"]
    b = s["baseline_listwise_top100"]
    lines = ["| scoring | batch size | pairs | s | pairs/s | vs baseline |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['batch_size']} | {r['pairs']} | {r['seconds']} | {r['pairs_per_s']:,} | "
              f"{r['vs_baseline']}x |" for r in p["cases"]]
    lines += [
        "",
        "| DL19, 43 queries | wall s | share | work |",
        "|---|---|---|---|",
        f"| stage 1: pointwise, BM25 top-100 | {s['pointwise']['wall_s']} | {100 * s['pointwise']['share']:.1f}% | "
        f"{s['pointwise']['pairs']:,} pairs ({s['pointwise']['pairs_per_s']:,}/s) |",
        f"| stage 2: listwise, top 30 (window 20, stride 10) | {s['listwise']['wall_s']} | "
        f"{100 * s['listwise']['share']:.1f}% | {s['windows']} windows, {s['generated_tokens']:,} tokens |",
        f"| two-stage total | {s['total_s']} | 100% | |",
        f"| baseline: listwise alone, top 100 | {b['wall_s']} | | {b['windows']} windows, "
        f"{b['generated_tokens']:,} tokens |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=43)
    ap.add_argument("--pairs", type=int, default=1000, help="pairs for the pairs/s measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--listwise-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    import logging

    import torch

    from data_prep.readers import read_qrels, read_rankgpt_json

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    requests = read_rankgpt_json(DATA / "retrieve_results_dl19_top100.json")[: args.queries]
    qrels = read_qrels(DATA / "qrels.dl19-passage.txt")
    with tempfile.TemporaryDirectory() as tmp:
        causal, cls_dir = build_models(Path(tmp))
        res = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                           "torch_threads": args.threads, "torch": torch.__version__},
               "pairs": pairs_per_second(cls_dir, requests, args.batch_size, args.pairs),
               "two_stage": two_stage(causal, cls_dir, requests, qrels, args.batch_size, args.listwise_batch)}
    print(json.dumps(res, indent=2))
    if args.markdown:
        print()
        print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
