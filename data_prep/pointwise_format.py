"""The one owner of the pointwise (stage-1) input: how a (query, passage) pair becomes token ids.

DeAR's stage 1 (and the released ``dear-*-reranker-*`` checkpoints) feed a Llama sequence classifier
``<bos> "query: {q}" <bos> "document: {title} {text}"``, with the query and the document tokenized
SEPARATELY and each cut to its own limit (32 and 196 tokens by default; the document keeps ``p_max_len - 3``
tokens as DeAR does), then padded on the right to the FIXED length ``q_max_len + p_max_len``.

Because every row has the same length and padding sits on the right of a causal model, a pair's score
never depends on the other rows of its batch (tested). When the model pools on the last real token (our
students), padding only to the batch's longest row gives the same scores with less compute
(:func:`pools_on_last_real_token`); inference uses that and sorts pairs by length. Pooling is the model's own (the last token that is
not ``config.pad_token_id``); :func:`ensure_pad_token` sets the ids the way DeAR's code does, so our
students and the released checkpoints are scored exactly as they were trained.

Teacher scoring (``dear prep pointwise --teacher-model``), training (``dear distill``) and inference
(``inference.PointwiseReranker``) all call :func:`encode_pairs`, and the spec travels with the model
folder as ``pointwise_format.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_prep.schema import DataError

POINTWISE_FORMAT_FILE = "pointwise_format.json"


@dataclass(frozen=True)
class PairFormat:
    """Everything that decides the token ids of a (query, passage) pair."""

    q_max_len: int = 32
    p_max_len: int = 196
    query_prefix: str = "query: "
    doc_prefix: str = "document: "

    def __post_init__(self) -> None:
        if self.q_max_len < 1 or self.p_max_len < 4:
            raise DataError(f"length limits too small (q_max_len={self.q_max_len}, p_max_len={self.p_max_len})",
                            fix="q_max_len >= 1 and p_max_len >= 4")

    @property
    def max_length(self) -> int:
        """The fixed length of every encoded pair (what rows are padded to)."""
        return self.q_max_len + self.p_max_len

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairFormat:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"unknown pointwise format keys {unknown}",
                            fix=f"a pointwise format has only {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


def save_pair_format(directory: str | Path, fmt: PairFormat) -> Path:
    path = Path(directory) / POINTWISE_FORMAT_FILE
    path.write_text(json.dumps(fmt.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def load_pair_format(directory: str | Path) -> PairFormat | None:
    """The format saved beside a model, or None (released DeAR checkpoints carry none: use the default)."""
    path = Path(directory) / POINTWISE_FORMAT_FILE
    if not path.is_file():
        return None
    from data_prep.readers import read_text

    try:
        return PairFormat.from_json(json.loads(read_text(path, "pointwise format file")))
    except (json.JSONDecodeError, TypeError) as err:
        raise DataError(f"unreadable pointwise format: {err}", path=str(path),
                        fix="re-save it with save_pair_format, or delete it to use DeAR's defaults") from err


def document_text(text: str, title: str | None = None) -> str:
    """``{title} {text}`` as DeAR joins them (no title: the text alone)."""
    return f"{title} {text}" if title else text


def ensure_pad_token(tokenizer: Any, model_config: Any | None = None) -> None:
    """Give the tokenizer a pad token and the model config a ``pad_token_id``, as DeAR's code does.

    Tokenizer without a pad token (stock Llama-3.1): pad with EOS. Config without ``pad_token_id``: the
    tokenizer's own pad token when it has a distinct one, else 0 (DeAR's choice; with EOS padding to a fixed
    length this pools on the last position, which is how the released checkpoints were trained).
    """
    had_own_pad = tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if model_config is not None and getattr(model_config, "pad_token_id", None) is None:
        model_config.pad_token_id = tokenizer.pad_token_id if had_own_pad else 0


def encode_pair(tokenizer: Any, query: str, document: str, fmt: PairFormat) -> list[int]:
    """Token ids ``<bos> query-part <bos> document-part`` (unpadded), each part cut to its own limit. Special-token
    strings in the query or document (``<|eot_id|>``) are plain text, never control tokens."""
    bos = tokenizer.bos_token_id
    q_ids = tokenizer.encode(fmt.query_prefix + query, add_special_tokens=False, split_special_tokens=True)
    d_ids = tokenizer.encode(fmt.doc_prefix + document, add_special_tokens=False, split_special_tokens=True)
    q_ids, d_ids = q_ids[: fmt.q_max_len], d_ids[: fmt.p_max_len - 3]
    head = [bos] if bos is not None else []
    ids = head + q_ids + head + d_ids
    return ids[: fmt.max_length]


def pools_on_last_real_token(tokenizer: Any, model_config: Any) -> bool:
    """True when the classifier pools on each row's last real token (``config.pad_token_id`` is the pad token
    the rows are padded with). Then right padding to the batch's longest row gives exactly the scores of
    fixed-length padding, with less compute. Otherwise (the released DeAR checkpoints: EOS padding,
    ``pad_token_id`` 0) pooling lands on the last position, so rows must be padded to the fixed length."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return getattr(model_config, "pad_token_id", None) == pad


def collate_ids(tokenizer: Any, rows: list[list[int]], length: int) -> dict[str, Any]:
    """Right-pad token id rows to ``length``: ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def encode_pairs(tokenizer: Any, pairs: list[tuple[str, str]], fmt: PairFormat, *,
                 fixed_length: bool = True) -> dict[str, Any]:
    """A batch of (query, document) pairs as right-padded ``input_ids``/``attention_mask`` tensors, padded to
    the fixed ``fmt.max_length`` (default) or, with ``fixed_length=False``, to the longest row."""
    rows = [encode_pair(tokenizer, q, d, fmt) for q, d in pairs]
    length = fmt.max_length if fixed_length else max((len(r) for r in rows), default=1)
    return collate_ids(tokenizer, rows, length)
