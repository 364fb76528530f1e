"""`dear eval`: trec_eval-compatible metrics of one or more runs against qrels.

    dear eval --run dl19.trec --qrels qrels.dl19-passage.txt --metrics ndcg@10 ndcg@5 ndcg@1 map recall@100

A run is a TREC run file, or RankGPT JSON (first-stage scores). Semantics are trec_eval's (linear gain,
only judged queries count). The table goes to the terminal (figures x100), raw values to --out JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from data_prep.readers import read_qrels, read_rankgpt_json, read_run
from data_prep.schema import DataError

DEFAULT_EVAL_METRICS = ["ndcg@10", "ndcg@5", "ndcg@1", "map", "recall@100"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dear eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, nargs="+", help="TREC run file(s) or RankGPT JSON")
    p.add_argument("--qrels", required=True, help="TREC qrels (qid 0 docid grade)")
    p.add_argument("--metrics", nargs="+", default=DEFAULT_EVAL_METRICS,
                   help="ndcg@K, map, recall@K, p@K, mrr@K, or ir_measures names")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--per-query", action="store_true", help="also keep per-query values in the JSON")
    return p


def load_run(path: str) -> dict[str, list[tuple[str, float]]]:
    if path.endswith((".json", ".json.gz")):
        return {r.qid: [(c.docid, c.score if c.score is not None else float(len(r.candidates) - i))
                        for i, c in enumerate(r.candidates)] for r in read_rankgpt_json(path)}
    return read_run(path)


def evaluate_files(runs: list[str], qrels_path: str, metrics: list[str], per_query: bool = False
                   ) -> dict[str, Any]:
    from inference.metrics import evaluate

    qrels = read_qrels(qrels_path)
    results = {}
    for path in runs:
        run = load_run(path)
        values = evaluate(run, qrels, metrics, per_query=per_query)
        judged = sum(1 for q in run if q in qrels)
        results[path] = {"metrics": {m: values[m] for m in metrics}, "queries": judged,
                         "unjudged_queries": len(run) - judged}
        if per_query:
            results[path]["per_query"] = values["per_query"]
    return {"qrels": qrels_path, "metrics": metrics, "runs": results}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate_files(args.run, args.qrels, args.metrics, args.per_query)
    except DataError as err:
        print(f"dear eval: error: {err}", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qrels {args.qrels} (trec_eval semantics, x100)")
    table.add_column("run", overflow="fold")
    table.add_column("queries", justify="right")
    for m in args.metrics:
        table.add_column(m, justify="right")
    for path, res in report["runs"].items():
        table.add_row(path, str(res["queries"]), *(f"{100 * res['metrics'][m]:.2f}" for m in args.metrics))
    Console().print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
