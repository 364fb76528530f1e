"""Stage 1 at inference: a Llama sequence classifier scores each (query, passage) pair.

Loads the two layouts DeAR releases: a full ``LlamaForSequenceClassification`` folder
(``abdoelsayed/dear-8b-reranker-ce-v1``) and a PEFT ``SEQ_CLS`` LoRA adapter whose ``score`` head is saved
with it (``...-ce-lora-v1``, and what ``dear distill`` writes). Inputs come from
:mod:`data_prep.pointwise_format`, the module training uses, so scores match the training-time ones.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.pointwise_format import (
    PairFormat,
    document_text,
    encode_pairs,
    ensure_pad_token,
    load_pair_format,
)
from data_prep.schema import Candidate, DataError, RerankRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PointwiseResult:
    """One query's candidates sorted by the pointwise score (highest first)."""

    qid: str
    docids: list[str]
    scores: list[float]
    seconds: float = field(default=0.0, compare=False)


def _torch_dtype(dtype: str | Any) -> Any:
    import torch

    if dtype in (None, "auto"):
        return "auto"
    if isinstance(dtype, str):
        try:
            return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                    "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
        except KeyError:
            raise DataError(f"unknown dtype {dtype!r}", fix="auto, bfloat16, float16 or float32") from None
    return dtype


def _quantization_config(quantization: str | None) -> Any:
    if quantization in (None, "none"):
        return None
    from transformers import BitsAndBytesConfig

    if quantization in ("4bit", "nf4"):
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise DataError(f"unknown quantization {quantization!r}", fix="none, 4bit or 8bit")


def load_sequence_classifier(
    path: str | Path,
    *,
    base_model: str | None = None,
    dtype: str | Any = "auto",
    quantization: str | None = None,
    device_map: str | dict | None = "auto",
    trust_remote_code: bool = False,
    merge: bool = False,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a full sequence-classification folder or a PEFT adapter folder (or Hub id)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    p = Path(path)
    is_adapter = (p / "adapter_config.json").is_file()
    if not p.exists():  # a Hub id: ask the Hub whether it is an adapter
        try:
            from huggingface_hub import file_exists

            is_adapter = file_exists(str(path), "adapter_config.json")
        except Exception as err:  # noqa: BLE001 - offline or unknown repo: treat it as a full model
            logger.debug("adapter probe for %s failed: %s", path, err)
    if device_map == "auto" and not torch.cuda.is_available():
        device_map = None
    kwargs: dict[str, Any] = {"num_labels": 1, "dtype": _torch_dtype(dtype), "trust_remote_code": trust_remote_code}
    qconf = _quantization_config(quantization)
    if qconf is not None:
        kwargs["quantization_config"] = qconf
    if device_map is not None:
        kwargs["device_map"] = device_map
    if is_adapter:
        from peft import PeftConfig, PeftModel

        base = base_model or PeftConfig.from_pretrained(str(path)).base_model_name_or_path
        if not base:
            raise DataError("the adapter names no base model", path=str(path), fix="pass base_model=")
        tok_src = str(path) if (p / "tokenizer_config.json").is_file() or not p.exists() else base
        try:
            tokenizer = AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust_remote_code)
        except OSError:
            tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
        ensure_pad_token(tokenizer, model.config)
        model = PeftModel.from_pretrained(model, str(path))
        if merge:
            model = model.merge_and_unload()
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
        ensure_pad_token(tokenizer, model.config)
    if getattr(model.config, "num_labels", 1) != 1:
        raise DataError(f"the model has {model.config.num_labels} labels; a pointwise reranker has one",
                        path=str(path), fix="load a model trained with num_labels=1")
    model.eval()
    return model, tokenizer


class PointwiseReranker:
    """Batched pointwise scoring; ``rerank*`` return candidates sorted by score, highest first."""

    def __init__(self, model: Any, tokenizer: Any, *, pair_format: PairFormat | None = None,
                 batch_size: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pair_format = pair_format or PairFormat()
        self.batch_size = max(1, int(batch_size))
        ensure_pad_token(tokenizer, getattr(model, "config", None))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        base_model: str | None = None,
        dtype: str | Any = "auto",
        quantization: str | None = None,
        device_map: str | dict | None = "auto",
        trust_remote_code: bool = False,
        batch_size: int = 32,
        pair_format: PairFormat | None = None,
        merge: bool = False,
    ) -> PointwiseReranker:
        """Load a full classifier folder or a PEFT adapter; the folder's ``pointwise_format.json`` wins over
        DeAR's defaults (32 / 196 tokens) unless ``pair_format`` is given."""
        model, tokenizer = load_sequence_classifier(
            path, base_model=base_model, dtype=dtype, quantization=quantization, device_map=device_map,
            trust_remote_code=trust_remote_code, merge=merge)
        fmt = pair_format or (load_pair_format(path) if Path(path).is_dir() else None)
        return cls(model, tokenizer, pair_format=fmt, batch_size=batch_size)

    @property
    def device(self) -> Any:
        import torch

        try:
            return next(p.device for p in self.model.parameters() if p.device.type != "meta")
        except StopIteration:
            return torch.device("cpu")

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """One score per (query, document text) pair, in input order."""
        import torch

        out: list[float] = []
        device = self.device
        with torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                batch = encode_pairs(self.tokenizer, list(pairs[start:start + self.batch_size]), self.pair_format)
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = self.model(**batch).logits
                out.extend(logits.float().view(-1).tolist())
        return out

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
                                           scores=[s[i] for i in order], seconds=per_query))
        return results


def describe(path: str | Path) -> dict[str, Any]:
    """What kind of pointwise folder ``path`` is (for logs and the rerank summary)."""
    p = Path(path)
    if (p / "adapter_config.json").is_file():
        cfg = json.loads((p / "adapter_config.json").read_text())
        return {"layout": "peft-adapter", "task_type": cfg.get("task_type"),
                "base_model": cfg.get("base_model_name_or_path"), "modules_to_save": cfg.get("modules_to_save")}
    return {"layout": "full-model" if (p / "config.json").is_file() else "hub-id"}
