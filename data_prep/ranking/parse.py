"""Reading the ranking a careful reader would take out of a model's answer (rules: docs/parser.md).

The text is cut into tokens (ids written ``[4]``, ``Passage 4`` or bare ``4``; separators ``>``, ``=``,
``,``, ``and``; notes such as ``(best match)``, footnote marks or ``: 0.9`` scores; ``[Start]``/``[End]``;
list prefixes; words). Ids joined only by separators, notes and single line breaks form a *run*.
The region read is the text after the last final marker (``### Final Reranking:`` and its variants),
else after ``</think>``, else the whole text. The answer is the last answer-like run (joined by ``>``,
wrapped in ``[Start] ... [End]``, a list, or a whole line of ids) that is nearly as long as the longest,
so an explanation comparing two ids after the answer never replaces it while a later full correction
does; disjoint standalone parts around it are joined. Runs inside a sentence that excludes passages are
ranked last, never read as the answer. Without an answer-like run the weaker cues follow: a bracketed
list in prose, the ids opening lines, every bracketed id (the last two flagged ``no_final_run``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from data_prep.ranking.repair import repair_ids

_FINAL_RE = re.compile(
    r"(?:#{1,6}[ \t]*)?(?:[*_]{1,2}[ \t]*)?\bfinal[ \t]+(?:re-?rank(?:ing|ed)?|rank(?:ing|ed)?|answer|order)"
    r"(?:[ \t]+(?:is(?:[ \t]+as[ \t]+follows)?|list))?[ \t]*(?:[*_]{1,2}[ \t]*)?(?::|(?=[ \t]*\n))[ \t]*(?:[*_]{1,2})?",
    re.IGNORECASE,
)
_THINK_END = "</think>"

_TOKEN_RE = re.compile(
    r"""
     (?P<nl>\n)
    |(?P<start>\[\s*start\s*\])
    |(?P<end>\[\s*end\s*\])
    |\[\s*(?P<bid>\d+)\s*\]
    |(?P<pword>\b(?:passages?|docs?|documents?|candidates?|ids?)\b\s*(?:\#|no\.)?\s*)
        (?:\[\s*(?P<pidb>\d+)\s*\]|(?P<pidn>\d+)(?![\w%]|[.,:/]\d))
    |(?P<item>^[ \t]*(?:\d{1,3}[.)]|[-*•])(?=[ \t])|\[\s*rank\s*\d+\s*\])
    |(?P<gt>->|=>|>+|≻|→)
    |(?P<eq>=)
    |(?P<comma>[,;|]|\band\b)
    |(?P<note>\([^()\n]{0,80}\)|[*†‡¹²³⁴⁵⁶⁷⁸⁹⁰_`]+|\^\d+|\[\^?[a-z*]\])
    |(?P<colon>:)
    |(?P<score>(?<![\w.])\d+\.\d+(?![\w.]))
    |(?P<bare>(?<![\w.\-/$\#%])\d+(?![\w%°]|[.,:/\-]\d))
    |(?P<other>[^\s\[\]()<>=,;:|*_`]+|\S)
    """,
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
_JOINERS = {"gt", "eq", "comma", "note", "item"}
_LINE_PREFIX_OK = re.compile(r"^\s*(?:\[\s*start\s*\]|[-*•]|\d{1,3}[.)]|[^\n]*:)?[\s*_]*$", re.IGNORECASE)
_LINE_SUFFIX_OK = re.compile(r"^[\s.*_)]*(?:\[\s*end\s*\])?[\s.*_]*$", re.IGNORECASE)


@dataclass
class _Tok:
    kind: str  # id | nl | start | end | gt | eq | comma | note | item | colon | score | other
    start: int
    end: int
    value: int = -1
    bare: bool = False


@dataclass
class _Run:
    ids: list[int] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)  # char offsets of each id
    joins: set[str] = field(default_factory=set)
    after_start: bool = False
    before_end: bool = False
    all_bare: bool = True
    line_whole: bool = False
    label_before: bool = False

    @property
    def first(self) -> int:
        return self.spans[0][0]

    @property
    def last(self) -> int:
        return self.spans[-1][1]

    @property
    def size(self) -> int:
        return len(set(self.ids))

    @property
    def wrapped(self) -> bool:
        return self.after_start and self.before_end

    @property
    def standalone(self) -> bool:
        return self.wrapped or self.line_whole


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "other"
        if kind in ("bid", "pidb", "pidn"):
            out.append(_Tok("id", m.start(), m.end(), int(m.group(kind))))
        elif kind == "pword":  # "Passage 4", "passage [4]": the id is the number inside the match
            num = m.group("pidb") or m.group("pidn")
            out.append(_Tok("id", m.start(), m.end(), int(num)))
        elif kind == "bare":
            out.append(_Tok("id", m.start(), m.end(), int(m.group(kind)), bare=True))
        else:
            out.append(_Tok(kind, m.start(), m.end()))
    return out


def _runs(text: str, toks: list[_Tok], num_candidates: int | None) -> list[_Run]:
    """Group ids joined only by separators, notes and single line breaks into runs."""
    runs: list[_Run] = []
    cur: _Run | None = None
    pending: set[str] = set()
    newlines = 0
    line_start_len = 0  # len(cur.ids) when the current line began (for echo lines "[3] passage text")
    prev_sig = ""  # kind of the last significant (non-nl, non-note) token before the current run

    def close() -> None:
        nonlocal cur
        if cur is not None and cur.ids:
            runs.append(cur)
        cur = None

    k = 0
    while k < len(toks):
        t = toks[k]
        if t.kind == "id":
            if cur is not None and newlines <= 1 and cur.all_bare == t.bare:
                cur.joins |= pending
            else:
                close()
                cur = _Run(after_start=prev_sig == "start")
                line_start_len = 0
            cur.ids.append(t.value)
            cur.spans.append((t.start, t.end))
            cur.all_bare &= t.bare
            pending, newlines = set(), 0
            # a score right after an id ("[3]: 0.9", "[3] 0.92") is a note, not an id
            if k + 2 < len(toks) and toks[k + 1].kind == "colon" and (toks[k + 2].kind == "score" or toks[k + 2].bare):
                pending.add("note")
                k += 3
                continue
            if k + 1 < len(toks) and toks[k + 1].kind == "score":
                pending.add("note")
                k += 2
                continue
        elif t.kind == "nl":
            newlines += 1
            if cur is not None:
                pending.add("nl")
                line_start_len = len(cur.ids)
        elif t.kind in _JOINERS:
            if cur is not None:
                pending.add(t.kind)
        else:
            if cur is not None:
                if t.kind == "end":
                    cur.before_end = True
                elif t.kind == "other" and "nl" in cur.joins and 0 < line_start_len < len(cur.ids) \
                        and newlines == 0:
                    # the ids on this line start an echoed passage, not the run
                    tail = _Run(ids=cur.ids[line_start_len:], spans=cur.spans[line_start_len:],
                                all_bare=cur.all_bare)
                    cur.ids, cur.spans = cur.ids[:line_start_len], cur.spans[:line_start_len]
                    runs.append(cur)
                    cur = tail
                close()
            pending, newlines = set(), 0
        if t.kind not in ("nl", "note"):
            prev_sig = t.kind
        k += 1
    close()
    for r in runs:
        ls = text.rfind("\n", 0, r.first) + 1
        le = text.find("\n", r.last)
        le = len(text) if le < 0 else le
        prefix, suffix = text[ls:r.first], text[r.last:le]
        r.line_whole = bool(_LINE_PREFIX_OK.match(prefix) and _LINE_SUFFIX_OK.match(suffix))
        prev_line_end = text[max(0, ls - 200) : ls].rstrip()
        r.label_before = prefix.rstrip(" \t*_").endswith(":") or (not prefix.strip() and prev_line_end.endswith(":"))
        if not r.after_start and re.search(r"\[\s*start\s*\]\s*$", prefix, re.IGNORECASE):
            r.after_start = True
    if num_candidates is not None:  # bare numbers mostly above the window are prose (years, doses)
        runs = [r for r in runs if not r.all_bare or sum(i > num_candidates for i in r.ids) * 2 <= len(r.ids)]
    return runs


def _strong(r: _Run, alone: bool) -> bool:
    """A run a reader takes as an answer, not as ids mentioned in passing."""
    if len(r.ids) >= 2 and r.joins & {"gt", "eq"}:
        return True
    if r.wrapped:
        return True
    if len(r.ids) >= 2 and ("item" in r.joins or r.line_whole):
        return r.line_whole or not r.all_bare
    if len(r.ids) == 1 and r.line_whole:  # "Answer: [3]", or a text that is just "[3]"
        return (r.label_before and not r.all_bare) or alone
    return False


@dataclass(frozen=True)
class Reading:
    """The raw ids an answer states, the region they came from and the rule that read them."""

    ids: list[int]
    source: str  # marker | think | run | brackets | none
    rule: str  # answer_run | merged_parts | list_run | line_items | brackets | bare_ids | excluded_only | none
    parts: int = 1
    excluded: tuple[int, ...] = ()  # ids the text names as irrelevant (ranked last, in the order named)


def _pick(runs: list[_Run], n: int | None) -> tuple[list[int], int] | None:
    """(ids, parts) of the answer among ``runs``: the last nearly-longest one, joined with its parts."""
    if not runs:
        return None
    longest = max(r.size for r in runs)
    floor = max(1, math.ceil(0.8 * longest))
    best = max(k for k, r in enumerate(runs) if r.size >= floor)
    chosen = [best]
    acc = set(runs[best].ids)
    if runs[best].standalone:
        for step in (-1, 1):  # join disjoint standalone parts on both sides
            k = best + step
            while 0 <= k < len(runs) and (n is None or len(acc) < n):
                r = runs[k]
                if not r.standalone or acc & set(r.ids) or (n is not None and len(acc | set(r.ids)) > n):
                    break
                chosen.append(k)
                acc |= set(r.ids)
                k += step
    chosen.sort()
    return [i for k in chosen for i in runs[k].ids], len(chosen)


_EXCLUDE_RE = re.compile(
    r"\b(?:eliminat\w*|exclud\w*|remov\w*|irrelevant|unrelated|not\s+(?:\w+\s+){0,3}?(?:relevant|related|relate|"
    r"pertain\w*|mention\w*|address\w*|provide\w*))\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def _sentence(text: str, r: _Run) -> str:
    """The sentence holding run ``r`` (ids like ``[3].`` do not end it)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, r.first)]
    start = ends[-1] if ends else 0
    m = _SENTENCE_END.search(text, r.last)
    return text[start : m.start() if m else len(text)]


def _read_region(text: str, n: int | None, *, whole_region: bool) -> tuple[list[int], str, int, list[int]]:
    """(ids, rule, parts, excluded) for one region of text."""
    toks = _tokens(text)
    runs = _runs(text, toks, n)
    # "we can eliminate passages [1], [2] and [7] as they are not relevant": those go last, not first
    excluded_runs = [r for r in runs if not r.all_bare and not _strong(r, False) and len(r.ids) >= 2
                     and _EXCLUDE_RE.search(_sentence(text, r))]
    excluded = list(dict.fromkeys(i for r in excluded_runs for i in r.ids))
    runs = [r for r in runs if r not in excluded_runs]
    if excluded_runs:  # the fallbacks below must not read the excluded ids back in
        spans = {sp for r in excluded_runs for sp in r.spans}
        toks = [t for t in toks if (t.start, t.end) not in spans]
    strong = [r for r in runs if _strong(r, len(runs) == 1)]
    picked = _pick(strong, n)
    if picked:
        ids, parts = picked
        return ids, ("merged_parts" if parts > 1 else "answer_run"), parts, excluded
    weak = [r for r in runs if len(r.ids) >= 2 and not r.all_bare]
    picked = _pick(weak, n)
    if picked:
        return picked[0], "list_run", 1, excluded
    # a [Start] opening a line (not one wrapping an echoed passage "[6] [Start] text [End]")
    starts = [k for k, t in enumerate(toks) if t.kind == "start" and (k == 0 or toks[k - 1].kind != "id")]
    block = toks[starts[-1] + 1:] if starts else []
    block_end = next((k for k, t in enumerate(block) if t.kind == "end"), None)
    if block_end is not None and not any(t.kind == "id" and not t.bare for t in block[:block_end]):
        return [], "none", 1, excluded  # "[Start] None of the passages are relevant [End]": an empty answer
    for scope in ((block[:block_end] if block_end is not None else block), toks):
        items = [t.value for k, t in enumerate(scope) if t.kind == "id" and not t.bare
                 and (k == 0 or scope[k - 1].kind in ("nl", "item", "start"))]
        if items:
            return items, "line_items", 1, excluded
    brackets = [t.value for t in toks if t.kind == "id" and not t.bare]
    if brackets:
        return brackets, "brackets", 1, excluded
    if whole_region:
        bare = [t.value for t in toks if t.kind == "id"]
        if bare:
            return bare, "bare_ids", 1, excluded
    if excluded:
        return [], "excluded_only", 1, excluded
    return [], "none", 1, excluded


def _segments(text: str) -> list[tuple[str, str]]:
    """Regions an explicit marker says hold the final ranking, most trusted first."""
    out = [(text[m.end():], "marker") for m in reversed(list(_FINAL_RE.finditer(text)))]
    cut = text.rfind(_THINK_END)
    if cut >= 0:
        out.append((text[cut + len(_THINK_END):], "think"))
    return out


def read_ranking(text: str, *, cot: bool = False, num_candidates: int | None = None) -> Reading:
    """Where the final ranking of ``text`` is, and its raw ids (before repair)."""
    segments = _segments(text)
    first: Reading | None = None
    for segment, source in segments:
        ids, rule, parts, excluded = _read_region(segment, num_candidates, whole_region=True)
        reading = Reading(ids, source, rule, parts, tuple(i for i in excluded if i not in ids))
        if ids and rule in ("answer_run", "merged_parts"):
            return reading
        if first is None:
            first = reading
    if first is not None and (first.ids or cot):
        return first
    if cot:
        return Reading([], "none", "none")
    ids, rule, parts, excluded = _read_region(text, num_candidates, whole_region=False)
    source = {"line_items": "brackets", "brackets": "brackets", "none": "none", "excluded_only": "none"}.get(rule, "run")
    return Reading(ids, source, rule, parts, tuple(i for i in excluded if i not in ids))


@dataclass(frozen=True)
class ParsedRanking:
    """A full permutation of ``range(num_candidates)`` (0-based) plus what it took to get there."""

    order: list[int]
    repairs: dict[str, int] = field(default_factory=dict)
    source: str = "run"  # which part of the text was read: marker | think | run | brackets | none
    rule: str = "answer_run"  # which reading rule took the ids (docs/parser.md)

    @property
    def ok(self) -> bool:
        """True when the text was a clean, complete permutation needing no repair."""
        return not self.repairs


def extract_ids(text: str, *, cot: bool = False, num_candidates: int | None = None) -> tuple[list[int], str]:
    """Raw ids of the final ranking in ``text`` (not yet repaired) and where they were read.

    With ``cot=True`` a text with no final marker (or ``</think>``) yields nothing: digits in unfinished
    reasoning are not a ranking.
    """
    reading = read_ranking(text, cot=cot, num_candidates=num_candidates)
    return reading.ids, reading.source


def parse_ranking(text: str, num_candidates: int, *, base: int = 0, cot: bool = False) -> ParsedRanking:
    """Parse a model's ranking text into a repaired 0-based permutation of ``num_candidates`` items."""
    if base not in (0, 1):
        raise ValueError(f"base must be 0 or 1, got {base}")
    if num_candidates < 0:
        raise ValueError(f"num_candidates must be >= 0, got {num_candidates}")
    reading = read_ranking(text, cot=cot, num_candidates=num_candidates)
    order, repairs = repair_ids(reading.ids, num_candidates, base=base, last=reading.excluded)
    if not reading.ids and not reading.excluded and num_candidates:
        repairs["unparseable"] += 1
    elif reading.rule in ("line_items", "brackets"):
        repairs["no_final_run"] += 1
    if reading.parts > 1:
        repairs["merged_parts"] += reading.parts - 1
    return ParsedRanking(order=order, repairs=dict(repairs), source=reading.source, rule=reading.rule)


_ANY_INT = re.compile(r"\d+")


def is_complete_ranking(text: str, num_candidates: int, *, base: int = 0, cot: bool = False) -> bool:
    """True once ``text`` holds an answer run naming every candidate (used to stop generation early).

    Ids listed in prose ("passages [1], [2] and [3] all mention it") are no answer yet.

    Called on every decode step, so a cheap check (are all ids present as numbers at all?) runs first and
    the full reading only once it passes.
    """
    wanted = set(range(base, base + num_candidates))
    if not wanted.issubset(int(x) for x in _ANY_INT.findall(text)):
        return False
    reading = read_ranking(text, cot=cot, num_candidates=num_candidates)
    return reading.rule in ("answer_run", "merged_parts") and wanted.issubset(reading.ids)
