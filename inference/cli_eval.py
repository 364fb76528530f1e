"""`dear eval`: trec_eval-compatible metrics of one or more runs against qrels.

    dear eval --run dl19.trec --qrels qrels.dl19-passage.txt --metrics ndcg@10 ndcg@5 ndcg@1 map recall@100

A run is a TREC run file, or RankGPT JSON (first-stage scores). Semantics are trec_eval's (linear gain,
only judged queries count). The table goes to the terminal (figures x100), raw values to --out JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_options import (
    check_output_file,
    check_outputs,
    checked,
    flag_message,
    flags_of,
    option,
    parse_options,
)
from data_prep.readers import read_qrels, read_rankgpt_json, read_run
from data_prep.schema import DataError

DEFAULT_EVAL_METRICS = ["ndcg@10", "ndcg@5", "ndcg@1", "map", "recall@100"]


@dataclass
class EvalOptions:
    """Every `dear eval` option (parser, --help and checks come from these fields)."""

    run: list[str] = option(help="TREC run file(s) or RankGPT JSON", setting=None)
    qrels: str = option(help="TREC qrels (qid 0 docid grade)", setting=None)
    metrics: list[str] = option(help="ndcg@K, map, recall@K, p@K, mrr@K, or ir_measures names", setting=None,
                                default_factory=lambda: list(DEFAULT_EVAL_METRICS))
    out: str | None = option(None, help="write the results as JSON here", setting=None)
    per_query: bool = option(False, help="also keep per-query values in the JSON", setting=None)
    common_queries: bool = option(False, setting=None,
                                  help="score every run on only the judged queries all runs share (comparable means)")
    overwrite: bool = option(False, help="replace an existing --out", setting=None)

    def check(self) -> None:
        from inference.metrics import parse_metric

        for m in self.metrics:  # an unknown metric fails before any file is read
            parse_metric(m)
        if self.out:
            check_output_file(self.out, "results JSON")
        check_outputs({"out": self.out}, {"run": self.run, "qrels": self.qrels}, fresh=("out",),
                      overwrite=self.overwrite)


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(EvalOptions, prog="dear eval", description=__doc__)


def load_run(path: str) -> dict[str, list[tuple[str, float]]]:
    if path.endswith((".json", ".json.gz")):
        return {r.qid: [(c.docid, c.score if c.score is not None else float(len(r.candidates) - i))
                        for i, c in enumerate(r.candidates)] for r in read_rankgpt_json(path)}
    return read_run(path)


def judged_queries_note(counts: dict[str, int]) -> str | None:
    """A sentence when the runs' means are over different numbers of judged queries (not comparable as
    they stand), else None."""
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{Path(p).name}: {n}" for p, n in counts.items())
    return (f"the runs cover different numbers of judged queries ({listed}), so their means are over "
            "different query sets; pass --common-queries to compare them on the queries all runs share")


def evaluate_files(runs: list[str], qrels_path: str, metrics: list[str], per_query: bool = False,
                   common_queries: bool = False) -> dict[str, Any]:
    """Metrics of each run; every file is read and checked (judged queries present) before any is scored."""
    from inference.metrics import evaluate, parse_metric

    for m in metrics:  # an unknown metric fails before any file is read
        parse_metric(m)
    qrels = read_qrels(qrels_path)
    if not qrels:
        raise DataError("the qrels file holds no judgments", path=qrels_path, reason="empty_qrels",
                        fix="pass a TREC qrels file (qid 0 docid grade per line)")
    loaded = {path: load_run(path) for path in runs}
    for path, run in loaded.items():
        if not any(q in qrels for q in run):
            raise DataError(f"no query of this run is judged in {qrels_path} ({len(run)} run queries, "
                            f"{len(qrels)} judged, none shared)", path=path, reason="no_judged_queries",
                            fix="pass the qrels of the same collection and year as the run")
    shared = set.intersection(*({q for q in run if q in qrels} for run in loaded.values()))
    results = {}
    for path, run in loaded.items():
        if common_queries:
            run = {q: docs for q, docs in run.items() if q in shared}
        values = evaluate(run, qrels, metrics, per_query=per_query)
        judged = sum(1 for q in run if q in qrels)
        results[path] = {"metrics": {m: values[m] for m in metrics}, "queries": judged,
                         "unjudged_queries": len(run) - judged}
        if per_query:
            results[path]["per_query"] = values["per_query"]
    note = judged_queries_note({p: r["queries"] for p, r in results.items()})
    return {"qrels": qrels_path, "metrics": metrics, "runs": results, "common_queries": common_queries,
            "note": note}


def main(argv: list[str] | None = None) -> int:
    args = parse_options(EvalOptions, argv, prog="dear eval", parser=build_parser())
    try:
        checked(args, prog="dear eval")
        report = evaluate_files(args.run, args.qrels, args.metrics, args.per_query, args.common_queries)
    except DataError as err:
        print(f"dear eval: error: {flag_message(err, flags_of(EvalOptions))}", file=sys.stderr)
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
    if report["note"]:
        print(f"dear eval: note: {report['note']}", file=sys.stderr)
    if args.out:
        from data_prep.io import naming

        with naming(args.out):  # a full disk names the file
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
