import pytest

from data_prep import format_ranking, format_target, is_complete_ranking, parse_ranking


def test_clean_permutation_needs_no_repair():
    r = parse_ranking("[4] > [1] > [0] > [3] > [2]", 5)
    assert r.order == [4, 1, 0, 3, 2]
    assert r.ok and r.repairs == {}


def test_one_based_ids():
    r = parse_ranking("[2] > [3] > [1]", 3, base=1)
    assert r.order == [1, 2, 0] and r.ok


def test_repairs_are_counted_by_kind():
    r = parse_ranking("[2] > [2] > [9] > [0]", 4)
    assert r.order == [2, 0, 1, 3]
    assert r.repairs == {"duplicate": 1, "out_of_range": 1, "missing": 2}


def test_final_marker_wins_over_reasoning_digits():
    text = "Passage [3] mentions 1879 and [1] > [0] seems plausible.\n### Final Reranking: [2] > [0] > [1] > [3]"
    r = parse_ranking(text, 4)
    assert r.order == [2, 0, 1, 3] and r.source == "marker" and r.ok


def test_text_after_think_is_read():
    text = "<think>\n[1] > [0] because 2 > 1\n</think>\n[0] > [2] > [1]"
    r = parse_ranking(text, 3)
    assert r.order == [0, 2, 1] and r.source == "think" and r.ok


def test_last_run_is_read_without_markers():
    text = "Earlier guess: [1] > [0] > [2]. On reflection: [2] > [1] > [0]"
    assert parse_ranking(text, 3).order == [2, 1, 0]


def test_cot_mode_never_reads_unfinished_reasoning():
    text = "<think>\nI believe [2] > [1] > [0] but let me"
    r = parse_ranking(text, 3, cot=True)
    assert r.order == [0, 1, 2]
    assert r.repairs["unparseable"] == 1 and r.repairs["missing"] == 3


def test_unparseable_text_keeps_input_order():
    r = parse_ranking("[Start] [None of the provided passages are relevant] [End]", 3, base=1)
    assert r.order == [0, 1, 2]
    assert r.repairs == {"missing": 3, "unparseable": 1}


def test_bare_numbers_in_a_run():
    assert parse_ranking("2 > 1 > 3", 3, base=1).order == [1, 0, 2]


def test_format_roundtrip_and_target():
    assert format_ranking([2, 0, 1]) == "[2] > [0] > [1]"
    assert format_ranking([2, 0, 1], base=1) == "[3] > [1] > [2]"
    t = format_target([1, 0], reasoning="because", cot=True)
    assert t == "<think>\nbecause\n</think>\n[1] > [0]"
    assert format_target([1, 0], reasoning="because", cot=False) == "[1] > [0]"
    assert parse_ranking(t, 2, cot=True).order == [1, 0]


def test_is_complete_ranking():
    assert not is_complete_ranking("[2] > [0] >", 3)
    assert is_complete_ranking("[2] > [0] > [1]", 3)


def test_bad_base_rejected():
    with pytest.raises(ValueError):
        parse_ranking("[1]", 1, base=2)
