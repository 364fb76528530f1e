"""`dear prep pointwise`: teacher scores + candidate texts (+ qrels) -> distillation groups.

``--teacher-model`` runs a model, which ``data_prep`` never imports: the caller hands ``main`` a
:class:`TeacherScorer` (the `dear` CLI passes ``inference.teacher_scores.score_with_teacher_model`` through
``dear_train.prep_cli``), so the data contract stays free of model code and the flag works as before.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from data_prep.cli_options import HelpFormatter, flag_message, flags_of
from data_prep.schema import DataError, RerankRequest


class TeacherScorer(Protocol):
    """Writes the ``qid docid score`` TSV of a sequence-classification teacher for ``--teacher-model``."""

    def __call__(self, model_path: str | Path, requests: Iterable[RerankRequest], out_path: str | Path, *,
                 batch_size: int = ..., dtype: str = ..., base_model: str | None = ...,
                 pair_format: Any | None = ...) -> Path: ...


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, formatter_class=HelpFormatter,
        prog="dear prep pointwise",
        description="Build stage-1 distillation groups (one positive + N sampled negatives, with the teacher's "
                    "scores of exactly those passages). Positives: qrels-relevant candidates when --qrels is "
                    "given, else the teacher's top-1.")
    src = p.add_argument_group("candidates (one of)")
    src.add_argument("--candidates", help="RankGPT JSON [{query, hits:[{docid, content, ...}]}]")
    src.add_argument("--run", help="TREC run (needs --corpus and --topics)")
    src.add_argument("--corpus", help="corpus TSV (docid, text[, title]) or BEIR JSONL")
    src.add_argument("--topics", help="topics TSV (qid, query) or JSONL")
    t = p.add_argument_group("teacher (one of)")
    t.add_argument("--teacher-scores", help="TSV 'qid docid score' or JSONL {qid, docid, score}")
    t.add_argument("--teacher-model", help="sequence-classification teacher to score the candidates with "
                   "(writes OUT/teacher_scores.tsv, resumable)")
    t.add_argument("--teacher-base-model", help="base model when --teacher-model is a PEFT adapter")
    t.add_argument("--teacher-batch-size", type=int, default=32)
    t.add_argument("--teacher-dtype", default="auto")
    t.add_argument("--q-max-len", type=int, default=32, help="teacher input: query tokens")
    t.add_argument("--p-max-len", type=int, default=196, help="teacher input: document tokens")
    p.add_argument("--qrels", help="TREC qrels: judged-relevant candidates become the positives")
    p.add_argument("--min-rel", type=int, default=1, help="grade that counts as relevant (default 1)")
    p.add_argument("--negatives", type=int, default=15, help="negatives per group (default 15: groups of 16)")
    p.add_argument("--max-positives", type=int, default=1, help="groups per query, one per positive")
    p.add_argument("--negative-depth", type=int, help="sample negatives only from the teacher's top K")
    p.add_argument("--eval-queries", type=int, default=0, help="queries held out into eval.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="fail: stop at the first bad record (file, line, qid, fix); skip: drop it and count it in report.json")
    p.add_argument("--out", required=True, help="output folder (train.jsonl, eval.jsonl, report.json)")
    return p


def _load_requests(args: argparse.Namespace):
    from data_prep.readers import read_corpus, read_rankgpt_json, read_run, read_topics, requests_from_run

    if bool(args.candidates) == bool(args.run):
        raise DataError("give exactly one of --candidates (RankGPT JSON) or --run (+ --corpus, --topics)",
                        fix="see `dear prep pointwise --help`")
    if args.candidates:
        return read_rankgpt_json(args.candidates)
    if not (args.corpus and args.topics):
        raise DataError("--run needs --corpus and --topics for the passage and query texts",
                        fix="pass --corpus and --topics")
    return requests_from_run(read_run(args.run), read_topics(args.topics), read_corpus(args.corpus), args.run)


def main(argv: list[str] | None = None, *, score_teacher: TeacherScorer | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from data_prep.pointwise import prep_pointwise
    from data_prep.pointwise_format import PairFormat
    from data_prep.readers import read_qrels

    try:
        if bool(args.teacher_scores) == bool(args.teacher_model):
            raise DataError("give exactly one of --teacher-scores or --teacher-model", fix="see --help")
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
            sources={k: str(v) for k, v in vars(args).items()
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
    except DataError as err:
        print(f"dear prep pointwise: error: {flag_message(err, flags_of(parser))}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
