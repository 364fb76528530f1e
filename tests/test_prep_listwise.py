"""`dear prep listwise`: accounting, bad input, split, windows, shuffles, token limits and the saved dataset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import shared_path

from data_prep.formats import read_teacher
from data_prep.listwise import (
    ListwiseOptions,
    build_listwise,
    record_token_counts,
    renumber_references,
)
from data_prep.listwise_cli import main
from data_prep.prompts import get_prompt_spec, load_prompt_spec
from data_prep.ranking import parse_ranking
from data_prep.readers import read_qrels
from data_prep.samples import noveleval_paths
from data_prep.schema import DataError
from data_prep.windows import window_plan

R2R = ("listwise-cot-reason-to-rank", "msmarco_500.jsonl")
DL19 = ("trec-dl19", "retrieve_results_dl19_top100.json")
DL19_QRELS = ("trec-dl19", "qrels.dl19-passage.txt")


def _run(*argv: str) -> int:
    return main([str(a) for a in argv])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").strip().split("\n")]


def _decode(record: dict, spec_name: str) -> list[str]:
    """The docid order a record's completion encodes (through the shared parser)."""
    spec = get_prompt_spec(spec_name)
    c = record["completion"]
    text = c if isinstance(c, str) else c[-1]["content"]
    parsed = parse_ranking(text, len(record["docids"]), base=spec.id_base, cot="<think>" in text)
    assert parsed.ok, parsed.repairs
    return [record["docids"][i] for i in parsed.order]


# ------------------------------------------------------------------------------------------ bad input

def _good(qid: str, n: int = 3) -> dict:
    cands = [{"docid": f"{qid}-d{i}", "text": f"passage {i} about {qid}"} for i in range(n)]
    return {"qid": qid, "query": f"query {qid}", "candidates": cands,
            "ranking": [c["docid"] for c in reversed(cands)]}


def _bad_file(path: Path) -> dict[str, int]:
    """A canonical JSONL with one record of each bad kind between good ones; returns {reason: line}."""
    unknown = _good("q4")
    unknown["ranking"][0] = "nope"
    missing = _good("q3")
    del missing["ranking"]
    empty = _good("q6")
    empty["candidates"][1]["text"] = "  "
    lines = [
        json.dumps(_good("q1")),
        '{"qid": "q2", "query": "broken',  # malformed JSON
        json.dumps(missing),
        json.dumps(unknown),
        json.dumps(_good("q5")),
        json.dumps(_good("q1")),  # duplicate qid
        "",  # a blank line is not a record
        json.dumps(empty),
        json.dumps(_good("q7")),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"malformed_json": 2, "missing_field": 3, "unknown_docid": 4, "duplicate_qid": 6,
            "empty_passage": 8}


def test_skip_mode_counts_every_bad_record_and_keeps_the_invariant(tmp_path):
    teacher = tmp_path / "teacher.jsonl"
    bad = _bad_file(teacher)
    out = tmp_path / "out"
    assert _run("--teacher", teacher, "--out", out, "--on-error", "skip", "--eval-fraction", "0") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["records"] == {"read": 8, "written": 3, "dropped": 5, "repaired": 0}
    assert report["invariant_holds"] and report["records"]["read"] == 3 + 5
    assert report["dropped"] == {reason: 1 for reason in bad}
    assert {e["reason"]: e["line"] for e in report["errors"]} == bad
    assert [r["qid"] for r in _jsonl(out / "train.jsonl")] == ["q1", "q5", "q7"]


@pytest.mark.parametrize("reason", ["malformed_json", "missing_field", "unknown_docid", "duplicate_qid",
                                    "empty_passage"])
def test_fail_mode_stops_at_the_first_bad_record_naming_file_line_qid_and_fix(tmp_path, reason):
    teacher = tmp_path / "teacher.jsonl"
    bad = _bad_file(teacher)
    keep = {r: ln for r, ln in bad.items() if ln >= bad[reason]}
    lines = teacher.read_text().split("\n")
    for r, ln in bad.items():  # keep only this bad record (and the good ones)
        if r != reason:
            lines[ln - 1] = json.dumps(_good(f"fixed{ln}"))
    teacher.write_text("\n".join(lines), encoding="utf-8")
    fmt, records = read_teacher(teacher, "jsonl")
    with pytest.raises(DataError) as info:
        build_listwise(records, get_prompt_spec("dear-card"), ListwiseOptions(), source=str(teacher))
    err = info.value
    assert err.reason == reason and err.line == keep[reason] and str(teacher) in str(err)
    assert f"{teacher}:{keep[reason]}" in str(err) and err.fix
    if reason != "malformed_json":
        assert err.qid is not None and f"(qid {err.qid})" in str(err)


def test_fail_mode_cli_exits_nonzero_and_writes_nothing(tmp_path, capsys):
    teacher = tmp_path / "teacher.jsonl"
    _bad_file(teacher)
    out = tmp_path / "out"
    assert _run("--teacher", teacher, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{teacher}:2" in err and "malformed JSON" in err and "fix:" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ end to end

def test_reason_to_rank_cot_end_to_end(tmp_path):
    out = tmp_path / "r2r"
    assert _run("--teacher", shared_path(*R2R), "--out", out, "--cot", "--seed", "3") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "reason-to-rank" and report["format_detected"]
    assert report["records"] == {"read": 500, "written": 500, "dropped": 0, "repaired": 0}
    assert report["options"]["cot"] is True and report["options"]["seed"] == 3
    train, evals = _jsonl(out / "train.jsonl"), _jsonl(out / "eval.jsonl")
    assert len(train) + len(evals) == 500 and len(evals) == 25
    src = {str(r["qid"]): r for r in map(json.loads, shared_path(*R2R).read_text().strip().split("\n"))}
    for rec in train + evals:
        assert set(rec) == {"qid", "docids", "prompt", "completion", "grades"}
        assert _decode(rec, "dear-card") == src[rec["qid"]]["sorted_docids"]
        # GRPO grades from the teacher order: its top 10 get 10..1 in that order, the rest 0
        grade = dict(zip(rec["docids"], rec["grades"], strict=True))
        m = min(10, len(rec["docids"]))
        assert [grade[d] for d in src[rec["qid"]]["sorted_docids"]] == [max(0, m - r) for r in range(len(grade))]
        assert rec["completion"].startswith(" <think>\n[") and "\n</think>\n[" in rec["completion"]
    assert report["grades"]["source"] == {"teacher": 500} and report["grades"]["teacher_grade_depth"] == 10
    assert load_prompt_spec(out) == get_prompt_spec("dear-card", cot=True)


def test_reason_references_follow_the_prompt_ids():
    text, ok = renumber_references("more relevant than passages 1, 3, and 5 but not passage 2 or [4]",
                                   1, {0: 4, 2: 0, 4: 1, 1: 2, 3: 3}, 0)
    assert ok and text == "more relevant than passages 4, 0, and 1 but not passage 2 or [3]"
    text, ok = renumber_references("unlike passage 6", 1, {0: 0}, 0)
    assert not ok and text == "unlike passage 6"


def test_judgments_dl19_windows_cover_the_list_with_the_teacher_order_restricted(tmp_path):
    out = tmp_path / "dl19"
    assert _run("--teacher", shared_path(*DL19), "--qrels", shared_path(*DL19_QRELS), "--out", out,
                "--prompt", "rankgpt", "--window", "20", "--eval-fraction", "0") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "qrels" and report["records"]["written"] == 43
    assert report["outputs"]["windows"] == 43 * 9  # 100 candidates, window 20, stride 10
    records = _jsonl(out / "train.jsonl")
    judged = read_qrels(shared_path(*DL19_QRELS))
    _, examples = read_teacher(shared_path(*DL19), "qrels", qrels=judged)
    teacher = {r.example.qid: r.example for r in examples}
    by_q: dict[str, list[dict]] = {}
    for rec in records:
        by_q.setdefault(rec["qid"], []).append(rec)
    for qid, recs in by_q.items():
        ex = teacher[qid]
        bm25 = [c.docid for c in ex.candidates]
        assert [r["docids"] for r in recs] == [bm25[s:e] for s, e in window_plan(100, 20, 10)]  # back to front
        rank = {d: i for i, d in enumerate(ex.ranking)}
        for rec in recs:
            assert _decode(rec, "rankgpt") == sorted(rec["docids"], key=rank.__getitem__)
            # judgments as teacher: GRPO grades are the qrels grades (unjudged 0)
            assert rec["grades"] == [max(0, judged[qid].get(d, 0)) for d in rec["docids"]]
            assert rec["prompt"][0]["role"] == "system" and len(rec["prompt"]) == 3 + 2 * 20 + 1


def test_rankgpt_teacher_is_shown_shuffled_not_in_teacher_order(tmp_path):
    out = tmp_path / "rg"
    assert _run("--teacher", shared_path("noveleval", "data.json"), "--out", out, "--eval-fraction", "0") == 0
    data = json.loads(shared_path("noveleval", "data.json").read_text())
    teacher = {str(d["hits"][0]["qid"]): [h["docid"] for h in d["hits"]] for d in data}
    for rec in _jsonl(out / "train.jsonl"):
        assert _decode(rec, "dear-card") == teacher[rec["qid"]]
        assert rec["docids"] != teacher[rec["qid"]] and sorted(rec["docids"]) == sorted(teacher[rec["qid"]])


def test_teacher_grade_depth_sets_the_grpo_grades_and_sft_ignores_them(tmp_path):
    """A teacher order becomes grades max(0, min(M, n) - r) in the window; SFT loads prompt/completion only."""
    out = tmp_path / "depth"
    assert _run("--teacher", shared_path("noveleval", "data.json"), "--out", out, "--eval-fraction", "0",
                "--window", "4", "--top-k", "8", "--teacher-grade-depth", "2") == 0
    records = _jsonl(out / "train.jsonl")
    assert records
    for rec in records:
        order = _decode(rec, "dear-card")  # the teacher's order of this window
        grade = dict(zip(rec["docids"], rec["grades"], strict=True))
        assert [grade[d] for d in order] == [2, 1, 0, 0]
    report = json.loads((out / "report.json").read_text())
    assert report["grades"]["source"] == {"teacher": len(records)} and report["grades"]["teacher_grade_depth"] == 2
    from dear_train.listwise_data import load_prep_output

    splits, _ = load_prep_output(out)
    assert splits["train"].column_names == ["prompt", "completion"]


def test_shuffle_augmentation_remaps_the_target(tmp_path):
    data, qrels = noveleval_paths()
    out = tmp_path / "shuf"
    assert _run("--teacher", data, "--qrels", qrels, "--out", out, "--shuffle", "2", "--window", "8",
                "--stride", "4", "--prompt", "rankgpt", "--eval-fraction", "0") == 0
    report = json.loads((out / "report.json").read_text())
    windows = report["outputs"]["windows"]
    assert windows == 21 * 4 and report["outputs"]["shuffled_copies"] == 2 * windows
    records = _jsonl(out / "train.jsonl")
    assert len(records) == 3 * windows
    _, examples = read_teacher(data, "qrels", qrels=read_qrels(qrels))
    rank = {r.example.qid: {d: i for i, d in enumerate(r.example.ranking)} for r in examples}
    for k in range(0, len(records), 3):
        base, *copies = records[k:k + 3]
        for rec in (base, *copies):
            assert _decode(rec, "rankgpt") == sorted(rec["docids"], key=rank[rec["qid"]].__getitem__)
        for c in copies:
            assert sorted(c["docids"]) == sorted(base["docids"]) and c["docids"] != base["docids"]


def test_variable_windows_end_to_end(tmp_path):
    out = tmp_path / "var"
    assert _run("--teacher", shared_path(*DL19), "--qrels", shared_path(*DL19_QRELS), "--out", out,
                "--min-window", "5", "--window", "20", "--top-k", "40", "--eval-fraction", "0") == 0
    records = _jsonl(out / "train.jsonl")
    sizes = [len(r["docids"]) for r in records]
    assert min(sizes) >= 5 and max(sizes) <= 20 and len(set(sizes)) > 5
    for r in records:
        assert r["prompt"].startswith(f"I will provide you with {len(r['docids'])} passages")


def test_split_is_by_query_disjoint_and_deterministic(tmp_path):
    args = ["--teacher", shared_path(*DL19), "--qrels", shared_path(*DL19_QRELS), "--eval-fraction", "0.2",
            "--shuffle", "1"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _run(*args, "--out", a, "--seed", "7") == 0
    assert _run(*args, "--out", b, "--seed", "7") == 0
    assert _run(*args, "--out", c, "--seed", "8") == 0
    for name in ("train.jsonl", "eval.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    train_q = {r["qid"] for r in _jsonl(a / "train.jsonl")}
    eval_q = {r["qid"] for r in _jsonl(a / "eval.jsonl")}
    assert not train_q & eval_q and len(eval_q) == round(0.2 * 43) and len(train_q | eval_q) == 43
    assert {r["qid"] for r in _jsonl(c / "eval.jsonl")} != eval_q
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()


def test_saved_dataset_equals_the_jsonl(tmp_path):
    from datasets import load_from_disk

    for prompt in ("dear-card", "rankgpt"):
        out = tmp_path / prompt
        data, qrels = noveleval_paths()
        assert _run("--teacher", data, "--qrels", qrels, "--out", out, "--prompt", prompt,
                    "--eval-fraction", "0.1") == 0
        dd = load_from_disk(str(out / "dataset"))
        assert set(dd) == {"train", "eval"}
        for split in ("train", "eval"):
            rows = _jsonl(out / f"{split}.jsonl")
            assert rows and dd[split].to_list() == rows


def test_outputs_replace_a_previous_run_atomically(tmp_path):
    from data_prep.io.atomic import replace_dir_atomic

    target = tmp_path / "ds"
    replace_dir_atomic(target, lambda d: (d / "a.txt").write_text("old"))

    def crash(d: Path) -> None:
        (d / "a.txt").write_text("half")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        replace_dir_atomic(target, crash)
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary left behind
    replace_dir_atomic(target, lambda d: (d / "b.txt").write_text("new"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


# ------------------------------------------------------------------------------------------ tokens

def test_max_tokens_trim_fits_every_record(tmp_path, tiny_model_dir, tiny_tokenizer):
    data, qrels = noveleval_paths()
    full, trimmed = tmp_path / "full", tmp_path / "trim"
    common = ["--teacher", data, "--qrels", qrels, "--tokenizer", tiny_model_dir, "--eval-fraction", "0",
              "--window", "10", "--top-k", "10", "--prompt", "rankgpt"]
    assert _run(*common, "--out", full) == 0
    longest = json.loads((full / "report.json").read_text())["lengths"]["total"]["max"]
    limit = longest * 2 // 3
    assert _run(*common, "--out", trimmed, "--max-tokens", limit) == 0
    report = json.loads((trimmed / "report.json").read_text())
    assert report["lengths"]["unit"] == "tokens" and report["lengths"]["total"]["max"] <= limit
    assert report["outputs"]["trimmed"] > 0 and report["records"]["dropped"] == 0
    full_recs, trim_recs = _jsonl(full / "train.jsonl"), _jsonl(trimmed / "train.jsonl")
    assert len(full_recs) == len(trim_recs)
    for a, b in zip(full_recs, trim_recs, strict=True):
        assert record_token_counts(b, tiny_tokenizer)[1] <= limit
        assert a["docids"] == b["docids"] and a["completion"] == b["completion"]  # only passages shrink
        assert len(b["prompt"]) == len(a["prompt"])  # every passage is still there


def test_max_tokens_drop_accounts_for_dropped_windows_and_records(tmp_path, tiny_model_dir, tiny_tokenizer):
    data, qrels = noveleval_paths()
    common = ["--teacher", data, "--qrels", qrels, "--tokenizer", tiny_model_dir, "--eval-fraction", "0"]
    full = tmp_path / "full"
    assert _run(*common, "--out", full) == 0
    totals = sorted(record_token_counts(r, tiny_tokenizer)[1] for r in _jsonl(full / "train.jsonl"))
    limit = totals[len(totals) // 2]
    out = tmp_path / "drop"
    assert _run(*common, "--out", out, "--max-tokens", limit, "--over-max-tokens", "drop") == 0
    report = json.loads((out / "report.json").read_text())
    kept = _jsonl(out / "train.jsonl")
    assert len(kept) == sum(t <= limit for t in totals)
    assert report["records"]["dropped"] == report["dropped"]["over_max_tokens"] == 21 - len(kept)
    assert report["records"]["read"] == report["records"]["written"] + report["records"]["dropped"] == 21
    assert all(record_token_counts(r, tiny_tokenizer)[1] <= limit for r in kept)


def test_help_is_fast_and_the_dispatcher_routes(subprocess_env, dear_cmd, tmp_path):
    out = subprocess.run([*dear_cmd, "prep", "listwise", "--help"], capture_output=True, text=True,
                         env=subprocess_env, timeout=60)
    assert out.returncode == 0 and "--over-max-tokens" in out.stdout and "reason-to-rank" in out.stdout
    teacher = shared_path(*R2R)
    res = subprocess.run([*dear_cmd, "prep", "listwise", "--teacher", str(teacher), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=subprocess_env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "reading" in res.stderr and "'reason-to-rank'" in res.stderr  # auto-detection says what it chose
    assert "500 teacher records read" in res.stdout


def test_free_text_reasoning_is_renumbered_on_full_views_and_dropped_on_windows():
    from data_prep.listwise import view_reasoning
    from data_prep.schema import Candidate, RankingExample

    ex = RankingExample(qid="q", query="q", candidates=tuple(Candidate(f"d{i}", f"t{i}") for i in range(4)),
                        ranking=("d2", "d0", "d3", "d1"), reasoning="[3] beats [1]; passage 4 is weakest",
                        meta={"reasoning_id_base": 1})
    text, lost = view_reasoning(ex, [3, 2, 1, 0], 0)  # reversed order, 0-based prompt ids
    assert not lost and text == "[1] beats [3]; passage 0 is weakest"
    assert view_reasoning(ex, [0, 1, 2, 3], 1) == ("[3] beats [1]; passage 4 is weakest", False)
    assert view_reasoning(ex, [0, 2], 0) == (None, True)


def test_window_records_of_one_source_query_stay_in_one_split(tmp_path):
    # `dear teacher` writes one record per window with qid "<qid>@<start>-<end>" and the query's source_qid.
    teacher = tmp_path / "teacher.jsonl"
    with teacher.open("w") as f:
        for q in range(10):
            for start in (0, 3):
                rec = _good(f"q{q}@{start}-{start + 3}")
                rec["source_qid"] = f"q{q}"
                f.write(json.dumps(rec) + "\n")
    out = tmp_path / "out"
    assert _run("--teacher", str(teacher), "--format", "jsonl", "--out", str(out), "--eval-fraction", "0.3") == 0
    train = {r["qid"].split("@")[0] for r in _jsonl(out / "train.jsonl")}
    evals = {r["qid"].split("@")[0] for r in _jsonl(out / "eval.jsonl")}
    assert evals and train and not (train & evals)
    assert len(train) + len(evals) == 10


def test_passage_length_is_applied_and_saved_in_the_spec(tmp_path):
    data, qrels = noveleval_paths()
    out = tmp_path / "out"
    assert _run("--teacher", data, "--format", "qrels", "--qrels", qrels, "--out", out,
                "--window", "5", "--passage-length", "40") == 0
    spec = load_prompt_spec(out)
    assert spec.truncate_length == 40 and spec.name == "dear-card"
    rec = _jsonl(out / "train.jsonl")[0]
    lines = [ln for ln in rec["prompt"].split("\n") if ln.startswith("[")]
    assert len(lines) == 5 and all(len(ln.split("] ", 1)[1]) <= 40 for ln in lines)
    assert any(len(ln.split("] ", 1)[1]) == 40 for ln in lines)
