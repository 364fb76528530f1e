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
from pathlib import Path

from data_prep.cli_options import HelpFormatter, flag_message, flags_of
from data_prep.schema import DataError

logger = logging.getLogger("dear.teacher")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="dear teacher", description=__doc__,
                                formatter_class=HelpFormatter)
    src = p.add_argument_group("input (RankGPT JSON, or a TREC run with topics and corpus)")
    src.add_argument("--input", help="RankGPT JSON: [{query, hits: [{qid, docid, content, ...}]}]")
    src.add_argument("--run", help="TREC run file (first-stage order)")
    src.add_argument("--topics", help="topics TSV/JSONL for --run")
    src.add_argument("--corpus", help="corpus TSV/JSONL for --run")
    src.add_argument("--limit", type=int, help="only the first N queries")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="teacher JSONL (appended to; rerun to resume)")
    out.add_argument("--report", help="report JSON (default: <out>.report.json)")
    out.add_argument("--cache", help="request cache JSONL (default: <out>.requests.jsonl)")
    out.add_argument("--no-cache", action="store_true", help="no request cache (a crash loses whole queries)")
    out.add_argument("--records", choices=("window", "query"), default="window",
                     help="one record per ranked window (default; DeAR's training shape) or one per query")
    ep = p.add_argument_group("endpoint")
    ep.add_argument("--endpoint", required=True, help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    ep.add_argument("--model", required=True, help="model name sent to the endpoint (and looked up in prices)")
    ep.add_argument("--api-key-env", default="OPENAI_API_KEY",
                    help="environment variable holding the API key (default OPENAI_API_KEY)")
    ep.add_argument("--concurrency", type=int, default=8, help="requests in flight at most (default 8)")
    ep.add_argument("--max-requests-per-minute", type=float, help="request rate cap (token bucket)")
    ep.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    ep.add_argument("--max-retries", type=int, default=6, help="retries per request (default 6)")
    ep.add_argument("--backoff-base", type=float, default=1.0, help="first backoff in seconds (doubles)")
    ep.add_argument("--backoff-max", type=float, default=60.0, help="longest backoff in seconds")
    ep.add_argument("--max-tokens", type=int, help="completion token limit sent with each request")
    ep.add_argument("--prices", help="price table YAML/JSON (default data_prep/teacher/prices.yaml)")
    pr = p.add_argument_group("prompting")
    pr.add_argument("--prompt", default="dear-cot", help="prompt spec name (default dear-cot)")
    pr.add_argument("--cot", action="store_true", help="force chain of thought on a spec without it (rankgpt)")
    pr.add_argument("--window", type=int, default=20, help="passages per prompt (default 20)")
    pr.add_argument("--stride", type=int, default=10, help="sliding-window step (default 10)")
    pr.add_argument("--top-k", type=int, help="candidates per query to rank (default: --window)")
    pr.add_argument("--temperature", type=float, default=0.0)
    q = p.add_argument_group("quality")
    q.add_argument("--samples", type=int, default=1, help="responses per window (needs --temperature > 0)")
    q.add_argument("--aggregate", choices=("consistency", "borda"), default="consistency",
                   help="keep the most self-consistent sample (default) or the Borda consensus")
    q.add_argument("--qrels", help="TREC qrels: record each example's nDCG@10")
    q.add_argument("--min-ndcg", type=float, help="drop examples whose teacher order's nDCG@10 is below this")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _load_requests(args: argparse.Namespace):
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


def _validate(args: argparse.Namespace) -> None:
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
    from data_prep.cli_options import check_output_file

    check_output_file(args.out, "teacher output")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # One INFO line per HTTP request (httpx / openai's vendored httpx2) would drown the progress bar.
    for noisy in ("openai", "httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _run(args)
    except DataError as err:
        print(f"dear teacher: error: {flag_message(err, flags_of(parser))}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from data_prep.prompts import get_prompt_spec
    from data_prep.readers import read_qrels
    from data_prep.teacher.client import ChatClient, RetryPolicy
    from data_prep.teacher.generate import TeacherSettings, run_teacher
    from data_prep.teacher.pricing import load_prices, price_for

    _validate(args)
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
    report_path = Path(args.report) if args.report else out.with_suffix(".report.json")
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
                                         progress=bar, concurrency=args.concurrency, report_path=report_path,
                                         report_extra=extra)
        finally:
            bar.close()
            await client.aclose()

    from contextlib import ExitStack

    from data_prep.io import OutputLock

    try:
        with ExitStack() as locks:  # one writer per appended file: a second job would interleave records
            locks.enter_context(OutputLock(out, what="teacher output"))
            if cache_path is not None:
                locks.enter_context(OutputLock(cache_path, what="teacher request cache"))
            report = asyncio.run(go())
    except KeyboardInterrupt:
        print(f"dear teacher: interrupted; finished queries are in {out}, the report in {report_path}. "
              "Rerun the same command to resume.", file=sys.stderr)
        return 130
    q = report["queries"]
    cost = report["cost_usd"]
    print(f"dear teacher: {q['written']} written, {q['resumed']} already done, {q['filtered']} filtered, "
          f"{q['failed']} failed of {q['total']} queries; {report['tokens']['total']:,} tokens, "
          + (f"~${cost:.4f}" if cost is not None else "cost n/a") + f"; report {report_path}", file=sys.stderr)
    return 1 if q["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
