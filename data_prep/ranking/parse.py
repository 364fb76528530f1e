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

from data_prep.ranking.prose import read_prose
from data_prep.ranking.repair import repair_ids
from data_prep.ranking.structured import mask_reasoning, read_json, read_table
from data_prep.ranking.tokens import Tok, fold, tokens

_FINAL_RE = re.compile(
    r"(?:#{1,6}[ \t]*)?(?:[*_]{1,2}[ \t]*)?\bfinal[ \t]+(?:re-?rank(?:ing|ed)?|rank(?:ing|ed)?|answer|order)"
    r"(?:[ \t]+(?:is(?:[ \t]+as[ \t]+follows)?|list))?[ \t]*(?:[*_]{1,2}[ \t]*)?(?::|(?=[ \t]*\n))[ \t]*(?:[*_]{1,2})?",
    re.IGNORECASE,
)
_THINK_END = "</think>"

_JOINERS = {"gt", "lt", "eq", "comma", "note", "item", "dash"}
_ORDER_JOINS = {"gt", "lt", "eq"}
_LINE_PREFIX_OK = re.compile(r"^\s*(?:\[\s*start\s*\]|[-*•]|\d{1,3}[.)]|[^\n]*:)?[\s*_]*$", re.IGNORECASE)
_LINE_SUFFIX_OK = re.compile(r"^[\s.*_)]*(?:\[\s*end\s*\])?[\s.*_]*$", re.IGNORECASE)
# the rules whose reading is an answer the model stated (not a weaker cue)
ANSWER_RULES = ("answer_run", "merged_parts", "reversed_run", "json", "json_scores", "table", "prose_order")


@dataclass
class _Run:
    ids: list[int] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)  # char offsets of each id
    seps: list[set[str]] = field(default_factory=list)  # the joiners before each id (empty for the first)
    joins: set[str] = field(default_factory=set)
    after_start: bool = False
    before_end: bool = False
    all_bare: bool = True
    line_whole: bool = False
    label_before: bool = False
    ranges: int = 0  # "[1]-[3]" ranges expanded

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

    @property
    def reversed(self) -> bool:
        """A chain written from least to most relevant: ``[2] < [4] < [1]``."""
        return "lt" in self.joins and "gt" not in self.joins

    @property
    def ordered(self) -> list[int]:
        return self.ids[::-1] if self.reversed else self.ids

    def take(self, lo: int, hi: int | None = None) -> _Run:
        """A run of ids ``lo:hi`` of this one (the echo-line split)."""
        seps = [set(), *self.seps[lo + 1 : hi]]
        return _Run(ids=self.ids[lo:hi], spans=self.spans[lo:hi], seps=seps, joins=set().union(*seps),
                    all_bare=self.all_bare, after_start=self.after_start if lo == 0 else False)


def _expand_ranges(r: _Run) -> None:
    """``[5] > [1]-[3] > [4]`` reads 5 1 2 3 4: a hyphen between two ascending ids of a run that orders with
    other joiners (or a run of just those two) is a range, unless the ids inside it are named in the run.
    A run joined only by hyphens (``[4]-[2]-[1]-[3]``) uses them as separators."""
    kinds = set().union(*r.seps) - {"nl", "note", "item"}
    if "dash" not in kinds or (kinds == {"dash"} and len(r.ids) > 2):
        return
    ids, spans = [r.ids[0]], [r.spans[0]]
    for k in range(1, len(r.ids)):
        a, b = r.ids[k - 1], r.ids[k]
        inner = range(a + 1, b)
        if "dash" in r.seps[k] and not r.seps[k] & (_ORDER_JOINS | {"comma"}) and a < b \
                and not set(inner) & set(r.ids) and b - a <= 50:
            ids.extend(inner)
            spans.extend([r.spans[k - 1]] * len(inner))
            r.ranges += 1
        ids.append(b)
        spans.append(r.spans[k])
    r.ids, r.spans = ids, spans


def _next_sig(toks: list[Tok], k: int) -> Tok | None:
    """The first token after ``k`` that is not a note."""
    k += 1
    while k < len(toks) and toks[k].kind == "note":
        k += 1
    return toks[k] if k < len(toks) else None


def _line_end_stops(text: str, toks: list[Tok]) -> list[Tok]:
    """``toks`` with a full stop that ends a line (``[4] > 2 > [1] > 3.``, ``5. [3].``) as a note: it closes the
    answer, it is not a word of an echoed passage."""
    out = list(toks)
    for k, t in enumerate(toks):
        if t.kind == "other" and text[t.start:t.end] in (".", "。", "!") and k > 0 and toks[k - 1].kind == "id" \
                and (k + 1 == len(toks) or toks[k + 1].kind == "nl"):
            out[k] = Tok("note", t.start, t.end)
    return out


# the id that follows a list marker in the two passes below: "[4]", "Passage 4", "doc4"
_ITEM_ID = r"(?:\[[ \t]*\d{1,9}[ \t]*\]|(?:passage|document|doc)[ \t]*\d{1,9})"
# a list opening a line, or opening after a sentence or a label on it ("Here is the order: - [4] ...")
_INLINE_OPEN = re.compile(r"(?:^|[.:!?]([ \t]))[ \t]*(?:([-*•])|(\d{1,3})([.)]))[ \t]+(?=" + _ITEM_ID + ")",
                          re.IGNORECASE | re.MULTILINE)


def _inline_items(text: str) -> str:
    """``text`` with a list written on one line (``- [4] — best - [2] - [1] - [3]``, ``1. [4] note 2. [2] 3. [1]``)
    put on its own lines, one character for one: an item's note ends where the next item starts. A line holds
    such a list when a bullet or ``1.`` before an id opens it (or follows a sentence or label on it) and the same
    bullet, or the next numbers in order, comes back before an id at least twice."""
    if not _INLINE_OPEN.search(text):  # most answers hold no list: one scan, then nothing more
        return text
    out: list[str] | None = None
    for line in re.finditer(r"[^\n]+", text):
        for m in _INLINE_OPEN.finditer(line.group()):
            if m.group(2):
                marker = re.compile(r"[ \t]" + re.escape(m.group(2)) + r"[ \t]+(?=" + _ITEM_ID + ")", re.IGNORECASE)
                hits = [h.start() for h in marker.finditer(line.group(), m.end())]
            else:
                hits, want = [], int(m.group(3)) + 1
                number = re.compile(r"[ \t](\d{1,3})" + re.escape(m.group(4)) + r"[ \t]+(?=" + _ITEM_ID + ")",
                                    re.IGNORECASE)
                for h in number.finditer(line.group(), m.end()):
                    if int(h.group(1)) == want:
                        hits.append(h.start())
                        want += 1
            if len(hits) < 2:
                continue
            out = out if out is not None else list(text)
            for h in ([m.start(1)] if m.group(1) else []) + hits:
                out[line.start() + h] = "\n"
            break
    return text if out is None else "".join(out)


_ITEM_LINE = re.compile(r"^[ \t]*(?:[-*•]|\d{1,3}[.)])[ \t]+(?:[*_]{1,2})?" + _ITEM_ID + r"(?:[*_]{1,2})?",
                        re.IGNORECASE | re.MULTILINE)
_PLAIN_REST = re.compile(r"[\s.,;*_]*(?:\[\s*end\s*\][\s.*_]*)?", re.IGNORECASE)
_END_MARK = re.compile(r"\[\s*end\s*\]", re.IGNORECASE)
# an item whose run goes on after its id ("- [4] > [2]", "- [4], [5]", "- [1]-[3]"): ids, not a note
_RUN_GOES_ON = re.compile(r"[ \t]*(?:[-–—>,=<;&]|and\b)[ \t]*(?:\[|passage|document|doc)", re.IGNORECASE)


def _noted_items(text: str) -> str:
    """``text`` with the words after an item's id blanked (same length) in a list whose items are mostly bare
    ids (``* [4] the best one`` / ``* [2]`` / ``* [1]``): there they are a note on the item, not an echoed
    passage that ends the list. A list where most items go on with words (an echo of the passages, an analysis)
    is left as it is, and so is an item whose run goes on (``- [4] > [2]``)."""
    if len(_ITEM_LINE.findall(text)) < 3:  # two bare items and one with words at the least: one scan
        return text
    lines, start = [], 0
    for line in text.split("\n"):
        lines.append((start, line))
        start += len(line) + 1
    out: list[str] | None = None
    k = 0
    while k < len(lines):
        block = []  # consecutive item lines: (offset, line, where the id ends)
        while k < len(lines) and (m := _ITEM_LINE.match(lines[k][1])) is not None:
            block.append((*lines[k], m.end()))
            k += 1
        if not block:
            k += 1
        noted = [(at, line, end) for at, line, end in block if not _PLAIN_REST.fullmatch(line, end)]
        if not noted or len(block) - len(noted) < max(2, len(noted)):  # at least two bare items, and most
            continue
        out = out if out is not None else list(text)
        for at, line, end in noted:
            if _RUN_GOES_ON.match(line, end):
                continue
            stop = _END_MARK.search(line, end)
            cut = stop.start() if stop else len(line)
            out[at + end : at + cut] = " " * (cut - end)
    return text if out is None else "".join(out)


def _runs(text: str, toks: list[Tok], num_candidates: int | None) -> list[_Run]:
    """Group ids joined only by separators, notes and single line breaks into runs."""
    toks = _line_end_stops(text, toks)
    runs: list[_Run] = []
    cur: _Run | None = None
    pending: set[str] = set()
    newlines = 0
    line_start_len = 0  # len(cur.ids) when the current line began (for echo lines "[3] passage text")
    prev_sig = ""  # kind of the last significant (non-nl, non-note) token before the current run
    item_line = False  # the current line opened with a list marker ("- ", "1. ")
    line_ids = 0  # ids on the current line so far

    def close() -> None:
        nonlocal cur
        if cur is not None and cur.ids:
            runs.append(cur)
        cur = None

    def joins_run(k: int, t: Tok) -> bool:
        if cur is None or newlines > 1:
            return False
        if cur.all_bare == t.bare:
            return True
        # "[4] > 2 > [1] > 3": bare and bracketed ids mix only across ">", "<" or "=", and a bare id only
        # when nothing but a separator follows it (not "[3] > 2 passages mention ...")
        nxt = _next_sig(toks, k)
        return bool(pending & _ORDER_JOINS) and (
            not t.bare or nxt is None or nxt.kind in (_JOINERS | {"nl", "end"}) - {"note"})

    k = 0
    while k < len(toks):
        t = toks[k]
        if t.kind == "id":
            if joins_run(k, t):
                cur.joins |= pending  # type: ignore[union-attr]
            else:
                close()
                cur = _Run(after_start=prev_sig == "start")
                line_start_len = 0
                pending = set()
            cur.ids.append(t.value)  # type: ignore[union-attr]
            cur.spans.append((t.start, t.end))  # type: ignore[union-attr]
            cur.seps.append(pending if cur.ids[1:] else set())  # type: ignore[union-attr]
            cur.all_bare &= t.bare  # type: ignore[union-attr]
            pending, newlines = set(), 0
            line_ids += 1
            # a score right after an id ("[3]: 0.9", "[3] 0.92") is a note, not an id
            if k + 2 < len(toks) and toks[k + 1].kind == "colon" and (toks[k + 2].kind == "score" or toks[k + 2].bare):
                pending.add("note")
                k += 3
                continue
            if k + 1 < len(toks) and toks[k + 1].kind == "score":
                pending.add("note")
                k += 2
                continue
            # "- [4] — the only passage naming the year": on a list item, words after a dash or colon that
            # follows the item's id are a note on it, not an echoed passage
            nxt = _next_sig(toks, k)
            if item_line and line_ids == 1 and nxt is not None and nxt.kind in ("dash", "colon"):
                after = _next_sig(toks, toks.index(nxt, k))
                if after is not None and after.kind == "other":
                    while k + 1 < len(toks) and toks[k + 1].kind != "nl":
                        k += 1
                    pending.add("note")
        elif t.kind == "nl":
            newlines += 1
            item_line, line_ids = False, 0
            if cur is not None:
                pending.add("nl")
                line_start_len = len(cur.ids)
        elif t.kind in _JOINERS:
            if t.kind == "item" and line_ids == 0:
                item_line = True
            if cur is not None:
                pending.add(t.kind)
        else:
            if cur is not None:
                if t.kind == "end":
                    cur.before_end = True
                elif t.kind == "other" and "nl" in cur.joins and 0 < line_start_len < len(cur.ids) \
                        and newlines == 0:
                    # the ids on this line start an echoed passage, not the run
                    tail = cur.take(line_start_len)
                    runs.append(cur.take(0, line_start_len))
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
        _expand_ranges(r)
    if num_candidates is not None:  # bare numbers mostly above the window are prose (years, doses)
        runs = [r for r in runs if not r.all_bare or sum(i > num_candidates for i in r.ids) * 2 <= len(r.ids)]
    return runs


def _strong(r: _Run, alone: bool) -> bool:
    """A run a reader takes as an answer, not as ids mentioned in passing."""
    if len(r.ids) >= 2 and r.joins & _ORDER_JOINS:
        return True
    if r.size >= 3 and "dash" in r.joins and (not r.all_bare or r.line_whole or r.label_before):
        return True  # "[4]-[2]-[1]-[3]", "Ranking: 4-2-1-3"
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
    rule: str  # one of RULES
    parts: int = 1
    excluded: tuple[int, ...] = ()  # ids the text names as irrelevant (ranked last, in the order named)
    ranges: int = 0  # "[1]-[3]" ranges expanded into their ids


RULES = (*ANSWER_RULES, "list_run", "line_items", "brackets", "bare_ids", "excluded_only", "none")


def _pick(runs: list[_Run], n: int | None) -> tuple[list[_Run], _Run] | None:
    """(the runs read, the main one) of the answer among ``runs``: the last nearly-longest one, joined with
    its disjoint standalone parts."""
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
    return [runs[k] for k in chosen], runs[best]


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


@dataclass
class _Region:
    ids: list[int]
    rule: str
    parts: int = 1
    excluded: list[int] = field(default_factory=list)
    ranges: int = 0


def _read_region(text: str, n: int | None, *, whole_region: bool) -> _Region:
    """What one region of (folded) text states: ids, rule, parts, excluded ids, ranges expanded."""
    # JSON or a Markdown table is the answer unless an answer run follows it
    found = [x for x in (read_json(text, lambda s: _read_region(s, n, whole_region=True).ids), read_table(text))
             if x is not None]
    if found:
        data = max(found, key=lambda x: x.end)
        after = _read_region(text[data.end:], n, whole_region=False)
        if after.ids and after.rule in ANSWER_RULES:
            return after
        return _Region(data.ids, data.rule)
    text = _noted_items(_inline_items(mask_reasoning(text)))
    toks = tokens(text)
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
        chosen, main = picked
        rule = "merged_parts" if len(chosen) > 1 else "reversed_run" if main.reversed else "answer_run"
        return _Region([i for r in chosen for i in r.ordered], rule, len(chosen), excluded,
                       sum(r.ranges for r in chosen))
    prose = read_prose(text, toks)
    if prose:  # "[2] is the most relevant, followed by [4], then [1]; [3] is the least"
        ordered, least = prose
        if n is not None and len(set(ordered) | set(least)) >= n:
            return _Region(ordered + least, "prose_order", 1, excluded)
        return _Region(ordered, "prose_order", 1, [*least, *(i for i in excluded if i not in least)])
    weak = [r for r in runs if len(r.ids) >= 2 and not r.all_bare]
    picked = _pick(weak, n)
    if picked:
        return _Region(picked[1].ordered, "list_run", 1, excluded, picked[1].ranges)
    # a [Start] opening a line (not one wrapping an echoed passage "[6] [Start] text [End]")
    starts = [k for k, t in enumerate(toks) if t.kind == "start" and (k == 0 or toks[k - 1].kind != "id")]
    block = toks[starts[-1] + 1:] if starts else []
    block_end = next((k for k, t in enumerate(block) if t.kind == "end"), None)
    if block_end is not None and not any(t.kind == "id" and not t.bare for t in block[:block_end]):
        return _Region([], "none", 1, excluded)  # "[Start] None of the passages are relevant [End]"
    for scope in ((block[:block_end] if block_end is not None else block), toks):
        items = [t.value for k, t in enumerate(scope) if t.kind == "id" and not t.bare
                 and (k == 0 or scope[k - 1].kind in ("nl", "item", "start"))]
        if items:
            return _Region(items, "line_items", 1, excluded)
    brackets = [t.value for t in toks if t.kind == "id" and not t.bare]
    if brackets:
        return _Region(brackets, "brackets", 1, excluded)
    if whole_region:
        bare = [t.value for t in toks if t.kind == "id"]
        if bare:
            return _Region(bare, "bare_ids", 1, excluded)
    if excluded:
        return _Region([], "excluded_only", 1, excluded)
    return _Region([], "none", 1, excluded)


def _segments(text: str) -> list[tuple[str, str]]:
    """Regions an explicit marker says hold the final ranking, most trusted first."""
    out = [(text[m.end():], "marker") for m in reversed(list(_FINAL_RE.finditer(text)))]
    cut = text.rfind(_THINK_END)
    if cut >= 0:
        out.append((text[cut + len(_THINK_END):], "think"))
    return out


def _reading(reg: _Region, source: str) -> Reading:
    return Reading(reg.ids, source, reg.rule, reg.parts, tuple(i for i in reg.excluded if i not in reg.ids),
                   reg.ranges)


def read_ranking(text: str, *, cot: bool = False, num_candidates: int | None = None) -> Reading:
    """Where the final ranking of ``text`` is, and its raw ids (before repair)."""
    text = fold(text)
    first: Reading | None = None
    for segment, source in _segments(text):
        reading = _reading(_read_region(segment, num_candidates, whole_region=True), source)
        if reading.ids and reading.rule in ANSWER_RULES:
            return reading
        if first is None:
            first = reading
    if first is not None and (first.ids or cot):
        return first
    if cot:
        return Reading([], "none", "none")
    reg = _read_region(text, num_candidates, whole_region=False)
    source = {"line_items": "brackets", "brackets": "brackets", "none": "none", "excluded_only": "none"}.get(
        reg.rule, "run")
    return _reading(reg, source)


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
    if reading.ranges:
        repairs["expanded_range"] += reading.ranges
    return ParsedRanking(order=order, repairs=dict(repairs), source=reading.source, rule=reading.rule)


_ANY_INT = re.compile(r"\d+")
_DASH = re.compile(r"\d\s*\]?\s*[-–—]")


def _has_range(text: str) -> bool:
    """Whether ``text`` may hold a range (``[1]-[3]``), whose inner ids are not written out."""
    return _DASH.search(text) is not None


def is_complete_ranking(text: str, num_candidates: int, *, base: int = 0, cot: bool = False) -> bool:
    """True once ``text`` holds an answer run naming every candidate (used to stop generation early).

    Ids listed in prose ("passages [1], [2] and [3] all mention it") are no answer yet.

    Called on every decode step, so a cheap check (are all ids present as numbers at all?) runs first and
    the full reading only once it passes.
    """
    wanted = set(range(base, base + num_candidates))
    if not wanted.issubset(int(x) for x in _ANY_INT.findall(text)) and not _has_range(text):
        return False
    reading = read_ranking(text, cot=cot, num_candidates=num_candidates)
    return reading.rule in ANSWER_RULES and wanted.issubset(reading.ids)
