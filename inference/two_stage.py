"""DeAR's two-stage pipeline: pointwise scores order the first-stage top-100, the listwise model reorders the top 30.

Stage 1 (:class:`inference.pointwise.PointwiseReranker`) scores the first ``pointwise_depth`` candidates of
each query and sorts them (candidates below that depth follow in first-stage order). Stage 2
(:class:`inference.reranker.ListwiseReranker`) reorders the first ``listwise_depth`` of that order with
sliding windows (window 20, stride 10, back to front); the rest keeps the pointwise order. Wall time is
measured per stage so the share each stage costs is visible.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from data_prep.schema import RerankRequest


@dataclass(frozen=True)
class StageTimings:
    pointwise_s: float
    listwise_s: float
    pairs: int
    queries: int

    def as_dict(self) -> dict[str, Any]:
        total = self.pointwise_s + self.listwise_s
        return {
            "pointwise": {"wall_s": round(self.pointwise_s, 4), "pairs": self.pairs,
                          "pairs_per_s": round(self.pairs / self.pointwise_s, 2) if self.pointwise_s > 0 else None,
                          "share": round(self.pointwise_s / total, 4) if total > 0 else None},
            "listwise": {"wall_s": round(self.listwise_s, 4),
                         "share": round(self.listwise_s / total, 4) if total > 0 else None},
            "total_s": round(total, 4),
            "queries": self.queries,
        }


def pointwise_first_stage(pointwise: Any, requests: Sequence[RerankRequest], depth: int = 100
                          ) -> tuple[list[RerankRequest], float, int]:
    """Each request with its first ``depth`` candidates sorted by pointwise score (scores kept on the
    candidates), the rest after them in first-stage order; plus the stage's wall seconds and pair count."""
    t0 = time.perf_counter()
    results = pointwise.rerank_batch(list(requests), top_k=depth)
    seconds = time.perf_counter() - t0
    out = []
    pairs = 0
    for req, res in zip(requests, results, strict=True):
        head = [replace(req.candidates[i], score=s) for i, s in zip(res.indices, res.scores, strict=True)]
        pairs += len(head)
        out.append(RerankRequest(qid=req.qid, query=req.query, candidates=tuple(head) + req.candidates[depth:]))
    return out, seconds, pairs


class TwoStageReranker:
    """``rerank_batch(requests) -> (results, timings)``: pointwise stage, then listwise stage."""

    def __init__(self, pointwise: Any, listwise: Any, *, pointwise_depth: int = 100, listwise_depth: int = 30
                 ) -> None:
        if pointwise_depth < 1 or listwise_depth < 0:
            raise ValueError("pointwise_depth must be >= 1 and listwise_depth >= 0")
        self.pointwise = pointwise
        self.listwise = listwise
        self.pointwise_depth = pointwise_depth
        self.listwise.top_k = listwise_depth  # the listwise reranker reorders only the head of stage 1

    def rerank_batch(self, requests: Sequence[RerankRequest]) -> tuple[list[Any], StageTimings]:
        staged, pw_s, pairs = pointwise_first_stage(self.pointwise, requests, self.pointwise_depth)
        t0 = time.perf_counter()
        results = self.listwise.rerank_batch(staged)
        lw_s = time.perf_counter() - t0
        return results, StageTimings(pointwise_s=pw_s, listwise_s=lw_s, pairs=pairs, queries=len(requests))


@dataclass(frozen=True)
class PointwiseStage:
    """Stage 1 as `dear rerank --pointwise` ran it; the listwise wall time is added once stage 2 ends."""

    seconds: float
    pairs: int
    queries: int

    def with_listwise(self, listwise_s: float) -> StageTimings:
        return StageTimings(pointwise_s=self.seconds, listwise_s=listwise_s, pairs=self.pairs, queries=self.queries)


def run_pointwise_stage(args: Any, requests: list[RerankRequest], done: set[str] | dict, device_map: Any
                        ) -> tuple[list[RerankRequest], PointwiseStage]:
    """`dear rerank --pointwise`: load the pointwise model and reorder the queries not yet in the run."""
    import logging

    from inference.pointwise import PointwiseReranker

    todo = [r for r in requests if r.qid not in done]
    pointwise = PointwiseReranker.from_pretrained(
        args.pointwise, base_model=args.pointwise_base_model, dtype=args.dtype, quantization=args.quantization,
        device_map=device_map, trust_remote_code=args.trust_remote_code, batch_size=args.pointwise_batch_size)
    staged, seconds, pairs = pointwise_first_stage(pointwise, todo, args.pointwise_depth)
    logging.getLogger(__name__).info("pointwise stage: %d pairs of %d queries in %.1f s", pairs, len(todo), seconds)
    by_qid = {r.qid: r for r in staged}
    del pointwise  # free its memory before the listwise model loads
    return [by_qid.get(r.qid, r) for r in requests], PointwiseStage(seconds=seconds, pairs=pairs, queries=len(todo))
