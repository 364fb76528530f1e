"""Combining K sampled permutations of the same window into one teacher order.

- ``consistency`` (default): keep the sample whose permutation agrees best with the others (highest mean
  Kendall tau; ties go to the earlier sample). Its reasoning and its ranking come from the same
  response, so the training target stays coherent.
- ``borda``: the Borda-count consensus order (a candidate at position p of n scores n - p, summed over
  samples; ties keep input order). The reasoning is taken from the sample closest to the consensus and the
  record says whether that sample's own ranking equals the consensus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AGGREGATES = ("consistency", "borda")


def kendall_tau(a: Sequence[int], b: Sequence[int]) -> float:
    """Kendall's tau between two permutations of the same items (1 = same order, -1 = reversed)."""
    n = len(a)
    if sorted(a) != sorted(b):
        raise ValueError("kendall_tau needs two permutations of the same items")
    if n < 2:
        return 1.0
    pos_b = {item: i for i, item in enumerate(b)}
    seq = [pos_b[item] for item in a]
    discordant = sum(1 for i in range(n) for j in range(i + 1, n) if seq[i] > seq[j])
    pairs = n * (n - 1) / 2
    return 1.0 - 2.0 * discordant / pairs


def footrule(a: Sequence[int], b: Sequence[int]) -> int:
    """Spearman's footrule distance: sum over items of |position in a - position in b|."""
    pos_b = {item: i for i, item in enumerate(b)}
    return sum(abs(i - pos_b[item]) for i, item in enumerate(a))


def mean_agreement(orders: Sequence[Sequence[int]]) -> list[float]:
    """For each order, its mean Kendall tau with every other order (1.0 when there is only one)."""
    k = len(orders)
    if k == 1:
        return [1.0]
    return [sum(kendall_tau(orders[i], orders[j]) for j in range(k) if j != i) / (k - 1) for i in range(k)]


def borda(orders: Sequence[Sequence[int]]) -> list[int]:
    """Borda consensus of permutations of ``range(n)``; ties broken by the smaller item (input order)."""
    n = len(orders[0])
    points = [0] * n
    for order in orders:
        for p, item in enumerate(order):
            points[item] += n - p
    return sorted(range(n), key=lambda i: (-points[i], i))


@dataclass(frozen=True)
class Aggregated:
    order: list[int]  # the teacher order (0-based positions in the window)
    chosen: int  # the sample whose reasoning/raw response the record keeps
    agreement: list[float]  # each sample's mean Kendall tau with the others
    reasoning_matches: bool  # the chosen sample's own order equals ``order``


def aggregate(orders: Sequence[Sequence[int]], how: str = "consistency") -> Aggregated:
    if not orders:
        raise ValueError("nothing to aggregate")
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; use one of {AGGREGATES}")
    agreement = mean_agreement(orders)
    if how == "consistency":
        best = max(range(len(orders)), key=lambda i: (agreement[i], -i))
        return Aggregated(list(orders[best]), best, agreement, True)
    consensus = borda(orders)
    closest = max(range(len(orders)), key=lambda i: (kendall_tau(orders[i], consensus), -i))
    return Aggregated(consensus, closest, agreement, list(orders[closest]) == consensus)
