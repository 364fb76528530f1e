"""`dear rerank`: rerank first-stage candidates with a listwise model, write a TREC run (resumable).

    dear rerank --model ADAPTER_OR_MODEL --input dl19_top100.json --out dl19.trec --jsonl dl19.jsonl \\
        --qrels qrels.dl19-passage.txt
    dear rerank --model ... --input bm25.trec --corpus corpus.tsv --topics topics.tsv --out run.trec
    dear rerank --pointwise POINTWISE --listwise ADAPTER --input dl19_top100.json --out dl19.trec   (two-stage)
    dear rerank --model ... --input dl19_top100.json --out dl19.trec --strategy tdpart   (docs/inference.md)
"""

from __future__ import annotations

import argparse

from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_options import checked, flags_of, parse_options
from data_prep.cli_run import CommandError, run_command

# the job lives in inference.rerank_job; these names stay importable from here for callers of the command module
from inference.rerank_job import (
    RENAMES,
    TWO_STAGE,
    RerankOptions,
    check_inputs,
    check_judged,
    error_line,
    load_listwise,
    load_requests,
    rerank_queries,
    rerank_settings,
    run_job,
    run_rerank,
    show_summary,
    write_summary,
)

__all__ = ["RENAMES", "TWO_STAGE", "RerankOptions", "build_parser", "check_inputs", "check_judged", "error_line",
           "load_listwise", "load_requests", "main", "parse_options", "parse_rerank_options", "rerank_queries",
           "rerank_settings", "run_rerank", "show_summary", "write_summary"]


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(RerankOptions, prog="dear rerank", description=__doc__)


def parse_rerank_options(argv: list[str] | None = None) -> RerankOptions:
    """The parsed and checked options (argparse's own errors exit 2; a bad value raises a DataError)."""
    return checked(parse_options(RerankOptions, argv, prog="dear rerank", parser=build_parser()),
                   prog="dear rerank")


def main(argv: list[str] | None = None) -> int:
    args = parse_options(RerankOptions, argv, prog="dear rerank", parser=build_parser())
    return run_command("dear rerank", lambda: _run(args), flags=flags_of(RerankOptions), renames=RENAMES,
                       out=args.out, interrupted=f"finished queries are saved in {args.out}. "
                                                 "Run the same command again to resume.")


def _run(args: RerankOptions) -> int:
    from inference.parallel import launched_world_size

    if launched_world_size() > 1:  # one of several processes: each would rank everything into the same --out
        raise CommandError("started as one of several processes (WORLD_SIZE > 1); under torchrun, "
                           "accelerate or srun run `-m inference.rerank` with the same options")
    opts = checked(args, prog="dear rerank")
    show_summary(run_job(opts), opts.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
