"""The `dear rerank` job as a library: its options, inputs, the resumable run (lock, settings, resume, appends,
consolidation), the summary and its metrics.

The command (:mod:`inference.cli_rerank`), the data-parallel flow (:mod:`inference.parallel.rerank`) and anything
else that ranks a file of queries import this module; the command modules only parse arguments and print.
:func:`run_job` is the whole one-process job.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from data_prep.cli_options import (
    OptionError,
    check_output_file,
    check_outputs,
    flags_of,
    option,
    settings_of,
)
from data_prep.cli_run import error_text
from data_prep.io.versions import package_versions
from data_prep.readers import (
    check_id,
    check_input_file,
    read_corpus,
    read_qrels,
    read_rankgpt_json,
    read_run,
    read_topics,
    requests_from_run,
)
from data_prep.schema import DataError, RerankRequest
from inference.ranking.options import RankingOptions, device_map_for, load_reranker

logger = logging.getLogger(__name__)


TWO_STAGE = "two-stage (DeAR): pointwise scores first, then the listwise model on the head"


@dataclass(kw_only=True)
class RerankOptions(RankingOptions):
    """Every `dear rerank` option: the ranking options (:class:`inference.ranking.options.RankingOptions`) plus the
    input, the outputs and the two-stage pipeline. The parser, ``--help``, the checks before loading and the run's
    recorded settings (``settings()``, what a resumed run must match) all come from these fields."""

    model: str = option(help="listwise adapter folder, merged model folder or Hub id", aliases=("--listwise",))
    input: str = option(help="RankGPT JSON, or a TREC run (then --corpus and --topics)")
    out: str = option(help="TREC run to write (appended per query; rerun to resume)", setting=None)
    corpus: str | None = option(None, omit_default=True,
                                help="corpus TSV (docid<TAB>text[<TAB>title]) or BEIR JSONL, for a TREC run input")
    topics: str | None = option(None, omit_default=True, help="topics TSV (qid<TAB>query) or JSONL, for a TREC run input")
    jsonl: str | None = option(None, help="per-query results with per-window raw generations and repairs",
                               setting=None)
    qrels: str | None = option(None, help="TREC qrels: print nDCG of the run at the end", setting=None)
    metrics: list[str] = option(help="metrics with --qrels", setting=None,
                                default_factory=lambda: ["ndcg@10", "ndcg@5", "ndcg@1"])
    tag: str = option("dear", help="run tag (6th column)")
    limit: int | None = option(None, help="only the first N queries", setting=None)
    overwrite: bool = option(False, help="start over instead of resuming --out", setting=None)
    no_progress: bool = option(False, help="no progress bar", setting=None)
    pointwise: str | None = option(None, group=TWO_STAGE,
                                   help="pointwise model (full classifier folder, PEFT adapter or Hub id)")
    pointwise_depth: int = option(100, group=TWO_STAGE, help="candidates the pointwise model scores")
    listwise_depth: int = option(30, group=TWO_STAGE,
                                 help="head of the pointwise order the listwise model reorders (replaces --top-k)")
    pointwise_batch_size: int = option(32, group=TWO_STAGE, help="pairs scored together", setting="neutral")
    pointwise_base_model: str | None = option(None, group=TWO_STAGE, help="base model of a pointwise adapter")

    @property
    def ranked_depth(self) -> int:
        """The candidates the listwise model reorders: --listwise-depth in two-stage mode, else --top-k."""
        return self.listwise_depth if self.pointwise else self.top_k

    def depth_field(self) -> str:
        return "listwise_depth" if self.pointwise else "top_k"

    def check(self) -> None:
        """Values that can never work, refused before any file is read or any model loads."""
        super().check()
        for name in ("pointwise_batch_size", "pointwise_depth"):
            if getattr(self, name) < 1:
                raise OptionError(name, f"must be >= 1, got {getattr(self, name)}", fix="use a positive number")
        if self.limit is not None and self.limit < 1:
            raise OptionError("limit", f"must be >= 1, got {self.limit}",
                              fix="use a positive number, or leave it out for the default")
        check_input_file(self.input, "input file")
        if not self.input.endswith((".json", ".json.gz")) and not (self.corpus and self.topics):
            raise OptionError("input", "a TREC run needs --corpus and --topics for the passage and query texts",
                              fix="pass --corpus FILE --topics FILE, or give RankGPT JSON with passage text")
        for name in ("corpus", "topics", "qrels"):
            if getattr(self, name):
                check_input_file(getattr(self, name), f"{name} file")
        try:
            check_id(self.tag, "the value")  # the 6th column of every run line: TREC splits on whitespace
        except DataError as err:
            raise OptionError("tag", err.message, fix="a name without spaces or control characters, e.g. "
                              "dear-rerank") from None
        check_output_file(self.out, "run file")
        if self.jsonl:
            check_output_file(self.jsonl, "JSONL file")
        check_outputs(self.outputs(), {name: getattr(self, name) for name in ("input", "corpus", "topics", "qrels")}
                      | {"prompt": self.prompt if self.prompt and Path(self.prompt).exists() else None},
                      flags=flags_of(RerankOptions))

    def outputs(self) -> dict[str, list[str]]:
        """Every file `dear rerank` writes: the run with its sidecars (settings, summary, lock, the part files
        of an interrupted many-process job) and the JSONL. The run and JSONL are resumable (their ownership is
        checked by ``inference.runfiles``), the sidecars are the run's own."""
        from data_prep.io.lock import lock_path
        from inference.runfiles import existing_parts, meta_path

        parts = [str(p) for _, run, rec in existing_parts(self.out) for p in (run, rec)]
        return {"out": [self.out, str(meta_path(self.out)), self.out + ".summary.json", str(lock_path(self.out)),
                        *parts],
                "jsonl": [self.jsonl] if self.jsonl else []}

    def settings(self) -> dict[str, Any]:
        """What the run records in ``RUN.meta.json`` and a resumption must match, derived from the fields:
        sampling values only when sampling, a strategy's knobs only with that strategy, two-stage values only in
        two-stage mode, ``top_k`` = the depth the listwise model actually reorders."""
        s = self.ranking_settings(settings_of(self))
        s["top_k"] = self.ranked_depth
        two_stage = {f.name for f in fields(self) if f.metadata.get("group") == TWO_STAGE}
        s.pop("listwise_depth", None)
        s.pop("pointwise_batch_size", None)
        if not self.pointwise:
            for name in two_stage:
                s.pop(name, None)
        return s


def load_requests(input_path: str, corpus: str | None = None, topics: str | None = None,
                  limit: int | None = None) -> list[RerankRequest]:
    """Rerank requests from RankGPT JSON, or from a TREC run joined with a corpus and topics."""
    if input_path.endswith((".json", ".json.gz")):
        requests = read_rankgpt_json(input_path)
    else:
        if not corpus or not topics:
            raise DataError("a TREC run input needs --corpus and --topics", path=input_path,
                            fix="pass --corpus FILE --topics FILE, or give RankGPT JSON with passage text")
        requests = requests_from_run(read_run(input_path), read_topics(topics), read_corpus(corpus), input_path)
    seen: set[str] = set()
    for r in requests:
        if r.qid in seen:
            raise DataError("the same qid appears twice", path=input_path, qid=r.qid, reason="duplicate_qid",
                            fix="merge or rename the duplicated query")
        seen.add(r.qid)
        if not r.query.strip():
            raise DataError("empty query", path=input_path, qid=r.qid, reason="empty_query",
                            fix="give the query text or drop the query")
    empty = [r.qid for r in requests if not r.candidates]
    if empty:  # nothing to rank and nothing to write: kept, they would count as unfinished on every resume
        logger.warning("%s: %d queries have no candidates and are skipped: %s", input_path, len(empty), empty[:5])
        requests = [r for r in requests if r.candidates]
    return requests[:limit] if limit is not None else requests


def check_judged(requests: Sequence[RerankRequest], qrels: dict[str, dict[str, int]], *, qrels_path: str,
                  input_path: str) -> int:
    """The number of input queries the qrels judge; none is an error known before any model loads (a wrong
    qrels file would otherwise end an hour of ranking with a DataError instead of an nDCG)."""
    judged = sum(1 for r in requests if r.qid in qrels)
    if not judged:
        raise DataError(f"the qrels judge none of the {len(requests)} input queries", path=qrels_path,
                        reason="no_judged_queries",
                        fix=f"pass the qrels of the collection and year of {input_path}, or drop --qrels")
    if judged < len(requests):
        logger.info("%d of %d input queries have judgments in %s; the metrics are over those", judged,
                    len(requests), qrels_path)
    return judged


def run_rerank(reranker: Any, requests: Sequence[RerankRequest], *, out: str, jsonl: str | None,
               settings: dict[str, Any], overwrite: bool = False, tag: str = "dear",
               progress: bool = True, fingerprints: dict[str, str] | None = None) -> dict[str, Any]:
    """Rerank the queries not yet in ``out`` and append each as it finishes; returns the session summary.

    Once every query is done the run and JSONL are rewritten in the input's query order (finished queries
    not asked now follow), so the files do not depend on which query finished first, on resumption, or on
    how many processes ranked them. ``fingerprints``: of the input as read (before a pointwise stage
    reordered the candidates); default those of ``requests``."""
    from inference.runfiles import (
        RunAppender,
        consolidate,
        expected_lines,
        prepare_resume,
        query_fingerprints,
    )

    expected = expected_lines(requests)
    done = prepare_resume(out, jsonl, expected, settings, overwrite=overwrite,
                          fingerprints=fingerprints if fingerprints is not None else query_fingerprints(requests))
    todo = [r for r in requests if r.qid not in done]
    if done:
        logger.info("resuming %s: %d of %d queries already done", out, len(done), len(requests))
    with RunAppender(out, jsonl, tag=tag) as writer:
        stats = rerank_queries(reranker, todo, writer, progress=progress)
    consolidate(out, jsonl, expected)
    wall = stats.pop("wall_s")
    return {"queries": len(requests), "resumed": len(done), **stats,
            "wall_s": round(wall, 3), "queries_per_s": round(len(todo) / wall, 3) if wall > 0 else None,
            "backend": reranker.backend.stats.as_dict(), "versions": package_versions()}


def rerank_queries(reranker: Any, todo: Sequence[RerankRequest], writer: Any, *, progress: bool = True,
                   desc: str = "rerank", between: Callable[[], None] | None = None) -> dict[str, Any]:
    """Rerank ``todo``, hand each finished query to ``writer.write`` and count windows, tokens and repairs.

    ``between`` runs after each query (a many-process job checks there whether another rank failed)."""
    from tqdm import tqdm

    repairs: Counter[str] = Counter()
    windows = model_calls = tokens = prompt_tokens = rounds = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with tqdm(total=len(todo), unit="query", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for result in reranker.iter_rerank(todo):
            record = {"qid": result.qid, **result.to_json()}
            writer.write(result.qid, result.ranked(), record)
            for k, v in result.repairs.items():
                repairs[k] += v
            windows += len(result.windows)
            model_calls += result.cost.model_calls
            tokens += result.generated_tokens
            prompt_tokens += result.cost.prompt_tokens
            rounds += result.cost.rounds
            bar.update(1)
            bar.set_postfix(windows=windows, tok=tokens, refresh=False)
            if between is not None:
                between()
    return {"ranked": len(todo), "windows": windows, "model_calls": model_calls, "generated_tokens": tokens,
            "prompt_tokens": prompt_tokens, "sequential_rounds": rounds, "strategy": reranker.strategy.name,
            "repairs": dict(sorted(repairs.items())), "wall_s": time.perf_counter() - t0,
            "cpu_s": round(time.process_time() - c0, 3)}


def show_summary(summary: dict[str, Any], out: str) -> None:
    """The summary as a table on stderr (what the command prints at the end)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dear rerank -> {out}", show_header=False)
    table.add_row("queries", f"{summary['ranked']} ranked now, {summary['resumed']} resumed, "
                             f"{summary['queries']} total")
    table.add_row("windows", f"{summary['windows']} ({summary['model_calls']} model calls)")
    table.add_row("tokens generated", str(summary["generated_tokens"]))
    if summary.get("ranked"):
        table.add_row("per query", f"{summary.get('prompt_tokens', 0) / summary['ranked']:.0f} prompt tokens, "
                                   f"{summary.get('sequential_rounds', 0) / summary['ranked']:.1f} sequential rounds "
                                   f"({summary.get('strategy', 'sliding')})")
    table.add_row("repairs", ", ".join(f"{k}={v}" for k, v in summary["repairs"].items()) or "none")
    table.add_row("wall time", f"{summary['wall_s']:.1f} s ({summary['queries_per_s'] or 0:.2f} queries/s)")
    for name, stage in (summary.get("stages") or {}).items():
        if isinstance(stage, dict):
            table.add_row(f"{name} stage", f"{stage['wall_s']:.1f} s ({100 * (stage['share'] or 0):.0f}% of the time)")
    first = summary.get("first_stage_metrics", {})
    for name, value in summary.get("metrics", {}).items():
        table.add_row(name, f"{100 * value:.2f} (first stage {100 * first[name]:.2f})" if name in first
                      else f"{100 * value:.2f}")
    Console(stderr=True).print(table)


def rerank_settings(args: RerankOptions | argparse.Namespace) -> dict[str, Any]:
    """What decides the rankings (recorded beside the run; a resume with other settings is refused), derived
    from the options' fields (``RerankOptions.settings``)."""
    opts = args if isinstance(args, RerankOptions) else RerankOptions(**vars(args))
    return opts.settings()


def load_listwise(args: RerankOptions, device_map: Any) -> Any:
    """The listwise reranker the options describe, on ``device_map``."""
    return load_reranker(args, device_map)


def add_metrics(summary: dict[str, Any], args: RerankOptions, requests: Sequence[RerankRequest],
                qrels: Any) -> None:
    """nDCG (etc.) of the finished run and of the first stage's order, when qrels were given."""
    if qrels is None:
        return
    from inference.metrics import evaluate

    asked = {r.qid for r in requests}  # a resumed run may also hold finished queries not asked for now
    summary["metrics"] = evaluate({q: d for q, d in read_run(args.out).items() if q in asked}, qrels, args.metrics)
    first = {r.qid: [(c.docid, float(len(r.candidates) - i)) for i, c in enumerate(r.candidates)]
             for r in requests}
    summary["first_stage_metrics"] = evaluate(first, qrels, args.metrics)


def write_summary(summary: dict[str, Any], out: str) -> None:
    from data_prep.io import write_text_atomic

    write_text_atomic(out + ".summary.json", _json(summary))  # whole or not at all; a full disk names it


# library parameters that `dear rerank` exposes under another name (so errors name the flag)
RENAMES = {"max_tokens": "max_prompt_tokens", "k": "top_k"}


def error_line(err: Exception) -> str:
    """A library error as `dear rerank` shows it: field names written as this command's flags."""
    return error_text("dear rerank", err, flags=flags_of(RerankOptions), renames=RENAMES)


def check_inputs(args: RerankOptions) -> tuple[list[RerankRequest], Any]:
    """(requests, qrels) after every check that needs no model: input records, judged queries, metric names,
    the model folder's weights and base model; nothing is written before these pass."""
    requests = load_requests(args.input, args.corpus, args.topics, args.limit)
    qrels = read_qrels(args.qrels) if args.qrels else None
    if qrels is not None:
        check_judged(requests, qrels, qrels_path=args.qrels, input_path=args.input)
        from inference.metrics import parse_metric

        for m in args.metrics:
            parse_metric(m)
    from inference.models import check_loadable, describe_source

    check_loadable(describe_source(args.model), args.base_model)
    return requests, qrels


def run_job(args: RerankOptions) -> dict[str, Any]:
    """The one-process job on checked options: inputs checked, ``--out`` locked, finished queries kept, the rest
    ranked and appended, metrics added, the summary written to ``RUN.summary.json`` (and returned). KeyboardInterrupt passes through
    (what is finished stays in the run)."""
    requests, qrels = check_inputs(args)
    settings = rerank_settings(args)
    from data_prep.io import OutputLock
    from inference.runfiles import expected_lines, prepare_resume, query_fingerprints

    with OutputLock(args.out, what="run"):  # a second job on the same --out is refused, not interleaved
        fingerprints = query_fingerprints(requests)  # of the input, before a pointwise stage reorders it
        done = prepare_resume(args.out, args.jsonl, expected_lines(requests), settings,
                              overwrite=args.overwrite, fingerprints=fingerprints)
        stage1 = None
        if args.pointwise and len(done) < len(requests):
            from inference.two_stage import run_pointwise_stage

            requests, stage1 = run_pointwise_stage(args, requests, done, device_map_for(args.device))
        if len(done) < len(requests):
            reranker = load_listwise(args, device_map_for(args.device))
            summary = run_rerank(reranker, requests, out=args.out, jsonl=args.jsonl, settings=settings,
                                 tag=args.tag, progress=not args.no_progress, fingerprints=fingerprints)
            if stage1 is not None:
                summary["stages"] = stage1.with_listwise(summary["wall_s"]).as_dict()
        else:
            summary = {"queries": len(requests), "resumed": len(done), "ranked": 0, "windows": 0,
                       "model_calls": 0, "generated_tokens": 0, "prompt_tokens": 0, "sequential_rounds": 0,
                       "strategy": args.strategy, "repairs": {}, "wall_s": 0.0,
                       "queries_per_s": None}
        add_metrics(summary, args, requests, qrels)
        write_summary(summary, args.out)
    return summary


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True) + "\n"
