"""Bad input and faults, for every `dear` command: a clear one-line error naming the file or option and the
fix, exit code 2, no traceback, and nothing already finished lost or changed.

The table ``CASES`` is the proof and the source of ``docs/errors.md`` (``test_errors_doc_matches_the_table``
checks they agree; ``python tests/test_bad_input.py`` rewrites the page). Each case builds its bad input in a
temporary folder, runs the command (in-process through ``dear_train.cli.main``; a few as subprocesses, to
prove no traceback reaches stderr), and asserts the exit code, the words of the message, that the message's
fix is the one the page documents, and that the files a case marks as finished are byte-identical afterwards.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "errors.md"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# ------------------------------------------------------------------------------------------ good inputs

QRELS = "q1 0 d1 2\nq1 0 d2 0\nq1 0 d3 1\nq2 0 d4 1\nq2 0 d5 0\n"
RUN = "".join(f"{q} Q0 {d} {r} {10 - r}.0 bm25\n" for q, docs in (("q1", "d1 d2 d3"), ("q2", "d4 d5 d6"))
              for r, d in enumerate(docs.split(), 1))
TOPICS = "q1\twhat is alpha\nq2\twhere is beta\n"
CORPUS = "".join(f"d{i}\tpassage number {i}\n" for i in range(1, 7))


def _rankgpt(qids=("q1", "q2")) -> list[dict]:
    return [{"query": f"query {q}", "hits": [{"qid": q, "docid": f"{q}d{i}", "content": f"text {i}"}
                                            for i in range(3)]} for q in qids]


def _teacher_record(qid: str) -> dict:
    cands = [{"docid": f"{qid}d{i}", "text": f"passage {i} of {qid}"} for i in range(3)]
    return {"qid": qid, "query": f"query {qid}", "candidates": cands, "ranking": [c["docid"] for c in cands[::-1]]}


TEACHER = "".join(json.dumps(_teacher_record(f"q{i}")) + "\n" for i in range(4))
SETTINGS_META = {"settings": {"model": "m"}}


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def build_inputs(root: Path) -> dict[str, str]:
    """Every file a case can name, good and bad, by key (argv templates use ``{key}``)."""
    f: dict[str, Path] = {}
    f["qrels"] = _write(root / "qrels.txt", QRELS)
    f["run"] = _write(root / "run.trec", RUN)
    f["topics"] = _write(root / "topics.tsv", TOPICS)
    f["corpus"] = _write(root / "corpus.tsv", CORPUS)
    f["rankgpt"] = _write(root / "cands.json", json.dumps(_rankgpt()))
    f["teacher"] = _write(root / "teacher.jsonl", TEACHER)
    # encodings and binary files
    f["qrels_latin1"] = _write(root / "qrels_latin1.txt", "q1 0 d1 2\nq1 0 caf\xe9 1\n".encode("latin-1"))
    f["qrels_utf16"] = _write(root / "qrels_utf16.txt", QRELS.encode("utf-16"))
    f["binary"] = _write(root / "weights.bin", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    f["gzip_no_suffix"] = _write(root / "run_gz.trec", gzip.compress(RUN.encode()))
    f["gzip_truncated"] = _write(root / "run.trec.gz", gzip.compress(RUN.encode() * 50)[:40])
    lines = TEACHER.splitlines(keepends=True)
    f["teacher_mixed"] = _write(root / "teacher_mixed.jsonl",
                                "".join(lines[:2]).encode() + lines[2].replace("passage", "pass\xe9").encode("latin-1")
                                + "".join(lines[3:]).encode())
    f["rankgpt_latin1"] = _write(root / "cands_latin1.json", json.dumps(_rankgpt(), ensure_ascii=False)
                                 .replace("text 1", "t\xe9xt").encode("latin-1"))
    # broken content
    f["teacher_empty"] = _write(root / "teacher_empty.jsonl", "")
    f["teacher_truncated"] = _write(root / "teacher_cut.json", json.dumps(_rankgpt())[:70])
    f["teacher_huge_line"] = _write(root / "teacher_huge.jsonl", '{"qid": ' + "x" * 3_000_000 + "\n")
    f["teacher_unusable"] = _write(root / "teacher_bad.jsonl", "".join(
        json.dumps({**_teacher_record(f"q{i}"), "ranking": ["nope"]}) + "\n" for i in range(3)))
    f["run_nan"] = _write(root / "run_nan.trec", RUN.replace("9.0", "nan", 1))
    f["qrels_empty"] = _write(root / "qrels_empty.txt", "\n")
    f["qrels_other"] = _write(root / "qrels_other.txt", "x1 0 d1 1\n")
    f["run_partial"] = _write(root / "run_partial.trec", "".join(ln + "\n" for ln in RUN.splitlines()[:3]))
    f["rankgpt_no_qid"] = _write(root / "cands_noqid.json", json.dumps(
        [{"query": "q", "hits": [{"docid": "a", "content": "x"}, {"docid": "b", "content": "y"}]}]))
    f["rankgpt_dup"] = _write(root / "cands_dup.json", json.dumps(_rankgpt(("q1", "q1"))))
    surrogate = _rankgpt()
    surrogate[0]["hits"][1]["content"] = "half an emoji \ud83d"
    f["rankgpt_surrogate"] = _write(root / "cands_surrogate.json", json.dumps(surrogate))  # JSON escape \ud83d
    f["scores_other"] = _write(root / "scores_other.tsv", "zz\tq1d0\t1.0\n")
    f["folder"] = root / "a_folder"
    f["folder"].mkdir(exist_ok=True)
    f["missing"] = root / "no_such_file.json"
    # model folders: truncated weights, an adapter whose base model folder is gone, a broken adapter config
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    weights = len(header).to_bytes(8, "little") + header + bytes(16)
    f["model_truncated"] = root / "model_cut"
    _write(f["model_truncated"] / "config.json", "{}")
    _write(f["model_truncated"] / "model.safetensors", weights[:-6])
    f["adapter_no_base"] = root / "adapter_moved"
    _write(f["adapter_no_base"] / "adapter_config.json", json.dumps({"base_model_name_or_path": "/gone/base-llama"}))
    _write(f["adapter_no_base"] / "adapter_model.safetensors", weights)
    f["adapter_bad_config"] = root / "adapter_bad"
    _write(f["adapter_bad_config"] / "adapter_config.json", '{"base_model_name_or_path": ')
    _write(f["adapter_bad_config"] / "adapter_model.safetensors", weights)
    # configs
    f["config_unknown"] = _write(root / "unknown.yaml", "lerning_rate: 0.1\nmax_steps: 1\n")
    f["config_binary"] = _write(root / "binary.yaml", b"max_steps: 1\n\xff\xfe\x00garbage\n")
    # finished work that a failing command must leave alone
    f["done_run"] = _write(root / "done" / "run.trec", "q1 Q0 d1 1 1.000000 dear\n")
    _write(root / "done" / "run.trec.meta.json", json.dumps(SETTINGS_META))
    f["done_prep"] = root / "done_prep"
    _write(f["done_prep"] / "train.jsonl", TEACHER)
    # a prep folder written before the GRPO grades existed (prompt/completion/qid/docids only)
    from data_prep.prompts import get_prompt_spec

    f["prep_no_grades"] = root / "old_prep"
    _write(f["prep_no_grades"] / "train.jsonl", json.dumps(
        {"qid": "q1", "docids": ["d1", "d2"], "prompt": "p", "completion": " [1] > [0]"}) + "\n")
    _write(f["prep_no_grades"] / "prompt_spec.json", json.dumps(get_prompt_spec("dear-card").to_json()))
    f["done_teacher"] = _write(root / "done" / "teacher.jsonl", TEACHER)
    # outputs that must never be replaced unasked, ids and numbers no TREC file can hold
    f["model_ok"] = root / "model_ok"  # passes every check before loading: what follows is the refusal
    _write(f["model_ok"] / "config.json", "{}")
    _write(f["model_ok"] / "model.safetensors", weights)
    f["notes"] = _write(root / "notes.jsonl", "my own notes, not a rerank JSONL\n" * 3)
    f["done_eval"] = _write(root / "done" / "results.json", '{"earlier": "results"}\n')
    f["qrels_dup"] = _write(root / "qrels_dup.txt", QRELS.replace("q1 0 d3 1", "q1 0 d1 0"))
    f["run_dup"] = _write(root / "run_dup.trec", RUN.replace("q1 Q0 d3", "q1 Q0 d1"))
    spaced = _rankgpt()
    spaced[0]["hits"][0]["docid"] = "doc 1"
    f["rankgpt_space"] = _write(root / "cands_space.json", json.dumps(spaced))
    f["rankgpt_text_score"] = _write(root / "cands_text_score.json",
                                     json.dumps(_rankgpt()).replace('"content": "text 1"', '"content": "text 1", "score": "high"', 1))
    f["rankgpt_nan_score"] = _write(root / "cands_nan.json",
                                    json.dumps(_rankgpt()).replace('"content": "text 1"', '"content": "text 1", "score": NaN', 1))
    f["out"] = root / "out" / "run.trec"
    f["out_dir"] = root / "out_prep"
    f["readonly"] = root / "readonly"
    f["readonly"].mkdir(exist_ok=True)
    return {k: str(v) for k, v in f.items()}


# ----------------------------------------------------------------------------------------------- cases

RERANK = ["rerank", "--model", "{missing}", "--input", "{rankgpt}", "--out", "{done_run}"]
EVAL = ["eval", "--run", "{run}", "--qrels", "{qrels}"]
PREP = ["prep", "listwise", "--out", "{out_dir}"]
TEACHER_CMD = ["teacher", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--no-progress"]
TRAIN = ["train", "--model_name_or_path", "x", "--dataset_path", "{done_prep}", "--output_dir", "{out_dir}"]
GRPO = ["train", "--method", "grpo", *TRAIN[1:]]
GRPO_RESUME = ["--method", "grpo", "--config", str(REPO / "configs" / "train" / "tiny_cpu_grpo.yaml"),
               "--model_name_or_path", "{tiny}", "--dataset_path", "{grpo_prep}", "--output_dir", "{grpo_out}",
               "--max_steps", "1"]


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    did: str  # what the user did (the docs page's first column)
    argv: list[str]
    says: tuple[str, ...]  # words the message must hold (the file or option among them)
    fix: str  # the fix the message must give (the docs page's last column)
    rc: int = 2
    unchanged: tuple[str, ...] = ()  # keys of files that must be byte-identical afterwards
    absent: tuple[str, ...] = ()  # keys of paths the failing command must not create
    subprocess: bool = False
    as_root: Callable[[pytest.MonkeyPatch, dict[str, str]], None] | None = field(default=None, compare=False)
    # ^ permission cases: root reads and writes regardless of modes, so there the denial is simulated
    stream: str = "err"
    setup: Callable[[dict[str, str]], None] | None = field(default=None, compare=False)
    patch: Callable[[pytest.MonkeyPatch, dict[str, str]], None] | None = field(default=None, compare=False)


def _no_hub_token(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", files["missing"])  # no stored login either
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def _grpo_checkpoint(files: dict[str, str]) -> None:
    """A real GRPO training on the tiny model that saved checkpoint-1 (and recorded its settings, --beta 0.0) in
    ``grpo_out``: what a resume is checked against."""
    from dear_train.cli import main
    from dear_train.tiny_model import build_tiny_model

    root = Path(files["folder"]).parent
    files["tiny"] = str(build_tiny_model(root / "tiny"))
    files["grpo_prep"] = str(root / "grpo_prep")
    files["grpo_out"] = str(root / "grpo_out")
    assert main(["prep", "listwise", "--teacher", files["teacher"], "--out", files["grpo_prep"], "--window", "3",
                 "--eval-fraction", "0"]) == 0
    assert main(["train", *_fill(GRPO_RESUME, files), "--beta", "0.0", "--save_strategy", "steps",
                 "--save_steps", "1"]) == 0
    assert (Path(files["grpo_out"]) / "checkpoint-1" / "optimizer.pt").is_file()


def _deny_read(key: str) -> Callable[[pytest.MonkeyPatch, dict[str, str]], None]:
    """What opening a mode-000 file does for a user who is not root."""
    def patch(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
        real = Path.open

        def open_(self: Path, *a, **kw):
            if str(self) == files[key]:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **kw)

        monkeypatch.setattr(Path, "open", open_)
    return patch


def _deny_write(key: str) -> Callable[[pytest.MonkeyPatch, dict[str, str]], None]:
    """What os.access says about a mode-555 folder for a user who is not root."""
    def patch(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == files[key]
                            and mode & os.W_OK else real(path, mode, **kw))
    return patch


def _chmod(key: str, mode: int) -> Callable[[dict[str, str]], None]:
    return lambda files: os.chmod(files[key], mode)


CASES: list[Case] = [
    # --- encodings and binary files
    Case("latin1-qrels", "encoding", "a qrels file saved as Latin-1", [*EVAL[:3], "--qrels", "{qrels_latin1}"],
         ("qrels_latin1.txt:2", "not UTF-8", "byte 0xe9"), "save the file as UTF-8", subprocess=True),
    Case("utf16-qrels", "encoding", "a qrels file saved as UTF-16", [*EVAL[:3], "--qrels", "{qrels_utf16}"],
         ("qrels_utf16.txt", "UTF-16"), "save it as UTF-8"),
    Case("binary-run", "encoding", "a binary file given as a run", ["eval", "--run", "{binary}", "--qrels", "{qrels}"],
         ("weights.bin", "binary file"), "pass the text file this option expects"),
    Case("gzip-no-suffix", "encoding", "a gzip file whose name does not end in .gz",
         ["eval", "--run", "{gzip_no_suffix}", "--qrels", "{qrels}"], ("run_gz.trec", "gzip-compressed"),
         "rename it to end in .gz"),
    Case("gzip-truncated", "encoding", "a truncated .gz file", ["eval", "--run", "{gzip_truncated}", "--qrels", "{qrels}"],
         ("run.trec.gz", "corrupt or truncated gzip"), "download or compress the file again"),
    Case("mixed-encoding", "encoding", "a teacher JSONL with one line in another encoding",
         [*PREP, "--teacher", "{teacher_mixed}", "--format", "jsonl"], ("teacher_mixed.jsonl:3", "not UTF-8"),
         "save the file as UTF-8", absent=("out_dir",)),
    Case("latin1-rankgpt", "encoding", "RankGPT JSON in Latin-1 given to rerank",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt_latin1}", "--out", "{out}"],
         ("cands_latin1.json:1", "not UTF-8"), "save the file as UTF-8", absent=("out",)),
    Case("binary-config", "encoding", "a training config that is not UTF-8 text",
         [*TRAIN, "--config", "{config_binary}"], ("binary.yaml", "UTF-8"), "save the file as UTF-8"),
    Case("binary-teacher-input", "encoding", "a binary file as the teacher's input",
         [*TEACHER_CMD, "--input", "{binary}", "--out", "{done_teacher}"], ("weights.bin", "binary file"),
         "pass the text file this option expects", unchanged=("done_teacher",)),
    # --- files that are missing, folders, empty, truncated, too big, unreadable
    Case("missing-input", "files", "an input path that does not exist",
         ["rerank", "--model", "{missing}", "--input", "{missing}", "--out", "{out}"], ("no_such_file.json", "not found"),
         "check the path", absent=("out",)),
    Case("folder-input", "files", "a folder where a file is expected",
         ["rerank", "--model", "{missing}", "--input", "{folder}", "--out", "{out}"], ("a_folder", "is a folder"),
         "pass the file inside it, not the folder", absent=("out",)),
    Case("folder-qrels", "files", "a folder given as qrels", [*EVAL[:3], "--qrels", "{folder}"],
         ("a_folder", "is a folder", "qrels file"), "pass the file inside it, not the folder"),
    Case("folder-out", "files", "a folder given as the run to write",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt}", "--out", "{folder}"], ("a_folder", "is a folder"),
         "pass a file path"),
    Case("empty-teacher", "files", "an empty teacher file", [*PREP, "--teacher", "{teacher_empty}"],
         ("teacher_empty.jsonl", "is empty"), "pass the file your teacher run wrote", absent=("out_dir",)),
    Case("truncated-teacher", "files", "a teacher JSON file cut off mid-way", [*PREP, "--teacher", "{teacher_truncated}"],
         ("teacher_cut.json:1", "malformed JSON"), "the file must be valid JSON or JSONL", absent=("out_dir",)),
    Case("huge-line", "files", "a 3 MB line that is not JSON", [*PREP, "--teacher", "{teacher_huge_line}", "--format", "jsonl"],
         ("teacher_huge.jsonl:1", "malformed JSON"), "repair or remove the line", absent=("out_dir",)),
    Case("wrong-format-run", "files", "qrels passed where a run is expected", ["eval", "--run", "{qrels}", "--qrels", "{qrels}"],
         ("qrels.txt:1", "expected 6 columns"), "use TREC run format"),
    Case("nan-score", "files", "a run with a NaN score", ["eval", "--run", "{run_nan}", "--qrels", "{qrels}"],
         ("run_nan.trec:1", "not a finite number"), "every score must be a real number"),
    Case("unreadable-input", "files", "an input file without read permission",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt}", "--out", "{out}"], ("cands.json", "permission denied"),
         "make it readable", as_root=_deny_read("rankgpt"), setup=_chmod("rankgpt", 0o000), absent=("out",)),
    Case("readonly-out", "files", "an output folder without write permission",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt}", "--out", "{readonly}/run.trec"],
         ("readonly", "no permission to write"), "choose a folder you can write to", as_root=_deny_write("readonly"),
         setup=_chmod("readonly", 0o555)),
    # --- options that can never work: refused before any file is read or model loaded
    *[Case(f"rerank-{flag[2:]}-{value}".replace(" ", ""), "options", f"`dear rerank {flag} {value}`",
           [*RERANK, *flag.split(), *value.split()], (flag.split()[-1], must), fix, unchanged=("done_run",),
           subprocess=flag == "--window")
      for flag, value, must, fix in [
          ("--window", "1", "must be >= 2", "e.g. --window 20 --stride 10"),
          ("--stride", "0", "must be between 1 and the window", "e.g. --window 20 --stride 10"),
          ("--stride", "30", "must be between 1 and the window", "e.g. --window 20 --stride 10"),
          ("--top-k", "-1", "must be >= 2", "e.g. 100"), ("--top-k", "0", "must be >= 2", "e.g. 100"),
          ("--batch-size", "0", "must be >= 1", "use a positive number"),
          ("--max-new-tokens", "0", "must be >= 1", "leave it out for the default"),
          ("--max-prompt-tokens", "0", "must be >= 1", "leave it out for the default"),
          ("--sample --temperature", "0", "must be > 0 with --sample", "leave out --sample for greedy"),
          ("--temperature", "-1", "must be > 0", "e.g. 0.7"),
          ("--top-p", "5", "must be in (0, 1]", "e.g. 0.95, or 1 for no cut"),
          ("--top-p", "0", "must be in (0, 1]", "e.g. 0.95, or 1 for no cut"),
          ("--pointwise x --listwise-depth", "1", "must be >= 2", "e.g. 100 (two-stage: 30)"),
          ("--strategy tdpart --depth", "20", "must be between 1 and the window - 1", "e.g. --window 20 --depth 10"),
          ("--strategy setwise --set-size", "1", "must be >= 2", "e.g. --set-size 3 --depth 10")]],
    Case("rerank-run-without-corpus", "options", "a TREC run input without --corpus/--topics",
         ["rerank", "--model", "{missing}", "--input", "{run}", "--out", "{done_run}"], ("--input", "--corpus"),
         "pass --corpus FILE --topics FILE", unchanged=("done_run",)),
    Case("teacher-temperature", "options", "`dear teacher --temperature -1`",
         [*TEACHER_CMD, "--input", "{rankgpt}", "--out", "{done_teacher}", "--temperature", "-1"], ("--temperature",),
         "0 (greedy) or e.g. 0.7", unchanged=("done_teacher",)),
    Case("prep-window", "options", "`dear prep listwise --window 1`", [*PREP, "--teacher", "{teacher}", "--window", "1"],
         ("--window must be at least 2",), "see `dear prep listwise --help`", absent=("out_dir",)),
    *[Case(f"mcp-{flag[2:]}-{value}", "options", f"`dear mcp {flag} {value}`", ["mcp", "--model", "{missing}", flag, value],
           (flag, must), fix)
      for flag, value, must, fix in [("--window", "1", "must be >= 2", "e.g. --window 20 --stride 10"),
                                     ("--top-k", "1", "must be >= 2", "e.g. 100"),
                                     ("--max-documents", "0", "must be >= 1", "use a positive number")]],
    *[Case(f"serve-{flag[2:]}-{value}", "options", f"`dear serve {flag} {value}`", ["serve", "--model", "{missing}",
           flag, value], (flag, must), fix)
      for flag, value, must, fix in [
          ("--port", "99999", "must be between 0 and 65535", "e.g. 8000"),
          ("--request-timeout", "nan", "must be a finite number", "give a real number"),
          ("--request-timeout", "0", "must be a number of seconds in (0, 86400]", "e.g. 60"),
          ("--top-k", "0", "must be >= 2", "e.g. 100"),
          ("--window", "1", "must be >= 2", "e.g. --window 20 --stride 10"),
          ("--max-queue", "0", "must be >= 1", "use a positive number")]],
    Case("rerank-tag-space", "options", "`dear rerank --tag \"my run\"`", [*RERANK, "--tag", "my run"],
         ("--tag", "contains whitespace"), "a name without spaces or control characters", unchanged=("done_run",)),
    Case("rerank-temperature-nan", "options", "`dear rerank --sample --temperature nan`",
         [*RERANK, "--sample", "--temperature", "nan"], ("--temperature", "must be a finite number"),
         "give a real number", unchanged=("done_run",)),
    # --- outputs: never an input, never replaced unasked
    Case("rerank-out-is-input", "outputs", "`dear rerank --out` naming the input (even with --overwrite)",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt}", "--out", "{rankgpt}", "--overwrite"],
         ("--out", "is the same path as --input"), "write the output somewhere else", unchanged=("rankgpt",)),
    Case("rerank-jsonl-is-out", "outputs", "`dear rerank --jsonl` naming the run (or its .meta.json)",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt}", "--out", "{done_run}", "--jsonl", "{done_run}"],
         ("--jsonl", "is the same path as the output of --out"), "give each output its own path",
         unchanged=("done_run",)),
    Case("rerank-jsonl-not-the-runs", "outputs", "`dear rerank --jsonl` naming a file that is not the run's JSONL",
         ["rerank", "--model", "{model_ok}", "--input", "{rankgpt}", "--out", "{out}", "--jsonl", "{notes}"],
         ("notes.jsonl", "is not this run's"), "pass --overwrite to replace it, or another --jsonl path",
         unchanged=("notes",), absent=("out",)),
    Case("eval-out-is-qrels", "outputs", "`dear eval --out` naming the qrels",
         [*EVAL, "--out", "{qrels}", "--overwrite"], ("--out", "is the same path as --qrels"),
         "write the output somewhere else", unchanged=("qrels",)),
    Case("eval-out-exists", "outputs", "`dear eval --out` naming an existing file", [*EVAL, "--out", "{done_eval}"],
         ("--out", "results.json exists"), "pass --overwrite to replace it", unchanged=("done_eval",)),
    Case("prep-out-exists", "outputs", "`dear prep listwise --out` holding an earlier prep output",
         ["prep", "listwise", "--out", "{done_prep}", "--teacher", "{teacher}"], ("--out", "train.jsonl exists"),
         "pass --overwrite to replace the earlier prep output", unchanged=("done_prep",)),
    Case("train-output-is-dataset", "outputs", "`dear train --output_dir` naming the dataset folder",
         ["train", "--model_name_or_path", "x", "--dataset_path", "{done_prep}", "--output_dir", "{done_prep}"],
         ("--output_dir", "is the same path as --dataset_path"), "write the output somewhere else",
         unchanged=("done_prep",)),
    # --- model folders: refused before any weights load
    Case("truncated-weights", "models", "a model folder whose safetensors file was cut short",
         ["rerank", "--model", "{model_truncated}", "--input", "{rankgpt}", "--out", "{done_run}"],
         ("model.safetensors", "truncated or corrupt safetensors"), "copy or download the file again",
         unchanged=("done_run",)),
    Case("mcp-model-missing", "models", "`dear mcp --model` with a path that does not exist", ["mcp", "--model", "{missing}"],
         ("no_such_file.json", "model path not found"), "pass an existing folder or a Hub id"),
    Case("adapter-base-gone", "models", "an adapter whose base model folder was moved or deleted",
         ["rerank", "--model", "{adapter_no_base}", "--input", "{rankgpt}", "--out", "{done_run}"],
         ("/gone/base-llama", "does not exist"), "pass --base-model", unchanged=("done_run",)),
    Case("adapter-bad-config", "models", "an adapter folder with a broken adapter_config.json",
         ["rerank", "--model", "{adapter_bad_config}", "--input", "{rankgpt}", "--out", "{done_run}"],
         ("adapter_config.json:1", "malformed JSON"), "re-save the adapter", unchanged=("done_run",)),
    # --- training options: abbreviations and unknown keys
    Case("train-abbrev", "training options", "an abbreviated flag (`--max_step 2`)", [*TRAIN, "--max_step", "2"],
         ("'--max_step'", "did you mean '--max_steps'"), "remove or rename them"),
    Case("train-unknown-flag", "training options", "a misspelt flag (`--learning_rat 0.5`)",
         [*TRAIN, "--learning_rat", "0.5"], ("did you mean '--learning_rate'",), "remove or rename them"),
    Case("train-unknown-yaml", "training options", "a misspelt key in the config YAML", [*TRAIN, "--config", "{config_unknown}"],
         ("unknown.yaml", "did you mean 'learning_rate'"), "remove or rename them"),
    Case("train-config-folder", "training options", "a folder given as --config", [*TRAIN, "--config", "{folder}"],
         ("a_folder", "is a folder"), "pass the file inside it"),
    Case("train-weight-inf", "training options", "`dear train --first_token_loss_weight inf` (or nan)",
         [*TRAIN, "--first_token_loss_weight", "inf"], ("--first_token_loss_weight", "must be a finite number"),
         "0 for the LM loss only, 10 for FIRST's objective"),
    Case("train-dropout-range", "training options", "`dear train --lora_dropout 1`", [*TRAIN, "--lora_dropout", "1"],
         ("--lora_dropout", "must be in [0, 1)"), "e.g. 0.05"),
    Case("train-method", "training options", "an unknown `dear train --method`", ["train", "--method", "ppo", *TRAIN[1:]],
         ("--method must be one of sft, grpo", "'ppo'"), "--method sft"),
    Case("train-grpo-abbrev", "training options", "a misspelt GRPO flag (`--num_generation 4`)",
         ["train", "--method", "grpo", *TRAIN[1:], "--num_generation", "4"],
         ("'--num_generation'", "did you mean '--num_generations'"), "remove or rename them"),
    Case("train-grpo-old-prep", "training options", "`dear train --method grpo` on a prep folder from before GRPO",
         ["train", "--method", "grpo", "--model_name_or_path", "x", "--dataset_path", "{prep_no_grades}",
          "--output_dir", "{out_dir}"], ("old_prep", "lacks column(s) ['grades']"), "rerun `dear prep listwise ... --out DIR` with this toolkit",
         absent=("out_dir",)),
    Case("train-grpo-beta-nan", "training options", "`dear train --method grpo --beta nan` (or inf)",
         [*GRPO, "--beta", "nan"], ("--beta", "must be a finite number"), "0 for no KL term", absent=("out_dir",)),
    Case("train-grpo-temperature-inf", "training options", "`dear train --method grpo --temperature inf` (or 0)",
         [*GRPO, "--temperature", "inf"], ("--temperature", "must be a finite number"), "the sampling temperature",
         absent=("out_dir",)),
    Case("train-grpo-top-p-range", "training options", "`dear train --method grpo --top_p 1.5`",
         [*GRPO, "--top_p", "1.5"], ("--top_p", "must be in (0, 1]"), "e.g. 1.0 (no nucleus cut)", absent=("out_dir",)),
    Case("train-grpo-reward-weight", "training options", "`dear train --method grpo --reward_weights 1 -1` (or nan)",
         [*GRPO, "--reward_weights", "1", "-1"], ("--reward_weights", "must be >= 0 (each value)", "-1"),
         "one weight >= 0 per reward", absent=("out_dir",)),
    Case("train-grpo-reward-weights-zero", "training options", "`dear train --method grpo --reward_weights 0 0`",
         [*GRPO, "--reward_weights", "0", "0"], ("--reward_weights [0.0, 0.0] pay nothing",),
         "give at least one reward a weight above 0", absent=("out_dir",)),
    Case("train-grpo-output-is-adapter", "outputs", "`dear train --method grpo --output_dir` naming the --sft_adapter",
         [*GRPO[:-1], "{done_prep}/adapter", "--sft_adapter", "{done_prep}/adapter"],
         ("--output_dir", "is the same path as --sft_adapter"), "write the output somewhere else",
         unchanged=("done_prep",)),
    Case("train-grpo-resume-changed", "training options",
         "`dear train --method grpo --resume_from_checkpoint auto` with another `--beta` (any setting that decides "
         "the weights) than the training started with",
         ["train", *GRPO_RESUME, "--beta", "0.04", "--resume_from_checkpoint", "auto"],
         ("grpo_out/dear_run_settings.json", "cannot resume", "checkpoint-1", "beta 0.0 -> 0.04"),
         "resume with the settings the training started with, or start a new training in a new --output_dir",
         setup=_grpo_checkpoint, unchanged=("grpo_out",)),
    Case("distill-abbrev", "training options", "an abbreviated flag to `dear distill`",
         ["distill", "--dataset_path", "{done_prep}", "--max_step", "2"], ("did you mean '--max_steps'",),
         "remove or rename them"),
    # --- secrets
    Case("export-dry-run-no-token", "secrets", "`dear export --dry-run --push-to-hub` without a Hub token",
         ["export", "--adapter", "{missing}", "--out", "{out_dir}", "--dry-run", "--push-to-hub", "me/model"],
         ("no Hugging Face token found",), "set HF_TOKEN or run `hf auth login`", rc=1, absent=("out_dir",),
         patch=_no_hub_token),
    # --- empty outputs
    Case("prep-zero-records", "empty splits", "a teacher file none of whose records is usable",
         [*PREP, "--teacher", "{teacher_unusable}", "--format", "jsonl", "--on-error", "skip"],
         ("teacher_bad.jsonl", "no records written", "3 teacher records read"), "check the teacher file and --format",
         absent=("out_dir",)),
    Case("pointwise-zero-groups", "empty splits", "teacher scores that cover none of the candidates",
         ["prep", "pointwise", "--candidates", "{rankgpt}", "--teacher-scores", "{scores_other}", "--out", "{out_dir}",
          "--on-error", "skip"], ("scores_other.tsv", "no training groups written"),
         "check that the teacher scores cover the candidates"),
    # --- judgments
    Case("rerank-qrels-none-judged", "judgments", "`dear rerank --qrels` with qrels of another collection",
         [*RERANK, "--qrels", "{qrels_other}"], ("qrels_other.txt", "judge none of the 2 input queries"),
         "pass the qrels of the collection and year", unchanged=("done_run",)),
    Case("eval-qrels-none-judged", "judgments", "`dear eval` with qrels that judge none of the run's queries",
         [*EVAL[:3], "--qrels", "{qrels_other}"], ("run.trec", "no query of this run is judged"),
         "pass the qrels of the same collection"),
    Case("eval-qrels-empty", "judgments", "an empty qrels file", [*EVAL[:3], "--qrels", "{qrels_empty}"],
         ("qrels_empty.txt", "no judgments"), "pass a TREC qrels file"),
    Case("eval-different-judged", "judgments", "`dear eval` of runs covering different numbers of judged queries",
         ["eval", "--run", "{run}", "{run_partial}", "--qrels", "{qrels}"],
         ("different numbers of judged queries", "run.trec: 2", "run_partial.trec: 1"), "pass --common-queries", rc=0),
    Case("eval-unknown-metric", "judgments", "an unknown metric name", [*EVAL, "--metrics", "ndgc@10"],
         ("unknown metric 'ndgc@10'",), "use e.g. ndcg@10"),
    Case("eval-baseline-unknown", "options", "`dear eval --baseline` naming a file that is not among --run",
         ["eval", "--run", "{run}", "{run_partial}", "--qrels", "{qrels}", "--baseline", "bm25.trec"],
         ("--baseline: 'bm25.trec' is none of the --run files (run.trec, run_partial.trec)",),
         "pass one of the --run paths"),
    Case("eval-baseline-one-run", "options", "`dear eval --baseline` with a single --run",
         [*EVAL, "--baseline", "{run}"], ("--baseline: needs at least two --run files",),
         "pass the --baseline and the runs to compare with it"),
    Case("eval-alpha", "options", "`dear eval --alpha 1.5`", [*EVAL, "--alpha", "1.5"],
         ("--alpha: must be between 0 and 1",), "e.g. 0.05"),
    Case("eval-permutations", "options", "`dear eval --test fisher --permutations 10`",
         [*EVAL, "--test", "fisher", "--permutations", "10"], ("--permutations: must be at least 100",),
         "e.g. 10000"),
    Case("eval-run-twice", "options", "`dear eval` listing the same run twice",
         ["eval", "--run", "{run}", "{run}", "--qrels", "{qrels}"], ("--run lists", "/run.trec twice"),
         "name each file once"),
    Case("eval-plot-file", "options", "`dear eval --plot` naming a file", [*EVAL, "--plot", "{qrels}"],
         ("--plot:", "qrels.txt is a file"), "pass a folder", unchanged=("qrels",)),
    Case("eval-qrels-duplicate", "judgments", "a qrels file judging the same (qid, docid) twice",
         [*EVAL[:3], "--qrels", "{qrels_dup}"], ("qrels_dup.txt:3", "judged twice"),
         "keep one line per (qid, docid)"),
    Case("eval-run-duplicate", "judgments", "a run listing the same docid twice for a query",
         ["eval", "--run", "{run_dup}", "--qrels", "{qrels}"], ("run_dup.trec:3", "appears twice"),
         "each docid once per query"),
    Case("eval-rankgpt-nan", "judgments", "a RankGPT JSON run with a NaN score",
         ["eval", "--run", "{rankgpt_nan_score}", "--qrels", "{qrels}"], ("cands_nan.json", "entry #0 hit #1",
                                                                          "not a finite number"),
         "every score must be a real number"),
    Case("eval-rankgpt-text-score", "judgments", "a RankGPT JSON run with a text (or list) score",
         ["eval", "--run", "{rankgpt_text_score}", "--qrels", "{qrels}"],
         ("cands_text_score.json", "entry #0 hit #1", "is not a number"), "every score must be a real number",
         subprocess=True),
    # --- input records
    Case("rankgpt-no-qid", "records", "RankGPT JSON entries without a qid",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt_no_qid}", "--out", "{out}"],
         ("cands_noqid.json", "entry #0 has no qid"), 'add "qid"', absent=("out",)),
    Case("rankgpt-id-space", "records", "a docid (or qid) with whitespace, or an empty one",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt_space}", "--out", "{out}"],
         ("cands_space.json", "(qid q1)", "entry #0 hit #0", "'doc 1' contains whitespace"),
         "TREC runs and qrels separate their columns by whitespace", absent=("out",)),
    Case("rankgpt-dup-qid", "records", "the same qid twice in the input",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt_dup}", "--out", "{done_run}"],
         ("cands_dup.json", "q1", "appears twice"), "merge or rename the duplicated query", unchanged=("done_run",)),
    Case("rankgpt-surrogate", "records", "a lone surrogate (`\\ud83d`, half an emoji) in a RankGPT JSON passage",
         ["rerank", "--model", "{missing}", "--input", "{rankgpt_surrogate}", "--out", "{out}"],
         ("cands_surrogate.json", "qid q1", "cannot be encoded as UTF-8"), "send valid Unicode", absent=("out",)),
    # --- the command line itself
    Case("unknown-command", "command line", "`dear rerankk`", ["rerankk"], ("unknown command 'rerankk'",),
         "`dear <command> --help`"),
]


def _fill(argv: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in argv]


def _snapshot(files: dict[str, str], keys: tuple[str, ...]) -> dict[str, bytes]:
    out = {}
    for k in keys:
        p = Path(files[k])
        out[k] = p.read_bytes() if p.is_file() else b"".join(f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file())
    return out


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    made = build_inputs(tmp_path)
    yield made
    for key in ("rankgpt", "readonly"):  # let pytest clean up what a case made unreadable
        os.chmod(made[key], 0o755)


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from dear_train.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors exit 2
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


def _run_subprocess(argv: list[str], subprocess_env: dict[str, str]) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "dear_train.cli", *argv], capture_output=True, text=True,
                          env=subprocess_env, timeout=120, cwd=REPO)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, files: dict[str, str], capsys, subprocess_env, monkeypatch) -> None:
    if case.as_root is not None and IS_ROOT:
        case.as_root(monkeypatch, files)
    if case.setup is not None:
        case.setup(files)
    if case.patch is not None:
        case.patch(monkeypatch, files)
    before = _snapshot(files, case.unchanged)
    argv = _fill(case.argv, files)
    rc, out, err = (_run_subprocess(argv, subprocess_env) if case.subprocess
                    else _run_in_process(argv, capsys))
    text = out if case.stream == "out" else err
    assert rc == case.rc, f"exit {rc}, stderr: {err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out
    for words in case.says:
        assert words in text, f"{words!r} not in {text[-2000:]!r}"
    assert case.fix in text, f"fix {case.fix!r} not in {text[-2000:]!r}"
    if case.rc:
        assert len(text) < 3000, "the error is one short message, not a dump of the input"
    assert _snapshot(files, case.unchanged) == before, "finished work was changed"
    for key in case.absent:
        assert not Path(files[key]).exists(), f"{files[key]} was created by a command that failed"


def test_version(capsys) -> None:
    from importlib.metadata import version

    rc, out, _ = _run_in_process(["--version"], capsys)
    assert rc == 0 and out.strip() == f"dear {version('dear-reranker')}"


# ----------------------------------------------------------------------------- BOM: same result either way

BOM = b"\xef\xbb\xbf"


def _readers() -> dict[str, tuple[str, str, Callable[[Path], object]]]:
    from data_prep.readers import read_corpus, read_qrels, read_rankgpt_json, read_run, read_topics

    def teacher(path: Path) -> object:
        from data_prep.formats import read_teacher

        fmt, records = read_teacher(path)
        return fmt, [r.example for r in records]

    def teacher_scores(path: Path) -> object:
        from data_prep.pointwise import PointwiseReport, read_teacher_scores

        return read_teacher_scores(path, PointwiseReport())

    def config(path: Path) -> object:
        from dear_train.config import _load_yaml

        return _load_yaml(str(path), {"learning_rate", "max_steps"})

    def prompt_spec(path: Path) -> object:
        from data_prep.prompts import get_prompt_spec, load_prompt_spec_file

        assert load_prompt_spec_file(path) == get_prompt_spec("dear-card")
        return load_prompt_spec_file(path)

    def prices(path: Path) -> object:
        from data_prep.teacher.pricing import load_prices

        return load_prices(path)[0]

    from data_prep.prompts import get_prompt_spec

    return {
        "qrels": ("qrels.txt", QRELS, read_qrels),
        "run": ("run.trec", RUN, read_run),
        "topics-tsv": ("topics.tsv", TOPICS, read_topics),
        "topics-jsonl": ("topics.jsonl", '{"_id": "q1", "text": "alpha"}\n', read_topics),
        "corpus-tsv": ("corpus.tsv", CORPUS, read_corpus),
        "corpus-jsonl": ("corpus.jsonl", '{"_id": "d1", "text": "a", "title": "t"}\n', read_corpus),
        "rankgpt-json": ("cands.json", json.dumps(_rankgpt()), read_rankgpt_json),
        "teacher-jsonl": ("teacher.jsonl", TEACHER, teacher),
        "teacher-rankgpt": ("teacher.json", json.dumps(_rankgpt()), teacher),
        "teacher-scores": ("scores.tsv", "q1\td1\t1.5\nq1\td2\t0.5\n", teacher_scores),
        "config-yaml": ("c.yaml", "learning_rate: 0.5\nmax_steps: 2\n", config),
        "prompt-spec": ("prompt_spec.json", json.dumps(get_prompt_spec("dear-card").to_json()), prompt_spec),
        "prices": ("prices.yaml", "models:\n  m: {input: 1.0, output: 2.0}\n", prices),
    }


@pytest.mark.parametrize("name", list(_readers()))
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_every_reader_gives_the_same_result_with_and_without_a_bom(name: str, newline: str, tmp_path: Path) -> None:
    filename, text, read = _readers()[name]
    plain = _write(tmp_path / "plain" / filename, text.encode())
    marked = _write(tmp_path / "bom" / filename, BOM + text.replace("\n", newline).encode())
    assert read(marked) == read(plain)
    if filename.endswith((".txt", ".trec", ".tsv", ".jsonl")):  # gzip-compressed: the same again
        gz = _write(tmp_path / "gz" / (filename + ".gz"), gzip.compress(BOM + text.encode()))
        assert read(gz) == read(plain)


def test_a_bom_in_qrels_no_longer_changes_ndcg(tmp_path: Path, capsys) -> None:
    """The reported bug: a BOM stuck to the first qid dropped its first judgment and changed nDCG."""
    from inference.cli_eval import evaluate_files

    run = _write(tmp_path / "run.trec", RUN)
    plain = _write(tmp_path / "q.txt", QRELS)
    marked = _write(tmp_path / "q_bom.txt", BOM + QRELS.encode())
    a = evaluate_files([str(run)], str(plain), ["ndcg@10", "map"])["runs"][str(run)]
    b = evaluate_files([str(run)], str(marked), ["ndcg@10", "map"])["runs"][str(run)]
    assert a == b and a["queries"] == 2


def test_concatenated_files_each_with_a_bom(tmp_path: Path) -> None:
    from data_prep.readers import read_qrels

    joined = _write(tmp_path / "q.txt", BOM + b"q1 0 d1 1\n" + BOM + b"q2 0 d2 1\n")
    assert read_qrels(joined) == {"q1": {"d1": 1}, "q2": {"d2": 1}}


# ----------------------------------------------------------------------------------- empty eval splits

def test_prep_with_no_eval_split_writes_what_train_loads(tmp_path: Path, capsys) -> None:
    from dear_train.cli import main
    from dear_train.listwise_data import load_prep_output

    teacher = _write(tmp_path / "t.jsonl", TEACHER)
    out = tmp_path / "prep"
    assert main(["prep", "listwise", "--teacher", str(teacher), "--out", str(out), "--eval-fraction", "0",
                 "--window", "3"]) == 0
    splits, _ = load_prep_output(out)
    assert sorted(splits) == ["train"] and len(splits["train"]) == 4
    assert not (out / "eval_queries.json").exists()
    # a prep folder from before the fix: an empty saved eval split is skipped, not a crash inside datasets
    from datasets import Dataset, DatasetDict

    from data_prep.listwise import dataset_features
    from data_prep.prompts import get_prompt_spec

    features = dataset_features(get_prompt_spec("dear-card"))
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    DatasetDict({"train": Dataset.from_list(rows, features=features),
                 "eval": Dataset.from_dict({k: [] for k in features}, features=features)}).save_to_disk(str(out / "dataset"))
    splits, _ = load_prep_output(out)
    assert sorted(splits) == ["train"] and len(splits["train"]) == 4


@pytest.mark.parametrize("command", ["train", "distill"])
def test_no_eval_split_means_no_evaluation(command: str, tiny_model_dir: Path, tmp_path: Path, capsys,
                                           one_torch_thread) -> None:
    """`eval_strategy: steps` on a prep folder without eval data trains (with a logged note), not a crash
    inside `datasets` or the Trainer."""
    from dear_train.cli import main

    out = tmp_path / "out"
    if command == "train":
        data = tmp_path / "prep"
        teacher = _write(tmp_path / "t.jsonl", TEACHER)
        assert main(["prep", "listwise", "--teacher", str(teacher), "--out", str(data), "--eval-fraction", "0",
                     "--window", "3"]) == 0
        config = REPO / "configs" / "train" / "tiny_cpu.yaml"
    else:
        from tests._pointwise_helpers import distill_data

        data, _ = distill_data(tmp_path, num_queries=2, depth=4, eval_queries=0)
        config = REPO / "configs" / "train" / "tiny_cpu_distill.yaml"
    assert main([command, "--config", str(config), "--model_name_or_path", str(tiny_model_dir),
                 "--dataset_path", str(data), "--output_dir", str(out), "--max_steps", "1",
                 "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "no"]) == 0
    assert (out / "dear_training.json").is_file()


def test_prep_writes_the_held_out_queries_for_rerank(tmp_path: Path) -> None:
    from data_prep.readers import read_rankgpt_json
    from dear_train.cli import main

    teacher = _write(tmp_path / "t.jsonl", TEACHER)
    out = tmp_path / "prep"
    assert main(["prep", "listwise", "--teacher", str(teacher), "--out", str(out), "--eval-fraction", "0.5",
                 "--window", "3"]) == 0
    held = read_rankgpt_json(out / "eval_queries.json")
    eval_qids = {json.loads(line)["qid"] for line in (out / "eval.jsonl").read_text().splitlines()}
    assert {r.qid for r in held} == eval_qids and len(held) == 2
    first = json.loads(TEACHER.splitlines()[int(held[0].qid[1:])])
    assert [c.docid for c in held[0].candidates] == [c["docid"] for c in first["candidates"]]


# ---------------------------------------------------------------------------------------------- secrets

def test_hub_token_is_not_kept_in_the_arguments(monkeypatch) -> None:
    from dear_train import sft
    from dear_train.artifacts import resolved_config
    from dear_train.config import parse_config

    monkeypatch.delenv("HF_TOKEN", raising=False)
    parsed = parse_config(sft.config_classes(), ["--dataset_path", "d", "--hub_token", "hf_SENTINEL_123"])
    import pickle

    assert all(b"hf_SENTINEL_123" not in pickle.dumps(p) for p in parsed)
    assert "hf_SENTINEL_123" not in json.dumps(resolved_config(*parsed), default=str)
    assert os.environ["HF_TOKEN"] == "hf_SENTINEL_123"  # what huggingface_hub reads when pushing


# ------------------------------------------------------------------------------- options: one mechanism

def test_rerank_settings_are_derived_from_the_options() -> None:
    from data_prep.cli_options import neutral_settings
    from inference.cli_rerank import RerankOptions
    from inference.runfiles import RESUME_NEUTRAL

    opts = RerankOptions(model="m", input="i.json", out="o.trec")
    s = opts.settings()
    assert s["window"] == 20 and s["top_k"] == 100 and s["temperature"] is None and "pointwise" not in s
    assert "out" not in s and "qrels" not in s and "no_progress" not in s
    # the keys a run recorded before the options mechanism: such a run still resumes
    assert set(s) == {"model", "base_model", "prompt", "input", "window", "stride", "top_k", "max_new_tokens",
                      "cot_max_new_tokens", "max_prompt_tokens", "dtype", "quantization", "backend", "sample",
                      "seed", "temperature", "top_p", "tag", "batch_size", "device"}
    two = RerankOptions(model="m", input="i.json", out="o.trec", pointwise="p", listwise_depth=25,
                        sample=True, temperature=0.5)
    s2 = two.settings()
    assert s2["top_k"] == 25 and s2["pointwise"] == "p" and s2["temperature"] == 0.5
    # what may change on resume is declared on the fields, and the resume check agrees
    assert set(neutral_settings(RerankOptions)) - {"pointwise_batch_size"} <= set(RESUME_NEUTRAL)


def test_library_field_names_become_the_commands_flags() -> None:
    from data_prep.cli_options import flag_message, flags_of
    from data_prep.schema import DataError
    from inference.cli_rerank import RENAMES, RerankOptions

    err = DataError("prompt needs more than 10 tokens", fix="raise max_tokens or use a smaller window",
                    field="max_tokens")
    msg = flag_message(err, flags_of(RerankOptions), renames=RENAMES)
    assert "--max-prompt-tokens" in msg and "max_tokens" not in msg and "--max-tokens" not in msg
    assert flag_message(ValueError("window must be >= 2"), flags_of(RerankOptions)) == "--window must be >= 2"
    # a field's name inside a path or a file name stays as it is; at a sentence's end it is still the flag
    err = DataError("the run has no settings file", path="/data/out/input.trec", field="input",
                    fix="check input.")
    assert flag_message(err, flags_of(RerankOptions)) == \
        "/data/out/input.trec: the run has no settings file -- fix: check --input."
    err = DataError("bad", path="C:\\runs\\max_tokens\\a.trec", fix="raise max_tokens")
    assert flag_message(err, flags_of(RerankOptions), renames=RENAMES) == \
        "C:\\runs\\max_tokens\\a.trec: bad -- fix: raise --max-prompt-tokens"


def test_help_shows_defaults() -> None:
    from inference.cli_eval import build_parser as eval_parser
    from inference.cli_rerank import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "passages per window (default: 20)" in text and "(default: ndcg@10 ndcg@5 ndcg@1)" in text
    assert "(default: ndcg@10 ndcg@5 ndcg@1 map recall@100)" in " ".join(eval_parser().format_help().split())


# ------------------------------------------------------------------- every command: no abbreviations

@pytest.mark.parametrize("argv,abbrev", [
    (["eval", "--run", "r", "--qrels", "q"], "--metric"),
    (["rerank", "--model", "m", "--input", "i.json", "--out", "o"], "--windo"),
    (["prep", "listwise", "--teacher", "t", "--out", "o"], "--eval-frac"),
    (["prep", "pointwise", "--candidates", "c", "--teacher-scores", "s", "--out", "o"], "--negative"),
    (["teacher", "--input", "i", "--out", "o", "--endpoint", "e", "--model", "m"], "--sampl"),
    (["export", "--adapter", "a", "--out", "o"], "--mer"),
    (["tiny-model", "o"], "--hidden"),
    (["serve", "--model", "m"], "--por"),
])
def test_no_command_takes_an_abbreviated_flag(argv: list[str], abbrev: str, capsys) -> None:
    """argparse's default takes `--windo 5` as `--window 5` without a word; every `dear` parser refuses it."""
    rc, _, err = _run_in_process([*argv, abbrev, "5"], capsys)
    assert rc == 2 and f"unrecognized arguments: {abbrev} 5" in err


def test_every_option_help_shows_its_default() -> None:
    """The options mechanism appends the default to each option's help unless the help already says it."""
    from data_prep.cli_options import build_parser
    from data_prep.listwise_cli import PrepListwiseOptions
    from data_prep.pointwise_cli import PrepPointwiseOptions
    from data_prep.teacher_cli import TeacherOptions
    from dear_train.export.cli import ExportOptions
    from dear_train.tiny_model_cli import TinyModelOptions
    from inference.cli_eval import EvalOptions
    from inference.cli_rerank import RerankOptions

    for cls in (RerankOptions, EvalOptions, PrepListwiseOptions, PrepPointwiseOptions, TeacherOptions,
                ExportOptions, TinyModelOptions):
        parser = build_parser(cls, prog="x")
        fmt = parser._get_formatter()
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and not action.required:
                assert "default" in fmt._get_help_string(action), (cls.__name__, action.dest)


def test_queries_without_candidates_are_skipped_not_reranked_on_every_resume(tmp_path: Path, caplog) -> None:
    from inference.cli_rerank import load_requests

    data = _rankgpt(("q1", "q2"))
    data.append({"query": "nothing retrieved", "qid": "q3", "hits": []})
    path = _write(tmp_path / "c.json", json.dumps(data))
    assert [r.qid for r in load_requests(str(path))] == ["q1", "q2"]
    assert "1 queries have no candidates" in caplog.text


def test_third_party_notes_a_user_cannot_act_on_are_quiet(caplog) -> None:
    import logging
    import warnings

    from dear_train.cli import quiet_third_party

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn_explicit("deprecated in v6", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="inference.reranker")
    assert [str(w.message) for w in seen] == ["ours"]
    caplog.set_level(logging.WARNING)
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    bnb.warning("Failed to load CPU gemm_4bit_forward: x. Please make sure you already `pip install kernels`")
    bnb.warning("something else")
    assert "pip install kernels" not in caplog.text and "something else" in caplog.text


# ------------------------------------------------------------------------------------------ disk faults

@pytest.mark.parametrize("code,fix", [(28, "free disk space"), (30, "read-only file system")])
def test_a_full_or_read_only_disk_is_one_line_naming_the_path(code: int, fix: str, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    """ENOSPC / EROFS while a command writes: one line with the path and the fix, exit 2 (root cannot be
    denied a write here, so the fault is injected where the command writes its output)."""
    import errno

    assert code in (errno.ENOSPC, errno.EROFS)
    run, qrels = _write(tmp_path / "r.trec", RUN), _write(tmp_path / "q.txt", QRELS)
    target = tmp_path / "res.json"
    real = Path.write_text

    def failing(self: Path, *a, **kw):
        if self == target:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", failing)
    rc, _, err = _run_in_process(["eval", "--run", str(run), "--qrels", str(qrels), "--out", str(target)], capsys)
    assert rc == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert str(target) in line and fix in line and os.strerror(code) in line


# ---------------------------------------------------------------------------------- locks on the outputs

class _Holder:
    """Another live process holding the lock on ``path`` (as a second job would) until closed."""

    def __init__(self, path: Path, what: str, env: dict[str, str]) -> None:
        code = textwrap.dedent(f"""
            import sys
            from data_prep.io import OutputLock
            with OutputLock({str(path)!r}, what={what!r}):
                print("locked", flush=True)
                sys.stdin.readline()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=REPO)
        assert self.proc.stdout.readline().strip() == "locked"

    def close(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def test_a_second_teacher_job_on_the_same_output_is_refused(tmp_path: Path, capsys, subprocess_env) -> None:
    """A live process holds the teacher output: `dear teacher` refuses, naming that process, and the file
    (finished records) is not touched; once the holder is gone the lock is free again."""
    out = _write(tmp_path / "teacher.jsonl", TEACHER)
    cands = _write(tmp_path / "cands.json", json.dumps(_rankgpt()))
    holder = _Holder(out, "teacher output", subprocess_env)
    try:
        rc, _, err = _run_in_process([*TEACHER_CMD, "--input", str(cands), "--out", str(out)], capsys)
        assert rc == 2 and f"pid {holder.proc.pid}" in err and "another job is writing this teacher output" in err
        assert out.read_text() == TEACHER
    finally:
        holder.close()
    from data_prep.io import OutputLock

    with OutputLock(out):  # free again
        pass


def test_a_second_teacher_scoring_job_is_refused_before_the_model_loads(tmp_path: Path, subprocess_env) -> None:
    """`dear prep pointwise --teacher-model` appends to OUT/teacher_scores.tsv: a second writer is refused
    (the model path does not even exist: the lock comes first) and the finished scores stay as they were."""
    from data_prep.io import OutputLocked
    from data_prep.schema import Candidate, RerankRequest
    from inference.teacher_scores import score_with_teacher_model

    scores = _write(tmp_path / "teacher_scores.tsv", "q1\td1\t0.5\n# done q1\n")
    req = RerankRequest(qid="q2", query="q", candidates=(Candidate(docid="d2", text="t"),))
    holder = _Holder(scores, "teacher scores", subprocess_env)
    try:
        with pytest.raises(OutputLocked, match=f"pid {holder.proc.pid}"):
            score_with_teacher_model(tmp_path / "no-model", [req], scores)
        assert scores.read_text() == "q1\td1\t0.5\n# done q1\n"
    finally:
        holder.close()


# -------------------------------------------------------------------------------------- docs/errors.md

FAMILY_TITLES = {
    "encoding": "Encodings and binary files",
    "files": "Missing, empty, broken or unreadable files",
    "options": "Options that can never work (refused before any model loads)",
    "models": "Model folders (checked before any weights load)",
    "training options": "Training options",
    "secrets": "Secrets",
    "empty splits": "Empty outputs",
    "judgments": "Judgments and metrics",
    "records": "Input records",
    "outputs": "Outputs: never an input, never replaced unasked",
    "command line": "The command line",
}


GUARANTEES = [
    "",
    "## What is guaranteed about outputs",
    "",
    "Proven by `tests/test_boundaries_files.py` (generated bad values, hypothesis) and the cases below.",
    "",
    "- **No output is an input.** Every command checks all its output paths before any work (one function,",
    "  `data_prep.cli_options.check_outputs`): an output that is an input of the same command -- the same path,",
    "  a symlink or hard link to it, `dir/../file`, or a folder the command writes that holds the input -- is",
    "  refused, `--overwrite` or not (`dear rerank --out` = `--input`, `dear eval --out` = `--qrels`,",
    "  `dear train --output_dir` = `--dataset_path`, `dear export --out` holding `--adapter` ...). Two outputs",
    "  of one command are never the same file (`--jsonl` = `--out`, or the run's `.meta.json`/`.summary.json`).",
    "- **Existing files are untouched unless you ask.** `dear eval --out` and the files `dear prep listwise|",
    "  pointwise` write in `--out` (`train.jsonl`, `report.json`, `dataset/` ...) are refused when they already",
    "  hold data; `--overwrite` replaces them (other files in the folder are left alone). `dear export --out`",
    "  must be new or empty. A refused command leaves every file byte-identical. An empty file holds nothing",
    "  to lose and counts as free.",
    "- **Resumable outputs belong to their run.** `dear rerank --out` resumes only a run whose",
    "  `RUN.meta.json` records the same settings; `--jsonl` is the run's only when `RUN.meta.json` names it",
    "  (its resolved path; runs from before: when every line is a per-query record). Any other non-empty",
    "  file there is refused, never truncated. `dear teacher` resumes only its own records, request cache",
    "  and report (any other file at `--out`, `--cache` or `--report` is refused); a training",
    "  resumes only with the settings that decide the weights it started with (`dear_run_settings.json` in",
    "  `--output_dir`: learning rate, loss weights, LoRA shape, batch, seed, data fingerprint, and for GRPO the",
    "  KL weight, group size, sampling and reward weights ...); change",
    "  them in a new `--output_dir`. Steps, logging, evaluation and saving may change on resume.",
    "- **A resume never deletes finished queries.** Rerunning a run with `--limit N` or a shorter input keeps",
    "  every finished query: the run lists the queries asked for in input order, then the others in their",
    "  previous order. Under torchrun (`-m inference.rerank`) the same rules hold for every process count.",
    "- **Fingerprints.** `RUN.meta.json` records per query its number of run lines and a sha256 of its input",
    "  (query text and the candidates' docids, titles and texts, in first-stage order). A query whose input",
    "  changed under the same qid is ranked again (its old ranking and JSONL record are dropped, with a",
    "  warning naming them); a run never keeps the ranking of candidates that are no longer there.",
    "- **Atomic files.** Whole files (results, reports, prep outputs, the merged run) are written to a",
    "  temporary sibling and renamed into place; appended files (runs, JSONL, teacher records) are flushed",
    "  per query and a torn last line is cut on resume. A full disk is one line naming the file it could",
    "  not write. A file written whole keeps the permissions of the file it replaces, and a new one gets",
    "  those your umask gives (never the temporary file's private 0600).",
    "- **Ids TREC files can hold.** qids and docids (and `--tag`) are refused where they enter when empty or",
    "  holding whitespace or control characters, naming the file, line or entry and qid; duplicate docids",
    "  in a query of a run or of RankGPT JSON, duplicate qrels judgments, duplicate topics and conflicting",
    "  corpus entries are refused (as trec_eval does); every score and float option is a finite number.",
    "- **Under torchrun.** A refusal is one line from rank 0, exit code 2 of the process; torchrun then prints",
    "  its own `ChildFailedError` report (with that line as the root cause) and exits 1 -- torchrun's exit",
    "  code and report are its own. If the torchrun agent itself is killed, each rank prints one line",
    "  (`lost contact with the launcher's store`) and exits 1; finished queries stay in the part files, and",
    "  rerunning the same command resumes them.",
]


def errors_doc() -> str:
    """docs/errors.md, generated from ``CASES``."""
    lines = [
        "# Errors and what to do",
        "",
        "Every `dear` command checks its input before it does any expensive work and reports a problem as one",
        "line: `dear <command>: error: <file>[:<line>]: <what is wrong> -- fix: <what to do>`, with exit code 2",
        "(`dear export` exits 1 on any failed check), never a Python traceback. Options are named as you typed",
        "them; files by path, line and byte offset.",
        "Text inputs may carry a UTF-8 byte-order mark and Windows line ends; `*.gz` files are read as gzip.",
        "Finished work is never lost: a failing command leaves the files earlier runs wrote unchanged, and",
        "a second job on the same output is refused (`another job is writing this ...`, naming its pid).",
        "A full disk or a read-only folder is one line naming the path (rerun to resume once fixed).",
        "",
        "This page is generated from the table in `tests/test_bad_input.py`, which runs every case below",
        "(`python tests/test_bad_input.py` rewrites it).",
        *GUARANTEES,
    ]
    for family, title in FAMILY_TITLES.items():
        rows = [c for c in CASES if c.family == family]
        if not rows:
            continue
        lines += ["", f"## {title}", "", "| you did | `dear` says | what to do |", "|---|---|---|"]
        for c in rows:
            says = "; ".join(f"`{s}`" for s in c.says)
            lines.append(f"| {c.did} | {says} | {c.fix} |")
    return "\n".join(lines) + "\n"


def test_errors_doc_matches_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == errors_doc(), "run `python tests/test_bad_input.py` to regenerate"
    assert all(c.family in FAMILY_TITLES for c in CASES)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    DOC.write_text(errors_doc(), encoding="utf-8")
    print(f"wrote {DOC}")
