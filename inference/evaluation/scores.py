"""Per-query metric values of several runs over ONE query set, the table every paired test reads.

The query set is every judged query that any run has; a run lacking one of them scores 0 there (trec_eval
``-c``), and the report says how many it lacked. ``common_queries`` narrows the set to the judged queries all
runs share instead. Either way every run is scored on exactly the same queries, so a paired test never pairs
different query sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.schema import DataError
from inference.metrics import RunLike, evaluate

JUDGED_AT_10 = "judged@10"


def qid_order(qid: str) -> tuple[int, int | str]:
    """Numeric qids in numeric order, then the rest in text order (stable tables and plots)."""
    return (0, int(qid)) if qid.isdigit() else (1, qid)


@dataclass(frozen=True)
class QueryScores:
    """``values[run][metric]`` holds one float per query of ``qids``, in that order."""

    qids: tuple[str, ...]
    values: dict[str, dict[str, list[float]]]
    covered: dict[str, int]  # judged queries of the evaluated set each run has
    unjudged: dict[str, int]  # queries of each run that the qrels do not judge (left out)
    missing: dict[str, tuple[str, ...]]  # evaluated queries a run lacks: scored 0
    common_queries: bool

    def mean(self, run: str, metric: str) -> float:
        vals = self.values[run][metric]
        return sum(vals) / len(vals) if vals else 0.0

    def means(self, run: str) -> dict[str, float]:
        return {m: self.mean(run, m) for m in self.values[run]}


def query_scores(runs: Mapping[str, RunLike], qrels: Mapping[str, Mapping[str, int]], metrics: Sequence[str],
                 *, common_queries: bool = False) -> QueryScores:
    """Every run scored per query on the same judged queries (see the module docstring)."""
    covered = {name: {str(q) for q in run if str(q) in qrels} for name, run in runs.items()}
    sets = list(covered.values())
    qset = set.intersection(*sets) if common_queries else set.union(*sets)
    if not qset:
        raise DataError("the runs share no judged query, so --common-queries leaves nothing to compare",
                        reason="no_common_queries", field="common_queries",
                        fix="drop --common-queries (a run then scores 0 on the judged queries it lacks)")
    qids = tuple(sorted(qset, key=qid_order))
    values: dict[str, dict[str, list[float]]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    unjudged: dict[str, int] = {}
    for name, run in runs.items():
        sub: dict[str, Any] = {str(q): docs for q, docs in run.items() if str(q) in qset}
        per = evaluate(sub, qrels, list(metrics), per_query=True)["per_query"]
        values[name] = {m: [float(per[m].get(q, 0.0)) for q in qids] for m in metrics}
        missing[name] = tuple(q for q in qids if q not in sub)
        unjudged[name] = sum(1 for q in run if str(q) not in qrels)
    return QueryScores(qids=qids, values=values, covered={n: len(c & qset) for n, c in covered.items()},
                       unjudged=unjudged, missing=missing, common_queries=common_queries)
