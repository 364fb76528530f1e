"""Rankings given as data: JSON (fenced or not) and Markdown tables (rules: docs/parser.md).

A careful reader takes the field that holds the ranking (``"ranking"``, ``"ranked_passages"``, ``"order"``, ...)
and never a reasoning field, however many numbers it holds. An array is read in its order, unless every item
carries a rank (then by rank) or a numeric score (then by score, highest first, ties in array order): in JSON
and in tables the score is bound to its id by the structure, so it states the order. A table is read through
the column whose header names the passage (``Passage``, ``Doc``, ``ID``), ordered by a ``Rank`` column when it
has one, else by a numeric ``Score`` column, else by row order.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from data_prep.ranking.tokens import single_id, tokens

_FENCE_RE = re.compile(r"```[ \t]*(?:json|json5|javascript|js)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_JSON_START = re.compile(r"\{|\[\s*(?=[{\"\d])")
_SKIP_KEY = re.compile(r"reason|explan|thought|think|analys|note|comment|justif|rational|summary|query|text|content",
                       re.IGNORECASE)
_RANK_KEY = re.compile(r"rank|order|answer|result|final|sorted|output|passages|documents|docs|ids|candidates",
                       re.IGNORECASE)
_ID_KEYS = ("id", "passage", "passage_id", "passageid", "doc", "doc_id", "docid", "document", "document_id",
            "pid", "index", "identifier", "candidate", "candidate_id", "number", "idx", "label")
_POS_KEYS = ("rank", "position", "place", "order")
_SCORE_KEYS = ("score", "relevance", "relevance_score", "relevancy", "rating", "confidence", "probability",
               "grade", "relevance_rating")

ReadText = Callable[[str], list[int]]


@dataclass(frozen=True)
class Structured:
    """Ids read from one JSON value or table, the rule (json | json_scores | table) and where it ends."""

    ids: list[int]
    rule: str
    end: int


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip().rstrip("%"))
        except ValueError:
            return None
    return None


def _item_id(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return single_id(v)
    return None


def _by(items: list[tuple[int, float]], *, descending: bool) -> list[int]:
    """Ids sorted by their key, ties kept in written order."""
    return [i for i, _ in sorted(items, key=lambda p: -p[1] if descending else p[1])]


def _field(d: dict[str, Any], names: tuple[str, ...]) -> Any:
    low = {str(k).lower().replace(" ", "_"): v for k, v in d.items()}
    for name in names:
        if name in low:
            return low[name]
    return None


def _read_list(items: list[Any], read_text: ReadText) -> tuple[list[int], bool] | None:
    """(ids, ordered_by_score) of a JSON array, or None when it holds no ids."""
    if not items:
        return None
    if all(isinstance(x, dict) for x in items):
        ids = [_item_id(_field(x, _ID_KEYS)) for x in items]
        if any(i is None for i in ids):
            return None
        pos = [_num(_field(x, _POS_KEYS)) for x in items]
        if all(p is not None for p in pos):
            return _by(list(zip(ids, pos, strict=True)), descending=False), False  # type: ignore[arg-type]
        scores = [_num(_field(x, _SCORE_KEYS)) for x in items]
        if all(s is not None for s in scores):
            return _by(list(zip(ids, scores, strict=True)), descending=True), True  # type: ignore[arg-type]
        return ids, False  # type: ignore[return-value]
    out: list[int] = []
    for x in items:
        if isinstance(x, str) and single_id(x) is None:
            out.extend(read_text(x))  # "[3] > [1]" inside a string
            continue
        i = _item_id(x)
        if i is None:
            return None
        out.append(i)
    return (out, False) if out else None


def _read_value(v: Any, read_text: ReadText, depth: int = 0) -> tuple[list[int], bool] | None:
    """(ids, by_score) a careful reader takes from a JSON value: its ranking field, never its reasoning."""
    if depth > 4:
        return None
    if isinstance(v, list):
        return _read_list(v, read_text)
    if isinstance(v, str):
        ids = read_text(v)
        return (ids, False) if ids else None
    if not isinstance(v, dict):
        return None
    keys = [k for k in v if not _SKIP_KEY.search(str(k))]
    ranked = sorted((k for k in keys if _RANK_KEY.search(str(k))), key=lambda k: "final" not in str(k).lower())
    for k in ranked:
        got = _read_value(v[k], read_text, depth + 1)
        if got:
            return got
    # {"3": 0.9, "1": 0.4}: a score per id, highest first
    pairs = [(single_id(str(k)), _num(s)) for k, s in v.items()]
    if len(pairs) >= 2 and all(i is not None and s is not None for i, s in pairs):
        return _by(pairs, descending=True), True  # type: ignore[arg-type]
    for k in keys:
        if k not in ranked and isinstance(v[k], dict):
            got = _read_value(v[k], read_text, depth + 1)
            if got:
                return got
    return None


def _decoded(text: str) -> list[tuple[Any, int]]:
    """Every JSON value in ``text`` (fenced blocks, else objects and arrays in prose): (value, where it ends)."""
    dec = json.JSONDecoder(strict=False)  # a raw line break inside a string, as models write it
    out: list[tuple[Any, int]] = []
    budget = 8 * len(text) + 10_000  # characters all single-quoted tries may scan: linear time on any text
    fences = list(_FENCE_RE.finditer(text))
    spans = [(m.start(1), m.end(1), m.end()) for m in fences] or [(0, len(text), len(text))]
    for lo, hi, close in spans:
        body = text[lo:hi]
        pos = 0
        while True:
            m = _JSON_START.search(body, pos)
            if m is None:
                break
            try:
                value, end = dec.raw_decode(body, m.start())
            except ValueError:
                found = None
                if budget > 0 and _PY_START.match(body, m.start()):
                    found = _python_literal(body, m.start(), budget)
                    budget -= (found[1] if found else len(body)) - m.start()
                if found is None:
                    pos = m.start() + 1
                    continue
                value, end = found
            # "[3]" alone is a bracketed id, not an array
            if isinstance(value, dict) or (isinstance(value, list) and value
                                           and (len(value) >= 2 or fences or not isinstance(value[0], int))):
                out.append((value, close if fences else lo + end))
            pos = end
    return out


_PY_START = re.compile(r"[\[{]\s*(?:\{\s*)?'")  # {'key': ...}, ['[3]', ...], [{'id': 3}, ...]


def _python_literal(body: str, start: int, limit: int) -> tuple[Any, int] | None:
    """(value, end) of a single-quoted, JSON-like value at ``start`` (``{'ranking': [2, 1], 'why': 'x'}``: what a
    model writes when it prints a Python dict), read with :func:`ast.literal_eval` (literals only, nothing is
    run), or None. The value ends at the bracket that balances the opening one, outside quoted strings; the
    search stops after ``limit`` characters."""
    close = {"{": "}", "[": "]"}
    stack: list[str] = []
    quote = ""
    k = start
    while k < len(body) and k - start < limit:
        c = body[k]
        if quote:
            if c == "\\":
                k += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in close:
            stack.append(close[c])
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None
            if not stack:
                try:
                    value = ast.literal_eval(body[start:k + 1])
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    return None
                return (value, k + 1) if isinstance(value, (dict, list)) else None
        k += 1
    return None


_SKIP_VALUE = re.compile(r'"([^"\n]{1,40})"\s*:\s*"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)


def mask_reasoning(text: str) -> str:
    """``text`` with the string values of JSON reasoning fields blanked (same length), so that no rule reads
    the numbers in ``{"reasoning": "[1] > [2] ..."}``, even when the JSON is cut off."""
    def blank(m: re.Match[str]) -> str:
        return " " * len(m.group()) if _SKIP_KEY.search(m.group(1)) else m.group()
    return _SKIP_VALUE.sub(blank, text) if '"' in text else text


_PARTIAL_KEY = re.compile(r'"([^"\n]{1,40})"\s*:\s*(?=\[)')


def read_json(text: str, read_text: ReadText) -> Structured | None:
    """The last JSON value in ``text`` that holds a ranking; a truncated one is read from its ranking field."""
    for value, end in reversed(_decoded(text)):
        got = _read_value(value, read_text)
        if got and got[0]:
            return Structured(got[0], "json_scores" if got[1] else "json", end)
    # cut off mid-answer: '{"reasoning": "... 1999 ...", "ranking": [3, 1, 4' -> the ranking field's ids
    for m in reversed(list(_PARTIAL_KEY.finditer(text))):
        key = m.group(1)
        if _SKIP_KEY.search(key) or not _RANK_KEY.search(key):
            continue
        close = text.find("]", m.end())
        body = text[m.end() + 1 : close if close >= 0 else len(text)]
        ids = [t.value for t in tokens(body) if t.kind == "id"]
        if ids:
            return Structured(ids, "json", close + 1 if close >= 0 else len(text))
    return None


_TABLE_ROW = re.compile(r"^[ \t]*\|.*\|[ \t]*$", re.MULTILINE)
_SEP_CELL = re.compile(r"^\s*:?-{2,}:?\s*$")
_ID_HEAD = re.compile(r"passage|doc|document|\bid\b|identifier|candidate|段落|文档|文檔", re.IGNORECASE)
_POS_HEAD = re.compile(r"^\W*(?:rank(?:ing)?|#|no\.?|position|place|order|排名|名次)\W*$", re.IGNORECASE)
_SCORE_HEAD = re.compile(r"score|relevance|rating|confidence|probability", re.IGNORECASE)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[tuple[list[list[str]], int]]:
    """Markdown tables (header, separator, rows) as cell lists, with the offset where each ends."""
    out = []
    lines = list(_TABLE_ROW.finditer(text))
    k = 0
    while k < len(lines):
        block = [lines[k]]
        while k + 1 < len(lines) and text[block[-1].end():lines[k + 1].start()].strip() == "":
            k += 1
            block.append(lines[k])
        k += 1
        rows = [_cells(m.group()) for m in block]
        if len(rows) >= 3 and all(_SEP_CELL.match(c) for c in rows[1] if c):
            out.append(([rows[0], *rows[2:]], block[-1].end()))
    return out


def _column(rows: list[list[str]], k: int) -> list[str] | None:
    col = [r[k] if k < len(r) else "" for r in rows]
    return col if all(col) else None


def read_table(text: str) -> Structured | None:
    """The last Markdown table in ``text`` whose passage column names an id in every row."""
    for rows, end in reversed(_tables(text)):
        head, body = rows[0], rows[1:]
        id_col = next((k for k, h in enumerate(head) if _ID_HEAD.search(h) and not _POS_HEAD.match(h)), None)
        if id_col is None:  # no header names the passage: the first column of bracketed ids
            id_col = next((k for k in range(len(head)) if (c := _column(body, k))
                           and all(any(t.kind == "id" and not t.bare for t in tokens(x)) for x in c)), None)
        col = _column(body, id_col) if id_col is not None else None
        ids = [single_id(c) for c in col] if col else None
        if not ids or any(i is None for i in ids):
            continue
        for k, h in enumerate(head):
            if k == id_col:
                continue
            vals = [_num(c.strip("*_ ")) for c in (_column(body, k) or [])]
            if _POS_HEAD.match(h) and vals and all(v is not None for v in vals):
                return Structured(_by(list(zip(ids, vals, strict=True)), descending=False), "table", end)  # type: ignore[arg-type]
        for k, h in enumerate(head):
            vals = [_num(c.strip("*_ ")) for c in (_column(body, k) or [])]
            if k != id_col and _SCORE_HEAD.search(h) and vals and all(v is not None for v in vals):
                return Structured(_by(list(zip(ids, vals, strict=True)), descending=True), "table", end)  # type: ignore[arg-type]
        return Structured(ids, "table", end)  # type: ignore[arg-type]
    return None
