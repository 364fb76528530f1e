"""What every integration shares: checking a query and its texts, one rerank request, results as (index, score).

A framework hands over a query and its documents' texts; :func:`rank_texts` checks them (an error names the
framework's field and the fix, before any model work), ranks them with the reranker's ``rerank_batch`` (the
same call `dear rerank` and `dear serve` make, so the order is theirs) and returns :class:`Ranked` items best
first. Scores come from :mod:`inference.serve.scores`, the one mapping `dear serve` reports, so an adapter's
score for a document equals the server's ``relevance_score`` for the same request.

One reranker is one model: calls from several threads (LangChain's and LlamaIndex's async paths run in
executors, MCP runs tools in worker threads) take turns on a per-reranker lock.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.schema import Candidate, DataError, RerankRequest

FIRST_TOKEN = "first-token"


class InputTypeError(TypeError):
    """A value of the wrong type, named by its field, with the fix (the TypeError frameworks expect)."""

    def __init__(self, field: str, expected: str, got: Any, fix: str) -> None:
        self.field, self.fix = field, fix
        what = "None (missing)" if got is None else type(got).__name__
        super().__init__(f"{field}: expected {expected}, got {what} -- fix: {fix}")


@dataclass(frozen=True)
class Ranked:
    """One document of a ranking, best first."""

    index: int  # position in the texts the caller passed
    score: float  # relevance in [0, 1], strictly ordered as `dear serve`'s relevance_score (compare within a call)
    run_score: float  # the score `dear rerank` writes to its TREC run (n..1, or first-token probabilities)


def ranking_options(model: Any, **ranking: Any) -> Any:
    """The :class:`~inference.ranking.options.RankingOptions` for a model folder / Hub id and ``ranking`` (its
    field names: ``strategy``, ``window``, ``top_k``, ``scoring``, ``dtype``, ``device`` ...), checked. A name
    that is not a field is refused naming it (with the fields there are)."""
    from dataclasses import fields

    from inference.ranking.options import RankingOptions

    known = {f.name for f in fields(RankingOptions)} - {"model"}
    unknown = sorted(set(ranking) - known)
    if unknown:
        raise DataError(f"{unknown[0]}: not a ranking option", field=unknown[0], reason="bad_option",
                        fix=f"use RankingOptions' fields ({', '.join(sorted(known))})")
    return checked_options(RankingOptions(model=os.fspath(model), **ranking))


def checked_options(options: Any) -> Any:
    """``options`` after its one ``check()`` (the one `dear rerank` runs): a value that can never work is a
    ``DataError`` (a ``ValueError``) naming the field and the fix, before any model loads."""
    from data_prep.cli_options import checked

    return checked(options)


def load_options(options: Any) -> Any:
    """The reranker ``options`` describe, checked first, loaded by :func:`inference.ranking.options.load_reranker`
    (the loader `dear rerank`, `dear serve` and `dear mcp` use)."""
    from inference.models import check_loadable, describe_source
    from inference.ranking.options import load_reranker as load_from_options

    checked_options(options)
    check_loadable(describe_source(options.model), options.base_model)
    return load_from_options(options)


def is_options(value: Any) -> bool:
    from inference.ranking.options import RankingOptions

    return isinstance(value, RankingOptions)


def load_reranker(reranker: Any, **ranking: Any) -> Any:
    """The reranker an adapter was given: ``reranker`` itself when it is a loaded reranker; the one a
    ``RankingOptions`` describes; or, for a model folder / Hub id, the one ``RankingOptions(model=reranker,
    **ranking)`` describes. Options are checked before any model loads."""
    if is_options(reranker):
        if ranking:
            raise DataError(f"ranking options {sorted(ranking)} were given beside a RankingOptions",
                            field=sorted(ranking)[0], reason="bad_option",
                            fix="set them on the RankingOptions (dataclasses.replace(options, ...))")
        return load_options(reranker)
    if isinstance(reranker, (str, os.PathLike)):
        return load_options(ranking_options(reranker, **ranking))
    if not callable(getattr(reranker, "rerank_batch", None)):
        raise InputTypeError("reranker", "a ListwiseReranker, a RankingOptions or a model path", reranker,
                             "pass RankingOptions(model=...), the model's folder / Hub id, or a loaded reranker")
    if ranking:
        raise DataError(f"ranking options {sorted(ranking)} were given with a loaded reranker",
                        field="reranker", reason="bad_option",
                        fix="pass RankingOptions(model=..., ...) or a model path instead of a loaded reranker")
    return reranker


def check_query(query: Any, field: str = "query") -> str:
    if not isinstance(query, str):
        raise InputTypeError(field, "a string", query, "pass the query text")
    if not query.strip():
        raise DataError(f"{field}: must not be empty", field=field, reason="empty_query",
                        fix="pass the query text")
    return query


def check_text(text: Any, field: str) -> str:
    if not isinstance(text, str):
        raise InputTypeError(field, "a string", text, "give every document its text as a string")
    return text


def check_top_n(top_n: Any, field: str = "top_n") -> int | None:
    """None (keep every document) or a count >= 1."""
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int):
        raise InputTypeError(field, "an integer or None", top_n, "e.g. 5, or None to keep every document")
    if top_n < 1:
        raise DataError(f"{field}: must be >= 1, got {top_n}", field=field, reason="bad_option",
                        fix="e.g. 5, or None to keep every document")
    return top_n


def text_request(query: str, texts: Sequence[str], qid: str = "0") -> RerankRequest:
    """The request for one query: the texts in the caller's order, docid = the text's index (as `dear serve`)."""
    return RerankRequest(qid=qid, query=query,
                         candidates=tuple(Candidate(docid=str(i), text=t) for i, t in enumerate(texts)))


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_SHARED_LOCK = threading.Lock()  # for rerankers that take no weak reference


def _lock_of(reranker: Any) -> threading.Lock:
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(reranker)
            if lock is None:
                lock = _LOCKS[reranker] = threading.Lock()
        except TypeError:
            return _SHARED_LOCK
        return lock


def rerank_requests(reranker: Any, requests: Sequence[RerankRequest]) -> list[Any]:
    """``reranker.rerank_batch(requests)`` (all queries' windows batched together), one caller at a time."""
    with _lock_of(reranker):
        return reranker.rerank_batch(list(requests))


def ranked(result: Any, *, probabilities: bool, top_n: int | None = None) -> list[Ranked]:
    """A result over :func:`text_request`'s docids as :class:`Ranked` items, best first, cut to ``top_n``."""
    from inference.serve.scores import result_relevance

    scores = result_relevance(result, probabilities=probabilities)
    items = [Ranked(index=int(d), score=float(s), run_score=float(r))
             for d, s, r in zip(result.docids, scores, result.scores, strict=True)]
    return items if top_n is None else items[:top_n]


def reports_probabilities(reranker: Any) -> bool:
    """Whether the reranker's one-window scores are first-token probabilities (kept as scores when they are)."""
    return getattr(reranker, "scoring", "generate") == FIRST_TOKEN


def rank_texts(reranker: Any, query: Any, texts: Sequence[Any], *, top_n: Any = None, query_field: str = "query",
               text_field: Callable[[int], str] = "documents[{}]".format) -> list[Ranked]:
    """Check ``query`` and ``texts`` (errors name ``query_field`` / ``text_field(i)``), rank, best first."""
    query = check_query(query, query_field)
    checked = [check_text(t, text_field(i)) for i, t in enumerate(texts)]
    top_n = check_top_n(top_n)
    if not checked:
        return []
    (result,) = rerank_requests(reranker, [text_request(query, checked)])
    return ranked(result, probabilities=reports_probabilities(reranker), top_n=top_n)
