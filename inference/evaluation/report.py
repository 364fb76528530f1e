"""One `dear eval`: read and check every file, score all runs on one query set, compare, cost; a JSON-able dict.

Every file is read and checked (judged queries present) before anything is scored. The dict is what
``--out`` writes and what ``table``/``plots`` render.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.cli_options import OptionError
from data_prep.io.versions import package_versions
from data_prep.readers import read_qrels, read_rankgpt_json, read_run
from data_prep.schema import DataError
from inference.evaluation.scores import JUDGED_AT_10, QueryScores, query_scores
from inference.evaluation.stats import DEFAULT_PERMUTATIONS
from inference.evaluation.table import DAGGER

# what can move a figure of this report: the metrics (ir_measures, pytrec_eval) and the tests
EVAL_PACKAGES = ("dear-reranker", "ir-measures", "pytrec-eval-terrier", "numpy", "scipy", "statsmodels")


def load_run(path: str) -> dict[str, list[tuple[str, float]]]:
    """A TREC run, or RankGPT JSON (its first-stage scores; rank order where a hit has no score)."""
    if path.endswith((".json", ".json.gz")):
        return {r.qid: [(c.docid, c.score if c.score is not None else float(len(r.candidates) - i))
                        for i, c in enumerate(r.candidates)] for r in read_rankgpt_json(path)}
    return read_run(path)


def display_names(paths: Sequence[str]) -> dict[str, str]:
    """File names, or the paths as given where two runs share a file name."""
    names = [Path(p).name for p in paths]
    return {p: (n if names.count(n) == 1 else p) for p, n in zip(paths, names, strict=True)}


def judged_queries_note(counts: dict[str, int], total: int, common: bool) -> str | None:
    """A sentence when the runs cover different numbers of judged queries, else None."""
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{Path(p).name}: {n}" for p, n in counts.items())
    if common:
        return (f"the runs cover different numbers of judged queries ({listed}); --common-queries scores all "
                f"of them on the {total} they share")
    return (f"the runs cover different numbers of judged queries ({listed}); each is scored on all {total}, "
            "0 on a query it lacks (trec_eval -c); pass --common-queries to compare them on the queries all "
            "runs share")


def resolve_baseline(baseline: str, runs: Sequence[str]) -> str:
    """The --run entry ``baseline`` names: the path as given, or a unique file name or stem."""
    if baseline in runs:
        return baseline
    hits = [r for r in runs if baseline in (Path(r).name, Path(r).stem)]
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(Path(r).name for r in runs)
    if hits:
        raise OptionError("baseline", f"{baseline!r} matches {len(hits)} of the --run files",
                          fix=f"pass the baseline's path exactly as in --run ({', '.join(hits)})")
    raise OptionError("baseline", f"{baseline!r} is none of the --run files ({listed})",
                      fix="pass one of the --run paths (or its file name); the baseline is also listed in --run")


def build_report(runs: Sequence[str], qrels_path: str, metrics: Sequence[str], *, per_query: bool = False,
                 common_queries: bool = False, compare_runs: bool = False, baseline: str | None = None,
                 test: str = "t", correction: str = "holm", alpha: float = 0.05,
                 permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
                 costs: bool = True) -> tuple[dict[str, Any], QueryScores]:
    """(the report, the per-query scores behind it): metrics of each run, judged@10, costs, and
    (``compare_runs``, two runs or more) the paired tests; see the module docstring."""
    from inference.metrics import parse_metric

    for m in metrics:  # an unknown metric fails before any file is read
        parse_metric(m)
    if baseline is not None:
        baseline = resolve_baseline(baseline, runs)
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
    scored = [*metrics, *([JUDGED_AT_10] if JUDGED_AT_10 not in metrics else [])]
    scores = query_scores(loaded, qrels, scored, common_queries=common_queries)
    comparison = None
    if compare_runs and len(runs) >= 2:
        from inference.evaluation.compare import compare

        comparison = compare(scores, list(runs), list(metrics), baseline=baseline, test=test,
                             correction=correction, alpha=alpha, permutations=permutations, seed=seed)
    names = display_names(runs)
    letters = comparison.letters() if comparison else {r: chr(ord("a") + i) if i < 26 else str(i + 1)
                                                      for i, r in enumerate(runs)}
    out_runs: dict[str, Any] = {}
    for path in runs:
        out_runs[path] = run_entry(path, scores, metrics, comparison, per_query=per_query)
        out_runs[path].update(name=names[path], letter=letters[path])
        if costs:
            from inference.evaluation.efficiency import read_cost

            cost = read_cost(path, set(loaded[path]))
            out_runs[path]["cost"] = cost.as_dict() if cost else None
    judged = {p: sum(1 for q in loaded[p] if q in qrels) for p in runs}
    note = judged_queries_note(judged, len(scores.qids), common_queries)
    report = {"qrels": qrels_path, "metrics": list(metrics), "queries": len(scores.qids), "runs": out_runs,
              "common_queries": common_queries, "note": note,
              "comparison": comparison.as_dict() if comparison else None, "plots": [],
              "versions": package_versions(EVAL_PACKAGES)}
    return report, scores


def run_entry(path: str, scores: QueryScores, metrics: Sequence[str], comparison: Any, *,
              per_query: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "metrics": {m: scores.mean(path, m) for m in metrics}, JUDGED_AT_10: scores.mean(path, JUDGED_AT_10),
        "queries": scores.covered[path], "unjudged_queries": scores.unjudged[path],
        "missing_queries": len(scores.missing[path]), "marks": {}}
    if comparison is not None:
        for m in metrics:
            if comparison.baseline is not None:
                pair = comparison.find(path, comparison.baseline, m) if path != comparison.baseline else None
                entry["marks"][m] = DAGGER if pair is not None and pair.significant else ""
            else:
                letters = comparison.letters()
                entry["marks"][m] = "".join(letters[o] for o in comparison.better_than(path, m))
    if per_query:
        entry["per_query"] = {m: dict(zip(scores.qids, scores.values[path][m], strict=True)) for m in metrics}
    return entry
