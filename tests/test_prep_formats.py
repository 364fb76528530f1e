"""Every teacher format on the real files in ../shared/data (plus a rank_llm fixture built from real DL19)."""

from __future__ import annotations

import json

import pytest
from _prep_helpers import read_rankgpt_log, write_rankllm_fixture
from conftest import shared_path

from data_prep.formats import (
    META_PASSAGE_REASONS,
    META_TEACHER_ORDERED,
    detect_format,
    parse_rankllm_prompt,
    read_teacher,
)
from data_prep.ranking import parse_ranking
from data_prep.readers import read_qrels
from data_prep.samples import noveleval_paths


def _examples(path, fmt="auto", **kw):
    chosen, records = read_teacher(path, fmt, **kw)
    records = list(records)
    assert all(r.error is None for r in records), [str(r.error) for r in records if r.error][:3]
    return chosen, records


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def dl19():
    path = shared_path("trec-dl19", "retrieve_results_dl19_top100.json")
    return path, json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dl19_qrels():
    return read_qrels(shared_path("trec-dl19", "qrels.dl19-passage.txt"))


@pytest.mark.parametrize("name,count", [
    ("msmarco_500.jsonl", 500), ("listwise_msmarco19_test_5_pid.jsonl", 43),
    ("listwise_msmarco20_test_5_pid.jsonl", 54), ("listwise_trec_covid_test_5_pid.jsonl", 50),
    ("listwise_touche_test_5_pid.jsonl", 49),
])
def test_reason_to_rank_files(name, count):
    path = shared_path("listwise-cot-reason-to-rank", name)
    fmt, records = _examples(path)
    assert fmt == "reason-to-rank" and len(records) == count
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").strip().split("\n")]
    for rec, src in zip(records, raw, strict=True):
        ex = rec.example
        assert ex.qid == str(src["qid"]) and ex.query == src["query"]
        assert [c.text for c in ex.candidates] == src["unsorted_docs"]  # prompt order = unsorted_docs
        assert list(ex.ranking) == src["sorted_docids"]  # teacher order as docids
        # the teacher's k-th passage is unsorted_docs[re_rank_id[k] - 1]
        text_of = {c.docid: c.text for c in ex.candidates}
        assert [text_of[d] for d in ex.ranking] == [src["unsorted_docs"][p - 1] for p in src["re_rank_id"]]
        reasons = ex.meta[META_PASSAGE_REASONS]
        first = src["reason"]["ranked_passages"][0]
        assert reasons[ex.ranking[0]][0] == first["direct_reason"].strip()


def test_reason_to_rank_docids_match_the_real_dl19_passages(dl19):
    """The DL19 R2R file's docids, as we assign them, name exactly the DL19 passages with those texts,
    and its unsorted_docs are the BM25 top 5 in BM25 order."""
    _, data = dl19
    hits = {(str(h["qid"]), h["docid"]): h for item in data for h in item["hits"]}
    _, records = _examples(shared_path("listwise-cot-reason-to-rank", "listwise_msmarco19_test_5_pid.jsonl"))
    assert len(records) == 43
    for rec in records:
        ex = rec.example
        for rank, c in enumerate(ex.candidates, 1):
            hit = hits[(ex.qid, c.docid)]
            assert _norm(hit["content"]) == _norm(c.text)
            assert hit["rank"] == rank


def test_rankgpt_json_hit_order_is_the_teacher_order(dl19):
    path, data = dl19
    fmt, records = _examples(path)
    assert fmt == "rankgpt" and len(records) == 43
    for rec, item in zip(records, data, strict=True):
        assert list(rec.example.ranking) == [h["docid"] for h in item["hits"]]
        assert rec.example.qid == str(item["hits"][0]["qid"])
        assert rec.example.meta[META_TEACHER_ORDERED] is True


def test_judgments_as_teacher_dl19(dl19, dl19_qrels):
    path, data = dl19
    qrels_path = shared_path("trec-dl19", "qrels.dl19-passage.txt")
    assert detect_format(path, qrels_given=True)[0] == "qrels"
    fmt, records = _examples(path, qrels=dl19_qrels)
    assert fmt == "qrels" and len(records) == 43 and qrels_path.exists()
    for rec, item in zip(records, data, strict=True):
        ex = rec.example
        grades = dl19_qrels[ex.qid]
        g = [grades.get(d, 0) for d in ex.ranking]
        assert g == sorted(g, reverse=True)
        bm25_rank = {h["docid"]: h["rank"] for h in item["hits"]}
        for a, b in zip(ex.ranking, ex.ranking[1:], strict=False):  # stable within a grade: BM25 order kept
            if grades.get(a, 0) == grades.get(b, 0):
                assert bm25_rank[a] < bm25_rank[b]
        assert sorted(ex.ranking) == sorted(bm25_rank)


def test_judgments_as_teacher_noveleval_sample_and_shared_copy():
    data, qrels_path = noveleval_paths()
    qrels = read_qrels(qrels_path)
    _, records = _examples(data, "qrels", qrels=qrels)
    assert len(records) == 21 and all(len(r.example.candidates) == 20 for r in records)
    for rec in records:
        g = [qrels[rec.example.qid].get(d, 0) for d in rec.example.ranking]
        assert g == sorted(g, reverse=True) and g[0] > 0
    shared = shared_path("noveleval", "data.json")
    _, records2 = _examples(shared, qrels=read_qrels(shared_path("noveleval", "qrels.txt")))
    assert [r.example for r in records2] == [r.example for r in records]


def test_canonical_jsonl_roundtrip(tmp_path):
    _, r2r = _examples(shared_path("listwise-cot-reason-to-rank", "listwise_msmarco20_test_5_pid.jsonl"))
    path = tmp_path / "canonical.jsonl"
    path.write_text("".join(json.dumps(r.example.to_json()) + "\n" for r in r2r), encoding="utf-8")
    fmt, back = _examples(path)
    assert fmt == "jsonl"
    for a, b in zip(r2r, back, strict=True):
        assert (a.example.qid, a.example.query, a.example.candidates, a.example.ranking) == \
               (b.example.qid, b.example.query, b.example.candidates, b.example.ranking)
        assert b.line == a.line


def test_rankllm_conversations(tmp_path, dl19, dl19_qrels):
    _, data = dl19
    path = tmp_path / "rank_zephyr.jsonl"
    sources = write_rankllm_fixture(path, data, dl19_qrels)
    fmt, records = _examples(path)
    assert fmt == "rankllm" and len(records) == len(sources)
    for k, (rec, src) in enumerate(zip(records, sources, strict=True)):
        ex = rec.example
        assert ex.qid == src["qid"] and ex.query == src["query"]
        assert [c.text for c in ex.candidates] == src["passages"]
        assert [c.docid for c in ex.candidates] == [str(i + 1) for i in range(20)]  # the prompt's ids
        if k == 1:
            assert rec.repairs == {"duplicate": 1, "missing": 1}
            assert ex.order_indices()[0] == src["order"][0]
        else:
            assert rec.repairs == {} and ex.order_indices() == src["order"]
    # the same records as OpenAI-style {"messages": [{"role", "content"}]}
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    as_messages = tmp_path / "messages.jsonl"
    as_messages.write_text("".join(
        json.dumps({"qid": json.loads(line)["id"], "messages": [
            {"role": roles[t["from"]], "content": t["value"]} for t in json.loads(line)["conversations"]]}) + "\n"
        for line in path.read_text(encoding="utf-8").strip().split("\n")), encoding="utf-8")
    fmt2, records2 = _examples(as_messages)
    assert fmt2 == "rankllm" and [r.example for r in records2] == [r.example for r in records]


def test_rankllm_prompt_parser_rejects_out_of_sequence_ids():
    from data_prep.schema import DataError

    with pytest.raises(DataError, match="out of sequence"):
        parse_rankllm_prompt("relevance to the search query: q.\n[1] a\n[3] b\nSearch Query: q.\n")


def test_raw_responses_are_parsed_and_repairs_counted(tmp_path, dl19):
    """Real GPT-3.5 answers (malformed ones included) paired with real DL19 windows of 20."""
    _, data = dl19
    logged = read_rankgpt_log(shared_path("rankgpt-llm-response-logs", "correct_malform_debug_1_dl19_gpt-3.5-turbo_1_0.log"))
    rows, expected = [], {}
    for k, resp in enumerate(logged[:40]):
        item = data[k % len(data)]
        cands = [{"docid": h["docid"], "text": h["content"]} for h in item["hits"][:20]]
        rows.append({"qid": f"{item['hits'][0]['qid']}-{k}", "query": item["query"], "candidates": cands,
                     "response": resp.text})
        for kind, n in parse_ranking(resp.text, 20, base=1).repairs.items():
            expected[kind] = expected.get(kind, 0) + n
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    fmt, records = _examples(path)
    assert fmt == "responses" and len(records) == 40
    got: dict[str, int] = {}
    for rec in records:
        assert sorted(rec.example.ranking) == sorted(c["docid"] for c in rows[rec.index]["candidates"])
        for kind, n in rec.repairs.items():
            got[kind] = got.get(kind, 0) + n
    assert got == expected and expected.get("missing", 0) > 0


def test_cot_response_reasoning_is_kept_and_digits_in_it_ignored(tmp_path):
    rows = [{"qid": "q1", "query": "what", "candidates": [{"docid": f"d{i}", "text": f"t{i}"} for i in range(3)],
             "response": "<think>\n[3] mentions 1879; [1] > [2] at first sight\n</think>\n[2] > [3] > [1]"}]
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    _, records = _examples(path)
    ex = records[0].example
    assert ex.ranking == ("d1", "d2", "d0") and records[0].repairs == {}
    assert ex.reasoning == "[3] mentions 1879; [1] > [2] at first sight"


def test_judgments_over_canonical_candidates_equal_the_rankgpt_path(tmp_path, dl19, dl19_qrels):
    path, data = dl19
    rows = [{"qid": str(item["hits"][0]["qid"]), "query": item["query"],
             "candidates": [{"docid": h["docid"], "text": h["content"]} for h in item["hits"]]} for item in data]
    canonical = tmp_path / "cands.jsonl"
    canonical.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _, from_json = _examples(path, "qrels", qrels=dl19_qrels)
    fmt, from_jsonl = _examples(canonical, qrels=dl19_qrels)
    assert fmt == "qrels"
    assert [(r.example.qid, r.example.ranking) for r in from_jsonl] == \
           [(r.example.qid, r.example.ranking) for r in from_json]


def test_queries_without_judgments_are_rejected_by_name(tmp_path, dl19):
    path, _ = dl19
    _, records = read_teacher(path, "qrels", qrels={"19335": {"1017759": 1}})
    records = list(records)
    assert sum(r.error is None for r in records) == 1
    bad = [r.error for r in records if r.error is not None]
    assert len(bad) == 42 and all(e.reason == "no_judgments" and e.qid and "entry #" in str(e) for e in bad)


def test_format_errors_are_clear(tmp_path):
    from data_prep.schema import DataError

    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "q", "docs": []}\n', encoding="utf-8")
    with pytest.raises(DataError, match="cannot detect the teacher format") as info:
        read_teacher(odd)
    assert "--format" in info.value.fix
    with pytest.raises(DataError, match="--qrels makes judgments the teacher"):
        read_teacher(shared_path("noveleval", "data.json"), "rankgpt", qrels={})
    with pytest.raises(DataError, match="needs --qrels"):
        read_teacher(shared_path("noveleval", "data.json"), "qrels")
    with pytest.raises(DataError, match="not found"):
        read_teacher(tmp_path / "missing.jsonl")


def test_registry_drives_format_choices_and_detection(tmp_path):
    from data_prep.formats import DETECTION_ORDER, FORMATS, REGISTRY
    from data_prep.listwise_cli import FORMAT_CHOICES, build_parser

    assert FORMATS == ("jsonl", "rankgpt", "rankllm", "reason-to-rank", "responses", "qrels")
    assert FORMAT_CHOICES == ("auto", *FORMATS)
    assert set(DETECTION_ORDER) == {name for name, f in REGISTRY.items() if f.detect is not None}
    help_text = build_parser().format_help()
    assert all(f"  {name:<16}{REGISTRY[name].description[:40]}" in help_text for name in FORMATS)
    # a raw-response record that also carries a 'ranking' is read as responses (the order of the detectors)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"qid": "q", "query": "x", "candidates": [{"docid": "a", "text": "t"}],
                                "ranking": ["a"], "response": "[1]"}) + "\n")
    assert detect_format(path)[0] == "responses"
    path.write_text(json.dumps({"qid": "q", "query": "x", "candidates": [], "ranking": []}) + "\n")
    assert detect_format(path)[0] == "jsonl"
