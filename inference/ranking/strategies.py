"""Ranking strategies: how a window ranker (a model that orders the few passages it is shown) becomes a top-k
ranking of a longer list.

A strategy is a plan per query, written as a generator: it yields the windows it needs next (any number at once:
windows yielded together do not depend on each other and run in the same batch), receives each window's order
(0-based positions into the window, best first) and finally returns the order of the whole top-k. Every yield
with a model window is one sequential round, the latency a query cannot avoid however many GPUs there are.
The scheduler (``inference.reranker.ListwiseReranker``) runs the windows of many queries, and many windows of
one query, in one continuous batch; windows of a single candidate are answered without a model call.

- ``sliding`` (RankGPT, DeAR): windows back to front over the top-k (:func:`data_prep.windows.window_plan`),
  each applied to the running order; one window at a time.
- ``single``: the whole top-k in one window (LiT5's "sliding windows are not the end"): one call, one round.
- ``tdpart`` (Parry, MacAvaney and Ganguly, SIGIR 2024): rank the first window, take its candidate at ``depth``
  as the pivot, compare every other candidate against the pivot in parallel windows; those placed above it
  are the new list, ranked again the same way until no candidate beats the pivot.
- ``setwise`` (Zhuang et al., SIGIR 2024): a heapsort (or bubblesort) whose comparison is "which of these
  ``set_size`` passages is best", reading only the first id of each answer; sorts the top ``depth``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from data_prep.schema import DataError
from data_prep.windows import apply_window, check_window, window_plan

# a window's answer: 0-based positions into ``Window.items``, best first
Order = tuple[int, ...]
# yields batches of windows, receives their orders (same length, same order), returns the top-k's order
Plan = Generator[list["Window"], list[Order], list[int]]

SLIDING, SINGLE, TDPART, SETWISE = "sliding", "single", "tdpart", "setwise"
STRATEGIES = (SLIDING, SINGLE, TDPART, SETWISE)
HEAPSORT, BUBBLESORT = "heapsort", "bubblesort"
SETWISE_SORTS = (HEAPSORT, BUBBLESORT)


@dataclass(frozen=True)
class Window:
    """What one model call is shown: candidates (indices into the query's first-stage list) in prompt order."""

    items: tuple[int, ...]
    role: str  # which step of the strategy made it (recorded with the window)
    span: tuple[int, int] | None = None  # sliding: the positions of the running order it covers
    best_only: bool = False  # only the best candidate is read (setwise): generation may stop after the first id


@runtime_checkable
class Strategy(Protocol):
    """How windows turn into a top-k ranking; one object serves every query."""

    name: str
    # False: results are written as before strategies existed (sliding's JSONL stays byte-identical; its cost is
    # implied by its windows: every model window is one round)
    records_cost: bool

    def plan(self, k: int) -> Plan:
        """The plan that ranks candidates ``0..k-1`` (first-stage order); returns their new order."""
        ...

    def largest_window(self, top_k: int) -> int:
        """The most candidates one window may hold (for the answer's token budget and first-token's id check)."""
        ...

    def check_fits(self, k: int, fits: Callable[[int], bool]) -> None:
        """Raise a DataError before any work when the plan for ``k`` candidates cannot run; ``fits(m)`` says
        whether a window of the first ``m`` candidates fits the model's context unshrunk."""
        ...


def _no_check(k: int, fits: Callable[[int], bool]) -> None:
    return None


class Sliding:
    """Back-to-front windows of ``window`` candidates, ``stride`` apart (the one planner prep, teacher and
    inference share), each applied to the running order."""

    name = SLIDING
    records_cost = False

    def __init__(self, window: int = 20, stride: int = 10) -> None:
        check_window(window, stride)
        self.window, self.stride = window, stride

    def plan(self, k: int) -> Plan:
        order = list(range(k))
        for start, end in window_plan(k, self.window, self.stride):
            (answer,) = yield [Window(tuple(order[start:end]), "slide", span=(start, end))]
            order = apply_window(order, (start, end), answer)
        return order

    def largest_window(self, top_k: int) -> int:
        return self.window

    check_fits = staticmethod(_no_check)


class Single:
    """The whole top-k in one window: one call. A top-k whose prompt does not fit the context is refused
    before any work, naming the largest k that fits (never a silent truncation)."""

    name = SINGLE
    records_cost = True

    def plan(self, k: int) -> Plan:
        if k == 0:
            return []
        (answer,) = yield [Window(tuple(range(k)), "single")]
        return list(answer)

    def largest_window(self, top_k: int) -> int:
        return top_k

    def check_fits(self, k: int, fits: Callable[[int], bool]) -> None:
        if k < 2 or fits(k):
            return
        lo, hi = 1, k  # fits(lo) assumed (one passage); find the largest m with fits(m)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        raise DataError(f"--strategy single: the top {k} candidates do not fit the model's context in one window "
                        f"(at most {lo} fit)", reason="window_too_long", field="top_k",
                        fix=f"use --top-k {lo} or less, or another --strategy (sliding, tdpart, setwise)")


class TDPart:
    """Top-down partitioning (Parry, MacAvaney and Ganguly, SIGIR 2024), its parallel form.

    Round 1 ranks the first ``window`` candidates; the one at ``depth`` is the pivot, those above it are
    candidates, those below go to the backfill. Round 2 shows every remaining candidate beside the pivot, in
    windows of ``window - 1`` plus the pivot (first in the prompt), all at once. If none is placed above the
    pivot, the top ``depth`` are final. Otherwise the candidates (the first window's, then each partition's
    winners, in ranked order) are the new list and the pivot, the first window's losers and the partitions'
    losers go to the backfill, ahead of earlier backfill; the new list is ranked the same way (a list that fits
    one window is ranked in one). Each pass drops the pivot and what it beat, so the loop ends.
    """

    name = TDPART
    records_cost = True

    def __init__(self, window: int = 20, depth: int = 10) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if not 1 <= depth < window:
            raise ValueError(f"depth must be between 1 and the window - 1 ({window - 1}), got {depth}: "
                             "the pivot is the first window's candidate at that depth")
        self.window, self.depth = window, depth

    def plan(self, k: int) -> Plan:
        w, d = self.window, self.depth
        items = list(range(k))
        backfill: list[int] = []
        while True:
            if len(items) <= w:
                if not items:
                    return backfill
                (answer,) = yield [Window(tuple(items), "rank")]
                return [items[p] for p in answer] + backfill
            head = items[:w]
            (answer,) = yield [Window(tuple(head), "pivot")]
            ranked = [head[p] for p in answer]
            pivot = ranked[d - 1]
            above, below = ranked[: d - 1], ranked[d:]
            rest = items[w:]
            windows = [Window((pivot, *rest[i: i + w - 1]), "partition") for i in range(0, len(rest), w - 1)]
            answers = yield windows
            won: list[int] = []
            lost: list[int] = []
            for win, ans in zip(windows, answers, strict=True):
                placed = [win.items[p] for p in ans]
                at = placed.index(pivot)
                won += placed[:at]
                lost += placed[at + 1:]
            if not won:
                return above + [pivot] + below + lost + backfill
            items = above + won
            backfill = [pivot] + below + lost + backfill

    def largest_window(self, top_k: int) -> int:
        return self.window

    check_fits = staticmethod(_no_check)


class Setwise:
    """Setwise selection (Zhuang et al., SIGIR 2024): a sort whose comparison shows ``set_size`` candidates and
    reads only which is best (the first id of the answer, or the highest first-token logit).

    ``heapsort``: a (``set_size`` - 1)-ary max-heap is built over the top-k and the best is taken ``depth`` times;
    a comparison per heap node visited, one at a time. ``bubblesort``: ``depth`` passes from the bottom of the list
    up, each set's best moved to its front (sets overlap by one, so the best of the list rises to the pass's
    position); a set already compared with the same members in the same order is not asked again. The top
    ``depth`` come out sorted, the rest keep their first-stage order.
    """

    name = SETWISE
    records_cost = True

    def __init__(self, set_size: int = 3, depth: int = 10, sort: str = HEAPSORT) -> None:
        if set_size < 2:
            raise ValueError(f"set_size must be >= 2 (a set of one compares nothing), got {set_size}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if sort not in SETWISE_SORTS:
            raise ValueError(f"setwise_sort must be one of {SETWISE_SORTS}, got {sort!r}")
        self.set_size, self.depth, self.sort = set_size, depth, sort

    def plan(self, k: int) -> Plan:
        arr = list(range(k))
        top = yield from (self._heapsort(arr) if self.sort == HEAPSORT else self._bubblesort(arr))
        chosen = set(top)
        return top + [i for i in range(k) if i not in chosen]

    def _best(self, arr: list[int], positions: Sequence[int], role: str) -> Generator[list[Window], list[Order], int]:
        """The position (of ``positions``) holding the best of their candidates."""
        (answer,) = yield [Window(tuple(arr[j] for j in positions), role, best_only=True)]
        return positions[answer[0]]

    def _heapsort(self, arr: list[int]) -> Generator[list[Window], list[Order], list[int]]:
        m, n = self.set_size - 1, len(arr)

        def sift(size: int, i: int, role: str) -> Generator[list[Window], list[Order], None]:
            while m * i + 1 < size:
                family = [i, *range(m * i + 1, min(m * i + m + 1, size))]
                best = yield from self._best(arr, family, role)
                if best == i:
                    return
                arr[i], arr[best] = arr[best], arr[i]
                i = best

        for i in range((n - 2) // m if n > 1 else -1, -1, -1):  # every node with a child, bottom up
            yield from sift(n, i, "heapify")
        top: list[int] = []
        for size in range(n, 0, -1):
            top.append(arr[0])
            if len(top) == min(self.depth, n):
                break
            arr[0], arr[size - 1] = arr[size - 1], arr[0]
            yield from sift(size - 1, 0, "extract")
        return top

    def _bubblesort(self, arr: list[int]) -> Generator[list[Window], list[Order], list[int]]:
        c, n = self.set_size, len(arr)
        seen: dict[tuple[int, ...], int] = {}
        for i in range(min(self.depth, n - 1)):
            end = n
            while True:
                start = max(i, end - c)
                members = tuple(arr[start:end])
                if members in seen:
                    best = start + seen[members]
                else:
                    best = yield from self._best(arr, range(start, end), "bubble")
                    seen[members] = best - start
                arr[start], arr[best] = arr[best], arr[start]
                if start == i:
                    break
                end = start + 1  # the next set up ends with this set's best
        return arr[: min(self.depth, n)]

    def largest_window(self, top_k: int) -> int:
        return self.set_size

    check_fits = staticmethod(_no_check)


def make_strategy(name: str, *, window: int = 20, stride: int = 10, depth: int = 10, set_size: int = 3,
                  setwise_sort: str = HEAPSORT) -> Strategy:
    """The strategy ``name`` with its knobs (each strategy reads only its own)."""
    builders: dict[str, Callable[[], Strategy]] = {
        SLIDING: lambda: Sliding(window, stride),
        SINGLE: Single,
        TDPART: lambda: TDPart(window, depth),
        SETWISE: lambda: Setwise(set_size, depth, setwise_sort),
    }
    if name not in builders:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    return builders[name]()
