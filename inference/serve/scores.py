"""A ranking as ``relevance_score`` in [0, 1], strictly decreasing down the returned order.

A listwise model orders documents; in generation mode it gives no per-document probability, so the score is
rank-derived: ``(n - rank) / n`` for ranks 0..n-1 (1.0 for the best, 1/n for the last). It compares documents
within one response only.

With first-token scoring and a request whose documents were all ranked in one window, the model gives each
document the probability ``p`` that its id comes first. A confident model puts nearly all the mass on one id, so
the others' probabilities are 1e-9, 1e-30 or exactly 0.0 (underflow): as scores they would tie (17 documents at
0.0 were seen). The score is therefore ``(1 - EPSILON) * p + EPSILON * (n - rank) / n``: the probability to
within ``EPSILON``, plus a rank term that keeps every score strictly below the one before (at least
``EPSILON / n`` lower, far above float rounding), whatever the probabilities are. Across several windows, or with
documents past ``--top-k`` (which keep their order below the ranked head), probabilities of different windows
are not comparable and the rank-derived score is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.reranker import RerankResult

EPSILON = 1e-3  # weight of the rank term next to a first-token probability


def rank_relevance(n: int) -> list[float]:
    """``(n - rank) / n``: strictly decreasing, in (0, 1]."""
    return [(n - i) / n for i in range(n)]


def relevance_scores(n: int, probabilities: Sequence[float] | None = None) -> list[float]:
    """Scores of ``n`` documents in ranked order: rank-derived, or from the first-token ``probabilities`` (in the
    same order) when one window ranked them all. Always strictly decreasing and in [0, 1]."""
    ranks = rank_relevance(n)
    if probabilities is None or len(probabilities) != n:
        return ranks
    out, ceiling = [], 1.0
    for p, r in zip(probabilities, ranks, strict=True):
        p = float(p)
        p = 0.0 if math.isnan(p) else min(ceiling, max(0.0, p))  # non-increasing down the order, in [0, 1]
        ceiling = p
        out.append(min(1.0, (1.0 - EPSILON) * p + EPSILON * r))
    return out


def window_probabilities(result: Any) -> list[float] | None:
    """First-token probabilities of ``result``'s documents in its ranked order, when ONE window ranked all of them
    (its log-probabilities are a distribution over exactly these documents); None otherwise."""
    ranked = [w for w in result.windows if len(w.docids) > 1]  # the windows a model ranked
    if len(ranked) != 1 or ranked[0].logprobs is None or len(ranked[0].docids) != len(result.docids):
        return None
    by_doc = dict(zip(ranked[0].docids, ranked[0].logprobs, strict=True))
    if set(by_doc) != set(result.docids):
        return None
    return [math.exp(by_doc[d]) for d in result.docids]


def result_relevance(result: RerankResult, *, probabilities: bool) -> list[float]:
    """:func:`relevance_scores` of a reranker's result, in its order (what the server and the in-process
    integrations report): first-token probabilities when ``probabilities`` and one window ranked every document."""
    return relevance_scores(len(result.docids), window_probabilities(result) if probabilities else None)
