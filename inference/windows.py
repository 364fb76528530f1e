"""RankGPT/DeAR sliding windows: fixed-size windows moved back to front over the top-k candidates.

RankGPT ranks positions ``[k - window, k)`` first, then moves the window up by ``stride`` until it reaches
the top, so strong candidates found low in the list can bubble all the way to rank 1. The original loop
(``while start >= 0``) silently skipped the top ``k % stride`` positions when ``k`` is not a multiple of the
stride, and rank_llm's fix ranks no window at all when ``k == stride < window``. Here the last window is
clamped to start at 0, so every candidate of the top-k lands in some window for any ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence


def window_plan(k: int, window: int = 20, stride: int = 10) -> list[tuple[int, int]]:
    """The ``(start, end)`` position spans (end exclusive) to rank, in the order they are ranked.

    >>> window_plan(100)[:2], window_plan(100)[-1], len(window_plan(100))
    ([(80, 100), (70, 90)], (0, 20), 9)
    >>> window_plan(25)
    [(5, 25), (0, 15)]
    >>> window_plan(5)
    [(0, 5)]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}: "
                         "a larger stride leaves candidates outside every window")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    spans: list[tuple[int, int]] = []
    end = k
    while end > 0:
        start = max(0, end - window)
        spans.append((start, end))
        if start == 0:
            break
        end -= stride
    return spans


def apply_window(order: list[int], span: tuple[int, int], window_order: Sequence[int]) -> list[int]:
    """Reorder positions ``span`` of ``order`` by ``window_order`` (a permutation of ``range(end - start)``)."""
    start, end = span
    segment = order[start:end]
    if sorted(window_order) != list(range(len(segment))):
        raise ValueError(f"window order {list(window_order)} is not a permutation of {len(segment)} items")
    return order[:start] + [segment[i] for i in window_order] + order[end:]
