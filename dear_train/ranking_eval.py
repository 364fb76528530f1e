"""Ranking evaluation while training: every ``eval_steps`` rerank a small held-out set with the live model.

:class:`RankingEvalCallback` runs when the Trainer evaluates (``eval_strategy: steps``), reranks the held-out
queries with ``inference.ListwiseReranker`` built from the in-memory model, tokenizer and prompt spec, and
reports nDCG@10 (``inference.metrics.evaluate``, trec_eval semantics) and the share of windows whose generation
needed no repair. ``scoring="first-token"`` ranks each window by its first-id logits instead of generating
(``inference.engine.first_token``; always a full permutation, so its valid-window share is 1). ``strategy``
(``sliding`` by default; ``single``, ``tdpart``, ``setwise``: docs/inference.md) picks how windows become the
ranking, as ``dear rerank --strategy`` does. The figures go to the Trainer's log (beside the eval loss, so wandb/TensorBoard get them)
and, on the main process, to ``ranking_eval.jsonl`` in ``output_dir``:
``{"step": int, "dataset": str, "metrics": {"ndcg@10": float, ...}, "valid_window_share": float}`` (plus
``"scoring": "first-token"`` when the eval scores that way, ``"strategy"`` when it is not sliding).

All ranks run the reranking (identical inputs) so sharded models (ZeRO-3) can generate; only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from data_prep.prompts import PromptSpec
from data_prep.ranking import parse_ranking
from data_prep.schema import DataError, RerankRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOut:
    """The held-out queries (candidates cut to ``top_k``), their qrels, and a name for the logs."""

    name: str
    requests: tuple[RerankRequest, ...]
    qrels: dict[str, dict[str, int]]


def load_held_out(
    rankgpt_json: str | Path,
    qrels_path: str | Path,
    *,
    name: str | None = None,
    num_queries: int | None = None,
    top_k: int = 20,
) -> HeldOut:
    """First ``num_queries`` judged queries of a RankGPT JSON file, each with its first ``top_k`` candidates."""
    from data_prep.readers import read_qrels, read_rankgpt_json

    requests = read_rankgpt_json(rankgpt_json)
    qrels = read_qrels(qrels_path)
    judged = [r for r in requests if r.qid in qrels]
    if not judged:
        raise DataError("no query of the ranking-eval file has qrels", path=str(rankgpt_json),
                        fix="pass the qrels of the same collection as --ranking_eval_qrels")
    if num_queries is not None:
        judged = judged[:num_queries]
    short = [r for r in judged if len(r.candidates) < top_k]
    if short:
        raise DataError(f"ranking_eval_top_k={top_k} but query {short[0].qid} has only {len(short[0].candidates)} "
                        "candidates", path=str(rankgpt_json), qid=short[0].qid,
                        fix=f"set ranking_eval_top_k <= {min(len(r.candidates) for r in judged)}")
    cut = tuple(RerankRequest(qid=r.qid, query=r.query, candidates=r.candidates[:top_k]) for r in judged)
    smallest = min(len(r.candidates) for r in cut)
    if smallest < 2:
        raise DataError(f"a ranking-eval query has only {smallest} candidate(s)", path=str(rankgpt_json),
                        fix="use a first-stage run with more candidates")
    return HeldOut(name=name or Path(rankgpt_json).stem, requests=cut,
                   qrels={r.qid: qrels[r.qid] for r in cut})


def window_ok(window: Any, spec: PromptSpec, size: int) -> bool:
    """True when one window's generation needed no repair.

    Accepts what a reranker reports per window: ``inference.WindowRecord`` or a dict with ``repairs``
    (empty = ok), or the raw generated text (parsed here against ``size`` candidates with the spec's id base).
    """
    repairs = window.get("repairs") if isinstance(window, dict) else getattr(window, "repairs", None)
    if repairs is not None and not isinstance(window, str):
        return not any(repairs.values())
    text = window if isinstance(window, str) else (
        window.get("text") if isinstance(window, dict) else getattr(window, "text", ""))
    return parse_ranking(text or "", size, base=spec.id_base, cot=spec.cot).ok


def evaluate_ranking(
    model: Any,
    tokenizer: Any,
    spec: PromptSpec,
    held_out: HeldOut,
    *,
    window: int = 20,
    stride: int = 10,
    batch_size: int = 4,
    max_new_tokens: int | None = None,
    metrics: Sequence[str] = ("ndcg@10",),
    scoring: str = "generate",
    strategy: str = "sliding",
    depth: int = 10,
    set_size: int = 3,
) -> dict[str, Any]:
    """Rerank ``held_out`` with the in-memory model; {"metrics": {...}, "valid_window_share": float, ...}."""
    from inference import ListwiseReranker
    from inference.metrics import evaluate

    top_k = max(len(r.candidates) for r in held_out.requests)
    kwargs: dict[str, Any] = {"window": window, "stride": stride, "top_k": top_k, "batch_size": batch_size}
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = max_new_tokens
    if scoring != "generate":
        kwargs["scoring"] = scoring
    if strategy != "sliding":
        kwargs.update(strategy=strategy, depth=depth, set_size=set_size)
    reranker = ListwiseReranker(model, tokenizer, spec, **kwargs)
    results = reranker.rerank_batch(list(held_out.requests))
    run = {res.qid: list(zip(res.docids, res.scores, strict=True)) for res in results}
    scores = evaluate(run, held_out.qrels, metrics=tuple(metrics))
    n_windows = n_ok = 0
    repairs: dict[str, int] = {}
    for req, res in zip(held_out.requests, results, strict=True):
        size = min(window, len(req.candidates))
        for w in res.windows:
            if getattr(w, "raw", "") is None:  # a one-candidate window: no generation to judge
                continue
            n_windows += 1
            n_ok += window_ok(w, spec, size)
        for k, v in (res.repairs or {}).items():
            repairs[k] = repairs.get(k, 0) + int(v)
    return {
        "metrics": {k: float(v) for k, v in scores.items()},
        "valid_window_share": (n_ok / n_windows) if n_windows else 0.0,
        "windows": n_windows,
        "repairs": repairs,
    }


class RankingEvalCallback(TrainerCallback):
    """Rerank a held-out set on every evaluation and log nDCG@10 + valid-window share beside the loss."""

    def __init__(
        self,
        held_out: HeldOut,
        spec: PromptSpec,
        *,
        output_dir: str | Path,
        window: int = 20,
        stride: int = 10,
        batch_size: int = 4,
        max_new_tokens: int | None = None,
        metrics: Sequence[str] = ("ndcg@10",),
        scoring: str = "generate",
        strategy: str = "sliding",
        depth: int = 10,
        set_size: int = 3,
    ) -> None:
        self.held_out = held_out
        self.spec = spec
        self.output_dir = Path(output_dir)
        self.window = window
        self.stride = stride
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.metrics = tuple(metrics)
        self.scoring = scoring
        self.strategy, self.depth, self.set_size = strategy, depth, set_size
        self.trainer: Any = None  # set by the caller so figures reach the Trainer's loggers
        self.history: list[dict[str, Any]] = []

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):  # noqa: ANN001
        if model is None or processing_class is None:
            return control
        from inference.grad_mode import evaluating

        padding_side = getattr(processing_class, "padding_side", None)
        try:
            with evaluating(model):
                out = evaluate_ranking(
                    model, processing_class, self.spec, self.held_out, window=self.window, stride=self.stride,
                    batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, metrics=self.metrics,
                    scoring=self.scoring, strategy=self.strategy, depth=self.depth, set_size=self.set_size,
                )
        finally:
            if padding_side is not None:
                processing_class.padding_side = padding_side
        record = {"step": int(state.global_step), "dataset": self.held_out.name, "metrics": out["metrics"],
                  "valid_window_share": out["valid_window_share"]}
        if self.scoring != "generate":
            record["scoring"] = self.scoring
        if self.strategy != "sliding":
            record["strategy"] = self.strategy
        publish_ranking_eval(record, state=state, output_dir=self.output_dir, trainer=self.trainer,
                             history=self.history, log_share=True)
        return control


def publish_ranking_eval(record: dict[str, Any], *, state: Any, output_dir: str | Path, trainer: Any,
                         history: list[dict[str, Any]], log_share: bool) -> None:
    """Keep one evaluation record: in ``history``, appended to ``ranking_eval.jsonl`` (rank 0 only), and in the
    Trainer's loggers (wandb) as ``ranking_eval/<metric>``. Shared by the listwise and pointwise callbacks."""
    from dear_train.artifacts import RANKING_EVAL_FILE

    history.append(record)
    if state.is_world_process_zero:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / RANKING_EVAL_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        logger.info("ranking eval @ step %d on %s: %s, valid windows %.3f", record["step"], record["dataset"],
                    record["metrics"], record["valid_window_share"])
    if trainer is not None:
        logs = {f"ranking_eval/{k}": v for k, v in record["metrics"].items()}
        if log_share:
            logs["ranking_eval/valid_window_share"] = record["valid_window_share"]
        trainer.log(logs)
