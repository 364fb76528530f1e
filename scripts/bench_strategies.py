"""Ranking strategies compared: what each costs and what it keeps, against sliding windows.

    python scripts/bench_strategies.py simulated --json strategies_sim.json      # part 1 (no model)
    python scripts/bench_strategies.py wall --queries 8 --json strategies_wall.json  # part 2 (tiny models)

Part 1, a simulated ranker on TREC DL19 and DL20 (BM25 top-100, top-10 wanted). Every strategy runs through the
real scheduler (``ListwiseReranker`` with its real prompts, parser and early stop); only the backend is simulated:
it orders each window by the qrels grade of its passages plus Gaussian noise of standard deviation ``sigma``
(seeded per query and per window, so the same window always gets the same answer, as greedy decoding would),
and writes the answer in the prompt spec's format. Prompt and generated tokens are counted with a real tokenizer
(the tiny test tokenizer, ``dear_train.tiny_model``: it splits text into more tokens than Llama-3's, so the
ratios are what carries over, not the counts); generated tokens stop where the reranker's early stop would. Per
strategy, dataset and noise level: nDCG@10 (trec_eval semantics) and, per query, model calls, prompt tokens,
generated tokens and sequential rounds, each also as a ratio to sliding windows. The simulation gives every
window the same accuracy whatever its length; a real model ranks 100 passages in one window worse than 20
(LiT5, RankZephyr), which the single-window row does not show.

Part 2, wall time on the tiny random 2-layer and 8-layer models (CPU, HF backend, greedy generation with the
budget of a full ranking, one run): every strategy on the same DL19 queries and candidates, as ratios to sliding.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data"
DATASETS = {"dl19": ("trec-dl19", "retrieve_results_dl19_top100.json", "qrels.dl19-passage.txt"),
            "dl20": ("trec-dl20", "retrieve_results_dl20_top100.json", "qrels.dl20-passage.txt")}
# (label, ListwiseReranker keyword arguments); sliding first: the baseline
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("sliding w20 s10", {"strategy": "sliding", "window": 20, "stride": 10}),
    ("single (whole top-k)", {"strategy": "single"}),
    ("tdpart w20 d10", {"strategy": "tdpart", "window": 20, "depth": 10}),
    ("setwise heapsort c3 d10", {"strategy": "setwise", "set_size": 3, "depth": 10}),
    ("setwise heapsort c5 d10", {"strategy": "setwise", "set_size": 5, "depth": 10}),
    ("setwise bubblesort c3 d10", {"strategy": "setwise", "set_size": 3, "depth": 10, "setwise_sort": "bubblesort"}),
]
_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


class SimulatedRanker:
    """A generation backend that ranks each window by qrels grade + N(0, sigma) and answers in the spec's format.

    Which query a window belongs to is read from its request key (the query's index in ``rerank_batch``); which
    passage each id stands for, from the prompt's ``[i] passage`` lines."""

    def __init__(self, queries: list[dict[str, float]], sigma: float, seed: int, tokenizer: Any, base: int,
                 kind: str = "call") -> None:
        from inference.engine.types import BackendStats

        self.queries, self.sigma, self.seed, self.kind = queries, sigma, seed, kind
        self.tokenizer, self.base = tokenizer, base
        self.stats = BackendStats()
        self.unknown = 0  # passages whose line matched no candidate (counted, graded 0)

    def _answer(self, req: Any) -> str:
        qi = req.key[0]
        grades = self.queries[qi]
        lines = [text for _, text in sorted(((int(i), t) for i, t in _LINE.findall(req.text)))]
        rng = random.Random(zlib.crc32(f"{self.seed}|{qi}|{self.sigma}|".encode() + "\x1f".join(lines).encode()))
        scored = []
        for pos, text in enumerate(lines):
            if text not in grades:
                self.unknown += 1
            scored.append((grades.get(text, 0.0) + self._noise(qi, text, rng), pos))
        order = [pos for _, pos in sorted(scored, key=lambda t: (-t[0], t[1]))]
        return " " + " > ".join(f"[{p + self.base}]" for p in order)

    def _noise(self, qi: int, text: str, rng: random.Random) -> float:
        """``call``: drawn afresh for every window a passage is in (an inconsistent ranker); ``item``: drawn once
        per passage (a consistent ranker that misjudges some passages)."""
        if not self.sigma:
            return 0.0
        if self.kind == "item":
            return random.Random(zlib.crc32(f"{self.seed}|{qi}|{self.sigma}|item|{text}".encode())).gauss(0.0,
                                                                                                        self.sigma)
        return rng.gauss(0.0, self.sigma)

    def _tokens(self, text: str, is_complete: Any) -> list[int]:
        """The answer's tokens up to where the reranker's early stop ends decoding (a binary search over prefixes:
        completeness only grows with the text)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if is_complete is None:
            return ids
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if is_complete(self.tokenizer.decode(ids[:mid], skip_special_tokens=True)):
                hi = mid
            else:
                lo = mid + 1
        return ids[:lo]

    def stream(self, pull: Any, max_in_flight: int) -> Any:
        from inference.engine.types import Generation

        while True:
            reqs = pull(max_in_flight)
            if not reqs:
                return
            for req in reqs:
                text = self._answer(req)
                ids = self._tokens(text, req.is_complete)
                n_prompt = len(self.tokenizer(req.text, add_special_tokens=req.add_special_tokens)["input_ids"])
                self.stats.prefills += 1
                self.stats.prompt_tokens += n_prompt
                self.stats.generated_tokens += len(ids)
                yield Generation(key=req.key, text=self.tokenizer.decode(ids, skip_special_tokens=True),
                                 token_ids=ids, prompt_tokens=n_prompt, finish_reason="complete")


def load_dataset(name: str, limit: int | None) -> tuple[list[Any], dict[str, dict[str, int]]]:
    from data_prep.readers import read_qrels, read_rankgpt_json

    folder, run, qrels = DATASETS[name]
    qrels_map = read_qrels(SHARED / folder / qrels)
    requests = [r for r in read_rankgpt_json(SHARED / folder / run) if r.qid in qrels_map]
    return requests[:limit] if limit else requests, qrels_map


def passage_grades(requests: list[Any], qrels: dict[str, dict[str, int]], spec: Any) -> list[dict[str, float]]:
    """Per query: the prompt line of each candidate -> its grade (the max over candidates with the same text)."""
    from data_prep.prompts import render_prompt

    out = []
    for r in requests:
        prompt = render_prompt(spec, r.query, [c.passage() for c in r.candidates])
        lines = [t for _, t in sorted(((int(i), t) for i, t in _LINE.findall(prompt.text)))]
        if len(lines) != len(r.candidates):
            raise RuntimeError(f"qid {r.qid}: {len(lines)} prompt lines for {len(r.candidates)} candidates")
        grades: dict[str, float] = {}
        for line, c in zip(lines, r.candidates, strict=True):
            grades[line] = max(grades.get(line, 0.0), float(qrels[r.qid].get(c.docid, 0)))
        out.append(grades)
    return out


def simulated(args: argparse.Namespace) -> list[dict[str, Any]]:
    from transformers import AutoTokenizer

    from data_prep.prompts import get_prompt_spec
    from dear_train.tiny_model import build_tiny_model
    from inference.metrics import evaluate
    from inference.reranker import ListwiseReranker

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    spec = get_prompt_spec("dear-card")
    rows: list[dict[str, Any]] = []
    for ds in args.datasets:
        requests, qrels = load_dataset(ds, args.limit)
        grades = passage_grades(requests, qrels, spec)
        for kind, sigma in [(k, s) for k in args.noise_kind for s in args.noise if s or k == args.noise_kind[0]]:
            base_row: dict[str, Any] | None = None
            for label, kw in STRATEGIES:
                backend = SimulatedRanker(grades, sigma, args.seed, tokenizer, spec.id_base, kind)
                rr = ListwiseReranker(None, tokenizer, spec, backend=backend, top_k=100, batch_size=64, **kw)
                t0 = time.perf_counter()
                results = rr.rerank_batch(requests)
                run = {r.qid: list(zip(r.docids, r.scores, strict=True)) for r in results}
                n = len(results)
                row = {"dataset": ds, "noise_kind": kind if sigma else "none", "noise": sigma, "strategy": label,
                       "queries": n,
                       "ndcg@10": round(100 * evaluate(run, qrels, ("ndcg@10",))["ndcg@10"], 2),
                       "model_calls": sum(r.cost.model_calls for r in results) / n,
                       "prompt_tokens": sum(r.cost.prompt_tokens for r in results) / n,
                       "generated_tokens": sum(r.cost.generated_tokens for r in results) / n,
                       "rounds": sum(r.cost.rounds for r in results) / n,
                       "max_rounds": max(r.cost.rounds for r in results),
                       "repairs": sum(sum(r.repairs.values()) for r in results),
                       "unknown_passages": backend.unknown, "bench_s": round(time.perf_counter() - t0, 2)}
                if base_row is None:
                    base_row = row
                for key in ("model_calls", "prompt_tokens", "generated_tokens", "rounds"):
                    row[key] = round(row[key], 2)
                    row[f"{key}_vs_sliding"] = round(row[key] / base_row[key], 3) if base_row[key] else None
                row["ndcg@10_minus_sliding"] = round(row["ndcg@10"] - base_row["ndcg@10"], 2)
                rows.append(row)
                print(f"{ds} {row['noise_kind']:<4} sigma={sigma:<4} {label:<28} nDCG@10 {row['ndcg@10']:6.2f} "
                      f"({row['ndcg@10_minus_sliding']:+.2f})  calls {row['model_calls']:6.1f} "
                      f"({row['model_calls_vs_sliding']:.2f}x)  prompt tok {row['prompt_tokens']:8.0f} "
                      f"({row['prompt_tokens_vs_sliding']:.2f}x)  gen tok {row['generated_tokens']:6.0f} "
                      f"({row['generated_tokens_vs_sliding']:.2f}x)  rounds {row['rounds']:5.1f} "
                      f"({row['rounds_vs_sliding']:.2f}x, max {row['max_rounds']})", flush=True)
    print(target_verdict(rows))
    return rows


def target_verdict(rows: list[dict[str, Any]]) -> str:
    """Per noise kind: which strategies stay within 1 nDCG@10 point of sliding at every noise level and dataset, with
    at most 75% of its prompt tokens or at most a third of its sequential rounds (in every cell)."""
    labels = [label for label, _ in STRATEGIES[1:]]
    lines = []
    for kind in sorted({r["noise_kind"] for r in rows} - {"none"}) or ["none"]:
        ok = []
        for label in labels:
            cells = [r for r in rows if r["strategy"] == label and r["noise_kind"] in (kind, "none")]
            if cells and all(r["ndcg@10_minus_sliding"] >= -1.0 and (r["prompt_tokens_vs_sliding"] <= 0.75
                                                                       or r["rounds_vs_sliding"] <= 1 / 3)
                             for r in cells):
                ok.append(label)
        lines.append(f"{kind} noise: target met by " + (", ".join(ok) if ok else "none"))
    return "\n".join(lines)


def wall(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dear_train.tiny_model import build_tiny_model
    from inference.reranker import ListwiseReranker

    torch.set_num_threads(args.threads)
    requests, _ = load_dataset("dl19", args.queries)
    rows: list[dict[str, Any]] = []
    for layers in (2, 8):
        path = build_tiny_model(Path(tempfile.mkdtemp()) / f"tiny{layers}", num_hidden_layers=layers)
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
        for scoring in ("generate", "first-token"):
            base: float | None = None
            for label, kw in STRATEGIES:
                if scoring == "first-token" and kw["strategy"] == "single":
                    continue  # the tiny tokenizer has one-token ids up to 20 only
                rr = ListwiseReranker(model, tok, "dear-card", top_k=args.top_k, batch_size=args.batch_size,
                                      scoring=scoring, **kw)
                t0 = time.perf_counter()
                results = rr.rerank_batch(requests)
                wall_s = time.perf_counter() - t0
                base = base or wall_s
                n = len(results)
                row = {"model": f"tiny {layers}-layer", "scoring": scoring, "strategy": label, "queries": n,
                       "top_k": args.top_k, "wall_s": round(wall_s, 2), "wall_vs_sliding": round(wall_s / base, 3),
                       "model_calls": sum(r.cost.model_calls for r in results) / n,
                       "prompt_tokens": sum(r.cost.prompt_tokens for r in results) / n,
                       "generated_tokens": sum(r.cost.generated_tokens for r in results) / n,
                       "rounds": sum(r.cost.rounds for r in results) / n}
                rows.append(row)
                print(f"tiny {layers}-layer {scoring:<11} {label:<32} {wall_s:7.2f} s ({row['wall_vs_sliding']:.2f}x)"
                      f"  calls {row['model_calls']:6.1f}  prompt tok {row['prompt_tokens']:8.0f}  gen tok "
                      f"{row['generated_tokens']:6.0f}  rounds {row['rounds']:5.1f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    s = sub.add_parser("simulated", help="part 1: simulated ranker on DL19/DL20")
    s.add_argument("--datasets", nargs="+", default=["dl19", "dl20"], choices=sorted(DATASETS))
    s.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0],
                   help="standard deviations of the noise added to the qrels grade (0-3)")
    s.add_argument("--noise-kind", nargs="+", default=["call", "item"], choices=["call", "item"],
                   help="call: fresh noise for every window (an inconsistent ranker); item: one draw per passage "
                   "(a consistent ranker that misjudges passages)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, default=None, help="only the first N judged queries")
    w = sub.add_parser("wall", help="part 2: wall time on the tiny 2- and 8-layer models")
    w.add_argument("--queries", type=int, default=8)
    w.add_argument("--top-k", type=int, default=100)
    w.add_argument("--batch-size", type=int, default=16)
    w.add_argument("--threads", type=int, default=1)
    for q in (s, w):
        q.add_argument("--json", help="write the rows here (one per strategy, noise level / model and dataset)")
    args = p.parse_args(argv)
    rows = simulated(args) if args.part == "simulated" else wall(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0 if all(not math.isnan(r.get("ndcg@10", 0.0)) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
