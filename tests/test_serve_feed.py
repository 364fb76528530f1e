"""``ListwiseReranker.iter_feed``: the live request stream `dear serve` drives (scripted backend, no model)."""

from __future__ import annotations

import pytest
from _infer_helpers import ScriptedBackend, rank_by_relevance

from data_prep.prompts import get_prompt_spec
from data_prep.schema import Candidate, DataError, RerankRequest
from inference.reranker import ListwiseReranker


def _req(qid, rels, query="what is relevant"):
    return RerankRequest(qid=qid, query=query,
                         candidates=tuple(Candidate(docid=f"{qid}-d{i}", text=f"rel={r} passage {i}")
                                          for i, r in enumerate(rels)))


def _reranker(backend, **kw):
    return ListwiseReranker(None, None, get_prompt_spec("dear-card"), backend=backend, window=3, stride=2,
                            batch_size=4, **kw)


class StaggeredFeed:
    """Request i 'arrives' once the backend has been handed ``arrive_after[i]`` windows (a deterministic clock);
    asked to wait, the clock jumps to the next arrival. Closed after the last one."""

    def __init__(self, backend, requests, arrive_after, cancel_after=None):
        self.backend, self.items = backend, list(zip(arrive_after, requests, strict=True))
        self.cancel_after = cancel_after or {}  # key -> windows handed out after which the key is cancelled
        self.taken, self.rejected = [], {}

    def take(self, wait):
        if not self.items:
            return None
        after, req = self.items[0]
        if len(self.backend.requests) < after and not wait:
            return None
        self.items.pop(0)
        self.taken.append(req.qid)
        return req.qid, req

    def cancelled(self, key):
        after = self.cancel_after.get(key)
        return after is not None and len(self.backend.requests) >= after

    def reject(self, key, error):
        self.rejected[key] = error


def test_requests_arriving_mid_stream_join_the_batch_and_rank_as_rerank_batch():
    rels = [[1, 5, 2, 4, 3], [3, 1, 2], [9, 8, 7, 6, 5, 4, 3], [2, 2, 1, 5], [4, 6]]
    reqs = [_req(f"q{i}", r) for i, r in enumerate(rels)]
    expected = {r.qid: r for r in _reranker(ScriptedBackend(rank_by_relevance)).rerank_batch(reqs)}
    backend = ScriptedBackend(rank_by_relevance)
    feed = StaggeredFeed(backend, reqs, arrive_after=[0, 1, 1, 4, 5])
    got = dict(_reranker(backend).iter_feed(feed))
    assert set(got) == set(expected)
    for qid, result in got.items():
        assert result.docids == expected[qid].docids and result.repairs == expected[qid].repairs
    # windows of requests that arrived at different times were in flight together
    assert any(len({key[0] for key in keys}) > 1 for keys in backend.in_flight_keys[2:])


def test_a_cancelled_request_takes_no_new_window_and_yields_nothing():
    reqs = [_req("long", list(range(9))), _req("other", [3, 1, 2, 5])]
    backend = ScriptedBackend(rank_by_relevance)
    feed = StaggeredFeed(backend, reqs, arrive_after=[0, 0], cancel_after={"long": 1})
    got = dict(_reranker(backend).iter_feed(feed))
    assert set(got) == {"other"}
    alone = _reranker(ScriptedBackend(rank_by_relevance)).rerank_batch([reqs[1]])[0]
    assert got["other"].docids == alone.docids
    # "long" has 4 windows; cancelled after the first one was handed out, no other window of it was requested
    long_index = 0
    assert sum(1 for r in backend.requests if r.key[0] == long_index) == 1


def test_an_invalid_request_is_rejected_without_disturbing_the_others():
    reqs = [_req("ok1", [1, 2, 3]), _req("bad", [1, 2], query="   "), _req("ok2", [3, 2, 1])]
    backend = ScriptedBackend(rank_by_relevance)
    feed = StaggeredFeed(backend, reqs, arrive_after=[0, 1, 1])
    got = dict(_reranker(backend).iter_feed(feed))
    assert set(got) == {"ok1", "ok2"}
    assert isinstance(feed.rejected["bad"], DataError) and "empty query" in str(feed.rejected["bad"])
    assert got["ok2"].docids == ("ok2-d0", "ok2-d1", "ok2-d2")


def test_an_idle_feed_restarts_the_stream_and_trivial_requests_need_no_window():
    # a request of one document needs no model call; the stream ends while idle and starts again for the next
    reqs = [_req("one", [1]), _req("two", [1, 2])]
    backend = ScriptedBackend(rank_by_relevance)
    feed = StaggeredFeed(backend, reqs, arrive_after=[0, 0])
    got = dict(_reranker(backend).iter_feed(feed))
    assert got["one"].docids == ("one-d0",) and got["two"].docids == ("two-d1", "two-d0")
    assert len(backend.requests) == 1


def test_a_backend_that_loses_windows_is_an_error_not_a_hang():
    class Forgetful(ScriptedBackend):
        def stream(self, pull, max_in_flight):
            self.requests.extend(pull(max_in_flight))  # takes the windows, returns nothing
            return iter(())

    reqs = [_req("q0", [1, 2, 3]), _req("q1", [2, 1])]
    backend = Forgetful(rank_by_relevance)
    with pytest.raises(RuntimeError, match="backend stopped before queries"):
        list(_reranker(backend).iter_feed(StaggeredFeed(backend, reqs, arrive_after=[0, 0])))
    with pytest.raises(RuntimeError, match="backend stopped before queries"):
        _reranker(Forgetful(rank_by_relevance)).rerank_batch(reqs)
