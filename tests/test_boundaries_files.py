"""Every file and command-line boundary, driven by generated bad values (``tests/_bad_values.py``).

Properties, for every reader in ``data_prep.readers``, every command's options and the output guard:
a bad value is a :class:`DataError` (exit 2 for a command) whose one line names the file and line, the record
or the flag, and a fix, never another exception or a traceback; a good value comes back unchanged; and every
file that existed before a refused command is byte-identical afterwards. Then the resume rules of
``inference.runfiles``: finished queries are never deleted, changed queries are redone, a JSONL that is not
the run's is never cut. Examples are bounded (the whole file runs in well under a minute on 2 cores).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _bad_values import (
    CONTROL,
    PATH_RELATIONS,
    bad_ids,
    bad_json_scores,
    bad_number_text,
    good_ids,
    good_scores,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from data_prep import readers
from data_prep.schema import Candidate, DataError, RerankRequest

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TSV_BREAKS = "\t\n\r"  # a TSV reader sees other columns or lines: the file then says something else


@contextlib.contextmanager
def _tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _refused(fn: Callable[[], object], *words: str) -> DataError:
    """``fn()`` raises a DataError (no other exception) holding ``words`` and a fix."""
    with pytest.raises(DataError) as err:
        fn()
    text = str(err.value)
    for w in words:
        assert w in text, (w, text)
    assert " -- fix: " in text and "\n" not in text.split(" -- fix: ")[0][-200:], text
    return err.value


def _trec_bad_ids() -> st.SearchStrategy[str]:
    """Bad ids as a whitespace-separated line can carry them: no line break inside, and whitespace only
    inside the id (at its ends the file just says another id: the reader cannot know)."""
    return bad_ids().filter(lambda s: not any(c in "\n\r" for c in s) and (s.strip() == s or not s.strip()))


def _lines(text: str) -> str:
    return "".join(line + "\n" for line in text.split("\n"))  # str.splitlines would also split on \x0b, \x85...


# ----------------------------------------------------------------------------------------- TREC runs

runs = st.dictionaries(good_ids, st.lists(st.tuples(good_ids, good_scores), min_size=1, max_size=4,
                                          unique_by=lambda t: t[0]), min_size=1, max_size=3)


def _run_text(run: dict[str, list[tuple[str, float]]], tag: str = "t") -> list[str]:
    return [f"{q} Q0 {d} {r} {s!r} {tag}" for q, docs in run.items() for r, (d, s) in enumerate(docs, 1)]


@FAST
@given(run=runs)
def test_a_good_run_reads_back_exactly(run) -> None:
    with _tmp() as d:
        path = d / "run.trec"
        path.write_text(_lines("\n".join(_run_text(run))), encoding="utf-8")
        assert readers.read_run(path) == {q: [(doc, float(s)) for doc, s in docs] for q, docs in run.items()}


@FAST
@given(run=runs, data=st.data())
def test_a_bad_run_line_is_refused_naming_file_and_line(run, data) -> None:
    lines = _run_text(run)
    at = data.draw(st.integers(0, len(lines)), label="line index")
    kind = data.draw(st.sampled_from(["qid", "docid", "score", "duplicate"]), label="kind")
    q, docs = next(iter(run.items()))
    if kind == "qid":
        bad = f"{data.draw(_trec_bad_ids())} Q0 d 1 1.0 t"
    elif kind == "docid":
        bad = f"{q} Q0 {data.draw(_trec_bad_ids())} 9 1.0 t"
    elif kind == "score":
        bad = f"{q} Q0 dnew 9 {data.draw(bad_number_text() | st.sampled_from(['x', '1,5', '']))} t"
    else:
        at = data.draw(st.integers(len(docs), len(lines)), label="after the first copy")
        bad = f"{q} Q0 {docs[0][0]} 9 1.0 t"  # the same docid again in this query
    lines.insert(at, bad)
    with _tmp() as d:
        path = d / "run.trec"
        path.write_text(_lines("\n".join(lines)), encoding="utf-8")
        before = path.read_bytes()
        _refused(lambda: readers.read_run(path), f"run.trec:{at + 1}")
        assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------------- qrels

qrels_st = st.dictionaries(good_ids, st.dictionaries(good_ids, st.integers(-1, 4), min_size=1, max_size=3),
                           min_size=1, max_size=3)


@FAST
@given(qrels=qrels_st, data=st.data())
def test_qrels_read_back_or_a_bad_line_is_refused(qrels, data) -> None:
    lines = [f"{q} 0 {d} {g}" for q, docs in qrels.items() for d, g in docs.items()]
    with _tmp() as d:
        path = d / "qrels.txt"
        path.write_text(_lines("\n".join(lines)), encoding="utf-8")
        assert readers.read_qrels(path) == qrels
        q, docs = next(iter(qrels.items()))
        kind = data.draw(st.sampled_from(["qid", "docid", "grade", "duplicate"]), label="kind")
        at = data.draw(st.integers(len(docs) if kind == "duplicate" else 0, len(lines)), label="line index")
        bad = {"qid": f"{data.draw(_trec_bad_ids())} 0 d 1", "docid": f"{q} 0 {data.draw(_trec_bad_ids())} 1",
               "grade": f"{q} 0 dnew {data.draw(st.sampled_from(['1.5', 'x', 'nan', str(2**31), str(-(2**40))]))}",
               "duplicate": f"{q} 0 {next(iter(docs))} 0"}[kind]
        lines.insert(at, bad)
        path.write_text(_lines("\n".join(lines)), encoding="utf-8")
        _refused(lambda: readers.read_qrels(path), f"qrels.txt:{at + 1}")


def test_duplicate_judgments_and_duplicate_run_docids_are_refused_as_trec_eval_does(tmp_path) -> None:
    """nDCG@1 went from 100 to 0 on one duplicate qrels line (the last one was kept): now refused."""
    qrels = tmp_path / "q.txt"
    qrels.write_text("q1 0 d1 1\nq1 0 d2 0\nq1 0 d1 0\n")
    _refused(lambda: readers.read_qrels(qrels), "q.txt:3", "judged twice", "q1")
    run = tmp_path / "r.trec"
    run.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\nq1 Q0 d1 3 0.5 t\n")
    _refused(lambda: readers.read_run(run), "r.trec:3", "appears twice", "q1")


# ---------------------------------------------------------------------------------------- RankGPT JSON

def _entries(qids: list[str], k: int = 2) -> list[dict]:
    return [{"query": f"query {i}", "qid": q, "hits": [{"qid": q, "docid": f"d{i}-{j}", "content": f"t {j}",
                                                         "score": float(k - j)} for j in range(k)]}
            for i, q in enumerate(qids)]


@FAST
@given(qids=st.lists(good_ids, min_size=1, max_size=3, unique=True), data=st.data())
def test_rankgpt_json_refuses_bad_ids_scores_texts_and_duplicates_naming_the_entry(qids, data) -> None:
    entries = _entries(qids)
    i = data.draw(st.integers(0, len(entries) - 1), label="entry")
    kind = data.draw(st.sampled_from(["qid", "docid", "score", "content", "duplicate"]), label="kind")
    hit = entries[i]["hits"][1]
    if kind == "qid":
        entries[i]["qid"] = data.draw(bad_ids() | st.lists(good_ids, max_size=1) | st.booleans(), label="qid")
    elif kind == "docid":
        hit["docid"] = data.draw(bad_ids() | st.none() | st.dictionaries(good_ids, good_ids, max_size=1))
    elif kind == "score":
        hit["score"] = data.draw(bad_json_scores())
    elif kind == "content":
        hit["content"] = data.draw(st.sampled_from([None, ["a"], {"t": "a"}, True]))
    else:
        hit["docid"] = entries[i]["hits"][0]["docid"]
    with _tmp() as d:
        path = d / "cands.json"
        path.write_text(json.dumps(entries), encoding="utf-8")
        err = _refused(lambda: readers.read_rankgpt_json(path), "cands.json", f"entry #{i}")
        if kind != "qid":
            assert err.qid == str(qids[i])


@FAST
@given(qids=st.lists(good_ids, min_size=1, max_size=3, unique=True), scores=st.lists(good_scores | st.none(),
                                                                                    min_size=2, max_size=2))
def test_good_rankgpt_json_reads_back(qids, scores) -> None:
    entries = _entries(qids)
    for e in entries:
        for h, s in zip(e["hits"], scores, strict=True):
            h["score"] = s
    with _tmp() as d:
        path = d / "c.json"
        path.write_text(json.dumps(entries), encoding="utf-8")
        got = readers.read_rankgpt_json(path)
    assert [r.qid for r in got] == qids
    assert [[(c.docid, c.score) for c in r.candidates] for r in got] == \
        [[(h["docid"], None if h["score"] is None else float(h["score"])) for h in e["hits"]] for e in entries]


def test_a_nan_or_text_score_in_rankgpt_json_is_refused_by_dear_eval(tmp_path, capsys) -> None:
    """NaN scores in RankGPT JSON were scored, a text or list score was a traceback: both one line now."""
    from inference import cli_eval

    qrels = tmp_path / "q.txt"
    qrels.write_text("q1 0 d0-0 1\n")
    for score in ("NaN", '"high"', "[1, 2]"):
        run = tmp_path / "c.json"
        run.write_text(json.dumps(_entries(["q1"])).replace('"score": 1.0', f'"score": {score}', 1))
        assert cli_eval.main(["--run", str(run), "--qrels", str(qrels)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dear eval: error: ") and "c.json" in err and "entry #0 hit #1" in err
        assert "Traceback" not in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------ topics and corpus

def _tsv_bad_ids() -> st.SearchStrategy[str]:
    return bad_ids().filter(lambda s: not any(c in TSV_BREAKS for c in s))  # those make other columns/lines


@FAST
@given(qids=st.lists(good_ids, min_size=1, max_size=3, unique=True), data=st.data())
def test_topics_refuse_bad_and_duplicate_qids(qids, data) -> None:
    fmt = data.draw(st.sampled_from(["tsv", "jsonl"]), label="format")
    kind = data.draw(st.sampled_from(["bad", "duplicate"]), label="kind")
    if kind == "bad":
        bad = data.draw(_tsv_bad_ids() if fmt == "tsv" else bad_ids(), label="qid")
        if fmt == "tsv":  # the TSV reader strips the qid column: only an id still bad after stripping counts
            kept = bad.strip()
            assume(not kept or any(c.isspace() or c in CONTROL for c in kept))
        rows = [*qids, bad]
    else:
        rows = [*qids, qids[0]]
    with _tmp() as d:
        path = d / f"topics.{fmt}"
        if fmt == "tsv":
            path.write_text("".join(f"{q}\tquery {i}\n" for i, q in enumerate(rows)), encoding="utf-8")
        else:
            path.write_text("".join(json.dumps({"_id": q, "text": f"query {i}"}) + "\n" for i, q in enumerate(rows)),
                            encoding="utf-8")
        _refused(lambda: readers.read_topics(path), f"topics.{fmt}:{len(rows)}")
        good = d / f"good.{fmt}"
        good.write_text("".join((f"{q}\tquery {i}\n" if fmt == "tsv" else json.dumps({"_id": q, "text": f"query {i}"})
                                 + "\n") for i, q in enumerate(qids)), encoding="utf-8")
        assert readers.read_topics(good) == {q: f"query {i}" for i, q in enumerate(qids)}


@FAST
@given(docids=st.lists(good_ids, min_size=1, max_size=3, unique=True), data=st.data())
def test_corpus_refuses_bad_docids_and_conflicting_duplicates(docids, data) -> None:
    fmt = data.draw(st.sampled_from(["tsv", "jsonl"]), label="format")
    kind = data.draw(st.sampled_from(["bad", "conflict", "same"]), label="kind")
    rows = [(d, f"text {d}") for d in docids]
    if kind == "bad":
        rows.append((data.draw(_tsv_bad_ids() if fmt == "tsv" else bad_ids(), label="docid"), "x"))
    else:
        rows.append((docids[0], "other text" if kind == "conflict" else f"text {docids[0]}"))
    with _tmp() as d:
        path = d / f"corpus.{fmt}"
        path.write_text("".join((f"{i}\t{t}\n" if fmt == "tsv" else json.dumps({"_id": i, "text": t}) + "\n")
                                for i, t in rows), encoding="utf-8")
        if kind == "same":  # an identical copy is harmless: kept once
            assert list(readers.read_corpus(path)) == docids
        else:
            _refused(lambda: readers.read_corpus(path), f"corpus.{fmt}:{len(rows)}")


def test_an_id_with_whitespace_is_refused_where_it_enters_naming_the_record(tmp_path) -> None:
    entries = _entries(["q 1"])
    (tmp_path / "c.json").write_text(json.dumps(entries))
    _refused(lambda: readers.read_rankgpt_json(tmp_path / "c.json"), "entry #0", "qid 'q 1' contains whitespace")
    entries = _entries(["q1"])
    entries[0]["hits"][1]["docid"] = ""
    (tmp_path / "c.json").write_text(json.dumps(entries))
    _refused(lambda: readers.read_rankgpt_json(tmp_path / "c.json"), "(qid q1)", "entry #0 hit #1", "is empty")


# ------------------------------------------------------------------------------------ the output guard

def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes), symlink (target) and folder under ``root``."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
        else:
            out[rel] = "dir"
    return out


def _dear(argv: list[str]) -> tuple[int, str]:
    """`dear ARGV` in this process; (exit code, stderr)."""
    from dear_train.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, err.getvalue()


QRELS = "q1 0 d0-0 1\nq1 0 d0-1 0\n"
RUN = "q1 Q0 d0-0 1 2.0 bm25\nq1 Q0 d0-1 2 1.0 bm25\n"
TEACHER = json.dumps({"qid": "q1", "query": "query", "candidates": [{"docid": "a", "text": "x"},
                                                                    {"docid": "b", "text": "y"}],
                      "ranking": ["b", "a"]}) + "\n"


def _inputs(root: Path) -> dict[str, Path]:
    files = {"cands": root / "cands.json", "qrels": root / "qrels.txt", "run": root / "run.trec",
             "teacher": root / "teacher.jsonl", "scores": root / "scores.tsv"}
    files["cands"].write_text(json.dumps(_entries(["q1"])))
    files["qrels"].write_text(QRELS)
    files["run"].write_text(RUN)
    files["teacher"].write_text(TEACHER)
    files["scores"].write_text("q1\td0-0\t1.0\nq1\td0-1\t0.0\n")
    for name in ("prep", "adapter"):
        (root / name).mkdir()
        (root / name / "train.jsonl").write_text(TEACHER)
    return files


# (command argv with {placeholders}, the output flag, the input flag, the input key, output is a folder)
GUARDED: list[tuple[list[str], str, str, str, bool]] = [
    (["rerank", "--model", "{root}/nomodel", "--input", "{input}", "--out", "{output}"], "--out", "--input", "cands", False),
    (["rerank", "--model", "{root}/nomodel", "--input", "{cands}", "--qrels", "{input}", "--out", "{output}",
      "--overwrite"], "--out", "--qrels", "qrels", False),
    (["rerank", "--model", "{root}/nomodel", "--input", "{input}", "--out", "{root}/o.trec", "--jsonl", "{output}"],
     "--jsonl", "--input", "cands", False),
    (["eval", "--run", "{run}", "--qrels", "{input}", "--out", "{output}", "--overwrite"], "--out", "--qrels", "qrels",
     False),
    (["eval", "--run", "{input}", "--qrels", "{qrels}", "--out", "{output}"], "--out", "--run", "run", False),
    (["prep", "listwise", "--teacher", "{input}", "--out", "{output}", "--overwrite"], "--out", "--teacher", "teacher",
     True),
    (["prep", "pointwise", "--candidates", "{input}", "--teacher-scores", "{scores}", "--out", "{output}"], "--out",
     "--candidates", "cands", True),
    (["teacher", "--input", "{input}", "--out", "{output}", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"],
     "--out", "--input", "cands", False),
    (["teacher", "--input", "{input}", "--out", "{root}/t.jsonl", "--report", "{output}", "--endpoint",
      "http://127.0.0.1:9/v1", "--model", "m"], "--report", "--input", "cands", False),
    (["export", "--adapter", "{input}", "--out", "{output}"], "--out", "--adapter", "adapter", True),
    (["train", "--model_name_or_path", "x", "--dataset_path", "{input}", "--output_dir", "{output}"], "--output_dir",
     "--dataset_path", "prep", True),
    (["distill", "--model_name_or_path", "x", "--dataset_path", "{input}", "--output_dir", "{output}"],
     "--output_dir", "--dataset_path", "prep", True),
]


def _relate(root: Path, inp: Path, relation: str, folder_out: bool) -> Path:
    """An output path that IS ``inp`` by ``relation`` (or, for ``inside``, a folder output holding it)."""
    if relation == "same":
        return inp
    if relation == "dot-dot":
        (root / "sub").mkdir(exist_ok=True)
        return root / "sub" / ".." / inp.name
    if relation == "symlink":
        link = root / f"link-{inp.name}"
        link.symlink_to(inp)
        return link
    if relation == "hardlink" and inp.is_file():
        link = root / f"hard-{inp.name}"
        os.link(inp, link)
        return link
    if folder_out:  # "inside" (and "hardlink" of a folder): a folder output that holds the input
        return inp.parent
    return inp


@pytest.mark.parametrize("relation", PATH_RELATIONS)
@pytest.mark.parametrize("case", GUARDED, ids=[" ".join(c[0][:2]) + f" {c[1]}={c[2]}" for c in GUARDED])
def test_no_output_is_an_input_of_the_same_command(case, relation) -> None:
    """Whatever the command and however the path names it (the very path, a symlink, a hard link, `..`, a
    folder holding it), an output that is an input is refused before any work -- with --overwrite too --
    and every file is byte-identical afterwards. The space is small (commands x relations): all of it."""
    argv, out_flag, in_flag, key, folder_out = case
    with _tmp() as root:
        files = _inputs(root)
        inp = files.get(key) or root / key
        if folder_out and key in ("cands", "teacher"):  # prep writes OUT/<its files>: the input is one of them
            target = root / "prep_out"
            target.mkdir()
            inside = relation == "inside" and key == "teacher"  # only prep listwise replaces a folder (dataset/)
            inp = target / ("dataset" if inside else "train.jsonl")
            if inside:
                inp.mkdir()
                inp = inp / files[key].name
            inp.write_bytes(files[key].read_bytes())
            output = target
        elif folder_out and key in ("prep", "adapter") and relation == "inside":
            output = root  # the output folder holds the input folder
        else:
            output = _relate(root, inp, relation, folder_out)
        before = _snapshot(root)
        filled = [a.format(root=root, input=inp, output=output, **files) for a in argv]
        rc, err = _dear(filled)
        assert rc == 2, (filled, err)
        line = next(ln for ln in err.splitlines() if "error:" in ln)
        assert out_flag in line and in_flag in line and "fix:" in line, line
        assert "Traceback" not in err
        assert _snapshot(root) == before


@SLOW
@given(command=st.sampled_from(["eval", "prep listwise", "prep pointwise"]),
       content=st.binary(min_size=1, max_size=64))
def test_an_existing_output_is_never_replaced_without_overwrite(command, content) -> None:
    with _tmp() as root:
        files = _inputs(root)
        if command == "eval":
            out = root / "results.json"
            out.write_bytes(content)
            argv = ["eval", "--run", str(files["run"]), "--qrels", str(files["qrels"]), "--out", str(out)]
        else:
            out = root / "prepped"
            out.mkdir()
            (out / data_name(command)).write_bytes(content)
            argv = (["prep", "listwise", "--teacher", str(files["teacher"]), "--window", "2"] if command == "prep listwise"
                    else ["prep", "pointwise", "--candidates", str(files["cands"]), "--teacher-scores",
                          str(files["scores"]), "--negatives", "1"]) + ["--out", str(out)]
        before = _snapshot(root)
        rc, err = _dear(argv)
        assert rc == 2 and "--out" in err and "exists" in err and "--overwrite" in err, err
        assert _snapshot(root) == before
        rc, err = _dear([*argv, "--overwrite"])  # asked for: replaced
        assert rc == 0, err


def data_name(command: str) -> str:
    return "report.json" if command == "prep listwise" else "train.jsonl"


@FAST
@given(relation=st.sampled_from(["same", "symlink", "hardlink", "dot-dot", "other"]))
def test_check_outputs_refuses_exactly_the_paths_that_are_an_input(relation) -> None:
    from data_prep.cli_options import OptionError, check_outputs

    with _tmp() as root:
        inp = root / "in.txt"
        inp.write_text("x")
        out = root / "other.txt" if relation == "other" else _relate(root, inp, relation, False)
        if relation == "other":
            check_outputs({"out": out}, {"input": inp})
            check_outputs({"out": out, "jsonl": root / "j.jsonl"}, {"input": inp})
            with pytest.raises(OptionError, match="same path as the output of --out"):
                check_outputs({"out": out, "jsonl": out}, {"input": inp})
        else:
            with pytest.raises(OptionError, match="--input"):
                check_outputs({"out": out}, {"input": inp}, overwrite=True)
        assert inp.read_text() == "x"


# ------------------------------------------------------------------------------------- options (flags)

FLOAT_FLAGS = [
    ["rerank", "--model", "m", "--input", "{cands}", "--out", "{root}/o.trec", "--temperature"],
    ["rerank", "--model", "m", "--input", "{cands}", "--out", "{root}/o.trec", "--sample", "--top-p"],
    ["prep", "listwise", "--teacher", "{teacher}", "--out", "{root}/p", "--eval-fraction"],
    ["teacher", "--input", "{cands}", "--out", "{root}/t.jsonl", "--endpoint", "http://127.0.0.1:9/v1", "--model",
     "m", "--timeout"],
    ["teacher", "--input", "{cands}", "--out", "{root}/t.jsonl", "--endpoint", "http://127.0.0.1:9/v1", "--model",
     "m", "--max-requests-per-minute"],
    *[["train", "--model_name_or_path", "x", "--dataset_path", "{root}/prep", "--output_dir", "{root}/o", flag]
      for flag in ("--first_token_loss_weight", "--learning_rate", "--weight_decay", "--adam_beta1",
                   "--max_grad_norm", "--warmup_steps", "--lora_dropout", "--logging_steps", "--num_train_epochs")],
    *[["distill", "--model_name_or_path", "x", "--dataset_path", "{root}/prep", "--output_dir", "{root}/o", flag]
      for flag in ("--alpha", "--temperature", "--mix_weight", "--learning_rate")],
]
GRPO_ARGV = ["train", "--method", "grpo", "--model_name_or_path", "x", "--dataset_path", "{root}/prep",
             "--output_dir", "{root}/o", "--sft_adapter", "{root}/adapter"]
GRPO_FLOATS = ("--beta", "--temperature", "--top_p", "--min_p", "--repetition_penalty", "--epsilon", "--epsilon_high",
               "--delta", "--reward_weights", "--learning_rate", "--warmup_steps", "--max_grad_norm", "--lora_dropout",
               "--top_entropy_quantile", "--entropy_coef", "--vllm_gpu_memory_utilization")
FLOAT_FLAGS += [[*GRPO_ARGV, flag] for flag in GRPO_FLOATS]
# GRPO's float options outside their range (the sampling temperature, nucleus share, KL weight, clip range,
# reward weights ...): drawn values no GRPO run can use
_NEG = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)  # -0.0 is no negative number
_NOT_POS = st.floats(max_value=0, allow_nan=False, allow_infinity=False)
_ABOVE_1 = st.floats(min_value=1, exclude_min=True, allow_nan=False, allow_infinity=False)
GRPO_OUT_OF_RANGE = {
    "--temperature": _NOT_POS, "--top_p": _NOT_POS | _ABOVE_1, "--min_p": _NEG | _ABOVE_1,
    "--repetition_penalty": _NOT_POS, "--beta": _NEG, "--epsilon": _NOT_POS | _ABOVE_1, "--epsilon_high": _NOT_POS,
    "--delta": st.floats(max_value=1, allow_nan=False, allow_infinity=False), "--reward_weights": _NEG,
    "--learning_rate": _NEG, "--lora_dropout": _NEG | st.floats(min_value=1, allow_nan=False, allow_infinity=False),
    "--top_entropy_quantile": _NEG | _ABOVE_1, "--vllm_gpu_memory_utilization": _NOT_POS | _ABOVE_1,
}
# and values a GRPO run can use: the same check lets them through
GRPO_IN_RANGE = {
    "--temperature": st.floats(min_value=0.01, max_value=5), "--top_p": st.floats(min_value=0.01, max_value=1),
    "--beta": st.floats(min_value=0, max_value=1), "--epsilon": st.floats(min_value=0.01, max_value=1),
    "--reward_weights": st.floats(min_value=0, max_value=10), "--delta": st.floats(min_value=1.01, max_value=10),
}


@SLOW
@given(argv=st.sampled_from(FLOAT_FLAGS), value=bad_number_text())
def test_a_non_finite_float_option_is_refused_naming_the_flag_before_anything_loads(argv, value) -> None:
    """`--first_token_loss_weight inf` trained an all-NaN adapter and `nan` silently nothing; every float
    option of every command is refused as not finite, in one line naming the flag, before any model or
    data loads (nothing is written)."""
    with _tmp() as root:
        files = _inputs(root)
        before = _snapshot(root)
        *head, flag = (a.format(root=root, **files) for a in argv)
        rc, err = _dear([*head, f"{flag}={value}"])  # `--x -inf` would read as a flag
        assert rc == 2, err
        line = next(ln for ln in err.splitlines() if "error:" in ln)
        assert argv[-1] in line and "finite" in line and "fix:" in line and "Traceback" not in err, line
        assert _snapshot(root) == before


@SLOW
@given(data=st.data(), flag=st.sampled_from(sorted(GRPO_OUT_OF_RANGE)))
def test_a_grpo_float_option_out_of_range_is_refused_naming_the_flag_before_anything_loads(data, flag) -> None:
    """`dear train --method grpo` checks its own floats as `dear train` does: `--temperature 0`, `--top_p 1.5`,
    `--beta -0.1`, a negative reward weight ... are one line naming the flag, its range and the fix, exit 2,
    before any model or data loads (nothing is written)."""
    value = data.draw(GRPO_OUT_OF_RANGE[flag], label="value")
    with _tmp() as root:
        _inputs(root)
        before = _snapshot(root)
        rc, err = _dear([*(a.format(root=root) for a in GRPO_ARGV), f"{flag}={value!r}"])
        assert rc == 2, err
        line = next(ln for ln in err.splitlines() if "error:" in ln)
        assert f"{flag} must be " in line and "fix:" in line and "Traceback" not in err, line
        assert _snapshot(root) == before


@FAST
@given(data=st.data(), flag=st.sampled_from(sorted(GRPO_IN_RANGE)))
def test_grpo_float_options_in_range_pass_the_check(data, flag) -> None:
    from dear_train.config import check_values, float_ranges
    from dear_train.grpo.config import config_classes

    value = data.draw(GRPO_IN_RANGE[flag], label="value")
    given = [1.0, value] if flag == "--reward_weights" else value
    check_values({flag[2:]: given}, ranges=float_ranges(config_classes()))


@FAST
@given(value=st.sampled_from(["-1", "1.5"]), flag=st.sampled_from(["--adam_beta1", "--lora_dropout",
                                                                   "--label_smoothing_factor"]))
def test_training_floats_out_of_range_name_the_flag_and_the_range(value, flag) -> None:
    from dear_train.config import ConfigError, check_values

    with pytest.raises(ConfigError, match=f"{flag} must be in \\[0, 1\\), got {float(value)}"):
        check_values({flag[2:]: float(value)})


@FAST
@given(tag=bad_ids())
def test_a_run_tag_no_trec_file_can_hold_is_refused(tag) -> None:
    assume("\x00" not in tag)  # no argv can carry a NUL byte
    with _tmp() as root:
        files = _inputs(root)
        rc, err = _dear(["rerank", "--model", "m", "--input", str(files["cands"]), "--out", str(root / "o.trec"),
                         f"--tag={tag}"])
        assert rc == 2 and "--tag" in err and "fix:" in err and "Traceback" not in err, err
        assert not (root / "o.trec").exists()


# -------------------------------------------------------------------------------------- resume rules

def _request(qid: str, version: int = 0, k: int = 3) -> RerankRequest:
    return RerankRequest(qid=qid, query=f"query {qid}", candidates=tuple(
        Candidate(f"{qid}-d{j}", f"passage {j} v{version}") for j in range(k)))


def _rank_all(out: Path, jsonl: Path, requests: list[RerankRequest], todo: list[RerankRequest], *,
              parts: int = 0) -> None:
    """What a job does after prepare_resume: append each todo query (to part files when ``parts``)."""
    from inference.runfiles import RunAppender, consolidate, expected_lines, part_paths

    if parts:
        for rank in range(parts):
            run, rec = part_paths(out, rank)
            with RunAppender(run, rec) as w:
                for r in todo[rank::parts]:
                    w.write(r.qid, _ranking(r), {"qid": r.qid, "v": r.candidates[0].text})
    else:
        with RunAppender(out, jsonl) as w:
            for r in todo:
                w.write(r.qid, _ranking(r), {"qid": r.qid, "v": r.candidates[0].text})
    consolidate(out, jsonl, expected_lines(requests))


def _ranking(r: RerankRequest) -> list[tuple[str, float]]:
    return [(c.docid, float(len(r.candidates) - i)) for i, c in enumerate(reversed(r.candidates))]


def _job(out: Path, jsonl: Path, requests: list[RerankRequest], *, parts: int = 0) -> list[str]:
    """One `dear rerank` invocation over ``requests``; returns the qids it ranked."""
    from inference.runfiles import expected_lines, prepare_resume, query_fingerprints

    done = prepare_resume(out, jsonl, expected_lines(requests), {"model": "m"},
                          fingerprints=query_fingerprints(requests))
    todo = [r for r in requests if r.qid not in done]
    _rank_all(out, jsonl, requests, todo, parts=parts)
    return [r.qid for r in todo]


def _blocks(out: Path) -> dict[str, str]:
    blocks: dict[str, str] = {}
    for line in out.read_text().splitlines(keepends=True):
        blocks[line.split()[0]] = blocks.get(line.split()[0], "") + line
    return blocks


@SLOW
@given(n=st.integers(2, 6), data=st.data())
def test_a_resume_never_deletes_finished_queries_and_redoes_changed_ones(n, data) -> None:
    """Run 1 ranks n queries. Run 2 asks for a random subset (like --limit or a shorter input), some of them
    changed under the same qid, plus new ones, possibly over part files of several processes. Afterwards:
    every query of run 1 not asked again is still there, byte for byte, after the asked ones in their old
    order; unchanged asked queries were not ranked again; changed ones were, and their new ranking is in."""
    first = [_request(f"q{i}") for i in range(n)]
    asked = data.draw(st.lists(st.sampled_from(range(n)), unique=True, max_size=n), label="asked again")
    changed = set(data.draw(st.lists(st.sampled_from(asked), unique=True), label="changed")) if asked else set()
    new = data.draw(st.integers(0, 2), label="new queries")
    parts = data.draw(st.sampled_from([0, 2]), label="parts")
    second = [_request(f"q{i}", version=1 if i in changed else 0) for i in asked] + \
        [_request(f"n{j}") for j in range(new)]
    with _tmp() as d:
        out, jsonl = d / "run.trec", d / "run.jsonl"
        assert _job(out, jsonl, first) == [r.qid for r in first]
        before = _blocks(out)
        ranked = _job(out, jsonl, second, parts=parts)
        after = _blocks(out)
        assert sorted(ranked) == sorted([f"q{i}" for i in changed] + [f"n{j}" for j in range(new)])
        not_asked = [r.qid for r in first if r.qid not in {s.qid for s in second}]
        assert list(after) == [r.qid for r in second] + not_asked  # asked in input order, then the others
        for q in not_asked + [f"q{i}" for i in asked if i not in changed]:
            assert after[q] == before[q]
        records = {json.loads(line)["qid"]: json.loads(line) for line in jsonl.read_text().splitlines()}
        assert set(records) == set(after)
        for i in changed:
            assert records[f"q{i}"]["v"].endswith("v1")
        # and a third run of the first input redoes exactly what changed back, nothing else
        assert sorted(_job(out, jsonl, first)) == sorted(f"q{i}" for i in changed)


@FAST
@given(content=st.binary(min_size=1, max_size=200))
def test_a_jsonl_that_is_not_the_runs_is_refused_never_cut(content) -> None:
    from inference.runfiles import expected_lines, prepare_resume

    reqs = [_request("q1")]
    with _tmp() as d:
        out, jsonl, own = d / "run.trec", d / "notes.jsonl", d / "run.jsonl"
        jsonl.write_bytes(content)
        _refused(lambda: prepare_resume(out, jsonl, expected_lines(reqs), {"model": "m"}), "notes.jsonl",
                 "not this run's", "--overwrite")
        assert jsonl.read_bytes() == content and not out.exists()
        _job(out, own, reqs)  # a run with its own JSONL; then pointed at the other file: refused too
        _refused(lambda: prepare_resume(out, jsonl, expected_lines(reqs), {"model": "m"}), "notes.jsonl")
        assert jsonl.read_bytes() == content
        assert prepare_resume(out, own, expected_lines(reqs), {"model": "m"}) == {"q1"}  # its own: resumed


def test_rerank_limit_2_on_a_finished_run_keeps_every_query(tmp_path) -> None:
    """The reported case: a finished run, rerun with --limit 2 (or a shorter input), dropped the others."""
    reqs = [_request(f"q{i}") for i in range(5)]
    out, jsonl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    _job(out, jsonl, reqs)
    before_run, before_jsonl = out.read_bytes(), jsonl.read_bytes()
    assert _job(out, jsonl, reqs[:2]) == []
    assert out.read_bytes() == before_run and jsonl.read_bytes() == before_jsonl
    meta = json.loads((tmp_path / "run.trec.meta.json").read_text())
    assert list(meta["queries"]) == [r.qid for r in reqs] and meta["jsonl"] == str(jsonl.resolve())
    assert all(len(v["fingerprint"]) == 24 and v["lines"] == 3 for v in meta["queries"].values())


def test_a_legacy_run_without_fingerprints_still_resumes(tmp_path) -> None:
    """Runs recorded before fingerprints (settings only, no JSONL named) resume and keep every query."""
    from inference.runfiles import expected_lines, prepare_resume

    out, jsonl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    reqs = [_request("q1"), _request("q2")]
    out.write_text("".join(readers.run_lines(r.qid, _ranking(r)) for r in reqs))
    jsonl.write_text("".join(json.dumps({"qid": r.qid}) + "\n" for r in reqs))
    (tmp_path / "run.trec.meta.json").write_text(json.dumps({"settings": {"model": "m"}}))
    before = out.read_bytes()
    assert prepare_resume(out, jsonl, expected_lines(reqs[:1]), {"model": "m"}) == {"q1"}
    assert out.read_bytes() == before


def test_expected_rerank_output_paths_cover_every_sidecar(tmp_path) -> None:
    """`--jsonl` on the run's settings or summary file would be overwritten by them: refused."""
    from data_prep.cli_options import check_outputs
    from inference.cli_rerank import RerankOptions

    for side in (".meta.json", ".summary.json", ".lock"):
        opts = RerankOptions(model="m", input="i.json", out=str(tmp_path / "r.trec"),
                             jsonl=str(tmp_path / "r.trec") + side)
        with pytest.raises(DataError, match="same path as the output of --out"):
            check_outputs(opts.outputs(), {})



# ------------------------------------------------------------------------------ training resume, disk full

def test_a_training_resume_with_other_trained_settings_is_refused_before_the_model_loads(tmp_path) -> None:
    """`--first_token_loss_weight` (or any setting that decides the weights) changed on resume: refused with
    the fix; steps, logging and saving may change; a checkpoint from before the record resumes."""
    from dear_train.checkpoints import RUN_SETTINGS_FILE, check_resume_settings, trained_settings

    config = {"learning_rate": 1e-4, "first_token_loss_weight": 0.0, "max_steps": 10, "logging_steps": 5,
              "output_dir": str(tmp_path), "dataset_fingerprint": "abc"}
    check_resume_settings(tmp_path, None, trained_settings(config))  # a fresh start records them
    ckpt = tmp_path / "checkpoint-5"
    ckpt.mkdir()
    check_resume_settings(tmp_path, str(ckpt), trained_settings({**config, "max_steps": 20, "logging_steps": 1}))
    with pytest.raises(DataError, match=r"first_token_loss_weight 0.0 -> 10.0") as err:
        check_resume_settings(tmp_path, str(ckpt), trained_settings({**config, "first_token_loss_weight": 10.0}))
    assert "new --output_dir" in str(err.value)
    with pytest.raises(DataError, match="dataset_fingerprint"):
        check_resume_settings(tmp_path, str(ckpt), trained_settings({**config, "dataset_fingerprint": "other"}))
    # GRPO: what it continues, how it samples and what it pays decide the weights too
    grpo = {**config, "method": "grpo", "beta": 0.0, "num_generations": 4, "temperature": 0.15,
            "reward_weights": [1.0, 0.2], "sft_adapter": "sft_out", "save_steps": 5}
    check_resume_settings(tmp_path, None, trained_settings(grpo))
    check_resume_settings(tmp_path, str(ckpt), trained_settings({**grpo, "max_steps": 40, "save_steps": 1}))
    for key, other in (("beta", 0.04), ("num_generations", 8), ("temperature", 1.0), ("reward_weights", [1.0, 0.0]),
                       ("sft_adapter", "other_sft"), ("method", None)):
        with pytest.raises(DataError, match=f"{key} "):
            check_resume_settings(tmp_path, str(ckpt), trained_settings({**grpo, key: other}))
    (tmp_path / RUN_SETTINGS_FILE).unlink()  # a checkpoint written before the record existed
    check_resume_settings(tmp_path, str(ckpt), trained_settings({**config, "first_token_loss_weight": 10.0}),
                          write=False)


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch) -> None:
    """A write that fails midway raises ENOSPC without a file name; the run appender and the atomic writers
    attach it, so `dear rerank`'s one line says which file."""
    import errno

    from data_prep.cli_options import os_error_line
    from data_prep.io import write_lines_atomic
    from inference.runfiles import RunAppender

    class FullDisk(io.StringIO):
        name = str(tmp_path / "run.trec")

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    w = RunAppender(tmp_path / "run.trec")
    w._run.close()
    w._run = FullDisk()
    with pytest.raises(OSError) as err:
        w.write("q1", [("d1", 1.0)])
    line = os_error_line("dear rerank", err.value)
    assert str(tmp_path / "run.trec") in line and "No space left on device" in line and "free disk space" in line

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as err:
        write_lines_atomic(tmp_path / "merged.trec", ["x\n"])
    assert err.value.filename == str(tmp_path / "merged.trec") and not (tmp_path / "merged.trec").exists()
    assert os_error_line("dear eval", OSError(errno.ENOSPC, "No space left on device"), path="res.json").count(
        "(res.json)") == 1


@FAST
@given(flag=st.sampled_from(["--out", "--report", "--cache"]), content=st.binary(min_size=1, max_size=80))
def test_dear_teacher_never_rewrites_a_file_it_did_not_write(flag, content) -> None:
    """Its resumable outputs (records, request cache, report) are refused when they hold something that is
    not `dear teacher`'s, before any request; the file is untouched."""
    assume(not content.lstrip().startswith(b"{"))  # not a JSON object: no teacher record, report or cache line
    with _tmp() as root:
        files = _inputs(root)
        target = root / "notes.txt"
        target.write_bytes(content)
        out = target if flag == "--out" else root / "t.jsonl"
        argv = ["teacher", "--input", str(files["cands"]), "--out", str(out), "--endpoint", "http://127.0.0.1:9/v1",
                "--model", "m", "--no-progress"] + ([flag, str(target)] if flag != "--out" else [])
        before = _snapshot(root)
        rc, err = _dear(argv)
        assert rc == 2 and flag in err and "not a file `dear teacher` wrote" in err, err
        assert _snapshot(root) == before
