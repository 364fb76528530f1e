"""trec_eval semantics on the shared TREC DL runs: the published first-stage figures, exactly."""

import pytest
from conftest import shared_path

from data_prep.readers import read_qrels, read_rankgpt_json, read_run
from data_prep.schema import DataError
from inference.metrics import evaluate, parse_metric


@pytest.mark.parametrize("year,qrels,bm25,splade", [
    ("dl19", "qrels.dl19-passage.txt", 50.58, 73.08),
    ("dl20", "qrels.dl20-passage.txt", 47.96, 71.97),
])
def test_first_stage_ndcg_matches_trec_eval(year, qrels, bm25, splade):
    q = read_qrels(shared_path(f"trec-{year}", qrels))
    run = read_run(shared_path(f"trec-{year}", f"trec_results_{year}_top100.txt"))
    assert round(100 * evaluate(run, q)["ndcg@10"], 2) == bm25
    reqs = read_rankgpt_json(shared_path(f"trec-{year}", f"splade_pp_ed.retrieve_results_{year}_top100.json"))
    # the dict form of a run gives the same figure as the list form
    run_s = {r.qid: {c.docid: c.score for c in r.candidates} for r in reqs}
    assert round(100 * evaluate(run_s, q)["ndcg@10"], 2) == splade


def test_hand_computed_ndcg_and_judged_queries_only():
    qrels = {"1": {"a": 3, "b": 1, "c": 0}, "2": {"x": 1}}
    # q1 ranks b, a: dcg = 1/log2(2) + 3/log2(3); ideal = 3 + 1/log2(3)
    run = {"1": [("b", 2.0), ("a", 1.0), ("zzz-unjudged", 0.5)], "unjudged-query": [("a", 1.0)]}
    import math
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    out = evaluate(run, qrels, ("ndcg@10", "map", "recall@100", "P@1"), per_query=True)
    assert out["ndcg@10"] == pytest.approx(expected, abs=1e-4)
    assert out["per_query"]["ndcg@10"].keys() == {"1"}  # unjudged query left out; q2 not in the run
    assert out["recall@100"] == 1.0 and out["P@1"] == 1.0


def test_metric_names_and_errors():
    assert str(parse_metric("ndcg@10")) == "nDCG@10"
    assert str(parse_metric("MAP")) == "AP"
    assert str(parse_metric("recall@100")) == "R@100"
    with pytest.raises(DataError, match="unknown metric"):
        parse_metric("bogus@@3")
    with pytest.raises(DataError, match="no query of the run"):
        evaluate({"9": [("a", 1.0)]}, {"1": {"a": 1}})
