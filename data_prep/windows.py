"""The one sliding-window planner: which candidate positions a listwise model sees together, in what order.

Training data (`dear prep`), teacher generation (`dear teacher`) and reranking (`dear rerank`, the server)
all call :func:`window_plan`, so the model is trained on exactly the windows it is later shown.

The rule (RankGPT's, with one decision made explicit): windows of ``window`` positions, ranked back to
front, each ``stride`` positions above the previous, so a strong candidate found low in the list can
bubble all the way to rank 1. RankGPT's loop (``while start >= 0``) skips the top ``k % stride`` positions
when ``k`` is not a multiple of the stride, and rank_llm's fix ranks nothing when ``k == stride < window``.
Here the front window is always FULL: ``[0, min(k, window))``. Clamping it instead (``[0, end)``, shorter
than the others) would show the top of the list, the part nDCG@10 reads, in a window smaller than the one
the model was trained on (for k=25, window 20, stride 10: 15 passages instead of 20), and would compare
the candidates that bubbled up against fewer rivals. The full front window costs no extra model call; it
only overlaps the previous window by more than ``window - stride`` positions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def check_window(window: int, stride: int) -> None:
    """Raise ``ValueError`` for a window and stride that cannot cover a list (the CLI maps it to its flag)."""
    if window < 2:
        raise ValueError(f"window must be >= 2 (a window of one passage ranks nothing), got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}: "
                         "a larger stride leaves candidates outside every window")


def window_plan(k: int, window: int = 20, stride: int = 10) -> list[tuple[int, int]]:
    """The ``(start, end)`` position spans (end exclusive) over the top ``k``, in the order they are ranked.

    >>> window_plan(100)[:2], window_plan(100)[-1], len(window_plan(100))
    ([(80, 100), (70, 90)], (0, 20), 9)
    >>> window_plan(25)
    [(5, 25), (0, 20)]
    >>> window_plan(5)
    [(0, 5)]
    """
    check_window(window, stride)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    spans: list[tuple[int, int]] = []
    end = k
    while end > 0:
        start = end - window
        if start <= 0:
            spans.append((0, min(k, window)))
            break
        spans.append((start, end))
        end -= stride
    return spans


def variable_window_plan(n: int, window: int, stride: int, min_window: int,
                         rng: random.Random) -> list[tuple[int, int]]:
    """Training augmentation: windows whose lengths are drawn from ``[min_window, window]``.

    Each window starts at most ``stride`` positions after the previous one and never past its end, and the
    last is aligned to the end of the list, so every position is in some window.
    """
    check_window(window, stride)
    if not 2 <= min_window <= window:
        raise ValueError(f"min_window must be between 2 and the window ({window}), got {min_window}")
    out: list[tuple[int, int]] = []
    start = 0
    while n > 0:
        length = rng.randint(min(min_window, n), min(window, n))
        if start + length >= n:
            out.append((max(0, n - length), n))
            break
        out.append((start, start + length))
        start += min(stride, length)
    return out


def apply_window(order: list[int], span: tuple[int, int], window_order: Sequence[int]) -> list[int]:
    """Reorder positions ``span`` of ``order`` by ``window_order`` (a permutation of ``range(end - start)``)."""
    start, end = span
    segment = order[start:end]
    if sorted(window_order) != list(range(len(segment))):
        raise ValueError(f"window order {list(window_order)} is not a permutation of {len(segment)} items")
    return order[:start] + [segment[i] for i in window_order] + order[end:]
