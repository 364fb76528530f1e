"""The answer families a careful reader reads differently from "the last [a] > [b] run" (docs/parser.md).

Examples are written for these tests (1-based ids unless said otherwise); the real responses are in
tests/data/parser_reference.jsonl (tests/test_parser_reference.py). ``MODEL_CASES`` holds answers written the
way today's models answer a listwise prompt (JSON, tables, full-width text, prose, ...), with what a careful
reader takes from each; the agreement figures on it are in docs/parser.md.
"""

from __future__ import annotations

import re

import pytest

from data_prep.ranking import REPAIR_KINDS, extract_ids, is_complete_ranking, parse_ranking, repair_ids


def ids(text: str, n: int, **kw) -> list[int]:
    """The parsed order shown as 1-based ids."""
    return [i + 1 for i in parse_ranking(text, n, base=1, **kw).order]


# ---------------------------------------------------------------- a note inside the run does not split it

@pytest.mark.parametrize("text", [
    "[7] (best match) > [2] > [9] > [1] > [3] > [4] > [5] > [6] > [8] > [10]",
    "[7] > [2] (close second) > [9] > [1] > [3] > [4] > [5] > [6] > [8] > [10]",
    "[7]* > [2] > [9] > [1] > [3] > [4] > [5] > [6] > [8] > [10]\n\n* the only passage naming the year",
    "[7]† > [2] > [9]¹ > [1] > [3] > [4] > [5] > [6] > [8] > [10]",
    "**[7]** > **[2]** > [9] > [1] > [3] > [4] > [5] > [6] > [8] > [10]",
])
def test_a_note_after_an_id_keeps_the_top_pick_on_top(text):
    r = parse_ranking(text, 10, base=1)
    assert [i + 1 for i in r.order] == [7, 2, 9, 1, 3, 4, 5, 6, 8, 10]
    assert r.repairs == {} and r.rule == "answer_run"


@pytest.mark.parametrize("text", [
    "- [4] — the only one naming the year - [2] - [1] - [3]",
    "• [4]: names the year • [2] • [1] • [3]",
    "* [4] — best match * [2] * [1] * [3]",
    "1. [4] — names the year 2. [2] 3. [1] 4. [3]",
    "1) [4]: names the year 2) [2] 3) [1] 4) [3]",
    "Ranking: - [4] (covers it) - [2] - [1] - [3]",
    "- Passage 4 — names the year - Passage 2 - Passage 1 - Passage 3",
    "1. Passage 4 — names the year 2. Passage 2 3. Passage 1 4. Passage 3",
    "Here is the order. - [4] — best - [2] - [1] - [3]",
    "Top pick: * [4] clearly. Full order: - [4] — best - [2] - [1] - [3]",  # the first opener has no list
])
def test_a_list_written_on_one_line_is_read_as_its_items(text):
    """The note after the first item ends where the next item starts, as on separate lines."""
    r = parse_ranking(text, 4, base=1)
    assert [i + 1 for i in r.order] == [4, 2, 1, 3] and r.repairs == {} and r.rule == "answer_run", r


@pytest.mark.parametrize("text", [
    "* [4] the best one\n* [2]\n* [1]\n* [3]",
    "1. [4] best one\n2. [2]\n3. [1]\n4. [3]",
    "- [4]\n- [2]\n- [1] weakest match\n- [3]",
    "- [4] better than [1]\n- [2]\n- [1]\n- [3]",  # an id inside the note is not read
    "* [4] the best one * [2] * [1] * [3]",  # on one line
    "[Start]\n- [4] best\n- [2]\n- [1]\n- [3] weak [End]",
])
def test_words_after_an_item_id_in_a_list_of_bare_ids_are_a_note(text):
    r = parse_ranking(text, 4, base=1)
    assert [i + 1 for i in r.order] == [4, 2, 1, 3] and r.repairs == {} and r.rule == "answer_run", r


@pytest.mark.parametrize(("text", "n", "order"), [
    ("1. [4] > [2]\n2. [1]\n3. [3]", 4, [4, 2, 1, 3]),
    ("- [4], [5]\n- [2]\n- [1]\n- [3]", 5, [4, 5, 2, 1, 3]),
    ("- [4], [5]\n- [2] a close second\n- [1]\n- [3]", 5, [4, 5, 2, 1, 3]),  # the note below it still is one
])
def test_an_item_whose_run_goes_on_after_its_id_is_not_a_note(text, n, order):
    assert ids(text, n) == order


@pytest.mark.parametrize(("text", "rule", "repairs"), [
    # every item goes on with words: an echo of the passages, read as list items and flagged
    ("1. [4] best one\n2. [2] good\n3. [1] weak\n4. [3] off topic", "line_items", {"no_final_run": 1}),
    # an analysis after the answer whose items mostly go on with words never replaces the answer
    ("[4] > [2] > [1] > [3]\n\nWhy:\n- [1] discusses X\n- [2] covers Y\n- [3]\n- [4] names it", "answer_run", {}),
])
def test_a_list_whose_items_mostly_go_on_with_words_keeps_them(text, rule, repairs):
    r = parse_ranking(text, 4, base=1)
    assert [i + 1 for i in r.order] == [4, 2, 1, 3] and r.rule == rule and r.repairs == repairs


def test_noted_items_blanks_only_the_notes_of_each_list_keeping_every_offset():
    from data_prep.ranking.parse import _noted_items

    text = "- [4] best\n- [2]\n- [1]\n- [3] weak [End]\n\nRest:\n1. [5] close\n2. [6]\n3. [7]\n\n- [8] a b\n- [9] c\n- [1]"
    assert _noted_items(text) == (  # the last list goes on with words in most items: left as it is
        "- [4]     \n- [2]\n- [1]\n- [3]      [End]\n\nRest:\n1. [5]      \n2. [6]\n3. [7]\n\n- [8] a b\n- [9] c\n- [1]")


def test_each_line_of_a_list_written_on_two_lines_is_split():
    r = parse_ranking("- [4] — names the year - [2] - [1]\n- [3] — older - [5] - [6] - [7]", 7, base=1)
    assert [i + 1 for i in r.order] == [4, 2, 1, 3, 5, 6, 7] and r.repairs == {}


@pytest.mark.parametrize(("text", "order", "rule"), [
    ("1. [4] covers 1990 - 2000 3. [2] 4. [3]", [4, 1, 2, 3], "line_items"),  # numbers out of sequence
    ("- [4] — covers ages 5 - [2] and up", [4, 1, 2, 3], "line_items"),  # the bullet comes back once: a note
    ("Order: - [4] — covers ages 5 - [2] and up", [4, 2, 1, 3], "brackets"),  # the opener is not a recurrence
])
def test_a_marker_that_does_not_recur_in_order_is_no_inline_list(text, order, rule):
    r = parse_ranking(text, 4, base=1)
    assert [i + 1 for i in r.order] == order and r.rule == rule


def test_a_tie_note_inside_the_run():
    assert ids("[5] > [4] (tie) > [1] > [2] > [3]", 5) == [5, 4, 1, 2, 3]


@pytest.mark.parametrize("text", [
    "[3] (0.92) > [1] (0.80) > [2] (0.10)",
    "[3]: 0.92 > [1]: 0.80 > [2]: 0.10",
    "[3] (score: 9) > [1] (score: 7) > [2] (score: 2)",
])
def test_scores_after_ids_are_not_ids(text):
    r = parse_ranking(text, 3, base=1)
    assert [i + 1 for i in r.order] == [3, 1, 2] and r.ok


# ------------------------------------------- an explanation after the answer does not replace the answer

@pytest.mark.parametrize("tail", [
    "I ranked [6] > [3] because [6] names the date.",
    "Note that [2] > [5] > [1] is debatable.",
    "[6] > [3]: both mention the treaty, only [6] the year.",
])
def test_a_short_comparison_after_the_answer_is_not_the_answer(tail):
    text = f"[Start] [4] > [6] > [3] > [1] > [2] > [5] [End]\n\n{tail}"
    r = parse_ranking(text, 6, base=1)
    assert [i + 1 for i in r.order] == [4, 6, 3, 1, 2, 5] and r.ok


def test_a_later_complete_correction_still_wins():
    text = "[1] > [2] > [3] > [4]\nWait, [2] is better than [1]. Corrected: [2] > [1] > [3] > [4]"
    assert ids(text, 4) == [2, 1, 3, 4]


def test_a_nearly_complete_later_run_wins_over_an_earlier_complete_one():
    text = "First pass: [1] > [2] > [3] > [4] > [5]\nOn reflection: [3] > [1] > [2] > [5]"
    r = parse_ranking(text, 5, base=1)
    assert [i + 1 for i in r.order] == [3, 1, 2, 5, 4] and r.repairs == {"missing": 1}


# --------------------------------------------------------------------- bare numbers and "Passage i"

@pytest.mark.parametrize("text", [
    "4, 2, 7, 1, 3, 5, 6",
    "4 2 7 1 3 5 6",
    "Ranking: 4, 2, 7, 1, 3, 5, 6.",
    "4 > 2 > 7 > 1 > 3 > 5 > 6",
    "Passage 4 > Passage 2 > Passage 7 > Passage 1 > Passage 3 > Passage 5 > Passage 6",
    "passage [4] > passage [2] > passage [7] > passage [1] > passage [3] > passage [5] > passage [6]",
    "1. Passage 4\n2. Passage 2\n3. Passage 7\n4. Passage 1\n5. Passage 3\n6. Passage 5\n7. Passage 6",
    "1. [4]\n2. [2]\n3. [7]\n4. [1]\n5. [3]\n6. [5]\n7. [6]",
    "- [4]\n- [2]\n- [7]\n- [1]\n- [3]\n- [5]\n- [6]",
])
def test_number_lists_and_passage_ids(text):
    r = parse_ranking(text, 7, base=1)
    assert [i + 1 for i in r.order] == [4, 2, 7, 1, 3, 5, 6] and r.ok, r


def test_a_numbered_list_of_echoed_passages_reads_the_ids_not_the_ranks():
    text = ("Here is the ranking:\n1. [3] The treaty was signed in 1648.\n2. [1] It ended the war.\n"
            "3. [2] Unrelated text about 30 years.")
    r = parse_ranking(text, 3, base=1)
    assert [i + 1 for i in r.order] == [3, 1, 2]
    assert r.rule == "line_items" and r.repairs == {"no_final_run": 1}


def test_numbers_in_prose_are_not_a_bare_list():
    text = "Between 1990 and 2005, 3 of the 20 studies agree.\n\n2, 1, 3"
    assert ids(text, 3) == [2, 1, 3]
    assert parse_ranking("In 1956 and 1970 it rained 12 days.", 3, base=1).repairs["unparseable"] == 1


# ------------------------------------------------------------------- a ranking given in several parts

def test_parts_in_separate_blocks_are_joined_and_counted():
    text = ("[Start] [5] > [8] [End]\nThese two answer the question directly. The rest:\n"
            "[Start] [1] > [2] > [3] > [4] > [6] > [7] [End]")
    r = parse_ranking(text, 8, base=1)
    assert [i + 1 for i in r.order] == [5, 8, 1, 2, 3, 4, 6, 7]
    assert r.repairs == {"merged_parts": 1} and r.rule == "merged_parts"


def test_three_tiers_are_joined_but_a_restatement_is_not():
    tiers = ("Most relevant:\n[Start] [4] > [2] [End]\nThen:\n[Start] [6] > [1] [End]\nLast:\n"
             "[Start] [3] > [5] [End]\n")
    assert ids(tiers, 6) == [4, 2, 6, 1, 3, 5]
    restated = tiers + "Overall:\n[Start] [4] > [2] > [6] > [1] > [5] > [3] [End]"
    r = parse_ranking(restated, 6, base=1)
    assert [i + 1 for i in r.order] == [4, 2, 6, 1, 5, 3] and r.ok


def test_one_block_spread_over_lines_without_separators_between_them():
    text = "Here is the complete ranking:\n[Start]\n[4] > [5] > [1]\n[2] > [6]\n[3]\n[End]"
    r = parse_ranking(text, 6, base=1)
    assert [i + 1 for i in r.order] == [4, 5, 1, 2, 6, 3] and r.ok


def test_a_line_of_the_block_that_echoes_a_passage_is_not_part_of_it():
    text = "[4] > [5] > [1]\n[2] > [3]\n[6] The passage text follows here."
    assert ids(text, 6) == [4, 5, 1, 2, 3, 6]


# ----------------------------------------------------------- a one-id answer after reasoning that lists ids

@pytest.mark.parametrize("answer", ["[Start] [3] [End]", "Answer: [3]", "Ranking:\n[3]"])
def test_a_one_id_answer_after_reasoning_is_first(answer):
    text = f"Passages [2], [4] and [5] mention the topic; only one answers it.\n\n{answer}"
    r = parse_ranking(text, 5, base=1)
    assert r.order[0] == 2 and r.rule == "answer_run"
    assert r.repairs == {"missing": 4}


# -------------------------------------------------------------------- final-marker variants (cot)

@pytest.mark.parametrize("marker", [
    "### Final Reranking:", "## Final Reranking:", "#### Final Reranking:", "**Final Reranking:**",
    "**Final Reranking**:", "Final Reranking:", "### Final Ranking:", "Final Ranking:", "Final Answer:",
    "**Final Answer:**", "### Final Re-ranking:", "final ranking:",
])
def test_final_marker_variants_are_read_in_cot_mode(marker):
    text = f"Passage [1] > [0] on dates; [3] cites 1999.\n{marker} [2] > [0] > [1] > [3]"
    r = parse_ranking(text, 4, cot=True)
    assert r.order == [2, 0, 1, 3] and r.ok and r.source == "marker"


def test_the_marker_on_its_own_line_with_the_ranking_below():
    text = "Reasoning about [1] and [0].\n\n### Final Ranking\n\n[2] > [0] > [1]"
    r = parse_ranking(text, 3, cot=True)
    assert r.order == [2, 0, 1] and r.ok


def test_final_ranking_in_prose_is_not_a_marker():
    """"the final ranking may vary" is a sentence, not a heading: cot mode still refuses it."""
    text = "[2] > [0] > [1]\nThe final ranking may vary with more context."
    assert parse_ranking(text, 3, cot=True).repairs["unparseable"] == 1
    assert parse_ranking(text, 3).order == [2, 0, 1]


# --------------------------------------------------------- exclusion lists, empty answers, echo lists

def test_ids_excluded_as_irrelevant_go_after_the_unnamed_ones():
    text = ("We can eliminate passages [1], [2], and [5] as they are not relevant.\n"
            "Remaining passages: [3], [4], [6].\nShall we proceed?")
    r = parse_ranking(text, 7, base=1)
    assert [i + 1 for i in r.order] == [3, 4, 6, 7, 1, 2, 5]
    assert r.repairs == {"missing": 1, "excluded_last": 3}


def test_an_exclusion_list_alone_is_not_the_ranking():
    text = "We can eliminate passages [1], [2] and [4] as they do not relate to the query."
    r = parse_ranking(text, 5, base=1)
    assert [i + 1 for i in r.order] == [3, 5, 1, 2, 4]
    assert r.rule == "excluded_only" and r.repairs == {"missing": 2, "excluded_last": 3}


@pytest.mark.parametrize("text", [
    "[1] Score: 0 - off topic.\n[2] Score: 0 - off topic.\n[Start] None of the passages are relevant. [End]",
    "[Start] [None of the provided passages are relevant to the query] [End]",
    "[Start] [End]",
])
def test_an_answer_that_names_no_passage_is_unparseable(text):
    r = parse_ranking(text, 3, base=1)
    assert r.order == [0, 1, 2] and r.repairs == {"missing": 3, "unparseable": 1} and r.rule == "none"


def test_echoed_passages_with_no_run_are_read_as_list_items_and_flagged():
    text = ("The following passages are relevant:\n\n[3] Text citing [9] and 1956.\n\n[1] 4) More text.\n\n"
            "Now, let's rank these passages.")
    r = parse_ranking(text, 10, base=1)
    assert [i + 1 for i in r.order[:2]] == [3, 1]
    assert r.rule == "line_items" and r.repairs == {"no_final_run": 1, "missing": 8}


def test_rank_prefixes_inside_a_block():
    text = "[Start]\n[Rank 1] [4] Text.\n[Rank 2] [2] More text.\n[End]"
    assert ids(text, 4)[:2] == [4, 2]


# -------------------------------------------------------------------------------- bookkeeping

def test_every_repair_kind_is_declared():
    seen = set()
    for text, n in [("[2] > [2] > [9]", 3), ("[Start] [1] [End] then [Start] [2] > [3] [End]", 4),
                    ("We can eliminate passages [1], [2] as not relevant.", 3), ("[3] text\n[1] text", 3),
                    ("nothing here", 2), ("[4] > [1]-[3]", 4)]:
        seen |= set(parse_ranking(text, n, base=1).repairs)
    assert seen == set(REPAIR_KINDS)


def test_extract_ids_and_is_complete_ranking_follow_the_same_rules():
    text = "[Start] [2] > [3] [End]\nthe rest: [Start] [1] > [4] [End]"
    assert extract_ids(text) == ([2, 3, 1, 4], "run")
    assert is_complete_ranking(text, 4, base=1)
    assert not is_complete_ranking("[Start] [2] > [3] [End]\nthe rest: [Start] [1] >", 4, base=1)
    assert not is_complete_ranking("Passages [1], [2], [3] and [4] all mention it, so", 4, base=1)


# ------------------------------------------------ answers as today's models write them (issue 20 families)

# (model, family, text, n, the ids the answer states in its order, the ids it calls least relevant); 1-based
MODEL_CASES = [
# ---------------------------------------------------------------- JSON
("GPT-4o", "json", '```json\n{\n  "ranking": [3, 1, 5, 2, 4]\n}\n```', 5, [3, 1, 5, 2, 4], []),
("GPT-4o", "json", '```json\n{\n  "reasoning": "Passage [2] cites the 2019 survey of 1,200 adults; [5] gives 3 of the 4 symptoms, so [5] > [2] on coverage while [1] only mentions 1998.",\n  "ranking": [5, 2, 1, 4, 3]\n}\n```', 5, [5, 2, 1, 4, 3], []),
("GPT-4o", "json", '{"ranked_passages": ["[4]", "[2]", "[6]", "[1]", "[3]", "[5]"]}', 6, [4, 2, 6, 1, 3, 5], []),
("GPT-4o", "json", 'Here is the ranking in the requested format:\n\n```json\n[\n  {"id": 3, "score": 0.94},\n  {"id": 1, "score": 0.81},\n  {"id": 4, "score": 0.47},\n  {"id": 2, "score": 0.12}\n]\n```', 4, [3, 1, 4, 2], []),
("Claude", "json", "Here's the ranking as a JSON array, most relevant first:\n\n```json\n[4, 2, 5, 1, 3]\n```\n\nPassage 4 is the only one that gives the 1969 date directly.", 5, [4, 2, 5, 1, 3], []),
("Claude", "json", '```json\n{\n  "analysis": {\n    "1": "Mentions the 2008 crisis but not the bank.",\n    "2": "Defines the term; 3 examples.",\n    "3": "Off topic."\n  },\n  "final_ranking": [2, 1, 3]\n}\n```', 3, [2, 1, 3], []),
("Llama-3.1-8B", "json", '{"passages": [{"passage": 1, "relevance": 3}, {"passage": 2, "relevance": 9}, {"passage": 3, "relevance": 6}, {"passage": 4, "relevance": 1}]}', 4, [2, 3, 1, 4], []),
("Llama-3.1-8B", "json", 'Here is the ranking:\n\n{"ranking": [2, 5, 3, 1, 4], "explanation": "Passage 2 answers the question about 1914; passages 1 and 4 are about 1939."}', 5, [2, 5, 3, 1, 4], []),
("Qwen3-8B", "json", '<think>\nOkay, the query asks about caffeine half-life. Passage 1 says 5 hours, passage 3 says 3 to 7 hours, passage 2 is about tea in 1750. So 3 > 1 > 2 maybe, and 4 mentions 200 mg.\n</think>\n\n```json\n{"ranking": ["[3]", "[1]", "[4]", "[2]"]}\n```', 4, [3, 1, 4, 2], []),
("DeepSeek-R1", "json", 'Alright, let me look at the 6 passages. [2] talks about 2 of the 3 criteria, [5] mentions 1987... I think [5] > [2] > [1].\n</think>\n\n```json\n{\n  "final_ranking": ["doc5", "doc2", "doc1", "doc6", "doc3", "doc4"]\n}\n```', 6, [5, 2, 1, 6, 3, 4], []),
("Mistral-7B", "json", '{\n  "rankings": [\n    {"rank": 1, "passage_id": "[3]"},\n    {"rank": 2, "passage_id": "[5]"},\n    {"rank": 3, "passage_id": "[1]"},\n    {"rank": 4, "passage_id": "[2]"},\n    {"rank": 5, "passage_id": "[4]"}\n  ]\n}', 5, [3, 5, 1, 2, 4], []),
("GPT-4o", "json", '```json\n{"result": {"order": [2, 4, 1, 3], "confidence": 0.8}}\n```', 4, [2, 4, 1, 3], []),
("Mistral-7B", "json", '[\n  {"rank": 3, "passage": 1},\n  {"rank": 1, "passage": 2},\n  {"rank": 2, "passage": 3}\n]', 3, [2, 3, 1], []),
("Llama-3.1-8B", "json", '{"reasoning": "Passage 3 has 4 facts and passage 1 has 2", "ranking": [3, 1, 4', 5, [3, 1, 4], []),
# ---------------------------------------------------------------- Markdown tables
("GPT-4o", "table", "| Rank | Passage | Reason |\n|------|---------|--------|\n| 1 | 3 | Gives the 1998 figure directly |\n| 2 | 1 | Mentions 2 of the 3 causes |\n| 3 | 5 | Background only |\n| 4 | 2 | Off topic |\n| 5 | 4 | Off topic |", 5, [3, 1, 5, 2, 4], []),
("Claude", "table", "Here's how I'd rank them:\n\n| Rank | Passage | Relevance |\n|:---:|:---:|---|\n| 1 | [4] | High: defines the term |\n| 2 | [2] | Medium |\n| 3 | [1] | Low |\n| 4 | [3] | None |\n\nPassage [4] is the only one with a definition.", 4, [4, 2, 1, 3], []),
("GPT-4o", "table", "| Passage | Rank |\n|---|---|\n| 1 | 3 |\n| 2 | 1 |\n| 3 | 2 |", 3, [2, 3, 1], []),
("Llama-3.1-8B", "table", "| Passage ID | Relevance Score |\n| --- | --- |\n| 1 | 2 |\n| 2 | 8 |\n| 3 | 5 |\n| 4 | 9 |", 4, [4, 2, 3, 1], []),
("Qwen3-8B", "table", "<think>\nPassage 2 covers 3 aspects, 1 covers 2.\n</think>\n\n| 排名 | 段落 |\n|---|---|\n| 1 | 2 |\n| 2 | 1 |\n| 3 | 3 |", 3, [2, 1, 3], []),
("Mistral-7B", "table", "| # | Document | Why |\n|---|---|---|\n| 1 | Document 5 | exact match |\n| 2 | Document 1 | partial |\n| 3 | Document 2 | partial |\n| 4 | Document 4 | no |\n| 5 | Document 3 | no |", 5, [5, 1, 2, 4, 3], []),
# ---------------------------------------------------------------- full-width, id words
("Qwen3-8B", "fullwidth", "<think>\n用户想知道……段落3提到了2010年。\n</think>\n\n［３］＞［１］＞［４］＞［２］", 4, [3, 1, 4, 2], []),
("Qwen3-8B", "fullwidth", "排序结果：３ ＞ ５ ＞ １ ＞ ２ ＞ ４", 5, [3, 5, 1, 2, 4], []),
("Qwen3-8B", "fullwidth", "【3】>【1】>【2】", 3, [3, 1, 2], []),
("Qwen3-8B", "idwords", "根据相关性，排序如下：第3段 > 第1段 > 第4段 > 第2段", 4, [3, 1, 4, 2], []),
("DeepSeek-R1", "idwords", "<think>\n文档2讨论了1990年的数据，文档4……\n</think>\n文档4 > 文档2 > 文档1 > 文档3", 4, [4, 2, 1, 3], []),
("GPT-4o", "idwords", "doc3 > doc1 > doc5 > doc2 > doc4", 5, [3, 1, 5, 2, 4], []),
("Llama-3.1-8B", "idwords", "Ranking: [doc2] > [doc4] > [doc1] > [doc3]", 4, [2, 4, 1, 3], []),
("Mistral-7B", "idwords", "Document 3 > Document 1 > Document 4 > Document 2", 4, [3, 1, 4, 2], []),
("Claude", "idwords", "Final ranking: Passage 2 > Passage 5 > Passage 1 > Passage 3 > Passage 4", 5, [2, 5, 1, 3, 4], []),
("GPT-4o", "idwords", "[Passage 3] > [Passage 1] > [Passage 2]", 3, [3, 1, 2], []),
# ---------------------------------------------------------------- hyphens, commas, mixed
("Llama-3.1-8B", "joins", "The ranking is: 4-2-1-3-5", 5, [4, 2, 1, 3, 5], []),
("Llama-3.1-8B", "joins", "4-2-1-3", 4, [4, 2, 1, 3], []),
("Mistral-7B", "joins", "Ranking: 4,2,1,3,6,5", 6, [4, 2, 1, 3, 6, 5], []),
("Mistral-7B", "joins", "Based on relevance the order is:\n\n3 - 1 - 4 - 2", 4, [3, 1, 4, 2], []),
("RankZephyr", "joins", "[4] > [2] > 1 > [3] > 5", 5, [4, 2, 1, 3, 5], []),
("Llama-3.1-8B", "joins", "Ranking: [2] > 4 > [1] > 3", 4, [2, 4, 1, 3], []),
("GPT-4o", "joins", "**Ranking:** [3]-[1]-[4]-[2]", 4, [3, 1, 4, 2], []),
# ---------------------------------------------------------------- "<" chains
("GPT-4o", "lt", "From least to most relevant: [2] < [4] < [1] < [3]", 4, [3, 1, 4, 2], []),
("Llama-3.1-8B", "lt", "Least relevant first:\n5 < 2 < 4 < 1 < 3", 5, [3, 1, 4, 2, 5], []),
("Claude", "lt", "In ascending order of relevance: [1] < [3] = [5] < [2] < [4]", 5, [4, 2, 5, 3, 1], []),
# ---------------------------------------------------------------- prose orderings
("Claude", "prose", "Passage 3 is the most relevant, followed by Passage 1, then Passage 4, and finally Passage 2.", 4, [3, 1, 4, 2], []),
("GPT-4o", "prose", "The most relevant is [2], then [4] and [1], while [3] is the least relevant.", 4, [2, 4, 1, 3], []),
("GPT-4o", "prose", "The most relevant is [2], then [4] and [1], while [3] is the least.", 5, [2, 4, 1], [3]),
("Claude", "prose", "Looking at the query about the 1918 pandemic, [5] is the most relevant, followed by [2] and then [1]. [3] and [4] are the least relevant.", 5, [5, 2, 1, 3, 4], []),
("Llama-3.1-8B", "prose", "Based on the passages, Passage [3] is the most relevant, followed by Passage [1], Passage [2], and Passage [4].", 4, [3, 1, 2, 4], []),
("Mistral-7B", "prose", "Document 2 ranks highest, followed by Document 5, then Document 1. Document 3 comes last.", 5, [2, 5, 1], [3]),
("Qwen3-8B", "prose", "<think>\nThe query asks for 3 things. [4] has 2 of them, [1] has 1.\n</think>\n\nThe most relevant passage is [4], followed by [1], then [3], and lastly [2].", 4, [4, 1, 3, 2], []),
# ---------------------------------------------------------------- lists with a note on the first item
("Claude", "list_note", "Here's my ranking:\n\n- [4] — the only passage that gives the 1969 date\n- [2]\n- [1]\n- [3]", 4, [4, 2, 1, 3], []),
("GPT-4o", "list_note", "1. **[4]** - gives the 1998 figure\n2. **[2]**\n3. **[1]**\n4. **[3]**\n5. **[5]**", 5, [4, 2, 1, 3, 5], []),
("Mistral-7B", "list_note", "* Passage 4: the only one that names the treaty\n* Passage 2\n* Passage 1\n* Passage 3", 4, [4, 2, 1, 3], []),
("Llama-3.1-8B", "list_note", "Ranking:\n1. [3] - Directly answers the question\n2. [1] - Partially relevant\n3. [2] - Not relevant", 3, [3, 1, 2], []),
("GPT-4o", "list_note", "1. [2]: defines the term\n2. [5]\n3. [1]\n4. [4]: mentions 2 studies\n5. [3]", 5, [2, 5, 1, 4, 3], []),
# ---------------------------------------------------------------- ranges
("Llama-3.1-8B", "range", "[5] > [1]-[3] > [6] > [4]", 6, [5, 1, 2, 3, 6, 4], []),
("Mistral-7B", "range", "Ranking: [7] > [2] > [4]-[6] > [1] > [3]", 7, [7, 2, 4, 5, 6, 1, 3], []),
# ---------------------------------------------------------------- controls: families the parser already read
("RankZephyr", "control", "[4] > [2] > [1] > [3] > [5]", 5, [4, 2, 1, 3, 5], []),
("RankZephyr", "control", "[12] > [3] > [7] > [1] > [20] > [5] > [9] > [2] > [14] > [6] > [18] > [4] > [11] > [8] > [10] > [13] > [15] > [16] > [17] > [19]", 20, [12, 3, 7, 1, 20, 5, 9, 2, 14, 6, 18, 4, 11, 8, 10, 13, 15, 16, 17, 19], []),
("Qwen3-8B", "control", "<think>\nPassage [1] mentions 2021; [3] > [2] on recency. 4 passages total.\n</think>\n\n[3] > [1] > [4] > [2]", 4, [3, 1, 4, 2], []),
("DeepSeek-R1", "control", "Okay, [2] has 5 facts, [1] has 3, [3] only 1.\n</think>\n\n**Final Ranking:** [2] > [1] > [3]", 3, [2, 1, 3], []),
("GPT-4o", "control", "Here is the ranking:\n\n1. [3]\n2. [1]\n3. [2]\n4. [4]", 4, [3, 1, 2, 4], []),
("Claude", "control", "Based on relevance to the query, here is my ranking:\n\n[2] > [5] > [1] > [3] > [4]\n\nPassage [2] directly explains the mechanism, while [5] gives 3 examples.", 5, [2, 5, 1, 3, 4], []),
("Mistral-7B", "control", "Passage 4 > Passage 2 > Passage 1 > Passage 3", 4, [4, 2, 1, 3], []),
("Llama-3.1-8B", "control", "<answer>[2] > [3] > [1]</answer>", 3, [2, 3, 1], []),
# ---------------------------------------------------------------- structure in the reasoning, the answer after it
("GPT-4o", "json", 'Scores per passage:\n```json\n{"1": 0.2, "2": 0.9, "3": 0.5}\n```\nWeighing recency as well, the final order is [2] > [1] > [3].', 3, [2, 1, 3], []),
("Claude", "table", "| Passage | Mentions 1990? | Score |\n|---|---|---|\n| [1] | no | 2 |\n| [2] | yes | 7 |\n| [3] | yes | 9 |\n| [4] | no | 1 |\n\nRanking: [3] > [2] > [1] > [4]", 4, [3, 2, 1, 4], []),
("GPT-4o", "json", '{"thought": "At first [1] > [2] > [3], but [3] names the 2004 law.", "ranking": [3, 1, 2]}', 3, [3, 1, 2], []),
("DeepSeek-R1", "prose", "<think>\n[1] is the most relevant, followed by [2], then [3]? No: [3] names 1776.\n</think>\n\n[3] > [1] > [2]", 3, [3, 1, 2], []),
("Claude", "prose", "Passages [2] and [4] are the most relevant; [1] cites the 1990 study only in passing.\n\n[4] > [2] > [1] > [3]", 4, [4, 2, 1, 3], []),
("Llama-3.1-8B", "joins", "The flu lasts 3-7 days and 2-3 weeks for fatigue.\n\nRanking: [2] > [1] > [3]", 3, [2, 1, 3], []),
]


def _wanted(case) -> list[int]:
    _, _, _, n, expected, last = case
    return repair_ids(expected, n, base=1, last=last)[0]


def _all_digits(text: str, n: int) -> list[int]:
    """RankGPT's / rank_llm's reading: every digit run in the text, in order, deduped."""
    return repair_ids([int(x) for x in re.findall(r"\d+", text)], n, base=1)[0]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[f"{c[0]}-{c[1]}-{k}" for k, c in enumerate(MODEL_CASES)])
def test_model_answers_read_as_a_careful_reader_would(case):
    _, _, text, n, _, _ = case
    assert parse_ranking(text, n, base=1).order == _wanted(case), text


def test_agreement_on_the_model_answers():
    """Every family is read; an all-digits reader gets about half (the figures in docs/parser.md)."""
    ours = sum(parse_ranking(c[2], c[3], base=1).order == _wanted(c) for c in MODEL_CASES)
    digits = sum(_all_digits(c[2], c[3]) == _wanted(c) for c in MODEL_CASES)
    print(f"parser {ours}/{len(MODEL_CASES)}, all-digits reader {digits}/{len(MODEL_CASES)}")
    assert len(MODEL_CASES) >= 60 and len({c[1] for c in MODEL_CASES}) >= 10
    assert {c[0] for c in MODEL_CASES} >= {"Llama-3.1-8B", "Qwen3-8B", "DeepSeek-R1", "GPT-4o", "Claude",
                                           "Mistral-7B", "RankZephyr"}
    assert ours == len(MODEL_CASES) and digits < 0.6 * len(MODEL_CASES)


# ------------------------------------------------------------- the rule each family is read by, and counted

@pytest.mark.parametrize(("text", "n", "rule"), [
    ('{"ranking": [2, 1, 3]}', 3, "json"),
    ('[{"id": 1, "score": 0.1}, {"id": 2, "score": 0.9}, {"id": 3, "score": 0.5}]', 3, "json_scores"),
    ('{"1": 0.1, "2": 0.9, "3": 0.5}', 3, "json_scores"),
    ("| Rank | Passage |\n|---|---|\n| 1 | 2 |\n| 2 | 1 |\n| 3 | 3 |", 3, "table"),
    ("[2] < [1] < [3]", 3, "reversed_run"),
    ("[3] is the most relevant, followed by [1], then [2].", 3, "prose_order"),
    ("［２］＞［１］＞［３］", 3, "answer_run"),
])
def test_each_family_names_its_rule(text, n, rule):
    r = parse_ranking(text, n, base=1)
    assert r.rule == rule and r.ok, r


def test_json_scores_order_the_items_and_ranks_beat_scores():
    """An array in input order with scores is ordered by score (ties keep the written order); a rank field
    states the order outright."""
    scored = '[{"id": 1, "score": 0.5}, {"id": 2, "score": 0.9}, {"id": 3, "score": 0.5}, {"id": 4, "score": 0.7}]'
    assert ids(scored, 4) == [2, 4, 1, 3]
    ranked = '[{"id": 1, "rank": 2, "score": 0.9}, {"id": 2, "rank": 1, "score": 0.1}]'
    assert ids(ranked, 2) == [2, 1]
    unscored = '[{"id": 3, "why": "dates"}, {"id": 1, "why": "2 facts"}, {"id": 2}]'
    assert parse_ranking(unscored, 3, base=1).rule == "json" and ids(unscored, 3) == [3, 1, 2]


def test_a_json_reasoning_field_is_never_read():
    text = '{"reasoning": "[1] > [2] > [3] > [4] by date; 1999, 2004", "ranking": [4, 3]}'
    r = parse_ranking(text, 4, base=1)
    assert [i + 1 for i in r.order] == [4, 3, 1, 2] and r.repairs == {"missing": 2}
    # nothing but reasoning: no ranking is read from it (input order, flagged)
    assert parse_ranking('{"reasoning": "[3] > [1] > [2]"}', 3, base=1).rule == "none"


def test_a_bracketed_id_is_not_a_json_array_and_prose_lists_of_numbers_stay_prose():
    assert parse_ranking("[3] is best.\n[3] > [1] > [2]", 3, base=1).rule == "answer_run"
    r = parse_ranking("The flu lasts 3-7 days, 1,000,000 cases on 2019-05-01.", 3, base=1)
    assert r.rule == "none" and r.repairs["unparseable"] == 1


def test_a_text_answer_after_json_or_a_table_wins():
    for text in ('```json\n{"ranking": [1, 2, 3]}\n```\nOn reflection: [3] > [2] > [1]',
                 '{"ranking": [1, 2, 3]}\nOn reflection: [3] > [2] > [1]',  # not fenced
                 "{'ranking': [1, 2, 3]}\nOn reflection: [3] > [2] > [1]"):
        assert ids(text, 3) == [3, 2, 1] and parse_ranking(text, 3, base=1).rule == "answer_run", text
    r = parse_ranking("[3, 1]", 3, base=1)  # two bare numbers in brackets: an array
    assert [i + 1 for i in r.order] == [3, 1, 2] and r.rule == "json"


def test_a_score_only_text_answer_is_read_in_the_order_written_and_flagged():
    """Decision: a prose score list with no order is not sorted (what the number scores is not bound to the
    id by any structure); its ids are read as listed and flagged. JSON and table scores are sorted."""
    text = "[1] Relevance: 2/10 - off topic.\n[2] Relevance: 9/10 - defines it.\n[3] Relevance: 5/10 - partial."
    r = parse_ranking(text, 3, base=1)
    assert r.order == [0, 1, 2] and r.rule == "line_items" and r.repairs == {"no_final_run": 1}


def test_ranges_expand_only_where_a_reader_would():
    r = parse_ranking("[5] > [1]-[3] > [4]", 5, base=1)
    assert [i + 1 for i in r.order] == [5, 1, 2, 3, 4] and r.repairs == {"expanded_range": 1}
    assert ids("[1]-[3]", 3) == [1, 2, 3]  # a range alone
    for text in ("[4]-[2]-[1]-[3]", "[3]-[1] > [2] > [4]", "[1]-[3] > [2] > [4]"):  # separators, not ranges
        r = parse_ranking(text, 4, base=1)
        assert "expanded_range" not in r.repairs, text
    assert ids("[3]-[1] > [2] > [4]", 4) == [3, 1, 2, 4] and ids("[1]-[3] > [2] > [4]", 4) == [1, 3, 2, 4]
    assert is_complete_ranking("[5] > [1]-[3] > [4]", 5, base=1)


def test_mixed_runs_need_a_separator_after_the_bare_id():
    assert ids("[4] > 2 > [1] > 3", 4) == [4, 2, 1, 3]
    text = "[3] > 2 passages mention it; [1] does not.\n\n[2] > [3] > [1]"
    assert ids(text, 3) == [2, 3, 1]


def test_prose_needs_a_top_cue_and_a_sequence_and_stops_at_content_words():
    r = parse_ranking("Passages [2] and [4] are relevant; [1] cites 1990.", 4, base=1)
    assert r.rule != "prose_order"
    r = parse_ranking("[2] is the most relevant because it mentions [4], then [1] follows.", 4, base=1)
    assert r.rule != "prose_order"
    assert ids("[3] is the most relevant, then [1]; [2] and [4] are the least relevant.", 5)[:2] == [3, 1]
    assert ids("[3] is the most relevant, then [1]; [2] and [4] are the least relevant.", 5)[2:] == [5, 2, 4]


def test_fullwidth_folding_keeps_superscript_footnotes():
    assert ids("［７］¹ ＞ ［２］ ＞ ［９］", 9)[:3] == [7, 2, 9]
    assert ids("【2】、【1】、【3】", 3) == [2, 1, 3]


# --------------------------------------------------- edges that mutation testing found unguarded (docs/mutation.md)

def test_json_field_choice_strings_percent_scores_and_spaced_keys():
    assert ids('{"ranking": [1, 2, 3], "final_ranking": [3, 1, 2]}', 3) == [3, 1, 2]  # the final one wins
    assert ids('{"answer": [1, 2, 3], "final_answer": [3, 1, 2]}', 3) == [3, 1, 2]
    assert ids('{"ranking": ["[3] > [1] > [2]"]}', 3) == [3, 1, 2]  # a ranking string inside the array
    assert ids('{"ranking": "[2] > [3] > [1]"}', 3) == [2, 3, 1]
    assert ids('[{"id": 1, "score": "40%"}, {"id": 2, "score": "85%"}]', 2) == [2, 1]
    assert ids('[{"Passage ID": 1, "Relevance Score": 0.1}, {"Passage ID": 2, "Relevance Score": 0.9}]', 2) == [2, 1]
    r = parse_ranking('[{"id": 1, "rank": 2}, {"id": 2, "rank": 1}]', 2, base=1)
    assert [i + 1 for i in r.order] == [2, 1] and r.rule == "json"  # ordered by rank, not by a score
    assert parse_ranking('{"3": 0.9}', 3, base=1).rule != "json_scores"  # one score orders nothing
    table = "| Passage | Score |\n|---|---|\n| [1] | 40% |\n| [2] | 85% |\n| [3] | 60% |"
    assert ids(table, 3) == [2, 3, 1]


def test_bare_chains_need_distinct_small_numbers_and_stay_bare():
    assert parse_ranking("It reached 1,250,300 people.", 3, base=1).rule == "none"  # thousands, not ids
    assert parse_ranking("Mix 2-2-1 parts.", 3, base=1).rule == "none"  # a repeated value: no ranking
    r = parse_ranking("Apply steps 1-2-3 daily.", 3, base=1)  # bare numbers inside a sentence are prose
    assert r.rule != "answer_run" and r.repairs.get("unparseable") == 1
    assert ids("Ranking: 3,1,2", 3) == [3, 1, 2] and ids("3-1-2", 3) == [3, 1, 2]


def test_prose_chains_edges():
    assert ids("[3] is the most relevant, followed by [1].", 3) == [3, 1, 2]  # two ids are a chain
    assert parse_ranking("[3] is the most relevant, followed by [1].", 3, base=1).rule == "prose_order"
    for text in ("[3] is the most relevant, then 4, then [1].",  # a number between ids breaks the chain
                 "[3] is the most relevant,\n\nfollowed by [1].",  # so does a paragraph
                 "[3] is the most relevant" + ", and then" * 20 + " [1]."):  # and a long stretch
        assert parse_ranking(text, 4, base=1).rule != "prose_order", text
    # a chain without a top cue does not stop the search for a later one that has it
    text = "Passages [1] and [2] mention it. [3] is the most relevant, followed by [4]."
    assert ids(text, 4) == [3, 4, 1, 2]
    # "the least relevant is [3]" before the id, not only "[3] is the least" after it
    assert ids("The most relevant is [2], then [4] and [1]; the least relevant is [3].", 5) == [2, 4, 1, 5, 3]


def test_an_exclusion_is_read_within_its_own_sentence():
    text = "Passages [1] and [2] are not relevant. Among the rest, [3], [4] and [5] matter."
    r = parse_ranking(text, 5, base=1)
    assert [i + 1 for i in r.order] == [3, 4, 5, 1, 2] and r.repairs == {"excluded_last": 2}


def test_extract_ids_and_is_complete_ranking_pass_cot_and_the_window_size_on():
    assert extract_ids("[2] > [1] > [3]", cot=True) == ([], "none")  # no marker: reasoning, not an answer
    assert extract_ids("1998 2004 2011", num_candidates=3) == ([], "none")  # years, not ids of a 3-window
    assert extract_ids("3 1 2", num_candidates=3) == ([3, 1, 2], "run")
    assert not is_complete_ranking("[2] > [1] > [3]", 3, base=1, cot=True)
    assert is_complete_ranking("### Final Reranking: [2] > [1] > [3]", 3, base=1, cot=True)
    assert is_complete_ranking("1 2 3", 3, base=1) and not is_complete_ranking("1 2 3", 4, base=1)
    assert not is_complete_ranking("1998 2004 2011 2012 1 2 3", 3, base=1)  # mostly years: no ranking line


def test_format_target_defaults_and_modes():
    from data_prep.ranking import format_target

    assert format_target([1, 0]) == "[1] > [0]"  # 0-based ids, no reasoning, no marker by default
    assert format_target([1, 0], reasoning="why") == "[1] > [0]"  # reasoning only with cot
    assert format_target([1, 0], final_marker=True) == "[1] > [0]"  # the marker only with cot
    assert format_target([1, 0], cot=True) == "[1] > [0]" and format_target([1, 0], cot=True, reasoning=" ") == "[1] > [0]"
    assert format_target([1, 0], cot=True, reasoning=" why ") == "<think>\nwhy\n</think>\n[1] > [0]"
    assert format_target([1, 0], cot=True, final_marker=True, reasoning="why") == "why\n### Final Reranking: [1] > [0]"
    assert format_target([1, 0], cot=True, final_marker=True) == "### Final Reranking: [1] > [0]"
    assert format_target([1, 0], base=1) == "[2] > [1]"


def test_rule_strength_boundaries_and_range_counts():
    for text, n in (("[2] > [1]", 2), ("2 > 1", 2), ("[3]-[1]-[2]", 3), ("[2] < [1]", 2)):
        r = parse_ranking(text, n, base=1)
        assert r.rule in ("answer_run", "reversed_run") and r.ok and is_complete_ranking(text, n, base=1), text
    r = parse_ranking("[7] > [1]-[3] > [4]-[6]", 7, base=1)
    assert [i + 1 for i in r.order] == [7, 1, 2, 3, 4, 5, 6] and r.repairs == {"expanded_range": 2}
    # a range spans at most 50 ids: a longer one is two ids joined by a hyphen
    assert parse_ranking("[60] > [1]-[51]", 60, base=1).repairs == {"expanded_range": 1, "missing": 8}
    r = parse_ranking("[60] > [1]-[52]", 60, base=1)
    assert "expanded_range" not in r.repairs and [i + 1 for i in r.order[:3]] == [60, 1, 52]
    assert "expanded_range" not in parse_ranking("[2]-[2] > [1]", 2, base=1).repairs


def test_repair_bounds_sources_and_a_text_without_ids():
    r = parse_ranking("[1] > [4] > [2]", 3, base=1)  # one past the last id is out of range
    assert r.order == [0, 1, 2] and r.repairs == {"out_of_range": 1, "missing": 1}
    assert repair_ids([2, 0, 1], 3) == ([2, 0, 1], {})  # 0-based by default
    assert parse_ranking("nothing here", 2, base=1).repairs == {"missing": 2, "unparseable": 1}
    assert parse_ranking("[3] text\n[1] text", 3, base=1).source == "brackets"  # line items
    r = parse_ranking("We can eliminate passages [1], [2] as not relevant.", 3, base=1)
    assert (r.rule, r.source) == ("excluded_only", "none")
    assert parse_ranking("3 1 2", 3, base=1).source == "run"


# ------------------------------- JSON as models print it: single-quoted (a Python dict), raw line breaks

@pytest.mark.parametrize(("text", "want"), [
    ("{'ranking': [3, 1, 2]}", [3, 1, 2]),
    ("Here it is:\n{'ranking': ['[2]', '[3]', '[1]'], 'reasoning': \"[1] > [2] > [3] isn't right\"}", [2, 3, 1]),
    ("[{'id': 2, 'score': 0.1}, {'id': 3, 'score': 0.9}, {'id': 1, 'score': 0.5}]", [3, 1, 2]),
    ("{'result': {'order': [2, 1, 3], 'notes': 'doc 3 is off topic'}, 'done': True}", [2, 1, 3]),
    ("Output: {'outer': 1, 'x': {'ranking': [2, 3, 1]}", [2, 3, 1]),  # the outer dict is cut off: the inner one
    ('{"reasoning": "first line\n[1] > [2] > [3]", "ranking": "[2]\n[3]\n[1]"}', [2, 3, 1]),  # raw line breaks
    ('Answer: {{"2": 0.1, "3": 0.9, "1": 0.5}', [3, 1, 2]),  # a stray brace right before it
    ("{'ranked': [{'id': 2, 'why': 'C:\\\\'}, {'id': 3}, {'id': 1}]}", [2, 3, 1]),  # an escaped backslash, then the quote
    ("Here: {'ranking': [3, 1, 2]}, as asked.", [3, 1, 2]),
])
def test_json_as_models_print_it_is_read_as_json(text, want):
    """Single-quoted (a printed Python dict), or with raw line breaks inside its strings."""
    r = parse_ranking(text, 3, base=1)
    assert [i + 1 for i in r.order] == want and r.rule in ("json", "json_scores") and r.ok, r


def test_a_quoted_bracket_or_code_is_not_run_and_unbalanced_text_falls_back():
    # a string holding brackets does not close the value; names and calls are not literals: text rules read it
    for text in ("{'ranking': [2, 1], 'why': 'see ] and } here'}", "{'ranked': [{'id': 2, 'why': 'it\\'s ] best'}, {'id': 1}]}"):
        r = parse_ranking(text, 2, base=1)
        assert [i + 1 for i in r.order] == [2, 1] and r.rule == "json", text
    r = parse_ranking("{'ranking': [__import__('os').getpid()]} [2] > [1]", 2, base=1)
    assert [i + 1 for i in r.order] == [2, 1] and r.rule == "answer_run"
    assert parse_ranking("{'{'" * 2000, 3, base=1).rule == "none"  # nothing balances: no ranking, no hang


def test_the_teachers_ranked_passages_read_the_same_as_json_and_as_python_dicts():
    """The 500 GPT-4 teacher outputs of listwise-cot-reason-to-rank (msmarco_500.jsonl) state their ranking as a
    ``ranked_passages`` list with a reasoning string per passage; printed as JSON or as a Python dict, every one
    reads as the teacher's ``re_rank_id``."""
    import ast
    import json

    from conftest import shared_path

    rows = [json.loads(line) for line in
            shared_path("listwise-cot-reason-to-rank", "msmarco_500.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 500
    for row in rows:
        want = row["re_rank_id"] if isinstance(row["re_rank_id"], list) else ast.literal_eval(row["re_rank_id"])
        for text in (json.dumps(row["reason"]), str(row["reason"])):
            r = parse_ranking(text, len(want), base=1)
            assert [i + 1 for i in r.order] == want and r.rule == "json" and r.ok, (row["qid"], text[:120])


# ------------------------------------------------ the tokenizer's contract: kinds, values and offsets into the text

@pytest.mark.parametrize(("text", "want"), [
    ("3-1-2", [("id", "3", 3), ("dash", "-", None), ("id", "1", 1), ("dash", "-", None), ("id", "2", 2)]),
    ("3,1,2", [("id", "3", 3), ("comma", ",", None), ("id", "1", 1), ("comma", ",", None), ("id", "2", 2)]),
    ("1,2,345", [("id", "1", 1), ("comma", ",", None), ("id", "2", 2), ("comma", ",", None), ("id", "345", 345)]),
    ("12-4-100", [("id", "12", 12), ("dash", "-", None), ("id", "4", 4), ("dash", "-", None), ("id", "100", 100)]),
    ("2-2-1", [("other", "2-2-1", None)]),  # a repeated value: no ranking
    ("1,250,300", [("other", "1,250,300", None)]),  # thousands groups: one number
    ("Passage 4", [("id", "Passage 4", 4)]),
    ("doc12", [("id", "doc12", 12)]),
    ("第3段", [("id", "第3段", 3)]),
    ("9" * 5000, [("other", "9" * 5000, None)]),  # no id, and no crash (int() refuses 4,300+ digits)
    ("[1234567890]", [("other", "[1234567890]", None)]),
])
def test_tokens_name_their_kind_value_and_exact_span(text, want):
    from data_prep.ranking.tokens import tokens

    got = [(t.kind, text[t.start:t.end], t.value if t.kind == "id" else None) for t in tokens(text)]
    assert got == want


# ------------------------------------ answers that tell apart the parser mutants the other tests let through
# (found by running each surviving mutmut mutant over variants of this file's answers; docs/mutation.md)

@pytest.mark.parametrize(("text", "n", "want", "repairs", "rule"), [
    ("[1]-[3]\n[3] is about cats.", 3, [1, 2, 3], {"expanded_range": 1}, "answer_run"),  # an echo line after it
    ("[2] < [1]\n[3] is about cats.", 3, [1, 2, 3], {"missing": 1}, "reversed_run"),
    ("I think 2 > 1", 3, [2, 1, 3], {"missing": 1}, "answer_run"),
    ("I think [1]-[3]", 3, [1, 2, 3], {"expanded_range": 1}, "answer_run"),
    ("The ranking is: 4-2-1-3-5 because [1] is best.", 5, [4, 2, 1, 3, 5], {}, "answer_run"),
    ("1998 2004 2011", 3, [1, 2, 3], {"missing": 3, "unparseable": 1}, "none"),  # years, not a 3-window's ids
    ("I think  [1].", 3, [1, 2, 3], {"missing": 2, "no_final_run": 1}, "brackets"),
    ("4 2 7 1 3 5 6", 5, [4, 2, 1, 3, 5], {"out_of_range": 2}, "answer_run"),
    ("[2]-[2]-[1]", 3, [2, 1, 3], {"duplicate": 1, "missing": 1}, "answer_run"),
    # an excluded id past the window is no candidate: it never enters the order
    ("We can eliminate passages [1], [2] and [4] as they do not relate to the query.", 3, [3, 1, 2],
     {"missing": 1, "excluded_last": 2}, "excluded_only"),
    ("[3] is the most relevant, followed by [1]. Because [1] is best.", 3, [3, 1, 2], {"missing": 1}, "prose_order"),
    ("The most relevant is [2], then [4] and [1], while [3] is the least. [End]", 4, [2, 4, 1, 3], {}, "prose_order"),
    ("The most relevant is [2], then [4] and [1], while [3] is the least.\n[3] is about cats.", 5, [2, 4, 1, 3, 5],
     {"missing": 1}, "prose_order"),
    ('{"ranking": "[2]-[3]-[1]"}', 3, [2, 3, 1], {}, "json"),
    ('{"1": 0.1, "2": 0.9, "3": 0.5}', 3, [2, 3, 1], {}, "json_scores"),
    ("- [4]\n- [2]\n- [1]\n- [3]", 4, [4, 2, 1, 3], {}, "answer_run"),
    ("[4] > 2 > [1] > 3\n[3] is about cats.", 4, [4, 2, 1, 3], {}, "answer_run"),
    ("[4] > 2 > [1] > 3 [End]", 4, [4, 2, 1, 3], {}, "answer_run"),
    ("[3]: 0.92 > [1]: 0.80 > [2]: 0.10.", 3, [3, 1, 2], {}, "answer_run"),  # scores, and a full stop
    ("[3]: 0.92-[1]: 0.80-[2]: 0.10", 3, [3, 1, 2], {}, "answer_run"),  # hyphens between scored ids: no range
    ("- 3-1-2", 3, [3, 1, 2], {}, "answer_run"),
    ("Ranking: 4,2,1,3,6,5", 6, [4, 2, 1, 3, 6, 5], {}, "answer_run"),
    ("3,1,2\n\nThe rest: [5] > [4].", 5, [3, 1, 2, 5, 4], {"merged_parts": 1}, "merged_parts"),
    ("[Start] [2] > [3] [End]\nthe rest: [Start] [1] > [4] [End]", 4, [2, 3, 1, 4], {"merged_parts": 1}, "merged_parts"),
    ("[Start] [3] text\n[1] text", 3, [3, 1, 2], {"missing": 1, "no_final_run": 1}, "line_items"),
    ("We can eliminate passages [1], [2] as not relevant.\n[3] is about cats.", 3, [3, 1, 2],
     {"excluded_last": 2, "no_final_run": 1}, "line_items"),
    ("I think 第3段", 3, [3, 1, 2], {"missing": 2, "no_final_run": 1}, "brackets"),
    ('[Start] {"reasoning": "Passage 3 has 4 facts and passage 1 has 2", "ranking": [3, 1, 4', 4, [3, 1, 4, 2],
     {"missing": 1}, "json"),  # cut off: the ranking field as far as it goes, never the reasoning's numbers
    ('{"ranking": [2, 1, 3}', 3, [2, 1, 3], {}, "json"),  # a wrong closing bracket
])
def test_answers_that_single_line_faults_would_misread(text, n, want, repairs, rule):
    r = parse_ranking(text, n, base=1)
    assert ([i + 1 for i in r.order], r.repairs, r.rule) == (want, repairs, rule)


@pytest.mark.parametrize(("text", "n", "want"), [
    ("[4] > 2 > [1] > 3.", 4, [4, 2, 1, 3]),  # the bare last id before the stop
    ("1. [2]: defines the term\n2. [5]\n3. [1]\n4. [4]: mentions 2 studies\n5. [3].", 5, [2, 5, 1, 4, 3]),
    ("- [2]\n- [1]\n- [3].", 3, [2, 1, 3]),
    ("3 1 2.", 3, [3, 1, 2]),
    ("[4] > 2 > [1] > 3.\nThis order puts the dated passage first.", 4, [4, 2, 1, 3]),  # a line break after it
    ("- [2]\n- [1]\n- [3]。", 3, [2, 1, 3]),
    ("[4] > 2 > [1] > 3!", 4, [4, 2, 1, 3]),
])
def test_a_full_stop_that_ends_the_answer_is_no_passage_text(text, n, want):
    """Before: the stop made the last id an echoed passage (dropped, then appended as ``missing``)."""
    r = parse_ranking(text, n, base=1)
    assert [i + 1 for i in r.order] == want and r.repairs == {} and r.rule == "answer_run"
