"""trec_eval-compatible metrics through ir_measures (pytrec_eval underneath).

Semantics are trec_eval's: linear gain nDCG (``ndcg_cut``), queries restricted to those with judgements,
ties in a run broken by docid as trec_eval does. Names accepted: ``ndcg@10``, ``ndcg@5``, ``map``,
``map@100``, ``recall@100``, ``p@10``, ``mrr@10``, ``judged@10`` (case-insensitive) or any ir_measures name (``nDCG@10``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from data_prep.schema import DataError

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10",)
_ALIASES = {"ndcg": "nDCG", "map": "AP", "ap": "AP", "recall": "R", "r": "R", "p": "P", "precision": "P",
            "mrr": "RR", "rr": "RR", "success": "Success", "judged": "Judged"}
_NAME_RE = re.compile(r"^([A-Za-z_]+)(?:@(\d+))?$")

RunLike = Mapping[str, Mapping[str, float] | Sequence[tuple[str, float]]]


def parse_metric(name: str) -> Any:
    """An ir_measures measure from a friendly or native name; a clear error for unknown names."""
    import ir_measures

    m = _NAME_RE.match(name.strip())
    if m and m.group(1).lower() in _ALIASES:
        native = _ALIASES[m.group(1).lower()] + (f"@{m.group(2)}" if m.group(2) else "")
    else:
        native = name.strip()
    try:
        return ir_measures.parse_measure(native)
    except (ValueError, NameError, SyntaxError, TypeError) as err:
        raise DataError(f"unknown metric {name!r}", reason="unknown_metric",
                        fix="use e.g. ndcg@10 ndcg@5 map recall@100 p@10 mrr@10") from err


def _as_dict_run(run: RunLike) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        if isinstance(docs, Mapping):
            out[str(qid)] = {str(d): float(s) for d, s in docs.items()}
        else:
            out[str(qid)] = {str(d): float(s) for d, s in docs}
    return out


def evaluate(
    run: RunLike,
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Iterable[str] = DEFAULT_METRICS,
    *,
    per_query: bool = False,
) -> dict[str, Any]:
    """Mean of each metric over the run's judged queries (trec_eval semantics), keyed by the name given.

    With ``per_query=True`` also returns ``"per_query": {metric: {qid: value}}``. A run with no judged query
    raises a DataError (a wrong qrels file, not a zero score).
    """
    import ir_measures

    names = list(metrics)
    measures = [parse_metric(n) for n in names]
    run_d = _as_dict_run(run)
    qrels_d = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    judged = [q for q in run_d if q in qrels_d]
    if not judged:
        raise DataError("no query of the run has judgements in the qrels", reason="no_judged_queries",
                        fix="pass the qrels of the same collection and year as the run")
    unjudged = len(run_d) - len(judged)
    if unjudged:
        logger.info("%d run queries have no judgements and are left out (trec_eval semantics)", unjudged)
    run_j = {q: run_d[q] for q in judged}
    out: dict[str, Any] = {}
    per: dict[str, dict[str, float]] = {n: {} for n in names}
    # trec_eval without -c: only queries that are both judged and in the run count
    evaluator = ir_measures.evaluator(measures, {q: qrels_d[q] for q in judged})
    for item in evaluator.iter_calc(run_j):
        for n, m in zip(names, measures, strict=True):
            if item.measure == m:
                per[n][item.query_id] = float(item.value)
    for n in names:
        vals = per[n]
        out[n] = sum(vals.values()) / len(vals) if vals else 0.0
    if per_query:
        out["per_query"] = per
    return out
