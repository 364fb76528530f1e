"""What a reranked run cost, read from the files `dear rerank` writes beside it.

``RUN.summary.json`` (the session summary: ``model_calls``, ``generated_tokens``, ``wall_s`` over the ``ranked``
queries of that session) and the per-query JSONL (``--jsonl``; looked for as ``RUN.jsonl`` or the run's name
with ``.jsonl``). Per-query totals (``model_calls``, ``prompt_tokens``, ``generated_tokens``) are read where a
record has them, else summed from its ``windows`` (a window with ``raw`` was one model call; each window
records its ``prompt_tokens`` and ``generated_tokens``), so files from before and after those fields existed
both work. Sequential rounds (the latency a query cannot batch away; ``inference.reranker.QueryCost``) are a
record's ``cost.rounds`` (strategies other than sliding write ``cost``), else derived from its windows: the
highest window ``round`` where windows carry one, else (sliding, whose records predate rounds) one round per
window that was a model call, since sliding windows run one after another; the summary's ``sequential_rounds``
over its ``ranked`` queries when there is no JSONL. The strategy is the summary's or the records' ``strategy``
(a record with windows and no strategy is sliding, the only strategy that writes none). The JSONL covers every
query (also resumed ones) and wins over the summary for calls, tokens and rounds; seconds come from the summary
only. A figure nobody recorded stays None, never 0 (shown as "-").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_prep.readers import iter_jsonl, load_json

COUNTS = ("model_calls", "prompt_tokens", "generated_tokens", "rounds")
COST_FIELDS = (*COUNTS, "seconds")
COST_LABELS = {"model_calls": "calls/q", "prompt_tokens": "prompt tok/q", "generated_tokens": "gen tok/q",
               "rounds": "rounds/q", "seconds": "s/q"}
SUMMARY_KEYS = {"model_calls": "model_calls", "prompt_tokens": "prompt_tokens",
                "generated_tokens": "generated_tokens", "rounds": "sequential_rounds"}


@dataclass(frozen=True)
class Cost:
    """Means per query; ``queries`` is how many queries the token and call figures are over."""

    queries: int
    model_calls: float | None
    prompt_tokens: float | None
    generated_tokens: float | None
    rounds: float | None
    seconds: float | None
    sources: tuple[str, ...]
    strategy: str | None = None  # the ranking strategy, where recorded (several: joined with "+")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": list(self.sources)}


def sidecars(run_path: str) -> tuple[Path | None, Path | None]:
    """(summary, JSONL) beside ``run_path``, each None when absent."""
    run = Path(run_path)
    summary = Path(f"{run_path}.summary.json")
    jsonls = [Path(f"{run_path}.jsonl")] + ([run.with_suffix(".jsonl")] if run.suffix else [])
    jsonl = next((p for p in jsonls if p.is_file() and p != run), None)
    return (summary if summary.is_file() else None), jsonl


def _count(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _windows(rec: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    windows = rec.get("windows")
    return [w for w in windows if isinstance(w, Mapping)] if isinstance(windows, list) else None


def record_strategy(rec: Mapping[str, Any]) -> str | None:
    """The strategy a record was ranked with: its ``strategy``; sliding when it has windows and none (the only
    strategy that records none); None when unknown."""
    if isinstance(rec.get("strategy"), str):
        return rec["strategy"]
    return "sliding" if _windows(rec) is not None else None


def _rounds(windows: list[Mapping[str, Any]]) -> float | None:
    """Sequential rounds from the windows: the highest ``round`` where recorded, else one per model call (sliding:
    each window waits for the one before)."""
    calls = [w for w in windows if w.get("raw") is not None]
    rounds = [_count(w.get("round")) for w in calls]
    if calls and all(r is not None for r in rounds):
        return max(r for r in rounds if r is not None)
    if any(r is not None for r in rounds) or any("role" in w for w in windows):
        return None  # some windows say their round and others do not: not a record any writer makes
    return float(len(calls))


def record_cost(rec: Mapping[str, Any]) -> dict[str, float | None]:
    """One JSONL record's calls, tokens and sequential rounds: its own totals where written (``cost`` or top
    level), else derived from its windows."""
    windows = _windows(rec)
    own_cost = rec.get("cost") if isinstance(rec.get("cost"), Mapping) else {}
    out: dict[str, float | None] = {}
    for key in COUNTS:
        own = _count(own_cost.get(key))
        own = own if own is not None else _count(rec.get(key))
        if own is not None:
            out[key] = own
        elif windows is None:
            out[key] = None
        elif key == "model_calls":
            out[key] = float(sum(1 for w in windows if w.get("raw") is not None))
        elif key == "rounds":
            out[key] = _rounds(windows)
        else:
            vals = [_count(w.get(key)) for w in windows]
            out[key] = None if any(v is None for v in vals) else float(sum(v for v in vals if v is not None))
    return out


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def read_cost(run_path: str, run_qids: Collection[str]) -> Cost | None:
    """The cost of the run at ``run_path`` from its sidecar files, or None when it has none."""
    summary_path, jsonl_path = sidecars(run_path)
    if summary_path is None and jsonl_path is None:
        return None
    sources: list[str] = []
    per_query: dict[str, float | None] = dict.fromkeys(COST_FIELDS)
    queries = 0
    strategies: set[str | None] = set()
    if jsonl_path is not None:
        records = [rec for _, rec in iter_jsonl(jsonl_path, "rerank JSONL")
                   if isinstance(rec, Mapping) and str(rec.get("qid")) in run_qids]
        costs = [record_cost(rec) for rec in records]
        if costs:
            sources.append(str(jsonl_path))
            queries = len(costs)
            strategies = {record_strategy(rec) for rec in records}
            for key in COUNTS:
                per_query[key] = _mean([c[key] for c in costs])
    if summary_path is not None:
        summary = load_json(summary_path, "rerank summary", fix="rerun dear rerank, or remove the broken file")
        ranked = _count(summary.get("ranked")) if isinstance(summary, Mapping) else None
        if ranked:
            sources.append(str(summary_path))
            wall = _count(summary.get("wall_s"))
            per_query["seconds"] = wall / ranked if wall is not None else None
            for key in COUNTS:
                total = _count(summary.get(SUMMARY_KEYS[key]))
                if per_query[key] is None and total is not None:
                    per_query[key] = total / ranked
            queries = queries or int(ranked)
        if isinstance(summary, Mapping) and isinstance(summary.get("strategy"), str):
            strategies = {summary["strategy"]} if not strategies or strategies == {None} else strategies
    if not sources:
        return None
    known = sorted(s for s in strategies if s is not None)
    strategy = "+".join(known) if known and None not in strategies else None
    return Cost(queries=queries, sources=tuple(sources), strategy=strategy, **per_query)
