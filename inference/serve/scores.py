"""A ranking as ``relevance_score`` in [0, 1], monotone with the returned order.

A listwise model orders documents; in generation mode it gives no per-document probability, so the score is
rank-derived: ``(n - rank) / n`` for ranks 0..n-1 (1.0 for the best, 1/n for the last). It compares documents
within one response only. With first-token scoring and a request whose documents fit one window, the
reranker's scores are the model's probabilities of each document's id as the first ranking token (kept strictly
decreasing by nudges of a few millionths, which may take the smallest just below 0: clipped to 0 here); they are
used as they are. Across several windows, or with documents past ``--top-k`` (which keep their order below the
ranked head), probabilities of different windows are not comparable, and the rank-derived score is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.reranker import RerankResult

NUDGE = 1e-4  # how far below 0 a nudged probability may lie and still count as one


def rank_relevance(n: int) -> list[float]:
    """``(n - rank) / n``: strictly decreasing, in (0, 1]."""
    return [(n - i) / n for i in range(n)]


def relevance_scores(scores: Sequence[float], *, windows: int, probabilities: bool) -> list[float]:
    """Scores for documents in ranked order: the model's probabilities when ``probabilities`` (first-token
    scoring), the request took one window and every score is a probability in order; else rank-derived."""
    n = len(scores)
    if probabilities and windows <= 1 and n and all(-NUDGE <= s <= 1.0 for s in scores) and all(
            a >= b for a, b in zip(scores, scores[1:], strict=False)):
        return [min(1.0, max(0.0, float(s))) for s in scores]
    return rank_relevance(n)


def result_relevance(result: RerankResult, *, probabilities: bool) -> list[float]:
    """:func:`relevance_scores` of a reranker's result, in its order (what the server and the in-process
    integrations report). Only windows that took a model call count: a window of one candidate has no scores."""
    windows = sum(1 for w in result.windows if w.end - w.start > 1)
    return relevance_scores(result.scores, windows=windows, probabilities=probabilities)
