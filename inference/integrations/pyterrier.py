"""PyTerrier: ``DearTransformer``, a ``pt.Transformer`` that reranks a results frame with the one reranker.

    import pyterrier as pt
    from inference.integrations.pyterrier import DearTransformer

    bm25 = pt.Transformer.from_df(run)            # any first stage giving qid, query, docno, text
    dear = DearTransformer("runs/listwise", top_k=30)
    pt.Experiment([bm25, bm25 >> dear], topics, qrels, eval_metrics=["ndcg_cut_10"])

All queries of a frame go to the reranker in one ``rerank_batch`` call (windows of different queries decode
together, as in `dear rerank`). Each query's candidates are taken in first-stage order (by ``rank`` when the
frame has it, else by ``score`` descending, else as they come), so the result is exactly the run `dear rerank`
writes for the same candidates: ``score`` is that run's score and ``rank`` is 0-based (``pt.model.add_ranks``).
Needs the ``pyterrier`` extra; no Java (Terrier itself is only needed for a Terrier first stage).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyterrier as pt

from data_prep.schema import Candidate, RerankRequest
from inference.integrations.ranking import check_query, check_text, load_reranker, rerank_requests
from inference.ranking.options import RankingOptions


class DearTransformer(pt.Transformer):
    """Rerank each query's rows of a results frame; other columns ride along unchanged.

    ``reranker``: a ``RankingOptions`` (checked, then loaded), a model folder / Hub id with ``**ranking`` (its
    fields: ``strategy``, ``window``, ``top_k``, ``scoring``, ...), or a loaded ``ListwiseReranker``.
    ``text_field``: the column holding the passage text."""

    def __init__(self, reranker: Any, *, text_field: str = "text", **ranking: Any) -> None:
        self.reranker = load_reranker(reranker, **ranking)
        self.text_field = text_field

    @classmethod
    def from_options(cls, options: RankingOptions, *, text_field: str = "text") -> DearTransformer:
        """The transformer over the reranker ``options`` describe (checked before the model loads)."""
        return cls(options, text_field=text_field)

    def __repr__(self) -> str:
        return f"DearTransformer(text_field={self.text_field!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.result_frame(inp, extra_columns=["query", self.text_field], context=self)
        frame = inp.reset_index(drop=True)
        if frame.empty:
            out = frame.copy()
            out["score"] = pd.Series(index=out.index, dtype="float64")
            return pt.model.add_ranks(out)
        requests, rows = self._requests(frame)
        results = rerank_requests(self.reranker, requests)
        take: list[int] = []
        scores: list[float] = []
        for result, row_of in zip(results, rows, strict=True):
            for docid, score in zip(result.docids, result.scores, strict=True):
                take.append(row_of[docid])
                scores.append(float(score))
        out = frame.loc[take].reset_index(drop=True)
        out["score"] = scores
        return pt.model.add_ranks(out)

    def _requests(self, frame: pd.DataFrame) -> tuple[list[RerankRequest], list[dict[str, int]]]:
        """One request per qid (in order of first appearance), candidates in first-stage order; and for each
        query, docno -> the frame row it came from (a repeated docno keeps its first row, as the reranker does)."""
        requests, rows = [], []
        for qid, group in frame.groupby("qid", sort=False):
            group = _first_stage_order(group)
            query = check_query(group["query"].iloc[0], f"query (qid {qid})")
            candidates, row_of = [], {}
            for row, docno, text in zip(group.index, group["docno"], group[self.text_field], strict=True):
                check_text(None if _missing(text) else text, f"{self.text_field} (qid {qid}, docno {docno})")
                docid = str(docno)
                row_of.setdefault(docid, int(row))
                candidates.append(Candidate(docid=docid, text=text))
            requests.append(RerankRequest(qid=str(qid), query=query, candidates=tuple(candidates)))
            rows.append(row_of)
        return requests, rows


def _first_stage_order(group: pd.DataFrame) -> pd.DataFrame:
    if "rank" in group.columns:
        return group.sort_values("rank", kind="stable")
    if "score" in group.columns:
        return group.sort_values("score", ascending=False, kind="stable")
    return group


def _missing(value: Any) -> bool:
    """A frame's empty cell (None, NaN, pd.NA), reported as missing rather than as its float type."""
    return pd.api.types.is_scalar(value) and not isinstance(value, str) and bool(pd.isna(value))
