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


def _lines(qid: str, n: int) -> str:
    return "".join(f"{qid} Q0 {qid}-d{i} {i + 1} {float(n - i):.6f} dear\n" for i in range(n))


def test_a_refused_foreign_jsonl_is_left_byte_for_byte_even_its_torn_tail(tmp_path):
    out, jsonl = tmp_path / "run.trec", tmp_path / "notes.jsonl"
    content = b'{"qid": "q1"}\nnot a record\n{"partial'
    jsonl.write_bytes(content)
    with pytest.raises(DataError):
        check_jsonl_owner(out, jsonl, {"settings": {}})
    assert jsonl.read_bytes() == content


def test_settings_added_removed_or_missing_are_each_named(tmp_path):
    out = tmp_path / "run.trec"
    out.write_text(_lines("q1", 2))
    meta_path(out).write_text(json.dumps({"settings": {"model": "m", "window": 20, "batch_size": 4}}))
    assert check_settings(out, {"model": "m", "window": 20, "batch_size": 64})["settings"]["window"] == 20  # neutral
    with pytest.raises(DataError) as err:
        check_settings(out, {"model": "m", "step": 10})  # window gone, step new
    assert "(step, window)" in err.value.message and err.value.path == str(out)
    assert err.value.reason == "resume_mismatch" and "--overwrite" in err.value.fix
    meta_path(out).write_text(json.dumps({"queries": {}}))  # a settings file without settings
    with pytest.raises(DataError, match=r"other settings \(model\)"):
        check_settings(out, {"model": "m"})


def test_a_stale_settings_file_beside_empty_parts_is_ignored(tmp_path):
    from inference.runfiles import read_meta

    out = tmp_path / "run.trec"
    meta_path(out).write_text(json.dumps({"settings": {"model": "old"}}))
    part, rec = part_paths(out, 0)
    part.write_text("")
    assert read_meta(out) is None and check_settings(out, {"model": "new"}) is None
    part.write_text(_lines("q1", 1))
    assert read_meta(out) == {"settings": {"model": "old"}}


def test_overwrite_starts_over_even_over_a_jsonl_that_is_not_the_runs(tmp_path):
    from inference.runfiles import prepare_resume

    out, jsonl = tmp_path / "run.trec", tmp_path / "notes.jsonl"
    jsonl.write_text("someone's notes\n")
    with pytest.raises(DataError) as err:
        prepare_resume(out, jsonl, {"q1": 1}, {"model": "m"})
    assert "(run.trec.meta.json: there is no run to resume)" in err.value.message
    assert prepare_resume(out, jsonl, {"q1": 1}, {"model": "m"}, overwrite=True) == set()
    assert jsonl.read_text() == "" and json.loads(meta_path(out).read_text())["jsonl"] == str(jsonl.resolve())


def test_a_resume_without_jsonl_keeps_the_jsonl_the_run_names(tmp_path):
    from inference.runfiles import prepare_resume

    out, jsonl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    prepare_resume(out, jsonl, {"q1": 1}, {"model": "m"})
    with RunAppender(out, jsonl) as w:
        w.write("q1", [("d1", 1.0)], {"qid": "q1"})
    assert prepare_resume(out, None, {"q1": 1}, {"model": "m"}) == {"q1"}  # this time without --jsonl
    assert json.loads(meta_path(out).read_text())["jsonl"] == str(jsonl.resolve())
    assert prepare_resume(out, jsonl, {"q1": 1}, {"model": "m"}) == {"q1"}  # and with it again: still its own
    assert jsonl.read_text() == '{"qid": "q1"}\n'


def test_outputs_in_new_nested_folders_are_created(tmp_path):
    from inference.runfiles import prepare_resume

    out, jsonl = tmp_path / "a" / "b" / "run.trec", tmp_path / "c" / "d" / "run.jsonl"
    assert prepare_resume(out, jsonl, {"q1": 1}, {"model": "m"}) == set()
    assert out.is_file() and jsonl.is_file() and meta_path(out).is_file()


def test_consolidate_keeps_whole_blocks_only_by_the_asked_or_the_recorded_count(tmp_path, caplog):
    from inference.runfiles import consolidate

    out = tmp_path / "run.trec"
    # q1 asked (2 lines, whole); q2 asked but torn (1 of 2); q3 not asked, recorded as 3 lines, torn (2 of 3);
    # q4 not asked, recorded as 1 line, whole
    out.write_text(_lines("q1", 2) + _lines("q2", 1) + _lines("q3", 2) + _lines("q4", 1))
    meta_path(out).write_text(json.dumps({"settings": {}, "queries": {"q3": {"lines": 3}, "q4": {"lines": 1}}}))
    with caplog.at_level("WARNING"):
        assert consolidate(out, None, {"q1": 2, "q2": 2}) == {"q1", "q4"}
    assert out.read_text() == _lines("q1", 2) + _lines("q4", 1)
    assert "2 partly written queries dropped" in caplog.text and "['q2', 'q3']" in caplog.text
    assert consolidate(out, None, {"q1": 2}, drop=["q1"]) == {"q4"}  # a changed query is removed
    assert out.read_text() == _lines("q4", 1)


def test_a_rank_that_left_only_a_jsonl_part_is_folded_without_error(tmp_path):
    from inference.runfiles import consolidate

    out, jsonl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    out.write_text(_lines("q1", 1))
    jsonl.write_text('{"qid": "q1"}\n')
    meta_path(out).write_text(json.dumps({"settings": {}}))
    _, rec = part_paths(out, 3)
    rec.write_text('{"qid": "q2"}\n')  # killed after its JSONL record, before its run lines
    assert consolidate(out, jsonl, {"q1": 1, "q2": 1}) == {"q1"}
    assert not rec.exists() and jsonl.read_text() == '{"qid": "q1"}\n'
