"""PyTerrier with the real package, no Java: the DL19 BM25 run as the first stage (``pt.Transformer.from_df``),
``bm25 >> DearTransformer`` inside ``pt.Experiment``; the reranked frame is exactly the run `dear rerank` writes
for the same queries, and its nDCG is the one `dear eval`'s metrics give that run."""

from __future__ import annotations

import pytest
from conftest import shared_path

from data_prep.readers import read_qrels, read_rankgpt_json, read_run
from inference.cli_rerank import run_rerank
from inference.metrics import evaluate
from inference.reranker import ListwiseReranker

pt = pytest.importorskip("pyterrier")
pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_QUERIES = 6
RANKING = {"scoring": "first-token", "window": 10, "stride": 5, "top_k": 20}  # 3 windows a query; 80 keep BM25 order


@pytest.fixture(scope="module")
def dl19():
    requests = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))
    run = pd.DataFrame([{"qid": r.qid, "query": r.query, "docno": c.docid, "text": c.passage(), "score": c.score,
                         "rank": i} for r in requests for i, c in enumerate(r.candidates)])
    qrels = read_qrels(shared_path("trec-dl19", "qrels.dl19-passage.txt"))
    qrels_frame = pd.DataFrame([{"qid": q, "docno": d, "label": label} for q, docs in qrels.items()
                                for d, label in docs.items()])
    return requests, run, qrels, qrels_frame


@pytest.fixture(scope="module")
def reranker(tiny_model_dir):
    return ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", **RANKING)


def test_experiment_bm25_then_dear_equals_the_dear_rerank_run(dl19, reranker, tmp_path):
    from inference.integrations.pyterrier import DearTransformer

    requests, run, qrels, qrels_frame = dl19
    topics = run[["qid", "query"]].drop_duplicates().head(N_QUERIES)
    bm25 = pt.Transformer.from_df(run)
    dear = DearTransformer(reranker)
    calls = []
    batch = reranker.rerank_batch
    reranker.rerank_batch = lambda reqs: calls.append(len(reqs)) or batch(reqs)
    try:
        res = pt.Experiment([bm25, bm25 >> dear], topics, qrels_frame, eval_metrics=["ndcg_cut_10"],
                            names=["bm25", "dear"])
        frame = (bm25 >> dear).transform(topics)
    finally:
        del reranker.rerank_batch
    assert calls == [N_QUERIES, N_QUERIES]  # every query of a frame in one rerank_batch call, as `dear rerank`

    # `dear rerank` on the same queries: its run file, written by the command's own function
    subset = [r for r in requests if r.qid in set(topics["qid"])]
    out = tmp_path / "dl19.trec"
    run_rerank(reranker, subset, out=str(out), jsonl=None, settings={}, progress=False)
    written = read_run(out)
    assert set(frame["qid"]) == set(written)
    for qid, rows in frame.groupby("qid"):
        rows = rows.sort_values("rank")
        assert list(rows["rank"]) == list(range(100))  # 0-based ranks, one per candidate
        assert list(rows["docno"]) == [d for d, _ in written[qid]]
        assert list(rows["score"]) == pytest.approx([s for _, s in written[qid]], abs=1e-6)
        assert list(rows["docno"][:20]) != [c.docid for c in next(r for r in subset if r.qid == qid).candidates[:20]]
        assert list(rows["text"]) == [run.set_index(["qid", "docno"]).loc[(qid, d), "text"] for d in rows["docno"]]

    ndcg = dict(zip(res["name"], res["ndcg_cut_10"], strict=True))
    first_stage = {r.qid: [(c.docid, float(100 - i)) for i, c in enumerate(r.candidates)] for r in subset}
    assert ndcg["bm25"] == pytest.approx(evaluate(first_stage, qrels, ["ndcg@10"])["ndcg@10"], abs=1e-9)
    assert ndcg["dear"] == pytest.approx(evaluate(written, qrels, ["ndcg@10"])["ndcg@10"], abs=1e-9)
    assert ndcg["dear"] != ndcg["bm25"]


def test_first_stage_order_comes_from_rank_then_score_and_other_columns_ride_along(dl19, reranker):
    from inference.integrations.pyterrier import DearTransformer

    _, run, _, _ = dl19
    head = run[run["qid"].isin(run["qid"].unique()[:2])].copy()
    head["extra"] = range(len(head))
    dear = DearTransformer(reranker)
    want = dear.transform(head)
    shuffled = head.sample(frac=1.0, random_state=0)
    assert dear.transform(shuffled)[["qid", "docno", "score", "rank"]].equals(want[["qid", "docno", "score", "rank"]])
    by_score = shuffled.drop(columns=["rank"])  # no rank column: first-stage order by score, descending
    assert list(dear.transform(by_score)["docno"]) == list(want["docno"])
    assert list(want["extra"]) == list(head.set_index(["qid", "docno"]).loc[list(zip(want["qid"], want["docno"],
                                                                                       strict=True)), "extra"])


def test_empty_frames_and_bad_frames(dl19, reranker):
    from pyterrier.validate import InputValidationError

    from inference.integrations.pyterrier import DearTransformer

    _, run, _, _ = dl19
    dear = DearTransformer(reranker)
    empty = dear.transform(run.head(0))
    assert empty.empty and {"score", "rank"} <= set(empty.columns)
    with pytest.raises(InputValidationError):  # PyTerrier's own error for a frame without the text column
        dear.transform(run.head(3).drop(columns=["text"]))
    bad = run.head(3).copy()
    bad["query"] = " "
    with pytest.raises(ValueError, match=r"^query \(qid 264014\): must not be empty -- fix: pass the query text"):
        dear.transform(bad)
    missing = run.head(3).copy()
    missing.loc[1, "text"] = None
    with pytest.raises(TypeError, match=r"^text \(qid 264014, docno \d+\): expected a string, got None \(missing\)"):
        dear.transform(missing)
    titled = DearTransformer(reranker, text_field="body")
    with pytest.raises(InputValidationError):
        titled.transform(run.head(3))
    assert len(titled.transform(run.head(3).rename(columns={"text": "body"}))) == 3
