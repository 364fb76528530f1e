"""`dear rerank`: rerank first-stage candidates with a listwise model, write a TREC run (resumable).

    dear rerank --model ADAPTER_OR_MODEL --input dl19_top100.json --out dl19.trec --jsonl dl19.jsonl \\
        --qrels qrels.dl19-passage.txt
    dear rerank --model ... --input bm25.trec --corpus corpus.tsv --topics topics.tsv --out run.trec
    dear rerank --pointwise POINTWISE --listwise ADAPTER --input dl19_top100.json --out dl19.trec   (two-stage)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_prep.io.versions import package_versions
from data_prep.readers import (
    read_corpus,
    read_qrels,
    read_rankgpt_json,
    read_run,
    read_topics,
    requests_from_run,
)
from data_prep.schema import DataError, RerankRequest

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dear rerank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--listwise", dest="model", required=True,
                   help="listwise adapter folder, merged model folder or Hub id")
    p.add_argument("--input", required=True, help="RankGPT JSON, or a TREC run (then --corpus and --topics)")
    p.add_argument("--corpus", help="corpus TSV (docid<TAB>text[<TAB>title]) or BEIR JSONL, for a TREC run input")
    p.add_argument("--topics", help="topics TSV (qid<TAB>query) or JSONL, for a TREC run input")
    p.add_argument("--out", required=True, help="TREC run to write (appended per query; rerun to resume)")
    p.add_argument("--jsonl", help="per-query results with per-window raw generations and repairs")
    p.add_argument("--qrels", help="TREC qrels: print nDCG of the run at the end")
    p.add_argument("--metrics", nargs="+", default=["ndcg@10", "ndcg@5", "ndcg@1"], help="metrics with --qrels")
    p.add_argument("--prompt", help="prompt template name, a prompt_spec.json, or a folder with one such as a `dear prep` output "
                        "(default: the model folder's prompt_spec.json, else dear-card)")
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--top-k", type=int, default=100, help="rerank the first K candidates; the rest keep their order")
    p.add_argument("--batch-size", type=int, default=16, help="windows decoded (or, first-token, scored) together")
    p.add_argument("--scoring", choices=["generate", "first-token"], default="generate",
                   help="generate: decode each window's ranking (what DeAR adapters are trained for). first-token: "
                        "one forward pass per window, ids ordered by their logit at the first id (FIRST; for models "
                        "trained with --first_token_loss_weight), with per-window id probabilities")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="per-window budget (default: what a full ranking of the window needs, plus slack)")
    p.add_argument("--cot-max-new-tokens", type=int, default=1024, help="extra budget for chain-of-thought specs")
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="shrink passages evenly when a window prompt is longer (default: the model's context)")
    p.add_argument("--base-model", help="base model of an adapter (default: from adapter_config.json)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--quantization", choices=["4bit", "8bit"], default=None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--sample", action="store_true", help="sample (DeAR's setting) instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="dear", help="run tag (6th column)")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming --out")
    p.add_argument("--no-progress", action="store_true")
    two = p.add_argument_group("two-stage (DeAR): pointwise scores first, then the listwise model on the head")
    two.add_argument("--pointwise", help="pointwise model (full classifier folder, PEFT adapter or Hub id)")
    two.add_argument("--pointwise-depth", type=int, default=100, help="candidates the pointwise model scores")
    two.add_argument("--listwise-depth", type=int, default=30,
                     help="head of the pointwise order the listwise model reorders (replaces --top-k)")
    two.add_argument("--pointwise-batch-size", type=int, default=32, help="pairs scored together")
    two.add_argument("--pointwise-base-model", help="base model of a pointwise adapter")
    return p


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
    return requests[:limit] if limit is not None else requests


def device_map_for(device: str) -> Any:
    if device == "auto":
        return "auto"
    return {"": "cuda:0" if device == "cuda" else device}


def run_rerank(reranker: Any, requests: Sequence[RerankRequest], *, out: str, jsonl: str | None,
               settings: dict[str, Any], overwrite: bool = False, tag: str = "dear",
               progress: bool = True) -> dict[str, Any]:
    """Rerank the queries not yet in ``out`` and append each as it finishes; returns the session summary.

    Once every query is done the run and JSONL are rewritten in the input's query order, so the files do not
    depend on which query finished first, on resumption, or on how many processes ranked them."""
    from inference.runfiles import RunAppender, consolidate, prepare_resume

    expected = {r.qid: len({c.docid for c in r.candidates}) for r in requests}
    done = prepare_resume(out, jsonl, expected, settings, overwrite=overwrite)
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
    windows = model_calls = tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with tqdm(total=len(todo), unit="query", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for result in reranker.iter_rerank(todo):
            record = {"qid": result.qid, **result.to_json()}
            writer.write(result.qid, result.ranked(), record)
            for k, v in result.repairs.items():
                repairs[k] += v
            windows += len(result.windows)
            model_calls += sum(1 for w in result.windows if w.raw is not None)
            tokens += result.generated_tokens
            bar.update(1)
            bar.set_postfix(windows=windows, tok=tokens, refresh=False)
            if between is not None:
                between()
    return {"ranked": len(todo), "windows": windows, "model_calls": model_calls, "generated_tokens": tokens,
            "repairs": dict(sorted(repairs.items())), "wall_s": time.perf_counter() - t0,
            "cpu_s": round(time.process_time() - c0, 3)}


def _print_summary(summary: dict[str, Any], out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dear rerank -> {out}", show_header=False)
    table.add_row("queries", f"{summary['ranked']} ranked now, {summary['resumed']} resumed, "
                             f"{summary['queries']} total")
    table.add_row("windows", f"{summary['windows']} ({summary['model_calls']} model calls)")
    table.add_row("tokens generated", str(summary["generated_tokens"]))
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


def rerank_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What decides the rankings (recorded beside the run; a resume with other settings is refused)."""
    settings = {
        "model": args.model, "base_model": args.base_model, "prompt": args.prompt, "input": args.input,
        "window": args.window, "stride": args.stride, "top_k": args.top_k,
        "max_new_tokens": args.max_new_tokens, "cot_max_new_tokens": args.cot_max_new_tokens,
        "max_prompt_tokens": args.max_prompt_tokens, "dtype": args.dtype, "quantization": args.quantization,
        "backend": args.backend, "sample": args.sample, "seed": args.seed,
        "temperature": args.temperature if args.sample else None, "top_p": args.top_p if args.sample else None,
        "tag": args.tag, "batch_size": args.batch_size, "device": args.device,
    }
    if args.scoring != "generate":  # runs made before the option existed stay resumable
        settings["scoring"] = args.scoring
    if args.pointwise:
        settings.update(pointwise=args.pointwise, pointwise_depth=args.pointwise_depth,
                        top_k=args.listwise_depth, pointwise_base_model=args.pointwise_base_model)
    return settings


def load_listwise(args: argparse.Namespace, device_map: Any) -> Any:
    """The listwise reranker the options describe, on ``device_map``."""
    from inference.reranker import ListwiseReranker

    return ListwiseReranker.from_pretrained(
        args.model, base_model=args.base_model, dtype=args.dtype, quantization=args.quantization,
        device_map=device_map, prompt=args.prompt,
        trust_remote_code=args.trust_remote_code, backend=args.backend, window=args.window,
        stride=args.stride, top_k=args.listwise_depth if args.pointwise else args.top_k,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, cot_max_new_tokens=args.cot_max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens, do_sample=args.sample, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed, scoring=args.scoring)


def add_metrics(summary: dict[str, Any], args: argparse.Namespace, requests: Sequence[RerankRequest],
                qrels: Any) -> None:
    """nDCG (etc.) of the finished run and of the first stage's order, when qrels were given."""
    if qrels is None:
        return
    from inference.metrics import evaluate

    summary["metrics"] = evaluate(read_run(args.out), qrels, args.metrics)
    first = {r.qid: [(c.docid, float(len(r.candidates) - i)) for i, c in enumerate(r.candidates)]
             for r in requests}
    summary["first_stage_metrics"] = evaluate(first, qrels, args.metrics)


def write_summary(summary: dict[str, Any], out: str) -> None:
    _print_summary(summary, out)
    Path(out + ".summary.json").write_text(_json(summary), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from inference.parallel import launched_world_size

    if launched_world_size() > 1:  # one of several processes: each would rank everything into the same --out
        print("dear rerank: error: started as one of several processes (WORLD_SIZE > 1); under torchrun, "
              "accelerate or srun run `-m inference.rerank` with the same options", file=sys.stderr)
        return 2
    try:
        requests = load_requests(args.input, args.corpus, args.topics, args.limit)
        qrels = read_qrels(args.qrels) if args.qrels else None
        from inference.models import describe_source

        describe_source(args.model)  # a folder without weights fails here, before any file is touched
        settings = rerank_settings(args)
        from data_prep.io import OutputLock
        from inference.runfiles import prepare_resume

        with OutputLock(args.out, what="run"):  # a second job on the same --out is refused, not interleaved
            expected = {r.qid: len({c.docid for c in r.candidates}) for r in requests}
            done = prepare_resume(args.out, args.jsonl, expected, settings, overwrite=args.overwrite)
            stage1 = None
            if args.pointwise and len(done) < len(requests):
                from inference.two_stage import run_pointwise_stage

                requests, stage1 = run_pointwise_stage(args, requests, done, device_map_for(args.device))
            if len(done) < len(requests):
                reranker = load_listwise(args, device_map_for(args.device))
                summary = run_rerank(reranker, requests, out=args.out, jsonl=args.jsonl, settings=settings,
                                     tag=args.tag, progress=not args.no_progress)
                if stage1 is not None:
                    summary["stages"] = stage1.with_listwise(summary["wall_s"]).as_dict()
            else:
                summary = {"queries": len(requests), "resumed": len(done), "ranked": 0, "windows": 0,
                           "model_calls": 0, "generated_tokens": 0, "repairs": {}, "wall_s": 0.0,
                           "queries_per_s": None}
            add_metrics(summary, args, requests, qrels)
            write_summary(summary, args.out)
    except DataError as err:
        print(f"dear rerank: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dear rerank: interrupted; finished queries are saved in {args.out}. "
              "Run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
