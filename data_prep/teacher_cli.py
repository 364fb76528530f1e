"""`dear teacher`: chain-of-thought listwise teacher rankings from any OpenAI-compatible chat endpoint.

    dear teacher --input retrieve_results_dl19_top100.json --out teacher.jsonl \\
        --endpoint https://api.openai.com/v1 --model gpt-4o --samples 3 --temperature 0.7

Writes canonical teacher JSONL (what `dear prep listwise --format jsonl` reads), a request cache
``<out>.requests.jsonl`` for crash-safe resume, and ``<out>.report.json``. Rerun the same command to
resume: finished queries are skipped, failed ones retried. Exit status 0 when every query was written or
filtered, 1 when some failed (listed in the report), 2 on bad arguments or input.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_options import checked, flags_of, option, parse_options
from data_prep.cli_run import run_command
from data_prep.schema import DataError

logger = logging.getLogger("dear.teacher")


INPUT = "input (RankGPT JSON, or a TREC run with topics and corpus)"
OUTPUT = "output"
ENDPOINT = "endpoint"
PROMPTING = "prompting"
QUALITY = "quality"


@dataclass
class TeacherOptions:
    """Every `dear teacher` option: parser, --help (defaults shown) and the checks before any request."""

    out: str = option(group=OUTPUT, help="teacher JSONL (appended to; rerun to resume)")
    endpoint: str = option(group=ENDPOINT, help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    model: str = option(group=ENDPOINT, help="model name sent to the endpoint (and looked up in prices)")
    input: str | None = option(None, group=INPUT, help="RankGPT JSON: [{query, hits: [{qid, docid, content, ...}]}]")
    run: str | None = option(None, group=INPUT, help="TREC run file (first-stage order)")
    topics: str | None = option(None, group=INPUT, help="topics TSV/JSONL for --run")
    corpus: str | None = option(None, group=INPUT, help="corpus TSV/JSONL for --run")
    limit: int | None = option(None, group=INPUT, help="only the first N queries")
    report: str | None = option(None, group=OUTPUT, help="report JSON (default: <out>.report.json)")
    cache: str | None = option(None, group=OUTPUT, help="request cache JSONL (default: <out>.requests.jsonl)")
    no_cache: bool = option(False, group=OUTPUT, help="no request cache (a crash loses whole queries)")
    records: str = option("window", group=OUTPUT, choices=("window", "query"),
                          help="one record per ranked window (DeAR's training shape) or one per query")
    api_key_env: str = option("OPENAI_API_KEY", group=ENDPOINT, help="environment variable holding the API key")
    concurrency: int = option(8, group=ENDPOINT, help="requests in flight at most")
    max_requests_per_minute: float | None = option(None, group=ENDPOINT, help="request rate cap (token bucket)")
    timeout: float = option(120.0, group=ENDPOINT, help="seconds per request")
    max_retries: int = option(6, group=ENDPOINT, help="retries per request")
    backoff_base: float = option(1.0, group=ENDPOINT, help="first backoff in seconds (doubles)")
    backoff_max: float = option(60.0, group=ENDPOINT, help="longest backoff in seconds")
    max_tokens: int | None = option(None, group=ENDPOINT, help="completion token limit sent with each request")
    prices: str | None = option(None, group=ENDPOINT,
                                help="price table YAML/JSON (default data_prep/teacher/prices.yaml)")
    prompt: str = option("dear-cot", group=PROMPTING, help="prompt spec name")
    cot: bool = option(False, group=PROMPTING, help="force chain of thought on a spec without it (rankgpt)")
    window: int = option(20, group=PROMPTING, help="passages per prompt")
    stride: int = option(10, group=PROMPTING, help="sliding-window step")
    top_k: int | None = option(None, group=PROMPTING, help="candidates per query to rank (default: --window)")
    temperature: float = option(0.0, group=PROMPTING, help="sampling temperature sent to the endpoint")
    samples: int = option(1, group=QUALITY, help="responses per window (needs --temperature > 0)")
    aggregate: str = option("consistency", group=QUALITY, choices=("consistency", "borda"),
                            help="keep the most self-consistent sample or the Borda consensus")
    qrels: str | None = option(None, group=QUALITY, help="TREC qrels: record each example's nDCG@10")
    min_ndcg: float | None = option(None, group=QUALITY,
                                    help="drop examples whose teacher order's nDCG@10 is below this")
    no_progress: bool = option(False, help="no progress bar")

    def check(self) -> None:
        """Values that can never work, refused before any file is read or any request sent."""
        _validate(self)


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(TeacherOptions, prog="dear teacher", description=__doc__)


def _load_requests(args: TeacherOptions):
    from data_prep.readers import read_corpus, read_rankgpt_json, read_run, read_topics, requests_from_run

    if args.input and args.run:
        raise DataError("give either --input or --run, not both", fix="pick one input")
    if args.input:
        reqs = read_rankgpt_json(args.input)
    elif args.run:
        if not (args.topics and args.corpus):
            raise DataError("--run needs --topics and --corpus", fix="add both files")
        reqs = requests_from_run(read_run(args.run), read_topics(args.topics), read_corpus(args.corpus),
                                 run_path=args.run)
    else:
        raise DataError("no input", fix="pass --input RANKGPT.json or --run RUN --topics T --corpus C")
    return reqs[: args.limit] if args.limit else reqs


def _validate(args: TeacherOptions) -> None:
    if args.samples < 1:
        raise DataError("--samples must be >= 1", fix="--samples 3")
    if args.samples > 1 and args.temperature <= 0:
        raise DataError("--samples > 1 with --temperature 0 asks the same question K times",
                        fix="add --temperature 0.7 (or use --samples 1)")
    if args.min_ndcg is not None and not args.qrels:
        raise DataError("--min-ndcg needs --qrels", fix="pass the qrels of the input queries")
    if args.window < 2 or args.stride < 1 or args.stride >= args.window:
        raise DataError("need --window >= 2 and 1 <= --stride < --window", fix="e.g. --window 20 --stride 10")
    if args.top_k is not None and args.top_k < 1:
        raise DataError("--top-k must be >= 1", fix="e.g. --top-k 100")
    if args.concurrency < 1:
        raise DataError("--concurrency must be >= 1", fix="--concurrency 8")
    if args.temperature < 0:
        raise DataError(f"--temperature must be >= 0, got {args.temperature}", fix="0 (greedy) or e.g. 0.7")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise DataError(f"--max-tokens must be >= 1, got {args.max_tokens}",
                        fix="leave it out (the endpoint's limit) or e.g. 4096")
    if args.timeout <= 0 or args.max_retries < 0:
        raise DataError("--timeout must be > 0 and --max-retries >= 0", fix="e.g. --timeout 120 --max-retries 6")
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be >= 1, got {args.limit}", fix="leave it out for every query")
    from data_prep.cli_options import check_output_file, check_outputs, flags_of

    check_output_file(args.out, "teacher output")
    out = Path(args.out)  # the same defaults as _run
    check_outputs({"out": [args.out, str(out) + ".lock"],
                   "report": args.report or str(out.with_suffix(".report.json")),
                   "cache": None if args.no_cache else (args.cache or str(out.with_suffix(".requests.jsonl")))},
                  {n: getattr(args, n) for n in ("input", "run", "topics", "corpus", "qrels", "prices")},
                  flags=flags_of(TeacherOptions))
    report = Path(args.report) if args.report else out.with_suffix(".report.json")
    cache = None if args.no_cache else (Path(args.cache) if args.cache else out.with_suffix(".requests.jsonl"))
    _check_owned(report, "report", lambda first: isinstance(first, dict) and "queries" in first, whole=True)
    if cache is not None:
        _check_owned(cache, "cache", lambda first: isinstance(first, dict) and "key" in first)
    _check_owned(out, "out", lambda first: isinstance(first, dict) and "qid" in first)


def _check_owned(path: Path, field: str, looks_ours: Any, *, whole: bool = False) -> None:
    """A resumable output that already holds data must be `dear teacher`'s own (its first record, or the
    whole report, has the shape this command writes); any other file is refused, never rewritten or cut."""
    import json

    from data_prep.cli_options import OptionError

    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        with path.open("rb") as f:
            head = f.read() if whole else f.readline()
        first = json.loads(head.decode("utf-8-sig"))
    except (OSError, ValueError):
        first = None
    if not looks_ours(first):
        raise OptionError(field, f"{path} exists and is not a file `dear teacher` wrote",
                          fix=f"pass another --{field}, or move the file away")


def main(argv: list[str] | None = None) -> int:
    args = parse_options(TeacherOptions, argv, prog="dear teacher", parser=build_parser())
    # One INFO line per HTTP request (httpx / openai's vendored httpx2) would drown the progress bar.
    for noisy in ("openai", "httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = Path(args.out)
    return run_command("dear teacher", lambda: _run(checked(args, prog="dear teacher")), flags=flags_of(TeacherOptions),
                       interrupted=f"finished queries are in {out}, the report in {report_path(args)}. "
                                   "Rerun the same command to resume.")


def report_path(args: TeacherOptions) -> Path:
    """Where the run's report goes: ``--report``, or beside ``--out`` with the suffix ``.report.json``."""
    return Path(args.report) if args.report else Path(args.out).with_suffix(".report.json")


def _run(args: TeacherOptions) -> int:
    from data_prep.prompts import get_prompt_spec
    from data_prep.readers import read_qrels
    from data_prep.teacher.client import ChatClient, RetryPolicy
    from data_prep.teacher.generate import TeacherSettings, run_teacher
    from data_prep.teacher.pricing import load_prices, price_for

    spec = get_prompt_spec(args.prompt, cot=True) if args.cot else get_prompt_spec(args.prompt)
    requests = _load_requests(args)
    table, price_file = load_prices(args.prices)
    price = price_for(args.model, table)
    if price is None:
        logger.info("no price for model %r in %s: cost shows n/a", args.model, price_file or "(no price table)")
    api_key = os.environ.get(args.api_key_env) or None
    if api_key is None:
        logger.warning("$%s is not set: sending no API key (fine for a local server)", args.api_key_env)
    out = Path(args.out)
    report_file = report_path(args)
    cache_path = None if args.no_cache else (Path(args.cache) if args.cache else out.with_suffix(".requests.jsonl"))
    settings = TeacherSettings(
        spec=spec, model=args.model, window=args.window, stride=args.stride, top_k=args.top_k,
        records=args.records, temperature=args.temperature, samples=args.samples, aggregate=args.aggregate,
        qrels=read_qrels(args.qrels) if args.qrels else None, min_ndcg=args.min_ndcg, price=price,
    )

    async def go() -> dict:
        client = ChatClient(
            base_url=args.endpoint, model=args.model, api_key=api_key, timeout=args.timeout,
            concurrency=args.concurrency, requests_per_minute=args.max_requests_per_minute,
            max_tokens=args.max_tokens,
            retry=RetryPolicy(max_retries=args.max_retries, backoff_base=args.backoff_base,
                              backoff_max=args.backoff_max),
        )
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        bar = tqdm(total=len(requests), desc="teacher", unit="query", disable=args.no_progress, dynamic_ncols=True)
        extra = {"input": args.input or args.run, "output": str(out),
                 "cache": str(cache_path) if cache_path else None, "price_table": price_file}
        try:
            with logging_redirect_tqdm():
                return await run_teacher(requests, settings, client, out=out, cache_path=cache_path,
                                         progress=bar, concurrency=args.concurrency, report_path=report_file,
                                         report_extra=extra)
        finally:
            bar.close()
            await client.aclose()

    from contextlib import ExitStack

    from data_prep.io import OutputLock

    with ExitStack() as locks:  # one writer per appended file: a second job would interleave records
        locks.enter_context(OutputLock(out, what="teacher output"))
        if cache_path is not None:
            locks.enter_context(OutputLock(cache_path, what="teacher request cache"))
        report = asyncio.run(go())
    q = report["queries"]
    cost = report["cost_usd"]
    print(f"dear teacher: {q['written']} written, {q['resumed']} already done, {q['filtered']} filtered, "
          f"{q['failed']} failed of {q['total']} queries; {report['tokens']['total']:,} tokens, "
          + (f"~${cost:.4f}" if cost is not None else "cost n/a") + f"; report {report_file}", file=sys.stderr)
    return 1 if q["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
