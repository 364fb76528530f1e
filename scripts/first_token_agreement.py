"""Per-window agreement between first-token scoring and generation, on the very windows generation saw.

    python scripts/first_token_agreement.py --model ADAPTER --input heldout.json --jsonl runs/trained.jsonl \\
        --out agreement.json

``--jsonl`` is a `dear rerank --jsonl` file of a generation run. Each of its model-answered windows (two or more
candidates) is scored again with ``ListwiseReranker(scoring="first-token")`` on the same candidates in the same
prompt order, with the same prompt spec, and the two orders are compared: Kendall tau (no ties: both are
permutations) and whether both put the same candidate first. Prints and writes the means and counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def kendall_tau(a: list[int], b: list[int]) -> float:
    """Kendall tau between two orders of the same items (permutations, so no ties)."""
    pos = {k: i for i, k in enumerate(b)}
    n = len(a)
    pairs = n * (n - 1) // 2
    concordant = sum(1 for i in range(n) for j in range(i + 1, n) if pos[a[i]] < pos[a[j]])
    return (2 * concordant - pairs) / pairs


def window_agreement(reranker_for, requests: dict, records: list[dict]) -> dict:
    """Compare each generated window of ``records`` with first-token scoring of the same window.

    ``reranker_for(n)`` gives a first-token ``ListwiseReranker`` whose one window covers ``n`` candidates."""
    from data_prep.schema import RerankRequest

    taus, top1 = [], []
    for rec in records:
        req = requests[rec["qid"]]
        by_id = {c.docid: c for c in req.candidates}
        for w in rec["windows"]:
            if w["raw"] is None or len(w["docids"]) < 2:
                continue
            cands = tuple(by_id[d] for d in w["docids"])  # prompt order of the generated window
            (res,) = reranker_for(len(cands)).rerank_batch([RerankRequest(qid=req.qid, query=req.query,
                                                                          candidates=cands)])
            (fw,) = res.windows
            taus.append(kendall_tau(list(fw.order), list(w["order"])))
            top1.append(fw.order[0] == w["order"][0])
    n = len(taus)
    return {"windows": n, "kendall_tau": sum(taus) / n if n else None, "top1_agreement": sum(top1) / n if n else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="adapter or merged model folder (as for dear rerank)")
    ap.add_argument("--input", required=True, help="the RankGPT JSON the generation run reranked")
    ap.add_argument("--jsonl", required=True, help="`dear rerank --jsonl` output of the generation run")
    ap.add_argument("--prompt", default=None, help="prompt spec (default: the model folder's)")
    ap.add_argument("--out", help="write the figures here (JSON)")
    args = ap.parse_args(argv)

    from data_prep.readers import read_rankgpt_json
    from inference.reranker import ListwiseReranker

    base = ListwiseReranker.from_pretrained(args.model, device_map="cpu", prompt=args.prompt, scoring="first-token",
                                            window=2, stride=1, top_k=2)
    cache: dict[int, ListwiseReranker] = {}

    def reranker_for(n: int) -> ListwiseReranker:
        if n not in cache:
            cache[n] = ListwiseReranker(base.model, base.tokenizer, base.spec, window=n, stride=n - 1, top_k=n,
                                        scoring="first-token")
        return cache[n]

    requests = {r.qid: r for r in read_rankgpt_json(args.input)}
    records = [json.loads(line) for line in Path(args.jsonl).read_text(encoding="utf-8").splitlines() if line.strip()]
    figures = window_agreement(reranker_for, requests, records)
    print(json.dumps(figures))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
