"""A ranking as ``relevance_score`` in [0, 1], monotone with the returned order.

A listwise model orders documents; in generation mode it gives no per-document probability, so the score is
rank-derived: ``(n - rank) / n`` for ranks 0..n-1 (1.0 for the best, 1/n for the last). It compares documents
within one response only. With first-token scoring and a request that fits one window, the reranker's own
scores are the model's probabilities of each document's id as the first ranking token; they are used as they
are whenever they are probabilities (all in [0, 1]) and agree with the order. Across several windows first-token
probabilities of different windows are not comparable, and the rank-derived score is used.
"""

from __future__ import annotations

from collections.abc import Sequence


def rank_relevance(n: int) -> list[float]:
    """``(n - rank) / n``: strictly decreasing, in (0, 1]."""
    return [(n - i) / n for i in range(n)]


def relevance_scores(scores: Sequence[float], *, windows: int, probabilities: bool) -> list[float]:
    """Scores for documents in ranked order: the model's probabilities when ``probabilities`` (first-token
    scoring), the request took one window and ``scores`` are probabilities in order; else rank-derived."""
    n = len(scores)
    if probabilities and windows <= 1 and n and all(0.0 <= s <= 1.0 for s in scores) and all(
            a >= b for a, b in zip(scores, scores[1:], strict=False)):
        return [float(s) for s in scores]
    return rank_relevance(n)
