"""The reranker's scheduling, windows and repairs with a scripted backend (no model)."""

import pytest
from _infer_helpers import ScriptedBackend, rank_by_relevance

from data_prep.prompts import get_prompt_spec
from data_prep.schema import Candidate, DataError, RerankRequest
from inference.reranker import ListwiseReranker


def _req(qid, rels, query="what is relevant"):
    return RerankRequest(qid=qid, query=query,
                         candidates=tuple(Candidate(docid=f"{qid}-d{i}", text=f"rel={r} passage {i}")
                                          for i, r in enumerate(rels)))


def _reranker(backend, spec="dear-card", **kw):
    kw.setdefault("window", 3)
    kw.setdefault("stride", 2)
    return ListwiseReranker(None, None, get_prompt_spec(spec) if isinstance(spec, str) else spec,
                            backend=backend, **kw)


def test_well_formed_windows_give_the_worked_example_order():
    # 5 docs, window 3, stride 2: windows (2,5) then (0,3).
    # (2,5) holds rel 2,4,3 -> d3,d4,d2; then (0,3) holds d0,d1,d3 (rel 1,5,4) -> d1,d3,d0.
    backend = ScriptedBackend(rank_by_relevance)
    res = _reranker(backend).rerank_batch([_req("q", [1, 5, 2, 4, 3])])[0]
    assert res.docids == ("q-d1", "q-d3", "q-d0", "q-d4", "q-d2")
    assert res.repairs == {}
    assert res.scores == (5.0, 4.0, 3.0, 2.0, 1.0)
    assert [(w.start, w.end) for w in res.windows] == [(2, 5), (0, 3)]
    assert res.windows[1].docids == ("q-d0", "q-d1", "q-d3")
    assert res.windows[1].raw == " [1] > [2] > [0]"


def test_malformed_outputs_are_repaired_and_counted():
    outputs = {0: " [2] > [2] > [7]", 1: "I cannot rank these."}
    backend = ScriptedBackend(lambda r: outputs[r.key[1]])
    res = _reranker(backend).rerank_batch([_req("q", [0, 0, 0, 0, 0])])[0]
    # window (2,5): [2] dup [7] -> order [2, 0, 1] -> d4, d2, d3; window (0,3) unparseable -> unchanged
    assert res.docids == ("q-d0", "q-d1", "q-d4", "q-d2", "q-d3")
    assert res.repairs == {"duplicate": 1, "out_of_range": 1, "missing": 2 + 3, "unparseable": 1}
    assert res.windows[0].repairs == {"duplicate": 1, "out_of_range": 1, "missing": 2}


def test_cot_digits_in_reasoning_are_not_read(tiny_tokenizer):
    spec = get_prompt_spec("rankgpt", cot=True)
    text = "<think>Passage [3] says 1879 > 1878 and [1] > [2] looks plausible.</think>\n[2] > [3] > [1]"
    backend = ScriptedBackend(lambda r: text)
    req = RerankRequest(qid="q", query="q?", candidates=tuple(Candidate(f"d{i}", f"p{i}") for i in range(3)))
    res = ListwiseReranker(None, tiny_tokenizer, spec, window=3, stride=2, backend=backend).rerank_batch([req])[0]
    assert res.docids == ("d1", "d2", "d0") and res.repairs == {}
    # unfinished reasoning only: nothing is read from it
    backend = ScriptedBackend(lambda r: "<think>[2] > [3] > [1] because 3 > 2")
    res = ListwiseReranker(None, tiny_tokenizer, spec, window=3, stride=2, backend=backend).rerank_batch([req])[0]
    assert res.docids == ("d0", "d1", "d2") and res.repairs == {"unparseable": 1, "missing": 3}


def test_batched_queries_equal_one_at_a_time_with_out_of_order_completion():
    reqs = [_req(f"q{j}", [(7 * i + 3 * j) % 11 for i in range(9)]) for j in range(5)]
    reqs.append(_req("bad", [0, 0, 0, 0], query="a bad one"))

    def script(r):
        return "[1] > [1] > [9]" if "a bad one" in r.text else rank_by_relevance(r)

    alone = [_reranker(ScriptedBackend(script), batch_size=1).rerank_batch([r])[0] for r in reqs]
    backend = ScriptedBackend(script)
    together = _reranker(backend, batch_size=4).rerank_batch(reqs)
    assert [r.qid for r in together] == [r.qid for r in reqs]  # input order
    assert together == alone
    # windows (1,4) and (0,3) (the front window is full): each has one duplicate and one out-of-range id
    # and misses two of its three ids
    assert together[-1].repairs == {"duplicate": 2, "out_of_range": 2, "missing": 4}
    assert backend.max_seen_in_flight == 4
    for keys in backend.in_flight_keys:  # never two windows of one query in flight
        assert len({k[0] for k in keys}) == len(keys)
    for r in together:
        assert sorted(r.docids) == sorted(c.docid for c in reqs[[q.qid for q in reqs].index(r.qid)].candidates)


def test_top_k_keeps_the_tail_in_first_stage_order():
    backend = ScriptedBackend(rank_by_relevance)
    res = _reranker(backend, top_k=4).rerank_batch([_req("q", [1, 2, 3, 4, 9, 8, 7])])[0]
    assert res.docids[4:] == ("q-d4", "q-d5", "q-d6")
    # windows (1,4): d1,d2,d3 -> d3,d2,d1; then the full front window (0,3): d0,d3,d2 -> d3,d2,d0
    # (one pass is not a full sort: d1 stays below d0)
    assert res.docids[:4] == ("q-d3", "q-d2", "q-d0", "q-d1")
    assert all(a > b for a, b in zip(res.scores, res.scores[1:], strict=False))


def test_trivial_queries_need_no_model_call():
    backend = ScriptedBackend(rank_by_relevance)
    reqs = [_req("one", [3]), RerankRequest(qid="none", query="q", candidates=())]
    res = _reranker(backend).rerank_batch(reqs)
    assert res[0].docids == ("one-d0",) and res[1].docids == ()
    assert backend.requests == []


def test_bad_input_duplicate_docids_counted_and_empty_query_rejected_up_front():
    backend = ScriptedBackend(rank_by_relevance)
    dup = RerankRequest(qid="q", query="x", candidates=(Candidate("a", "rel=1"), Candidate("b", "rel=2"),
                                                          Candidate("a", "rel=3")))
    res = _reranker(backend).rerank_batch([dup])[0]
    assert res.docids == ("b", "a") and res.repairs == {"duplicate_docid": 1}
    backend = ScriptedBackend(rank_by_relevance)
    with pytest.raises(DataError, match="empty query") as err:
        _reranker(backend).rerank_batch([_req("ok", [1, 2, 3]), _req("q7", [1, 2], query="  ")])
    assert err.value.qid == "q7"
    assert backend.requests == []  # nothing was generated before the error


def test_early_stop_check_waits_for_a_closed_last_id():
    seen = []
    backend = ScriptedBackend(lambda r: seen.append(r.is_complete) or " [0] > [1]")
    _reranker(backend, window=12, stride=6).rerank_batch([_req("q", list(range(12)))])
    check = seen[0]
    ids = " > ".join(f"[{i}]" for i in range(11))
    assert not check(ids + " > [1")  # could still become [11]
    assert check(ids + " > [11]")
    assert backend.requests[0].max_new_tokens > 0
