"""`dear prep pointwise` on real DL19 candidates: groups, teacher scores, accounting, bad input, resumable teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.pointwise import prep_pointwise, read_groups
from data_prep.pointwise_cli import main as prep_main
from data_prep.schema import DataError
from dear_train.cli import main as dear_main
from inference.teacher_scores import score_with_teacher_model
from tests._pointwise_helpers import build_tiny_classifier, dl19, torch_threads, write_bm25_scores


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


def _scores(path: Path) -> dict[tuple[str, str], float]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            q, d, s = line.split("\t")
            out[(q, d)] = float(s)
    return out


def test_groups_with_qrels_positives_and_exact_teacher_scores(tmp_path):
    requests, qrels = dl19(num_queries=8)
    scores_tsv = write_bm25_scores(tmp_path / "bm25.tsv", requests)
    report = prep_pointwise(tmp_path / "out", requests, teacher_scores=scores_tsv, qrels=qrels, num_negatives=7,
                            max_positives=2, seed=3, eval_queries=2)
    teacher = _scores(scores_tsv)
    train = read_groups(tmp_path / "out" / "train.jsonl")
    evals = read_groups(tmp_path / "out" / "eval.jsonl")
    assert report.to_json()["groups"] == {"train": len(train), "eval": len(evals)} and train and evals
    assert {g["qid"] for g in train}.isdisjoint({g["qid"] for g in evals})
    texts = {(r.qid, c.docid): c.text for r in requests for c in r.candidates}
    for g in train + evals:
        assert len(g["docids"]) == 8 and len(set(g["docids"])) == 8
        assert qrels[g["qid"]][g["docids"][0]] >= 1  # positive first, judged relevant
        assert all(qrels[g["qid"]].get(d, 0) < 1 for d in g["docids"][1:])
        assert g["teacher_scores"] == [teacher[(g["qid"], d)] for d in g["docids"]]
        assert [p["text"] for p in g["passages"]] == [texts[(g["qid"], d)] for d in g["docids"]]
    # accounting: every query written or dropped, every score line used
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    q = rep["queries"]["records"]
    assert q["read"] == 8 == q["written"] + q["dropped"] and rep["queries"]["invariant_holds"]
    assert rep["score_lines"]["records"]["read"] == rep["score_lines"]["records"]["written"] == 800
    assert rep["positive_source"] == {"qrels": q["written"]} and rep["task"] == "pointwise"


def test_sampling_is_seeded_and_teacher_top1_without_qrels(tmp_path):
    requests, _ = dl19(num_queries=4)
    scores_tsv = write_bm25_scores(tmp_path / "bm25.tsv", requests)
    a = prep_pointwise(tmp_path / "a", requests, teacher_scores=scores_tsv, num_negatives=5, seed=1)
    prep_pointwise(tmp_path / "b", list(reversed(requests)), teacher_scores=scores_tsv, num_negatives=5, seed=1)
    prep_pointwise(tmp_path / "c", requests, teacher_scores=scores_tsv, num_negatives=5, seed=2)
    ga, gb, gc = (sorted(read_groups(tmp_path / d / "train.jsonl"), key=lambda g: g["qid"]) for d in "abc")
    assert ga == gb  # independent of the order of the input
    assert [g["docids"] for g in ga] != [g["docids"] for g in gc]  # the seed matters
    assert a.positive_source == {"teacher_top1": 4}
    for g in ga:  # the teacher's top-1 is the positive: its score is the group's maximum
        assert g["teacher_scores"][0] == max(g["teacher_scores"])
        assert g["docids"][0] == requests[[r.qid for r in requests].index(g["qid"])].candidates[0].docid


def test_bad_input_strict_raises_and_skip_counts(tmp_path):
    requests, qrels = dl19(num_queries=3, depth=10)
    good = write_bm25_scores(tmp_path / "bm25.tsv", requests).read_text().splitlines()
    bad = good[:5] + ["garbage line", f"{requests[0].qid}\tNOT_A_DOC\t1.0", "unknown_q\td1\t2.0",
                      f"{requests[0].qid}\t{requests[0].candidates[0].docid}\tnan"] + good[5:]
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError) as err:
        prep_pointwise(tmp_path / "s", requests, teacher_scores=path, num_negatives=3)
    assert f"{path}:6" in str(err.value) and "fix:" in str(err.value)
    # a query that cannot fill a group: too few negatives (depth 10, 12 asked)
    rep = prep_pointwise(tmp_path / "k", requests, teacher_scores=path, num_negatives=12, on_error="skip",
                         qrels=qrels)
    assert rep.score_lines.dropped == {"malformed": 2, "unknown_docid": 1, "unknown_qid": 1}
    assert rep.score_lines.read == len(bad) == rep.score_lines.written + 4
    assert {e["line"] for e in rep.score_lines.errors} == {6, 7, 8, 9}  # each drop names its line
    assert rep.queries.dropped == {"too_few_negatives": 3} and rep.queries.written == 0
    assert (tmp_path / "k" / "train.jsonl").read_text() == ""
    with pytest.raises(DataError, match="too_few|negatives available"):
        prep_pointwise(tmp_path / "s2", requests, teacher_scores=tmp_path / "bm25.tsv", num_negatives=12)


def test_cli_from_trec_run_corpus_and_topics(tmp_path, shared_data):
    requests, _ = dl19(num_queries=3, depth=20)
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"{c.docid}\t{c.text}\n" for r in requests for c in r.candidates))
    run = tmp_path / "run.txt"
    run.write_text("".join(f"{r.qid} Q0 {c.docid} {i + 1} {c.score} bm25\n"
                           for r in requests for i, c in enumerate(r.candidates)))
    jsonl = tmp_path / "scores.jsonl"
    jsonl.write_text("".join(json.dumps({"qid": r.qid, "docid": c.docid, "score": -i}) + "\n"
                             for r in requests for i, c in enumerate(r.candidates)))
    rc = prep_main(["--run", str(run), "--corpus", str(corpus),
                    "--topics", str(shared_data / "trec-dl19" / "topics.dl19-passage.txt"),
                    "--teacher-scores", str(jsonl), "--negatives", "4", "--out", str(tmp_path / "o")])
    assert rc == 0
    groups = read_groups(tmp_path / "o" / "train.jsonl")
    assert len(groups) == 3 and all(g["teacher_scores"][0] == 0 for g in groups)
    assert prep_main(["--candidates", "x.json", "--teacher-scores", str(jsonl), "--out", str(tmp_path / "z")]) == 2


def test_teacher_model_scoring_is_batched_and_resumable(tmp_path, tiny_model_dir):
    from data_prep.pointwise_format import PairFormat
    from inference.pointwise import PointwiseReranker

    teacher = build_tiny_classifier(tiny_model_dir, tmp_path / "teacher")
    requests, _ = dl19(num_queries=3, depth=6)
    fmt = PairFormat(q_max_len=16, p_max_len=48)
    out = tmp_path / "scores.tsv"
    score_with_teacher_model(teacher, requests[:2], out, batch_size=4, pair_format=fmt)
    first = out.read_text()
    with out.open("a") as f:  # a crash in the middle of the third query
        f.write(f"{requests[2].qid}\t{requests[2].candidates[0].docid}\t0.1\n{requests[2].qid}\t12")
    score_with_teacher_model(teacher, requests, out, batch_size=4, pair_format=fmt)
    text = out.read_text()
    assert text.startswith(first) and text.count("# done") == 3
    scores = _scores(out)
    assert len(scores) == 18
    ref = PointwiseReranker.from_pretrained(teacher, pair_format=fmt, batch_size=1)
    r = requests[2]
    expected = ref.score(r.query, list(r.candidates))
    assert [scores[(r.qid, c.docid)] for c in r.candidates] == pytest.approx(expected, abs=1e-5)

    # one step from the CLI: --teacher-model scores into OUT/teacher_scores.tsv, then builds the groups
    from data_prep.readers import write_rankgpt_json

    write_rankgpt_json(tmp_path / "c.json", requests)
    assert dear_main(["prep", "pointwise", "--candidates", str(tmp_path / "c.json"), "--teacher-model", str(teacher),
                      "--q-max-len", "16", "--p-max-len", "48", "--negatives", "3",
                      "--out", str(tmp_path / "cli")]) == 0
    # without the `dear` CLI's scorer the data layer says where --teacher-model works, before reading input
    assert prep_main(["--candidates", "missing.json", "--teacher-model", str(teacher),
                      "--out", str(tmp_path / "no-scorer")]) == 2
    cli_scores = _scores(tmp_path / "cli" / "teacher_scores.tsv")
    assert cli_scores == pytest.approx(scores, abs=1e-5)
    for g in read_groups(tmp_path / "cli" / "train.jsonl"):
        assert g["teacher_scores"] == [cli_scores[(g["qid"], d)] for d in g["docids"]]
        assert g["teacher_scores"][0] == max(cli_scores[(g["qid"], c)] for (q, c) in cli_scores if q == g["qid"])
