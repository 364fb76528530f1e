"""The TREC run and qrels readers at their exact boundaries: what a line means, where reading stops, and what an
error names (file, line, qid, reason), so a user can fix the one line at fault. Written against mutmut's
survivors in `data_prep/readers.py` (docs/mutation.md)."""

from pathlib import Path

import pytest

from data_prep.readers import check_score, read_qrels, read_run, write_run
from data_prep.schema import DataError


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_run_lines_come_back_in_rank_order_ties_broken_by_the_higher_score(tmp_path):
    run = _write(tmp_path, "run.trec", [
        "q1 Q0 dC 3 0.5 t",
        "q1 Q0 dA 1 0.9 t",
        "q1 Q0 dB 2 0.1 t",  # rank 2 twice: the higher score first, whatever the docid or line order
        "q1 Q0 dZ 2 0.7 t",
        "q2 Q0 x 1 1.0 t",
    ])
    assert read_run(run) == {"q1": [("dA", 0.9), ("dZ", 0.7), ("dB", 0.1), ("dC", 0.5)], "q2": [("x", 1.0)]}


def test_blank_lines_anywhere_are_skipped_not_the_end_of_the_file(tmp_path):
    qrels = _write(tmp_path, "qrels.txt", ["q1 0 a 1", "", "   ", "q1 0 b 2", "", "q2 0 c 0"])
    assert read_qrels(qrels) == {"q1": {"a": 1, "b": 2}, "q2": {"c": 0}}
    run = _write(tmp_path, "run.trec", ["q1 Q0 a 1 2.0 t", "", "q1 Q0 b 2 1.0 t"])
    assert read_run(run) == {"q1": [("a", 2.0), ("b", 1.0)]}


def test_grades_are_read_over_the_whole_c_int_range_and_refused_past_it(tmp_path):
    edge = _write(tmp_path, "edge.txt", [f"q1 0 a {-2**31}", f"q1 0 b {2**31 - 1}"])
    assert read_qrels(edge) == {"q1": {"a": -2**31, "b": 2**31 - 1}}
    for bad in (2**31, -2**31 - 1):
        path = _write(tmp_path, "bad.txt", ["q1 0 a 1", f"q1 0 b {bad}"])
        with pytest.raises(DataError) as err:
            read_qrels(path)
        assert (err.value.reason, err.value.path, err.value.line, err.value.qid) == ("bad_grade", str(path), 2, "q1")
        assert f"relevance '{bad}' is out of range" in err.value.message and "small integers" in err.value.fix


# (file kind, lines, line at fault, qid named, reason, words the message must hold)
ERRORS = [
    ("run", ["q1 Q0 a 1 1.0 t", "q1 Q0 a 2 0.5 t"], 2, "q1", "duplicate_docid", "'a' appears twice"),
    ("run", ["q1 Q0 a 1 1.0 t", "q\x01 Q0 b 1 1.0 t"], 2, None, "bad_id", "qid"),
    ("run", ["q1 Q0 a 1 1.0 t", "q1 Q0 b\x01 2 1.0 t"], 2, "q1", "bad_id", "docid"),
    ("run", ["q1 Q0 a 1 1.0 t", "q7 Q0 b 1 nan t"], 2, "q7", "bad_score", "'nan' is not a finite number"),
    ("run", ["q1 Q0 a 1 1.0"], 1, None, "invalid", "expected 6 columns"),
    ("qrels", ["q1 0 a 1", "q1 0 a 2"], 2, "q1", "duplicate_judgment", "'a' is judged twice"),
    ("qrels", ["q1 0 a 1", "q\x01 0 b 1"], 2, None, "bad_id", "qid"),
    ("qrels", ["q1 0 a 1", "q1 0 b\x01 1"], 2, "q1", "bad_id", "docid"),
    ("qrels", ["q1 0 a x"], 1, None, "invalid", "relevance 'x' is not an integer"),
]


@pytest.mark.parametrize(("kind", "lines", "line", "qid", "reason", "words"), ERRORS)
def test_an_error_names_the_file_the_line_the_query_and_the_fix(tmp_path, kind, lines, line, qid, reason, words):
    path = _write(tmp_path, f"{kind}.txt", lines)
    with pytest.raises(DataError) as err:
        (read_run if kind == "run" else read_qrels)(path)
    e = err.value
    assert (e.path, e.line, e.qid, e.reason) == (str(path), line, qid, reason)
    assert words in e.message and e.fix
    if reason == "duplicate_docid":
        assert e.fix == "each docid once per query: remove the duplicate line"
    if reason == "duplicate_judgment":
        assert e.fix == "keep one line per (qid, docid): remove the duplicate judgment"


def test_a_missing_file_is_named_by_its_kind(tmp_path):
    with pytest.raises(DataError, match="run file not found"):
        read_run(tmp_path / "nope.trec")
    with pytest.raises(DataError, match="qrels file not found"):
        read_qrels(tmp_path / "nope.qrels")


@pytest.mark.parametrize("value", [True, False, None, [1.0], {"s": 1}, "high", "1e999", float("nan"), float("-inf"),
                                   "inf"])
def test_check_score_refuses_what_is_not_a_finite_number_naming_the_record(tmp_path, value):
    with pytest.raises(DataError) as err:
        check_score(value, path=tmp_path / "in.json", line=4, qid="q9", where="hit 2")
    e = err.value
    assert (e.path, e.line, e.qid, e.reason) == (str(tmp_path / "in.json"), 4, "q9", "bad_score")
    assert e.message.startswith("hit 2: score ") and e.fix.startswith("every score must be a real number")


def test_check_score_reads_numbers_and_numeric_text():
    assert [check_score(v, path="f") for v in (3, 2.5, "1.25", " -4 ", "7e2")] == [3.0, 2.5, 1.25, -4.0, 700.0]
    with pytest.raises(DataError) as err:
        check_score("x", path="f")
    assert err.value.message.startswith("score ")  # no location prefix when none is given


def test_written_runs_carry_their_tag_dear_by_default(tmp_path):
    from data_prep.readers import run_lines

    write_run(tmp_path / "r.trec", {"q1": [("a", 2.0), ("b", 1.0)]})
    assert (tmp_path / "r.trec").read_text() == "q1 Q0 a 1 2.000000 dear\nq1 Q0 b 2 1.000000 dear\n"
    write_run(tmp_path / "t.trec", {"q1": [("a", 2.0)]}, tag="bm25")
    assert (tmp_path / "t.trec").read_text() == "q1 Q0 a 1 2.000000 bm25\n"
    assert run_lines("q2", [("d", 0.5)]) == "q2 Q0 d 1 0.500000 dear\n"
