"""The stage-1 student: a Llama sequence classifier with one logit, LoRA on every projection, score head trained.

Also the data side of training: groups from ``dear prep pointwise`` and the collator that flattens them into
fixed-length pairs (:mod:`data_prep.pointwise_format`) plus a ``(groups, group_size)`` teacher-score tensor.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.pointwise_format import PairFormat, document_text, encode_pairs, ensure_pad_token
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

# Llama's attention and MLP projections: DeAR puts LoRA on all of them.
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_student(
    model_name_or_path: str,
    *,
    dtype: str | None = "auto",
    use_peft: bool = True,
    lora_r: int = 32,
    lora_alpha: int = 64,
    lora_dropout: float = 0.1,
    lora_target_modules: list[str] | str | None = None,
    lora_modules_to_save: list[str] | None = None,
    quantization_config: Any | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
) -> tuple[Any, Any]:
    """(student model, tokenizer). With ``use_peft`` the model is a PEFT ``SEQ_CLS`` LoRA model whose ``score``
    head is fully trained and saved with the adapter (``modules_to_save``)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {"num_labels": 1, "trust_remote_code": trust_remote_code}
    if dtype not in (None, "auto"):
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)
    ensure_pad_token(tokenizer, model.config)
    if not use_peft:
        return model, tokenizer
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    if quantization_config is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.enable_input_require_grads()
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=lora_target_modules or LLAMA_PROJECTIONS,
        modules_to_save=lora_modules_to_save or ["score"],
    )
    model = get_peft_model(model, config)
    return model, tokenizer


class GroupDataset:
    """Distillation groups (a torch map-style dataset), optionally cut to the first ``group_size`` passages."""

    def __init__(self, groups: list[dict[str, Any]], group_size: int | None = None, path: str = "groups") -> None:
        sizes = {len(g["passages"]) for g in groups}
        if not groups:
            raise DataError("no distillation group to train on", path=path, fix="check `dear prep pointwise`'s report")
        n = group_size or min(sizes)
        if group_size is None and len(sizes) > 1:
            raise DataError(f"groups have different sizes {sorted(sizes)}", path=path,
                            fix="set group_size to cut every group to the same number of passages")
        if n < 2 or n > min(sizes):
            raise DataError(f"group_size {n} is outside [2, {min(sizes)}]", path=path,
                            fix="pick a group size the data has")
        self.groups = groups
        self.group_size = n

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = self.groups[i]
        n = self.group_size
        return {"query": g["query"],
                "documents": [document_text(p["text"], p.get("title")) for p in g["passages"][:n]],
                "teacher_scores": [float(s) for s in g["teacher_scores"][:n]]}


@dataclass
class GroupCollator:
    """Flatten a batch of groups into ``groups * group_size`` pairs (positive first in each group).

    ``fixed_length``: pad every row to the format's fixed length (needed when the classifier pools on the last
    position, DeAR's setting for a tokenizer without a pad token); else pad to the batch's longest row,
    which gives the same scores when pooling is on the last real token (see ``pools_on_last_real_token``).
    """

    tokenizer: Any
    pair_format: PairFormat
    fixed_length: bool = True

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        pairs = [(f["query"], d) for f in features for d in f["documents"]]
        batch = encode_pairs(self.tokenizer, pairs, self.pair_format, fixed_length=self.fixed_length)
        batch["teacher_scores"] = torch.tensor([f["teacher_scores"] for f in features], dtype=torch.float32)
        return batch


def file_fingerprint(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
