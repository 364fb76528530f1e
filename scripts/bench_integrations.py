"""In-process overhead of each integration against calling `ListwiseReranker` directly on the same queries.

    python scripts/bench_integrations.py --queries 20 --docs 20 --out bench_integrations.json
    python scripts/bench_integrations.py --model runs/listwise --device cuda --scoring generate

Workload: DL19 queries with their first --docs BM25 passages. Per-query adapters (rerankers, LangChain,
LlamaIndex, Haystack, the MCP tool through the SDK's in-process client) are timed against
``reranker.rerank_batch([one request])`` per query; PyTerrier, which ranks a whole frame in one call, against
``rerank_batch(all requests)``. Times are CPU time (torch on --threads, one by default); the rounds
alternate direct and adapter runs and the median of --rounds is kept. Besides the ratio, the CPU time spent outside
``rerank_batch`` (the adapter's own work: checks, conversions, copies, the MCP protocol) is measured directly. Without --model a tiny random Llama built offline is used:
its model time is milliseconds, so the ratios are the worst case (a real model's seconds dwarf the overhead);
the absolute overhead per query is reported too. Printed as JSON (and written to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from data_prep.readers import read_rankgpt_json  # noqa: E402
from inference.integrations.ranking import text_request  # noqa: E402

DL19 = REPO.parent / "shared" / "data" / "trec-dl19" / "retrieve_results_dl19_top100.json"


class _Inside:
    """Wraps ``rerank_batch`` to add up the CPU time spent inside it: the rest of a call is the adapter's own."""

    def __init__(self, rr: Any) -> None:
        self.batch, self.cpu_s = rr.rerank_batch, 0.0
        rr.rerank_batch = self

    def __call__(self, requests: Any) -> Any:
        t0 = time.process_time()
        try:
            return self.batch(requests)
        finally:
            self.cpu_s += time.process_time() - t0


def _timed(fn: Callable[[], Any], inside: _Inside) -> tuple[float, float]:
    """(CPU seconds of the whole call, CPU seconds outside rerank_batch): CPU time, as other users of a shared
    machine stretch wall time of both sides unevenly."""
    before = inside.cpu_s
    t0 = time.process_time()
    fn()
    total = time.process_time() - t0
    return total, total - (inside.cpu_s - before)


def _per_query_cases(rr: Any, queries: list[tuple[str, list[str]]]) -> dict[str, Callable[[], Any]]:
    """name -> a function ranking every query once through that adapter."""
    from haystack import Document as HaystackDocument
    from langchain_core.documents import Document as LangChainDocument
    from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

    from inference.integrations.haystack import DearRanker as HaystackRanker
    from inference.integrations.langchain import DearRerank as LangChainRerank
    from inference.integrations.llamaindex import DearRerank as LlamaIndexRerank
    from inference.integrations.rerankers import DearRanker

    ranker, compressor = DearRanker(rr), LangChainRerank(reranker=rr)
    post, hay = LlamaIndexRerank(reranker=rr, metadata_mode=MetadataMode.NONE), HaystackRanker(rr)
    lc = [[LangChainDocument(page_content=t, metadata={"i": i}) for i, t in enumerate(ts)] for _, ts in queries]
    li = [[NodeWithScore(node=TextNode(text=t, metadata={"i": i}), score=1.0) for i, t in enumerate(ts)]
          for _, ts in queries]
    hs = [[HaystackDocument(content=t, meta={"i": i}) for i, t in enumerate(ts)] for _, ts in queries]
    return {
        "direct": lambda: [rr.rerank_batch([text_request(q, ts)]) for q, ts in queries],
        "rerankers": lambda: [ranker.rank(q, ts) for q, ts in queries],
        "langchain": lambda: [compressor.compress_documents(d, q) for (q, _), d in zip(queries, lc, strict=True)],
        "llamaindex": lambda: [post.postprocess_nodes(n, query_str=q) for (q, _), n in zip(queries, li, strict=True)],
        "haystack": lambda: [hay.run(query=q, documents=d) for (q, _), d in zip(queries, hs, strict=True)],
        "mcp": lambda: _mcp_calls(rr, queries),
    }


def _mcp_calls(rr: Any, queries: list[tuple[str, list[str]]]) -> None:
    import anyio
    from mcp import Client

    from inference.integrations.mcp_server import build_server

    server = build_server(rr)

    async def calls() -> None:
        async with Client(server) as client:
            for q, ts in queries:
                result = await client.call_tool("rerank", {"query": q, "documents": ts})
                if result.is_error:
                    raise RuntimeError(result.content[0].text)

    anyio.run(calls)


def _pyterrier_cases(rr: Any, requests: list[Any]) -> dict[str, Callable[[], Any]]:
    import pandas as pd

    from inference.integrations.pyterrier import DearTransformer

    frame = pd.DataFrame([{"qid": r.qid, "query": r.query, "docno": c.docid, "text": c.text, "score": c.score,
                           "rank": i} for r in requests for i, c in enumerate(r.candidates)])
    dear = DearTransformer(rr)
    return {"direct (all queries)": lambda: rr.rerank_batch(requests), "pyterrier": lambda: dear.transform(frame)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="listwise model (default: a tiny random Llama built offline)")
    p.add_argument("--input", default=str(DL19), help="RankGPT JSON with passage text")
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--docs", type=int, default=20, help="passages per query (one window at the default --window)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scoring", default="first-token", choices=["generate", "first-token"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from inference.ranking.options import device_map_for
    from inference.reranker import ListwiseReranker

    model = args.model
    if model is None:
        from dear_train.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="bench-integrations-"))))
    rr = ListwiseReranker.from_pretrained(model, device_map=device_map_for(args.device), scoring=args.scoring,
                                          dtype="float32" if args.device == "cpu" else "auto")
    requests = [r.__class__(qid=r.qid, query=r.query, candidates=r.candidates[: args.docs])
                for r in read_rankgpt_json(args.input)[: args.queries]]
    queries = [(r.query, [c.passage() for c in r.candidates]) for r in requests]

    inside = _Inside(rr)
    groups = [_per_query_cases(rr, queries), _pyterrier_cases(rr, requests)]
    for cases in groups:  # warm-up: first calls build caches (tokenizer, budgets, imports)
        for fn in cases.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for cases in groups for name in cases}
    for _ in range(args.rounds):
        for cases in groups:
            for name, fn in cases.items():
                times[name].append(_timed(fn, inside))
    total = {name: statistics.median(t for t, _ in ts) for name, ts in times.items()}
    outside = {name: statistics.median(o for _, o in ts) for name, ts in times.items()}
    n = len(requests)
    rows = {}
    for name, base in [(k, "direct") for k in groups[0] if k != "direct"] + [("pyterrier", "direct (all queries)")]:
        rows[name] = {"baseline": base, "cpu_s": round(total[name], 4), "baseline_cpu_s": round(total[base], 4),
                      "ratio": round(total[name] / total[base], 3),
                      "adapter_ms_per_query": round(1000 * outside[name] / n, 2),
                      "adapter_share": round(outside[name] / total[name], 4)}
    report = {"queries": n, "docs_per_query": args.docs, "rounds": args.rounds, "scoring": args.scoring,
              "model": args.model or "tiny random Llama", "device": args.device, "threads": args.threads,
              "results": rows}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
