"""Ranking strategies on the one scheduler: exact with a perfect ranker, every candidate once, the call counts of
each algorithm, parallel windows of one query in one batch, both scoring modes (scripted backends, no model)."""

from __future__ import annotations

import math
import random
import zlib

import pytest
from _infer_helpers import ScriptedBackend, ScriptedScorer, rank_by_relevance

from data_prep.prompts import get_prompt_spec
from data_prep.schema import Candidate, DataError, RerankRequest
from data_prep.windows import window_plan
from inference.ranking import STRATEGIES, Setwise, Single, TDPart, make_strategy
from inference.reranker import ListwiseReranker


def _req(qid, rels, query="what is relevant"):
    return RerankRequest(qid=qid, query=query,
                         candidates=tuple(Candidate(docid=f"{qid}-d{i}", text=f"rel={r} passage {i}")
                                          for i, r in enumerate(rels)))


def _reranker(strategy, scoring="generate", tokenizer=None, **kw):
    backend = ScriptedScorer() if scoring == "first-token" else ScriptedBackend(rank_by_relevance)
    return ListwiseReranker(None, tokenizer, get_prompt_spec("dear-card"), backend=backend, strategy=strategy,
                            scoring=scoring, **kw)


def _rels(res, req):
    rel = {c.docid: int(c.text.split()[0].split("=")[1]) for c in req.candidates}
    return [rel[d] for d in res.docids]


KNOBS = {"sliding": {"window": 6, "stride": 3}, "single": {}, "tdpart": {"window": 6, "depth": 3},
         "setwise": {"set_size": 3, "depth": 3}}


@pytest.mark.parametrize("scoring", ["generate", "first-token"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_is_exact_with_a_perfect_ranker_and_returns_every_candidate_once(name, scoring,
                                                                                        tiny_tokenizer):
    rng = random.Random(zlib.crc32(f"{name}/{scoring}".encode()))
    reqs = []
    for j in range(12):
        n = rng.choice([0, 1, 2, 3, 5, 9, 14, 20, 25])
        reqs.append(_req(f"q{j}", rng.sample(range(100), n)))  # distinct grades: one exact answer
    top_k = 14 if name == "single" else 20  # the tiny tokenizer has one-token ids up to 20
    depth = 3
    rr = _reranker(name, scoring, tiny_tokenizer, top_k=top_k, batch_size=5, **KNOBS[name])
    for req, res in zip(reqs, rr.rerank_batch(reqs), strict=True):
        assert sorted(res.docids) == sorted(c.docid for c in req.candidates)  # each candidate exactly once
        assert len(set(res.docids)) == len(res.docids)
        k = min(top_k, len(req.candidates))
        got, ideal = _rels(res, req), sorted(_rels(res, req)[:k], reverse=True)
        exact = k if name == "single" else min(depth, k)  # sliding (window 2 x stride) is exact for the top stride
        assert got[:exact] == ideal[:exact], (name, req.qid)
        assert res.docids[k:] == tuple(c.docid for c in req.candidates[k:])  # past the top-k: first-stage order
        assert res.repairs == {}
        assert res.cost.model_calls == sum(1 for w in res.windows if w.raw is not None)
        assert all(a > b for a, b in zip(res.scores, res.scores[1:], strict=False))


def test_call_counts_follow_each_algorithm():
    # sliding: one call per planned window, each its own round
    req = _req("q", list(range(100))[::-1])  # first-stage order is already perfect
    res = _reranker("sliding", top_k=100).rerank_batch([req])[0]
    assert res.cost.model_calls == res.cost.rounds == len(window_plan(100, 20, 10)) == 9
    # single: one call, one round
    res = _reranker("single", top_k=100).rerank_batch([req])[0]
    assert (res.cost.model_calls, res.cost.rounds, len(res.windows[0].docids)) == (1, 1, 100)
    # tdpart on a perfect first stage: the first window, then ceil((k - w) / (w - 1)) partitions against the pivot
    # in one round; none beats the pivot, so it ends there
    res = _reranker("tdpart", top_k=100).rerank_batch([req])[0]
    assert res.cost.model_calls == 1 + math.ceil(80 / 19) == 6 and res.cost.rounds == 2
    assert [w.role for w in res.windows] == ["pivot"] + ["partition"] * 5
    assert all(w.docids[0] == res.docids[9] for w in res.windows[1:])  # the pivot leads every partition
    # tdpart when the best candidates sit at the bottom: winners are ranked again in a third round
    req2 = _req("r", list(range(40)))  # the best is last
    res = _reranker("tdpart", top_k=40, window=10, depth=3).rerank_batch([req2])[0]
    assert _rels(res, req2)[:3] == [39, 38, 37]
    rounds = {}
    for w in res.windows:
        rounds.setdefault(w.round, []).append(w)
    # round 1: pivot window; round 2: ceil(30 / 9) = 4 partitions; every later pass: pivot + its partitions
    assert [w.role for w in rounds[1]] == ["pivot"] and len(rounds[2]) == 4
    assert res.cost.rounds == max(rounds) and res.cost.model_calls == len(res.windows)
    for r in range(2, max(rounds) + 1, 2):  # each partition round covers the rest of its pass's list
        if rounds.get(r) and rounds[r][0].role == "partition":
            covered = sum(len(w.docids) - 1 for w in rounds[r])
            assert len(rounds[r]) == math.ceil(covered / 9)
    # setwise heapsort, set size 3 (binary heap), 5 candidates in perfect order: 2 compares to build the heap,
    # then 2 + 1 + 1 to take the next four (worked out by hand)
    req5 = _req("h", [5, 4, 3, 2, 1])
    res = _reranker("setwise", top_k=5, set_size=3, depth=5).rerank_batch([req5])[0]
    assert res.cost.model_calls == res.cost.rounds == 6 and _rels(res, req5) == [5, 4, 3, 2, 1]
    assert [w.role for w in res.windows] == ["heapify"] * 2 + ["extract"] * 4
    # setwise bubblesort, set size 3, best at the bottom, top 2: two passes of two sets each
    req5b = _req("b", [0, 1, 2, 3, 4])
    res = _reranker("setwise", top_k=5, set_size=3, depth=2, setwise_sort="bubblesort").rerank_batch([req5b])[0]
    assert res.cost.model_calls == 4 and _rels(res, req5b) == [4, 3, 0, 1, 2]
    # bubblesort does not ask again about a set it has seen: 3 + 1 + 0 calls instead of 3 + 3 + 2
    req7 = _req("c", [7, 6, 5, 4, 3, 2, 1])
    res = _reranker("setwise", top_k=7, set_size=3, depth=3, setwise_sort="bubblesort").rerank_batch([req7])[0]
    assert res.cost.model_calls == 4 and _rels(res, req7)[:3] == [7, 6, 5]


def test_tdpart_runs_a_querys_partitions_in_one_batch_and_records_cost_and_roles():
    backend = ScriptedBackend(rank_by_relevance)
    rr = ListwiseReranker(None, None, "dear-card", backend=backend, strategy="tdpart", top_k=60, batch_size=8)
    reqs = [_req("a", list(range(60))), _req("b", list(range(60))[::-1])]
    res = rr.rerank_batch(reqs)
    assert any(len(keys) - len({k[0] for k in keys}) >= 2 for keys in backend.in_flight_keys)  # one query, many
    rec = res[0].to_json()
    assert rec["strategy"] == "tdpart" and rec["cost"] == res[0].cost.to_json()
    assert rec["cost"]["prompt_tokens"] == sum(w["prompt_tokens"] for w in rec["windows"]) > 0
    assert {w["role"] for w in rec["windows"]} >= {"pivot", "partition"}
    assert all(w["start"] is None and w["round"] >= 1 for w in rec["windows"])
    # results do not depend on the batch size: windows are recorded in the order the plan asked for them
    alone = [ListwiseReranker(None, None, "dear-card", backend=ScriptedBackend(rank_by_relevance),
                              strategy="tdpart", top_k=60, batch_size=1).rerank_batch([r])[0] for r in reqs]
    assert alone == res
    # sliding keeps its JSON as it was (no strategy, cost or role keys)
    sl = ListwiseReranker(None, None, "dear-card", backend=ScriptedBackend(rank_by_relevance)).rerank_batch(reqs[:1])
    assert set(sl[0].to_json()) == {"qid", "docids", "scores", "repairs", "windows"}
    assert "role" not in sl[0].to_json()["windows"][0] and sl[0].cost.rounds == sl[0].cost.model_calls == 5


def test_setwise_generation_stops_after_the_first_id_and_reads_only_it():
    backend = ScriptedBackend(lambda r: " [2] > [0]")  # names only the best; the rest is no repair
    rr = ListwiseReranker(None, None, "dear-card", backend=backend, strategy="setwise", top_k=3, set_size=3,
                          depth=1)
    (res,) = rr.rerank_batch([_req("q", [1, 2, 3])])
    check = backend.requests[0].is_complete
    assert not check(" [") and not check(" [1") and check(" [1]")
    assert res.docids[0] == "q-d2" and res.repairs == {}
    assert set(res.docids) == {"q-d0", "q-d1", "q-d2"}


def test_single_refuses_a_top_k_that_does_not_fit_before_any_work(tiny_tokenizer):
    backend = ScriptedBackend(rank_by_relevance)
    req = _req("long", [1] * 40)
    rr = ListwiseReranker(None, tiny_tokenizer, "dear-card", backend=backend, strategy="single", top_k=40,
                          max_prompt_tokens=300)
    with pytest.raises(DataError, match=r"top 40 candidates do not fit .*at most (\d+) fit") as err:
        rr.rerank_batch([_req("ok", [1, 2]), req])
    assert backend.requests == []  # nothing ran
    fit = int(str(err.value).split("at most ")[1].split(" ")[0])
    assert err.value.reason == "window_too_long" and f"--top-k {fit}" in str(err.value)
    assert rr._fits(req.query, req.candidates, fit) and not rr._fits(req.query, req.candidates, fit + 1)
    # the largest k that fits runs unshrunk
    ok = ListwiseReranker(None, tiny_tokenizer, "dear-card", backend=ScriptedBackend(rank_by_relevance),
                          strategy="single", top_k=fit, max_prompt_tokens=300).rerank_batch([req])[0]
    assert ok.repairs == {} and len(ok.windows[0].docids) == fit


def test_first_token_probabilities_score_a_top_k_ranked_by_one_window(tiny_tokenizer):
    rr = _reranker("single", "first-token", tiny_tokenizer, top_k=8)
    (res,) = rr.rerank_batch([_req("q", [3, 9, 1, 4, 7, 2, 8, 6, 5, 0])])
    assert sum(res.scores[:8]) == pytest.approx(1.0, abs=1e-3) and res.scores[8:] == (-1.0, -2.0)
    rr = _reranker("tdpart", "first-token", tiny_tokenizer, top_k=10, window=4, depth=2)
    (res,) = rr.rerank_batch([_req("q", [3, 9, 1, 4, 7, 2, 8, 6, 5, 0])])
    assert res.scores == tuple(float(10 - i) for i in range(10))  # many windows: rank-derived scores


def test_a_cancelled_tdpart_query_drops_its_windows_in_flight_and_the_others_finish():
    class Feed:
        def __init__(self, backend, reqs):
            self.backend, self.reqs = backend, list(reqs)

        def take(self, wait):
            return (self.reqs[0].qid, self.reqs.pop(0)) if self.reqs else None

        def cancelled(self, key):  # "a" gives up once its partitions are in flight
            return key == "a" and sum(1 for r in self.backend.requests if r.key[0] == 0) >= 3

        def reject(self, key, error):
            raise AssertionError(error)

    backend = ScriptedBackend(rank_by_relevance)
    rr = ListwiseReranker(None, None, "dear-card", backend=backend, strategy="tdpart", top_k=60, batch_size=8)
    got = dict(rr.iter_feed(Feed(backend, [_req("a", list(range(60))), _req("b", list(range(60)))])))
    assert set(got) == {"b"} and _rels(got["b"], _req("b", list(range(60))))[:10] == list(range(59, 49, -1))
    assert sum(1 for r in backend.requests if r.key[0] == 0) < 7  # "a" never reached its later rounds


def test_strategy_knobs_are_checked():
    with pytest.raises(ValueError, match="depth must be between 1 and the window - 1"):
        TDPart(window=10, depth=10)
    with pytest.raises(ValueError, match="set_size must be >= 2"):
        Setwise(set_size=1)
    with pytest.raises(ValueError, match="setwise_sort must be one of"):
        Setwise(sort="quicksort")
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("zigzag")
    with pytest.raises(ValueError, match="window must be >= 2"):
        make_strategy("sliding", window=1, stride=1)
    assert isinstance(make_strategy("single"), Single)
