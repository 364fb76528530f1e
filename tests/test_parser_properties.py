"""Property tests: any permutation written in any supported style parses back exactly, with no repair
(a range style counts only its ``expanded_range`` repairs)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep.ranking import REPAIR_KINDS, format_ranking, format_target, is_complete_ranking, parse_ranking


def _chunks(ids: list[str], sizes: list[int]) -> list[list[str]]:
    out, k = [], 0
    for s in sizes:
        if k >= len(ids):
            break
        out.append(ids[k : k + s])
        k += s
    if k < len(ids):
        out.append(ids[k:])
    return out


def write(order: list[int], base: int, style: str, sizes: list[int]) -> str:
    """``order`` (0-based) as a model would write it in ``style``."""
    ids = [str(i + base) for i in order]
    if style == "brackets":
        return " > ".join(f"[{i}]" for i in ids)
    if style == "comma":
        return ", ".join(ids)
    if style == "space":
        return " ".join(ids)
    if style == "passage":
        return " > ".join(f"Passage {i}" for i in ids)
    if style == "numbered":
        return "\n".join(f"{k}. Passage {i}" for k, i in enumerate(ids, 1))
    if style == "numbered_brackets":
        return "\n".join(f"{k}. [{i}]" for k, i in enumerate(ids, 1))
    if style == "bullets":
        return "\n".join(f"- [{i}]" for i in ids)
    if style == "multiline":  # one block over several lines, no ">" between the lines
        return "\n".join(" > ".join(f"[{i}]" for i in part) for part in _chunks(ids, sizes))
    if style == "start_end":
        return "[Start] " + " > ".join(f"[{i}]" for i in ids) + " [End]"
    return _write_new(ids, style, sizes)


def _scrambled(items: list, sizes: list[int]) -> list:
    """``items`` in another order drawn from ``sizes`` (rows or array items written out of rank order)."""
    out = list(items)
    for k, s in enumerate(sizes):
        a, b = s % len(out), (s * 7 + k) % len(out)
        out[a], out[b] = out[b], out[a]
    return out


_FW = {ord(c): chr(ord(c) + 0xFEE0) for c in "0123456789[]>"}


def _write_new(ids: list[str], style: str, sizes: list[int]) -> str:
    """The families added in issue 20 (docs/parser.md)."""
    n = len(ids)
    if style == "json_object":
        return json.dumps({"reasoning": f"Passage [{ids[-1]}] cites 1999 and {n} studies; [1] > [2] first.",
                           "ranking": [int(i) for i in ids]}, indent=2)
    if style == "json_fenced_strings":
        return "```json\n" + json.dumps({"ranked_passages": [f"[{i}]" for i in ids]}) + "\n```"
    if style == "json_scored":  # items out of order, each with its score: the scores order them
        items = [{"id": int(i), "score": round(1 - k / (n + 1), 3)} for k, i in enumerate(ids)]
        return "```json\n" + json.dumps(_scrambled(items, sizes)) + "\n```"
    if style == "table":
        rows = [f"| {k} | {i} | mentions {k + 1990} |" for k, i in enumerate(ids, 1)]
        return "| Rank | Passage | Reason |\n|---|---|---|\n" + "\n".join(_scrambled(rows, sizes))
    if style == "fullwidth":
        return " > ".join(f"[{i}]" for i in ids).translate(_FW)
    if style == "doc_words":
        return " > ".join(f"doc{i}" for i in ids)
    if style == "cjk":
        return " > ".join(f"第{i}段" for i in ids)
    if style == "hyphen":
        return "Ranking: " + "-".join(ids)
    if style == "tight_comma":
        return ",".join(ids)
    if style == "mixed":
        return " > ".join(f"[{i}]" if k % 2 == 0 else i for k, i in enumerate(ids))
    if style == "ascending":
        return "From least to most relevant: " + " < ".join(f"[{i}]" for i in reversed(ids))
    if style == "prose":
        words = ["followed by", "then", "next"]
        out = f"[{ids[0]}] is the most relevant"
        for k, i in enumerate(ids[1:-1]):
            out += f", {words[k % 3]} [{i}]"
        return out + f", and finally [{ids[-1]}]." if n > 1 else out + "."
    if style == "bullets_note":
        return "\n".join([f"- [{ids[0]}] — the only one naming the year", *(f"- [{i}]" for i in ids[1:])])
    if style == "bullets_word_note":  # words right after the first id, no dash: a note in a list of bare ids
        return "\n".join([f"- [{ids[0]}] the only one naming the year", *(f"- [{i}]" for i in ids[1:])])
    if style == "bullets_inline":  # the same list on one line
        return f"- [{ids[0]}] — the only one naming the year" + "".join(f" - [{i}]" for i in ids[1:])
    if style == "range":
        return " > ".join(f"[{a}]-[{b}]" if a != b else f"[{a}]" for a, b in _stretches([int(i) for i in ids]))
    raise ValueError(style)


def _stretches(ids: list[int]) -> list[tuple[int, int]]:
    """Ascending runs of consecutive ids of length >= 3 as (first, last); other ids as (i, i)."""
    out, k = [], 0
    while k < len(ids):
        j = k
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        if j - k >= 2:
            out.append((ids[k], ids[j]))
        else:
            out.extend((i, i) for i in ids[k : j + 1])
        k = j + 1
    return out


def expected_repairs(order: list[int], base: int, style: str) -> dict[str, int]:
    if style != "range":
        return {}
    ranges = sum(a != b for a, b in _stretches([i + base for i in order]))
    return {"expanded_range": ranges} if ranges else {}


OLD_STYLES = ["brackets", "comma", "space", "passage", "numbered", "numbered_brackets", "bullets", "multiline",
              "start_end"]
NEW_STYLES = ["json_object", "json_fenced_strings", "json_scored", "table", "fullwidth", "doc_words", "cjk", "hyphen",
              "tight_comma", "mixed", "ascending", "prose", "bullets_note", "bullets_word_note", "bullets_inline",
              "range"]
STYLES = OLD_STYLES + NEW_STYLES
# chains of bare numbers need three ids ("2-1" is a range in prose); a prose order and a list need two
MIN_N = {"hyphen": 3, "tight_comma": 3, "prose": 2, "bullets_note": 2, "bullets_word_note": 3, "bullets_inline": 3}
MARKERS = ["### Final Reranking:", "## Final Reranking:", "# Final Reranking:", "**Final Reranking:**",
           "**Final Ranking**:", "Final Reranking:", "Final Ranking:", "Final Answer:", "### Final Answer:",
           "**Final Answer:**"]


@st.composite
def rankings(draw, styles: list[str] = STYLES):
    style = draw(st.sampled_from(styles))
    n = draw(st.integers(MIN_N.get(style, 1), 30))
    order = draw(st.permutations(list(range(n))))
    base = draw(st.sampled_from([0, 1]))
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=6))
    return n, list(order), base, style, sizes


@st.composite
def reasoning(draw, n: int, base: int):
    """Prose full of digits: years, counts, decimals, and single passage mentions (never a second ranking)."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(base, base + n - 1))
        year = draw(st.integers(1800, 2030))
        kind = draw(st.integers(0, 3))
        parts.append([f"Passage [{i}] mentions {year} and {draw(st.integers(2, 99))} events.",
                      f"About {draw(st.integers(2, 60))}% of the passages cite {year}; {i} of them repeat it.",
                      f"Document {i} scores 0.{draw(st.integers(10, 99))} on the {draw(st.integers(2, 9))} criteria.",
                      f"Between {year} and {year + 5} only passage [{i}] is on topic."][kind])
    return " ".join(parts)


@settings(max_examples=150, deadline=None)
@given(rankings())
def test_any_style_parses_back_exactly(case):
    n, order, base, style, sizes = case
    text = write(order, base, style, sizes)
    r = parse_ranking(text, n, base=base)
    assert r.order == order and r.repairs == expected_repairs(order, base, style), (text, r)
    assert is_complete_ranking(text, n, base=base)


@settings(max_examples=150, deadline=None)
@given(rankings(NEW_STYLES))
def test_any_new_family_parses_back_exactly(case):
    """The issue-20 families on their own, so each gets examples whatever the draw above."""
    n, order, base, style, sizes = case
    text = write(order, base, style, sizes)
    r = parse_ranking(text, n, base=base)
    assert r.order == order and r.repairs == expected_repairs(order, base, style), (text, r)
    assert is_complete_ranking(text, n, base=base)


@settings(max_examples=150, deadline=None)
@given(rankings(), st.sampled_from(MARKERS), st.booleans(), st.data())
def test_any_style_under_any_final_marker_after_reasoning_with_digits(case, marker, newline, data):
    n, order, base, style, sizes = case
    prose = data.draw(reasoning(n, base))
    text = f"{prose}\n{marker}{chr(10) if newline else ' '}{write(order, base, style, sizes)}"
    for cot in (False, True):
        r = parse_ranking(text, n, base=base, cot=cot)
        assert r.order == order and r.repairs == expected_repairs(order, base, style) and r.source == "marker", (text, r)
        assert is_complete_ranking(text, n, base=base, cot=cot)


@settings(max_examples=100, deadline=None)
@given(rankings(), st.data())
def test_any_style_after_think_tags_or_plain_reasoning(case, data):
    n, order, base, style, sizes = case
    prose = data.draw(reasoning(n, base))
    answer = write(order, base, style, sizes)
    think = f"<think>\n{prose}\n</think>\n{answer}"
    for cot in (False, True):
        r = parse_ranking(think, n, base=base, cot=cot)
        assert r.order == order and r.repairs == expected_repairs(order, base, style) and r.source == "think", (think, r)
    if n >= 2:  # no marker at all: the answer is the ranking after the prose, not the prose's digits
        plain = f"{prose}\n\n{answer}"
        r = parse_ranking(plain, n, base=base)
        assert r.order == order and r.repairs == expected_repairs(order, base, style), (plain, r)


@settings(max_examples=100, deadline=None)
@given(rankings(), st.data())
def test_training_targets_parse_back(case, data):
    """format_target (every spec's completion) and parse_ranking are inverse on any permutation."""
    n, order, base, _, _ = case
    prose = data.draw(reasoning(n, base))
    for cot, final_marker in ((False, False), (True, False), (True, True)):
        target = format_target(order, base=base, reasoning=prose, cot=cot, final_marker=final_marker)
        r = parse_ranking(target, n, base=base, cot=cot)
        assert r.order == order and r.repairs == {}, (target, r)
    assert parse_ranking(format_ranking(order, base=base), n, base=base).order == order


_NOISE = st.text(alphabet=st.sampled_from(list("[]()<>=,;:.*-#_ \n0123456789abcStartEndFinal")), max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.one_of(_NOISE, st.text(max_size=200)), st.integers(0, 30), st.sampled_from([0, 1]), st.booleans())
def test_any_text_gives_a_permutation_and_known_repair_kinds(text, n, base, cot):
    r = parse_ranking(text, n, base=base, cot=cot)
    assert sorted(r.order) == list(range(n))
    assert set(r.repairs) <= set(REPAIR_KINDS) and all(v > 0 for v in r.repairs.values())
    assert is_complete_ranking(text, n, base=base, cot=cot) in (True, False)
