"""`dear eval`: trec_eval-compatible metrics of runs against qrels, and paired significance tests between them.

    dear eval --run dl19.trec --qrels qrels.dl19-passage.txt --metrics ndcg@10 ndcg@5 ndcg@1 map recall@100
    dear eval --run bm25.trec rerank.trec other.trec --qrels qrels.txt --baseline bm25.trec \\
        --test t --correction holm --plot plots/

A run is a TREC run file, or RankGPT JSON (first-stage scores). Semantics are trec_eval's (linear gain, only
judged queries count); every run is scored on the same judged queries, 0 on one it lacks (trec_eval -c), or
with --common-queries on those all runs share. With two runs or more: a paired test of each run against
--baseline (a dagger marks significance), or of every pair (ranx-style letters: significantly better than the
run with that letter), corrected over all runs x metrics tested. Beside each run: judged@10, and model calls,
tokens and seconds per query where `dear rerank` left its summary or JSONL. The table goes to the terminal
(figures x100; --format markdown/latex/json), raw values to --out JSON. Tests, corrections and plots need
the eval extra (pip install 'dear-reranker[eval]'). See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.cli_options import (
    OptionError,
    check_output_file,
    check_outputs,
    checked,
    flags_of,
    option,
    parse_options,
)
from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_run import run_command
from data_prep.schema import DataError

DEFAULT_EVAL_METRICS = ["ndcg@10", "ndcg@5", "ndcg@1", "map", "recall@100"]
TESTS_GROUP = "significance tests (two runs or more)"


@dataclass
class EvalOptions:
    """Every `dear eval` option (parser, --help and checks come from these fields)."""

    run: list[str] = option(help="TREC run file(s) or RankGPT JSON", setting=None)
    qrels: str = option(help="TREC qrels (qid 0 docid grade)", setting=None)
    metrics: list[str] = option(help="ndcg@K, map, recall@K, p@K, mrr@K, or ir_measures names", setting=None,
                                default_factory=lambda: list(DEFAULT_EVAL_METRICS))
    out: str | None = option(None, help="write the results as JSON here", setting=None)
    per_query: bool = option(False, help="also keep per-query values in the JSON", setting=None)
    common_queries: bool = option(False, setting=None,
                                  help="score every run on only the judged queries all runs share (default: "
                                       "on every judged query any run has, 0 where a run lacks one)")
    format: str = option("table", choices=("table", "markdown", "latex", "json"), setting=None,
                         help="what to print: a terminal table, Markdown, LaTeX (booktabs) or the JSON report")
    baseline: str | None = option(None, group=TESTS_GROUP, setting=None, metavar="RUN",
                                  help="compare every other run with this one (one of --run, or its file name); "
                                       "without it every pair is compared")
    test: str = option("t", choices=("t", "wilcoxon", "fisher"), group=TESTS_GROUP, setting=None,
                       help="paired two-sided test: t (scipy ttest_rel), wilcoxon (signed rank), fisher "
                            "(randomization, seeded)")
    correction: str = option("holm", choices=("holm", "bonferroni", "none"), group=TESTS_GROUP, setting=None,
                             help="multiple-comparison correction over all runs x metrics tested")
    alpha: float = option(0.05, group=TESTS_GROUP, setting=None, help="significance level")
    permutations: int = option(10_000, group=TESTS_GROUP, setting=None,
                               help="random sign flips of the fisher test (its p-value's Monte Carlo error is "
                                    "reported)")
    seed: int = option(0, group=TESTS_GROUP, setting=None, help="seed of the fisher test's sign flips (default: 0)")
    plot: str | None = option(None, group=TESTS_GROUP, setting=None, metavar="DIR",
                              help="write PNG charts here: per-query differences against --baseline, and "
                                   "quality against cost per query")
    overwrite: bool = option(False, help="replace an existing --out", setting=None)

    def check(self) -> None:
        from inference.metrics import parse_metric

        for m in self.metrics:  # an unknown metric fails before any file is read
            parse_metric(m)
        seen = set()
        for r in self.run:
            if r in seen:  # no field: flag_message would rewrite "run" inside the path (run.trec)
                raise DataError(f"--run lists {r} twice", reason="bad_option", fix="name each file once")
            seen.add(r)
        if not 0 < self.alpha < 1:
            raise OptionError("alpha", f"must be between 0 and 1, got {self.alpha}", fix="e.g. 0.05 or 0.01")
        if self.permutations < 100:
            raise OptionError("permutations", f"must be at least 100, got {self.permutations}",
                              fix="e.g. 10000 (the Monte Carlo error shrinks as 1/sqrt(permutations))")
        if self.baseline is not None:
            if len(self.run) < 2:
                raise OptionError("baseline", "needs at least two --run files to compare",
                                  fix="pass the baseline and the runs to compare with it, e.g. "
                                      "--run bm25.trec rerank.trec --baseline bm25.trec")
            from inference.evaluation.report import resolve_baseline

            resolve_baseline(self.baseline, self.run)
        if self.plot is not None and Path(self.plot).exists() and not Path(self.plot).is_dir():
            raise OptionError("plot", f"{self.plot} is a file, but a folder for the charts is expected",
                              fix="pass a folder (it is created if missing)")
        if self.out:
            check_output_file(self.out, "results JSON")
        check_outputs({"out": self.out}, {"run": self.run, "qrels": self.qrels}, fresh=("out",),
                      overwrite=self.overwrite)

    @property
    def stats_requested(self) -> bool:
        """The user asked for a comparison by name (not only passed several runs)."""
        return self.baseline is not None or self.plot is not None


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(EvalOptions, prog="dear eval", description=__doc__)


def load_run(path: str) -> dict[str, list[tuple[str, float]]]:
    from inference.evaluation.report import load_run as _load

    return _load(path)


def evaluate_files(runs: list[str], qrels_path: str, metrics: list[str], per_query: bool = False,
                   common_queries: bool = False) -> dict[str, Any]:
    """Metrics of each run (no tests); every file is read and checked before any is scored."""
    from inference.evaluation.report import build_report

    report, _ = build_report(runs, qrels_path, metrics, per_query=per_query, common_queries=common_queries,
                             costs=False)
    return report


def comparison_ready(args: EvalOptions) -> tuple[bool, str | None]:
    """(run the paired tests, a note when they are skipped): a missing eval extra is an error when the tests
    were asked for by name (--baseline, --plot), a note when only several runs were given."""
    from inference.evaluation import require

    if len(args.run) < 2:
        if args.plot is not None:
            require("matplotlib", what="--plot")
        return False, None
    try:
        require("scipy", "statsmodels", what="the significance tests")
        if args.plot is not None:
            require("matplotlib", what="--plot")
    except DataError as err:
        if args.stats_requested:
            raise
        return False, f"no significance tests: {err}"
    return True, None


def main(argv: list[str] | None = None) -> int:
    args = parse_options(EvalOptions, argv, prog="dear eval", parser=build_parser())
    return run_command("dear eval", lambda: _run(args), flags=flags_of(EvalOptions))


def _run(args: EvalOptions) -> int:
    checked(args, prog="dear eval")
    compare_runs, skipped = comparison_ready(args)
    from inference.evaluation.report import build_report

    report, scores = build_report(
        args.run, args.qrels, args.metrics, per_query=args.per_query, common_queries=args.common_queries,
        compare_runs=compare_runs, baseline=args.baseline, test=args.test, correction=args.correction,
        alpha=args.alpha, permutations=args.permutations, seed=args.seed)
    plot_notes: list[str] = []
    if args.plot is not None:
        from inference.evaluation.plots import draw

        report["plots"], plot_notes = draw(report, scores, args.plot)
    if args.out:
        from data_prep.io import naming

        with naming(args.out):  # a full disk names the file
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    show(report, args.format)
    for line in ([report["note"]] if report["note"] else []) + ([skipped] if skipped else []) + plot_notes:
        print(f"dear eval: note: {line}", file=sys.stderr)
    for path in report["plots"]:
        print(f"dear eval: wrote {path}", file=sys.stderr)
    return 0


def show(report: dict[str, Any], fmt: str) -> None:
    from inference.evaluation import table

    if fmt == "json":
        print(json.dumps(report, indent=2))
    elif fmt == "markdown":
        print(table.markdown(report), end="")
    elif fmt == "latex":
        print(table.latex(report), end="")
    else:
        table.print_table(report)


if __name__ == "__main__":
    raise SystemExit(main())
