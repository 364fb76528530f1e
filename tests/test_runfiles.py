"""`inference/runfiles.py` at the edges mutmut found untested (docs/mutation.md): the fingerprint format a resume
compares against, a run without its settings file, a legacy JSONL that is not all records, and what the writer
puts in each line."""

import json

import pytest

from data_prep.schema import Candidate, DataError, RerankRequest
from inference.runfiles import (
    RunAppender,
    check_jsonl_owner,
    check_settings,
    meta_path,
    part_paths,
    query_fingerprint,
)


def _request(query: str = "qué es la luz", title: str | None = "Óptica") -> RerankRequest:
    return RerankRequest(qid="q1", query=query, candidates=(Candidate("d1", "la luz es una onda", title=title),
                                                            Candidate("d2", "光は波です")))


def test_the_fingerprint_a_run_recorded_stays_the_same_across_versions():
    """RUN.meta.json keeps this value: computing it another way (escaping non-ASCII text, say) would make every
    resume of an older run redo each query whose text is not ASCII."""
    fp = query_fingerprint(_request())
    # sha256 of the UTF-8 JSON [query, [[docid, title, text], ...]], non-ASCII written as itself, first 24 hex digits
    assert fp == "4648a0c11e72c3cac18b5eaf"
    for changed in (_request(query="qué es el sonido"), _request(title=None),
                    RerankRequest(qid="q1", query="qué es la luz", candidates=_request().candidates[::-1])):
        assert query_fingerprint(changed) != fp
    assert query_fingerprint(RerankRequest(qid="other", query="qué es la luz", candidates=_request().candidates)) == fp


def test_a_run_with_rows_and_no_settings_file_is_refused(tmp_path):
    out = tmp_path / "run.trec"
    out.write_text("")
    assert check_settings(out, {"model": "m"}) is None  # an empty file is a new run
    out.write_text("q1 Q0 d1 1 1.000000 dear\n")
    with pytest.raises(DataError) as err:
        check_settings(out, {"model": "m"})
    assert (err.value.reason, err.value.path) == ("resume_mismatch", str(out)) and "no settings file" in err.value.message
    out.unlink()
    part, _ = part_paths(out, 1)
    part.write_text("q1 Q0 d1 1 1.000000 dear\n")  # a killed many-process job left only a part
    with pytest.raises(DataError, match="no settings file"):
        check_settings(out, {"model": "m"})


@pytest.mark.parametrize("line", ['[1, 2]', '{"query": "x"}', '"q1"', "7"])
def test_a_legacy_runs_jsonl_with_a_line_that_is_no_record_is_refused(tmp_path, line):
    out, jsonl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    jsonl.write_text('{"qid": "q1"}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        check_jsonl_owner(out, jsonl, {"settings": {}})  # recorded before the JSONL was named
    assert err.value.reason == "output_exists" and "not per-query records" in err.value.message
    jsonl.write_text('{"qid": "q1"}\n{"qid": 2}\n')
    check_jsonl_owner(out, jsonl, {"settings": {}})  # every line a record: the run's own


def test_the_refusal_says_which_jsonl_the_run_names(tmp_path):
    out, jsonl = tmp_path / "run.trec", tmp_path / "notes.jsonl"
    jsonl.write_text("x\n")
    with pytest.raises(DataError) as err:
        check_jsonl_owner(out, jsonl, {"jsonl": "/elsewhere/run.jsonl"})
    assert f"({meta_path(out).name}: it names /elsewhere/run.jsonl)" in err.value.message
    with pytest.raises(DataError) as err:
        check_jsonl_owner(out, jsonl, {"jsonl": None})
    assert "it names no JSONL" in err.value.message
    with pytest.raises(DataError) as err:
        check_jsonl_owner(out, jsonl, None)
    assert "there is no run to resume" in err.value.message


def test_the_writer_puts_the_tag_in_every_line_and_text_as_utf8(tmp_path):
    out, jsonl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    with RunAppender(out, jsonl, tag="bm25+dear") as w:
        w.write("q1", [("d1", 2.0), ("d2", 1.0)], {"qid": "q1", "raw": "光 > luz"})
        w.write("q2", [("d3", 1.0)])  # no record: the JSONL gets nothing for it
    assert out.read_text(encoding="utf-8") == ("q1 Q0 d1 1 2.000000 bm25+dear\nq1 Q0 d2 2 1.000000 bm25+dear\n"
                                               "q2 Q0 d3 1 1.000000 bm25+dear\n")
    assert jsonl.read_bytes() == '{"qid": "q1", "raw": "光 > luz"}\n'.encode()
    assert json.loads(jsonl.read_text(encoding="utf-8"))["raw"] == "光 > luz"
    with RunAppender(out) as w:
        w.write("q3", [("d4", 1.0)])
    assert out.read_text(encoding="utf-8").endswith("q3 Q0 d4 1 1.000000 dear\n")
