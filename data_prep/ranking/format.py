"""Formatting rankings: the exact bytes a model is trained to produce (targets) and shown as examples."""

from __future__ import annotations

from collections.abc import Sequence

FINAL_MARKER = "### Final Reranking:"


def format_ranking(order: Sequence[int], *, base: int = 0) -> str:
    """``[4] > [1] > [0]`` from 0-based positions, shown with ids starting at ``base``."""
    return " > ".join(f"[{i + base}]" for i in order)


def format_target(
    order: Sequence[int], *, base: int = 0, reasoning: str | None = None, cot: bool = False,
    final_marker: bool = False,
) -> str:
    """The completion a model is trained to produce: optional ``<think>`` reasoning, then the ranking line.

    With ``final_marker`` (the ``dear-cot`` spec) the reasoning is followed by ``### Final Reranking: ...``.
    """
    ranking = format_ranking(order, base=base)
    if cot and final_marker:
        body = reasoning.strip() + "\n" if reasoning and reasoning.strip() else ""
        return f"{body}{FINAL_MARKER} {ranking}"
    if cot and reasoning and reasoning.strip():
        return f"<think>\n{reasoning.strip()}\n</think>\n{ranking}"
    return ranking
