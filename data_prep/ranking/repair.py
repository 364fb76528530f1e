"""Turning the ids a model wrote into a full permutation, counting every repair by kind.

Repair kinds (``REPAIR_KINDS``):

- ``duplicate``: an id named again after its first mention (the later mention is dropped);
- ``out_of_range``: an id that is no candidate (dropped);
- ``missing``: a candidate the answer never named (appended in input order);
- ``no_final_run``: no ranking run was found, so ids were read from a weaker cue (list items or every
  bracketed id in the text);
- ``unparseable``: no id could be read at all (the input order is kept);
- ``excluded_last``: ids the text itself named as irrelevant ("we can eliminate [1], [2] ...") when that
  list is not the answer: they are placed after the ids never named, in the order named;
- ``merged_parts``: the answer was given in several disjoint parts that were joined in text order
  (counts the extra parts);
- ``expanded_range``: a range written inside a run (``[5] > [1]-[3] > [4]``) was read as every id in it, in
  ascending order (counts the ranges: the model did not order the ids inside).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

REPAIR_KINDS = ("duplicate", "out_of_range", "missing", "no_final_run", "unparseable", "merged_parts",
                "excluded_last", "expanded_range")


def repair_ids(
    ids: Iterable[int], num_candidates: int, *, base: int = 0, last: Iterable[int] = (),
) -> tuple[list[int], Counter[str]]:
    """Turn raw ids into a full 0-based permutation, counting each repair.

    ``last`` holds ids the text excluded as irrelevant: they follow the ids never named (counted as
    ``excluded_last``), since a reader ranks "not relevant" below "not mentioned".
    """
    repairs: Counter[str] = Counter()
    seen: set[int] = set()
    order: list[int] = []
    for raw in ids:
        i = raw - base
        if not 0 <= i < num_candidates:
            repairs["out_of_range"] += 1
        elif i in seen:
            repairs["duplicate"] += 1
        else:
            seen.add(i)
            order.append(i)
    demoted = [i - base for i in dict.fromkeys(last) if 0 <= i - base < num_candidates and i - base not in seen]
    missing = [i for i in range(num_candidates) if i not in seen and i not in demoted]
    if missing:
        repairs["missing"] += len(missing)
        order.extend(missing)
    if demoted:
        repairs["excluded_last"] += len(demoted)
        order.extend(demoted)
    return order, repairs


def add_repairs(total: Counter[str] | dict[str, int], repairs: Mapping[str, int]) -> None:
    """Accumulate repair counts in place (a tiny helper so every caller counts the same way)."""
    for k, v in repairs.items():
        total[k] = total.get(k, 0) + v
