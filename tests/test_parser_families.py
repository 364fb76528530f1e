"""The answer families a careful reader reads differently from "the last [a] > [b] run" (docs/parser.md).

Examples are written for these tests (1-based ids unless said otherwise); the real responses are in
tests/data/parser_reference.jsonl (tests/test_parser_reference.py).
"""

from __future__ import annotations

import pytest

from data_prep.ranking import REPAIR_KINDS, extract_ids, is_complete_ranking, parse_ranking


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
