"""Ranking strings: the one formatter and the one parser that training targets and inference share.

The parser never trusts model output: it reads only the final ranking (a ``### Final Reranking:`` line,
the text after ``</think>``, or the last ``[a] > [b]`` run), then dedupes, drops out-of-range ids and
appends missing ids in input order, counting every repair by kind.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

REPAIR_KINDS = ("duplicate", "out_of_range", "missing", "no_final_run", "unparseable")
FINAL_MARKER = "### Final Reranking:"

_FINAL_RE = re.compile(r"#+\s*final\s+re-?ranking\s*:?", re.IGNORECASE)
_THINK_END = "</think>"
_ID = r"(?:\[\s*\d+\s*\]|(?<![\w.])\d+(?![\w.]))"
_RUN_RE = re.compile(rf"{_ID}(?:\s*[>=]\s*{_ID})+")  # "=" joins tied ids into one run
_BRACKET_ID_RE = re.compile(r"\[\s*(\d+)\s*\]")
_BARE_ID_RE = re.compile(r"(?<![\w.])(\d+)(?![\w.])")


@dataclass(frozen=True)
class ParsedRanking:
    """A full permutation of ``range(num_candidates)`` (0-based) plus what it took to get there."""

    order: list[int]
    repairs: dict[str, int] = field(default_factory=dict)
    source: str = "run"  # which part of the text was read: marker | think | run | brackets | none

    @property
    def ok(self) -> bool:
        """True when the text was a clean, complete permutation needing no repair."""
        return not self.repairs


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


def _final_segment(text: str) -> tuple[str, str] | None:
    """The part of ``text`` that an explicit marker says holds the final ranking."""
    markers = list(_FINAL_RE.finditer(text))
    if markers:
        return text[markers[-1].end() :], "marker"
    cut = text.rfind(_THINK_END)
    if cut >= 0:
        return text[cut + len(_THINK_END) :], "think"
    return None


def _ids_of(segment: str) -> list[int]:
    return [int(m) for m in re.findall(r"\d+", segment)]


def extract_ids(text: str, *, cot: bool = False) -> tuple[list[int], str]:
    """Raw ids of the final ranking in ``text`` (not yet repaired) and where they were read.

    With ``cot=True`` a text with no final marker yields nothing: digits in unfinished reasoning are
    not a ranking.
    """
    final = _final_segment(text)
    if final is not None:
        segment, source = final
        runs = list(_RUN_RE.finditer(segment))
        if runs:
            return _ids_of(runs[0].group(0)), source
        ids = [int(x) for x in _BRACKET_ID_RE.findall(segment)] or [int(x) for x in _BARE_ID_RE.findall(segment)]
        return ids, source
    if cot:
        return [], "none"
    runs = list(_RUN_RE.finditer(text))
    if runs:
        return _ids_of(runs[-1].group(0)), "run"
    ids = [int(x) for x in _BRACKET_ID_RE.findall(text)]
    return ids, ("brackets" if ids else "none")


def repair_ids(ids: Iterable[int], num_candidates: int, *, base: int = 0) -> tuple[list[int], Counter[str]]:
    """Turn raw ids into a full 0-based permutation, counting each repair."""
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
    missing = [i for i in range(num_candidates) if i not in seen]
    if missing:
        repairs["missing"] += len(missing)
        order.extend(missing)
    return order, repairs


def parse_ranking(text: str, num_candidates: int, *, base: int = 0, cot: bool = False) -> ParsedRanking:
    """Parse a model's ranking text into a repaired 0-based permutation of ``num_candidates`` items."""
    if base not in (0, 1):
        raise ValueError(f"base must be 0 or 1, got {base}")
    if num_candidates < 0:
        raise ValueError(f"num_candidates must be >= 0, got {num_candidates}")
    ids, source = extract_ids(text, cot=cot)
    order, repairs = repair_ids(ids, num_candidates, base=base)
    if not ids and num_candidates:
        repairs["unparseable"] += 1
    elif source == "brackets":
        repairs["no_final_run"] += 1
    return ParsedRanking(order=order, repairs=dict(repairs), source=source)


def add_repairs(total: Counter[str] | dict[str, int], repairs: Mapping[str, int]) -> None:
    """Accumulate repair counts in place (a tiny helper so every caller counts the same way)."""
    for k, v in repairs.items():
        total[k] = total.get(k, 0) + v


def is_complete_ranking(text: str, num_candidates: int, *, base: int = 0, cot: bool = False) -> bool:
    """True once ``text`` already names every candidate in its final run (used to stop generation early)."""
    ids, _ = extract_ids(text, cot=cot)
    wanted = set(range(base, base + num_candidates))
    return wanted.issubset(ids)
