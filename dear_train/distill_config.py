"""Config dataclasses of `dear distill` (module level so checkpoints can pickle the training arguments).

Imports transformers and TRL at import time; `dear_train.distill` imports this inside ``main()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import TrainingArguments

from dear_train.config import AutoPrecisionMixin, DearModelConfig


@dataclass
class DistillTrainingArguments(AutoPrecisionMixin, TrainingArguments):
    """``transformers.TrainingArguments`` with `dear train`'s machine-aware precision (bf16 off without CUDA)."""


def config_classes() -> tuple[type, ...]:
    from dear_train.distill import DistillArguments

    return (DistillArguments, DistillTrainingArguments, DearModelConfig)
