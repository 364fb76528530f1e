"""`dear prep pointwise`: teacher scores + candidate texts (+ qrels) -> distillation groups.

``--teacher-model`` runs a model, which ``data_prep`` never imports: the caller hands ``main`` a
:class:`TeacherScorer` (the `dear` CLI passes ``inference.teacher_scores.score_with_teacher_model`` through
``dear_train.prep_cli``), so the data contract stays free of model code and the flag works as before.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from data_prep.cli_options import (
    OptionError,
    check_outputs,
    checked,
    flags_of,
    option,
    parse_options,
)
from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_run import run_command
from data_prep.schema import DataError, RerankRequest


class TeacherScorer(Protocol):
    """Writes the ``qid docid score`` TSV of a sequence-classification teacher for ``--teacher-model``."""

    def __call__(self, model_path: str | Path, requests: Iterable[RerankRequest], out_path: str | Path, *,
                 batch_size: int = ..., dtype: str = ..., base_model: str | None = ...,
                 pair_format: Any | None = ...) -> Path: ...


DESCRIPTION = ("Build stage-1 distillation groups (one positive + N sampled negatives, with the teacher's "
               "scores of exactly those passages). Positives: qrels-relevant candidates when --qrels is "
               "given, else the teacher's top-1.")
CANDIDATES = "candidates (one of)"
TEACHER = "teacher (one of)"


@dataclass
class PrepPointwiseOptions:
    """Every `dear prep pointwise` option (parser, --help with defaults, checks before any file is read)."""

    out: str = option(help="output folder (train.jsonl, eval.jsonl, report.json)")
    candidates: str | None = option(None, group=CANDIDATES, help="RankGPT JSON [{query, hits:[{docid, content, ...}]}]")
    run: str | None = option(None, group=CANDIDATES, help="TREC run (needs --corpus and --topics)")
    corpus: str | None = option(None, group=CANDIDATES, help="corpus TSV (docid, text[, title]) or BEIR JSONL")
    topics: str | None = option(None, group=CANDIDATES, help="topics TSV (qid, query) or JSONL")
    teacher_scores: str | None = option(None, group=TEACHER, help="TSV 'qid docid score' or JSONL {qid, docid, score}")
    teacher_model: str | None = option(None, group=TEACHER, help="sequence-classification teacher to score the "
                                       "candidates with (writes OUT/teacher_scores.tsv, resumable)")
    teacher_base_model: str | None = option(None, group=TEACHER, help="base model when --teacher-model is a PEFT adapter")
    teacher_batch_size: int = option(32, group=TEACHER, help="pairs the teacher scores together")
    teacher_dtype: str = option("auto", group=TEACHER, help="teacher weights dtype")
    q_max_len: int = option(32, group=TEACHER, help="teacher input: query tokens")
    p_max_len: int = option(196, group=TEACHER, help="teacher input: document tokens")
    qrels: str | None = option(None, help="TREC qrels: judged-relevant candidates become the positives")
    min_rel: int = option(1, help="grade that counts as relevant")
    negatives: int = option(15, help="negatives per group (15: groups of 16)")
    max_positives: int = option(1, help="groups per query, one per positive")
    negative_depth: int | None = option(None, help="sample negatives only from the teacher's top K")
    eval_queries: int = option(0, help="queries held out into eval.jsonl")
    seed: int = option(0, help="seed of the negative sampling and the split")
    on_error: str = option("fail", choices=("fail", "skip"), help="fail: stop at the first bad record (file, line, "
                           "qid, fix); skip: drop it and count it in report.json")
    overwrite: bool = option(False, help="replace the groups and report an earlier `dear prep pointwise` wrote in "
                             "--out (OUT/teacher_scores.tsv of --teacher-model is resumed, not replaced)")

    def check(self) -> None:
        if bool(self.candidates) == bool(self.run):
            raise OptionError("candidates", "give exactly one of --candidates (RankGPT JSON) or --run "
                              "(+ --corpus, --topics)", fix="see `dear prep pointwise --help`")
        if self.run and not (self.corpus and self.topics):
            raise OptionError("run", "needs --corpus and --topics for the passage and query texts",
                              fix="pass --corpus and --topics")
        if bool(self.teacher_scores) == bool(self.teacher_model):
            raise OptionError("teacher_scores", "give exactly one of --teacher-scores or --teacher-model",
                              fix="see `dear prep pointwise --help`")
        for name in ("negatives", "max_positives", "teacher_batch_size", "q_max_len", "p_max_len"):
            if getattr(self, name) < 1:
                raise OptionError(name, f"must be >= 1, got {getattr(self, name)}", fix="use a positive number")
        if self.negative_depth is not None and self.negative_depth < 2:
            raise OptionError("negative_depth", f"must be >= 2, got {self.negative_depth}",
                              fix="leave it out to sample from every candidate")
        if self.eval_queries < 0:
            raise OptionError("eval_queries", f"must be >= 0, got {self.eval_queries}", fix="0 for no eval split")
        from data_prep.cli_options import check_output_file

        check_output_file(str(Path(self.out) / "report.json"), "output folder's files")
        out = Path(self.out)
        check_outputs({"out": [str(out / n) for n in ("train.jsonl", "eval.jsonl", "report.json")],
                       "teacher_model": str(out / "teacher_scores.tsv") if self.teacher_model else None},
                      {n: getattr(self, n) for n in ("candidates", "run", "corpus", "topics", "teacher_scores",
                                                      "qrels")},
                      fresh=("out",), overwrite=self.overwrite,
                      overwrite_fix="pass --overwrite to replace the earlier prep output, or choose another --out")


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(PrepPointwiseOptions, prog="dear prep pointwise", description=DESCRIPTION)


def _load_requests(args: PrepPointwiseOptions):
    from data_prep.readers import read_corpus, read_rankgpt_json, read_run, read_topics, requests_from_run

    if args.candidates:
        return read_rankgpt_json(args.candidates)
    return requests_from_run(read_run(args.run), read_topics(args.topics), read_corpus(args.corpus), args.run)


def main(argv: list[str] | None = None, *, score_teacher: TeacherScorer | None = None) -> int:
    args = parse_options(PrepPointwiseOptions, argv, prog="dear prep pointwise", parser=build_parser())
    from data_prep.pointwise import prep_pointwise
    from data_prep.pointwise_format import PairFormat
    from data_prep.readers import read_qrels

    def run() -> int:
        checked(args, prog="dear prep pointwise")
        if args.teacher_model and score_teacher is None:
            raise DataError("--teacher-model needs the model scorer the `dear` CLI provides",
                            fix="run `dear prep pointwise --teacher-model ...`, or score first and pass "
                                "--teacher-scores")
        requests = _load_requests(args)
        scores_path = args.teacher_scores
        if args.teacher_model:
            scores_path = score_teacher(
                args.teacher_model, requests, Path(args.out) / "teacher_scores.tsv",
                batch_size=args.teacher_batch_size, dtype=args.teacher_dtype, base_model=args.teacher_base_model,
                pair_format=PairFormat(q_max_len=args.q_max_len, p_max_len=args.p_max_len))
        report = prep_pointwise(
            args.out, requests, teacher_scores=scores_path,
            qrels=read_qrels(args.qrels) if args.qrels else None, num_negatives=args.negatives, seed=args.seed,
            min_rel=args.min_rel, max_positives=args.max_positives, negative_depth=args.negative_depth,
            eval_queries=args.eval_queries, on_error=args.on_error,
            sources={k: str(v) for k, v in asdict(args).items()
                     if k in ("candidates", "run", "corpus", "topics", "qrels", "teacher_model") and v}
            | {"teacher_scores": str(scores_path)})
        groups = report.queries.outputs
        if not groups.get("train_groups"):  # nothing `dear distill` could train on: an error, not a folder
            dropped = ", ".join(f"{k}={v}" for k, v in sorted(report.queries.dropped.items()))
            raise DataError(f"no training groups written ({report.queries.read} queries read, "
                            f"{report.queries.written} with groups, {groups.get('eval_groups', 0)} eval groups"
                            + (f"; dropped: {dropped}" if dropped else "") + f"); see {Path(args.out) / 'report.json'}",
                            path=str(scores_path), reason="no_records",
                            fix="check that the teacher scores cover the candidates' qids and docids, and that "
                            "--eval-queries leaves queries to train on")
        print(json.dumps(report.to_json(), indent=2))
        return 0

    return run_command("dear prep pointwise", run, flags=flags_of(PrepPointwiseOptions))


if __name__ == "__main__":
    raise SystemExit(main())
