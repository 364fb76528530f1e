"""GRPO rewards for listwise rerankers, each its own named function so TRL logs it apart (``rewards/<name>/mean``).

Every function takes what TRL's ``GRPOTrainer`` passes a reward function (``completions``, ``completion_ids`` and
every dataset column by name: here ``grades``, one integer per candidate in prompt order, written by
`dear prep listwise`) and returns one float per completion. The prompt-spec settings (id base, chain of thought,
final marker) and the reward settings are bound with :func:`functools.partial` by :func:`reward_functions`, so
TRL still sees the function's own name.

* :func:`ranking_reward`: nDCG@k of the order the project's parser (``data_prep.ranking.parse_ranking``, the one
  inference uses, repairs included) reads from the completion, against the window's grades; 0 when nothing
  could be read (``unparseable``).
* :func:`format_reward`: 1 when the answer is a complete permutation read WITHOUT any repair (no duplicate, no
  out-of-range or missing id, no fallback reading rule); for chain-of-thought specs also reasoning first and then
  the final marker (``### Final Reranking:`` for ``dear-cot``, ``</think>`` for the others); else 0.
* :func:`length_reward` (optional, for chain of thought): 1 up to ``target_tokens`` completion tokens, then
  falling linearly to 0 at twice that.

nDCG is trec_eval's (``ndcg_cut``): gain = grade (linear), discount log2(rank + 1), ideal from the window's grades;
a window whose grades are all 0 scores 0 whatever the order (tests/test_grpo_rewards.py checks the function
against ``ir_measures`` on real windows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from data_prep.prompts import PromptSpec
from data_prep.ranking import FINAL_MARKER, parse_ranking, read_ranking

RewardFunction = Callable[..., list[float]]
_THINK_END = "</think>"


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of ``gains`` (in ranked order) cut at ``k``: sum of g / log2(rank + 1)."""
    return sum(g / math.log2(r + 2) for r, g in enumerate(gains[:k]) if g > 0)


def ndcg_at_k(order: Sequence[int], grades: Sequence[int], k: int) -> float:
    """nDCG@k of ``order`` (0-based candidate positions, best first) against ``grades`` (prompt order)."""
    ideal = dcg(sorted(grades, reverse=True), k)
    if ideal <= 0:
        return 0.0
    return dcg([grades[i] for i in order], k) / ideal


def completion_text(completion: Any) -> str:
    """The text of one completion: a plain string (plain prompts) or the assistant message (chat prompts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)) and completion:
        return completion_text(completion[-1])
    return ""


def ranking_reward(completions: Sequence[Any], grades: Sequence[Sequence[int]], *, id_base: int = 0,
                   cot: bool = False, k: int = 10, **_: Any) -> list[float]:
    """nDCG@k of the parsed (and repaired) order of each completion; 0 for an unparseable answer."""
    out: list[float] = []
    for completion, window in zip(completions, grades, strict=True):
        parsed = parse_ranking(completion_text(completion), len(window), base=id_base, cot=cot)
        out.append(0.0 if parsed.repairs.get("unparseable") else ndcg_at_k(parsed.order, window, k))
    return out


def answer_is_well_formed(text: str, n: int, *, id_base: int = 0, cot: bool = False,
                          final_marker: bool = False) -> bool:
    """A complete permutation of the n ids read without repair; with ``cot``: reasoning, then the marker."""
    parsed = parse_ranking(text, n, base=id_base, cot=cot)
    if not parsed.ok:
        return False
    if not cot:
        return True
    marker = FINAL_MARKER if final_marker else _THINK_END
    cut = text.rfind(marker)
    if cut < 0:
        return False
    reasoning = text[:cut].replace("<think>", "").strip()
    source = read_ranking(text, cot=True, num_candidates=n).source
    return bool(reasoning) and source == ("marker" if final_marker else "think")


def format_reward(completions: Sequence[Any], grades: Sequence[Sequence[int]], *, id_base: int = 0,
                  cot: bool = False, final_marker: bool = False, **_: Any) -> list[float]:
    """1.0 for an answer a reader can take as is (see :func:`answer_is_well_formed`), else 0.0."""
    return [float(answer_is_well_formed(completion_text(c), len(w), id_base=id_base, cot=cot,
                                        final_marker=final_marker))
            for c, w in zip(completions, grades, strict=True)]


def length_reward(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]], *, target_tokens: int,
                  **_: Any) -> list[float]:
    """1.0 up to ``target_tokens`` completion tokens, then linearly down to 0.0 at twice that."""
    return [max(0.0, min(1.0, 2.0 - len(ids) / target_tokens)) for ids in completion_ids]


def reward_functions(spec: PromptSpec, *, k: int = 10, length_target_tokens: int | None = None
                     ) -> list[RewardFunction]:
    """[ranking_reward, format_reward(, length_reward)] bound to ``spec`` (TRL names them after the function)."""
    funcs: list[RewardFunction] = [
        partial(ranking_reward, id_base=spec.id_base, cot=spec.cot, k=k),
        partial(format_reward, id_base=spec.id_base, cot=spec.cot, final_marker=spec.final_marker),
    ]
    if length_target_tokens:
        funcs.append(partial(length_reward, target_tokens=length_target_tokens))
    return funcs


def reward_names(funcs: Sequence[RewardFunction]) -> list[str]:
    """The names TRL logs the functions under (``rewards/<name>/mean``)."""
    names = []
    for f in funcs:
        while isinstance(f, partial):
            f = f.func
        names.append(f.__name__)
    return names
