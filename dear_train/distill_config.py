"""Config dataclasses of `dear distill` (module level so checkpoints can pickle the training arguments).

The arguments live here and the training code in ``dear_train.distill``, which imports this module (inside
its functions, because this one imports transformers and TRL at import time); nothing here imports back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from dear_train.config import AutoPrecisionMixin, DearModelConfig


@dataclass
class DistillArguments:
    """Data and loss of the distillation (the student's architecture is in TRL's ``ModelConfig``)."""

    dataset_path: str = field(default="", metadata={"help": "`dear prep pointwise` output folder (or a train.jsonl)"})
    eval_dataset_path: str | None = field(default=None, metadata={
        "help": "groups to evaluate on (default: the prep folder's eval.jsonl when it has groups)"})
    q_max_len: int = field(default=32, metadata={"help": "query tokens (DeAR: 32)"})
    p_max_len: int = field(default=196, metadata={"help": "document tokens (DeAR: 196)"})
    rank_loss: str = field(default="ce", metadata={"help": "L_rank", "choices": ["ce", "ranknet", "mix"]})
    alpha: float = field(default=0.1, metadata={"help": "weight of the KL distillation term"})
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T of the KL term"})
    mix_weight: float = field(default=0.5, metadata={"help": "RankNet share of L_rank when rank_loss=mix"})
    group_size: int | None = field(default=None, metadata={"help": "cut groups to their first N passages"})
    max_train_groups: int | None = field(default=None, metadata={"help": "train on the first N groups only"})
    ranking_eval_data: str | None = field(default=None, metadata={
        "help": "RankGPT JSON of held-out queries the live student reranks at every evaluation"})
    ranking_eval_qrels: str | None = field(default=None, metadata={"help": "TREC qrels for ranking_eval_data"})
    ranking_eval_name: str | None = field(default=None, metadata={"help": "name logged for the held-out set"})
    ranking_eval_queries: int | None = field(default=None, metadata={"help": "use the first N judged queries"})
    ranking_eval_top_k: int = field(default=100, metadata={"help": "candidates scored per query"})
    ranking_eval_batch_size: int = field(default=32, metadata={"help": "pairs scored together"})


@dataclass
class DistillTrainingArguments(AutoPrecisionMixin, TrainingArguments):
    """``transformers.TrainingArguments`` with `dear train`'s machine-aware precision (bf16 off without CUDA)."""


def config_classes() -> tuple[type, ...]:
    return (DistillArguments, DistillTrainingArguments, DearModelConfig)
