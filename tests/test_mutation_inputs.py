"""scripts/mutation_inputs.py: the answers it tries and how it finds the first one a changed parser reads
differently (the mutmut run itself is not repeated here: docs/mutation.md)."""

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("mutation_inputs", REPO / "scripts" / "mutation_inputs.py")
mi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mi)


def test_the_corpus_holds_each_answer_and_its_variants_once_shortest_first():
    texts = mi.corpus(["[2] > [1]", "[2] > [1]"])
    assert "[2] > [1]" in texts and len(texts) == len(set(texts))
    assert {"Ranking: [2] > [1]", "[2] > [1] [End]", "[2] < [1]", "[2]-[1]", "2] > 1]", "[2 > [1"} <= set(texts)
    assert [len(t) for t in texts] == sorted(len(t) for t in texts)


def test_the_first_difference_is_the_shortest_text_and_names_both_readings():
    texts = ["a", "bb", "ccc"]
    baseline = {(t, n): len(t) * n for t in texts for n in (1, 2)}
    assert mi.first_difference(texts, (1, 2), lambda t, n: len(t) * n, baseline) is None
    changed = lambda t, n: len(t) * n + (t == "bb" and n == 2)  # noqa: E731
    assert mi.first_difference(texts, (1, 2), changed, baseline) == ("bb", 2, 4, 5)


def test_the_answers_come_from_the_parser_tests_and_the_reference(tmp_path):
    answers = mi.test_answers([REPO / "tests" / "test_parser_families.py", REPO / "tests" / "data" / "parser_reference.jsonl"])
    assert "[4] > 2 > [1] > 3" in answers and all(any(c.isdigit() for c in a) for a in answers)
    assert len(answers) > 300


def test_without_a_mutation_run_it_says_what_to_run_first(tmp_path, capsys):
    assert mi.main(["--work", str(tmp_path)]) == 2
    assert "run scripts/mutation.sh parser first" in capsys.readouterr().err
