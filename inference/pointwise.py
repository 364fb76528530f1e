"""Stage 1 at inference: a Llama sequence classifier scores each (query, passage) pair.

Loads the two layouts DeAR releases: a full ``LlamaForSequenceClassification`` folder
(``abdoelsayed/dear-8b-reranker-ce-v1``) and a PEFT ``SEQ_CLS`` LoRA adapter whose ``score`` head is saved
with it (``...-ce-lora-v1``, and what ``dear distill`` writes). Inputs come from
:mod:`data_prep.pointwise_format`, the module training uses, so scores match the training-time ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.pointwise_format import (
    PairFormat,
    collate_ids,
    document_text,
    encode_pair,
    ensure_pad_token,
    load_pair_format,
    pools_on_last_real_token,
)
from data_prep.schema import Candidate, RerankRequest
from inference.grad_mode import inference_context


@dataclass(frozen=True)
class PointwiseResult:
    """One query's candidates sorted by the pointwise score (highest first)."""

    qid: str
    docids: list[str]
    scores: list[float]  # non-increasing
    indices: list[int]  # positions in the request's candidates, best first
    seconds: float = field(default=0.0, compare=False)

    def ranked(self) -> list[tuple[str, float]]:
        return list(zip(self.docids, self.scores, strict=True))


class PointwiseReranker:
    """Batched pointwise scoring; ``rerank*`` return candidates sorted by score, highest first."""

    def __init__(self, model: Any, tokenizer: Any, *, pair_format: PairFormat | None = None,
                 batch_size: int = 32, dynamic_padding: bool | None = None) -> None:
        """``dynamic_padding``: None (auto) pads to each batch's longest row when the model pools on the last
        real token and to the fixed length otherwise; True/False force it (True on a last-position-pooling
        model would change its scores)."""
        self.model = model
        self.tokenizer = tokenizer
        self.pair_format = pair_format or PairFormat()
        self.batch_size = max(1, int(batch_size))
        ensure_pad_token(tokenizer, getattr(model, "config", None))
        self.dynamic_padding = (pools_on_last_real_token(tokenizer, model.config) if dynamic_padding is None
                                else dynamic_padding)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        base_model: str | None = None,
        dtype: str = "auto",
        quantization: str | None = None,
        device_map: str | dict | None = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
        batch_size: int = 32,
        pair_format: PairFormat | None = None,
        merge: bool = False,
        dynamic_padding: bool | None = None,
    ) -> PointwiseReranker:
        """Load a full classifier folder or a PEFT adapter; the folder's ``pointwise_format.json`` wins over
        DeAR's defaults (32 / 196 tokens) unless ``pair_format`` is given."""
        from inference.models import ModelOptions, load_sequence_classifier

        options = ModelOptions(base_model=base_model, dtype=dtype, quantization=quantization, device_map=device_map,
                               revision=revision, trust_remote_code=trust_remote_code)
        model, tokenizer = load_sequence_classifier(str(path), options, merge=merge)
        fmt = pair_format or (load_pair_format(path) if Path(path).is_dir() else None)
        return cls(model, tokenizer, pair_format=fmt, batch_size=batch_size, dynamic_padding=dynamic_padding)

    @property
    def device(self) -> Any:
        import torch

        try:
            return next(p.device for p in self.model.parameters() if p.device.type != "meta")
        except StopIteration:
            return torch.device("cpu")

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """One score per (query, document text) pair, in input order."""

        fmt = self.pair_format
        rows = [encode_pair(self.tokenizer, q, d, fmt) for q, d in pairs]
        # dynamic padding when the model pools on the last real token (same scores, less compute), with
        # pairs of similar length batched together; else every row is padded to the fixed length
        dynamic = self.dynamic_padding
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i])) if dynamic else list(range(len(rows)))
        scores = [0.0] * len(rows)
        device = self.device
        with inference_context(self.model):
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch_rows = [rows[i] for i in idx]
                length = max(len(r) for r in batch_rows) if dynamic else fmt.max_length
                batch = {k: v.to(device) for k, v in collate_ids(self.tokenizer, batch_rows, length).items()}
                values = self.model(**batch).logits.float().view(-1).tolist()
                for i, v in zip(idx, values, strict=True):
                    scores[i] = v
        return scores

    def score(self, query: str, documents: Sequence[str | Candidate]) -> list[float]:
        """Scores of ``documents`` (texts or candidates, whose title is prepended) for ``query``, input order."""
        texts = [document_text(d.text, d.title) if isinstance(d, Candidate) else d for d in documents]
        return self.score_pairs([(query, t) for t in texts])

    def rerank(self, query: str, documents: Sequence[str | Candidate]) -> list[int]:
        """Indices of ``documents`` from most to least relevant (ties keep input order)."""
        scores = self.score(query, documents)
        return sorted(range(len(scores)), key=lambda i: -scores[i])

    def rerank_batch(self, requests: Sequence[RerankRequest], top_k: int | None = None) -> list[PointwiseResult]:
        """Score each request's first ``top_k`` candidates (all when None), sorted by score.

        Pairs of several queries share batches, so small queries do not leave batches half empty.
        """
        pairs: list[tuple[str, str]] = []
        spans = []
        for req in requests:
            cands = req.candidates[:top_k] if top_k else req.candidates
            spans.append((req, cands, len(pairs)))
            pairs.extend((req.query, document_text(c.text, c.title)) for c in cands)
        t0 = time.perf_counter()
        scores = self.score_pairs(pairs)
        per_query = (time.perf_counter() - t0) / max(1, len(requests))
        results = []
        for req, cands, start in spans:
            s = scores[start:start + len(cands)]
            order = sorted(range(len(cands)), key=lambda i: -s[i])
            results.append(PointwiseResult(qid=req.qid, docids=[cands[i].docid for i in order],
                                           scores=[s[i] for i in order], indices=order, seconds=per_query))
        return results
