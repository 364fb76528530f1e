"""The ranking parser on the real raw GPT-3.5 / GPT-4 RankGPT responses (malformed ones included)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from _prep_helpers import read_rankgpt_log
from conftest import shared_path

from data_prep.ranking import extract_ids, parse_ranking

MALFORM_LOGS = [
    "correct_malform_debug_1_dl19_gpt-3.5-turbo_1_0.log",
    "correct_malform_debug_1_dl19_gpt-4-0314_1_0.log",
    "correct_malform_debug_1_dl20_gpt-3.5-turbo_1_0.log",
    "correct_malform_debug_1_dl20_gpt-4-0314_1_0.log",
]


@pytest.mark.parametrize("name", MALFORM_LOGS)
def test_every_logged_response_parses_to_a_permutation_with_the_logs_repairs(name):
    responses = read_rankgpt_log(shared_path("rankgpt-llm-response-logs", name))
    assert len(responses) >= 17  # the logs hold 17..338 malformed windows each
    comparable = 0
    for r in responses:
        parsed = parse_ranking(r.text, r.window, base=1)
        assert sorted(parsed.order) == list(range(r.window)), f"line {r.line}: not a permutation"
        ids, _ = extract_ids(r.text)
        if r.original_rank is None or ids != r.original_rank:
            continue  # the logging code read other digits (e.g. from the reasoning): not comparable
        comparable += 1
        # Same ids read: our repairs must be exactly what the log's cleaned rank implies.
        assert parsed.order[: len(r.clean_rank)] == r.clean_rank, f"line {r.line}"
        assert parsed.repairs.get("duplicate", 0) == len(r.original_rank) - len(r.clean_rank) == r.repeated
        # ids the text named as irrelevant are "missing" to the log, placed after the unnamed ones by us
        unnamed = parsed.repairs.get("missing", 0) + parsed.repairs.get("excluded_last", 0)
        assert unnamed == r.window - len(r.clean_rank) == r.missing, f"line {r.line}"
    assert comparable >= 0.75 * len(responses)


def test_responses_where_the_log_read_digits_from_the_text_are_not_read_so():
    """The logging code took every digit ("1956", "608"); the parser reads only the final ranking."""
    responses = read_rankgpt_log(shared_path("rankgpt-llm-response-logs", MALFORM_LOGS[0]))
    polluted = [r for r in responses if r.original_rank and max(r.original_rank) > r.window]
    assert polluted, "the GPT-3.5 DL19 log has responses whose digits the logger misread"
    for r in polluted:
        parsed = parse_ranking(r.text, r.window, base=1)
        ids, _ = extract_ids(r.text)
        assert all(1 <= i <= r.window for i in ids), f"line {r.line}: read a number from the prose"
        assert sorted(parsed.order) == list(range(r.window))


def test_cot_scoring_log_responses_parse_to_permutations():
    responses = read_rankgpt_log(shared_path("rankgpt-llm-response-logs", "cot_prompt_debug_12_dl19_gpt-4-0314_0.log"))
    assert len(responses) == 13
    rules: Counter[str] = Counter()
    for r in responses:
        parsed = parse_ranking(r.text, r.window, base=1)
        assert sorted(parsed.order) == list(range(r.window))
        rules[parsed.rule] += 1
        # "[i] Relevance Score: s" lines come first; the answer is the "[Start] ... [End]" summary after them
        block = re.search(r"\[Start\](.*?)\[End\]", r.text, re.DOTALL).group(1)
        stated = [int(x) - 1 for x in re.findall(r"\[(\d+)\]", block)]
        assert parsed.order[: len(stated)] == stated, f"line {r.line}"
        if not stated:  # "[Start] None of the passages provided are relevant ... [End]": nothing to read
            assert parsed.repairs == {"missing": r.window, "unparseable": 1}, f"line {r.line}"
    assert rules == {"answer_run": 9, "none": 4}


def test_tied_ids_in_a_real_answer_stay_in_the_ranking():
    """GPT-3.5 answered "[2] > [3] = [5] = [6] > [7] > ... > [10] = [11] > ... > [20]": ties are one run."""
    responses = read_rankgpt_log(shared_path("rankgpt-llm-response-logs", MALFORM_LOGS[0]))
    tied = [r for r in responses if "[3] = [5] = [6]" in r.text]
    assert len(tied) == 1
    parsed = parse_ranking(tied[0].text, tied[0].window, base=1)
    expected_top = [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert parsed.order == [i - 1 for i in expected_top] + [0, 3]
    assert parsed.repairs == {"missing": 2}
