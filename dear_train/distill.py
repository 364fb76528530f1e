"""`dear distill` / `accelerate launch -m dear_train.distill`: stage-1 pointwise distillation.

    loss = (1 - alpha) * L_rank + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

over groups of one positive plus N negatives from ``dear prep pointwise``. Config: one YAML (``--config``)
parsed with ``trl.TrlParser`` into :class:`DistillArguments`, ``transformers.TrainingArguments`` and TRL's
``ModelConfig``; CLI flags win, unknown YAML keys are errors. The output folder holds the LoRA adapter with its
score head, the tokenizer, ``pointwise_format.json`` and ``dear_training.json`` (``task: "pointwise"``).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


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


def _dataset_files(dataset_path: str, eval_dataset_path: str | None) -> tuple[Path, Path | None]:
    from data_prep.schema import DataError

    p = Path(dataset_path)
    train = p / "train.jsonl" if p.is_dir() else p
    if not train.is_file():
        raise DataError("no training groups found", path=str(train),
                        fix="pass --dataset_path the folder `dear prep pointwise --out` wrote")
    if eval_dataset_path:
        return train, Path(eval_dataset_path)
    ev = train.parent / "eval.jsonl"
    return train, ev if ev.is_file() and ev.stat().st_size > 0 else None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "deepspeed", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _make_trainer_class():
    from transformers import Trainer

    from dear_train.distill_losses import distill_loss

    class DistillTrainer(Trainer):
        """A Trainer whose loss is the stage-1 objective over flattened groups."""

        def __init__(self, *args: Any, loss_kwargs: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_kwargs = loss_kwargs

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D401
            teacher = inputs["teacher_scores"]
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            student = logits.view(teacher.shape).float()
            loss = distill_loss(student, teacher.to(student.device), **self.loss_kwargs)
            return (loss, {"logits": student}) if return_outputs else loss

    return DistillTrainer


def resolve_resume(resume: str | None, output_dir: str) -> str | None:
    """``auto``: the newest ``checkpoint-*`` in ``output_dir`` or None (a fresh start); else the value as is."""
    if resume != "auto":
        return resume
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def train_distill(dargs: DistillArguments, targs: Any, margs: Any, *, argv: list[str] | None = None) -> Path:
    """Train the student; save adapter + score head, tokenizer, pointwise_format.json, dear_training.json."""
    from data_prep.pointwise import read_groups
    from data_prep.pointwise_format import PairFormat, pools_on_last_real_token, save_pair_format
    from dear_train.distill_losses import RANK_LOSSES
    from dear_train.pointwise_student import GroupCollator, GroupDataset, build_student, file_fingerprint

    if dargs.rank_loss not in RANK_LOSSES:
        raise ValueError(f"rank_loss must be one of {RANK_LOSSES}")
    if not margs.model_name_or_path:
        raise ValueError("--model_name_or_path is required (a Llama base or the tiny model)")
    train_path, eval_path = _dataset_files(dargs.dataset_path, dargs.eval_dataset_path)
    groups = read_groups(train_path)
    if dargs.max_train_groups:
        groups = groups[: dargs.max_train_groups]
    train_ds = GroupDataset(groups, dargs.group_size, str(train_path))
    eval_ds = None
    if eval_path is not None and targs.eval_strategy != "no":
        eval_ds = GroupDataset(read_groups(eval_path), train_ds.group_size, str(eval_path))

    from transformers import set_seed

    set_seed(targs.seed)  # the student's fresh score head is reproducible
    quant = None
    if getattr(margs, "load_in_4bit", False) or getattr(margs, "load_in_8bit", False):
        from trl import get_quantization_config

        quant = get_quantization_config(margs)
    model, tokenizer = build_student(
        margs.model_name_or_path, dtype=margs.dtype, use_peft=margs.use_peft, lora_r=margs.lora_r,
        lora_alpha=margs.lora_alpha, lora_dropout=margs.lora_dropout,
        lora_target_modules=margs.lora_target_modules, lora_modules_to_save=margs.lora_modules_to_save,
        quantization_config=quant, attn_implementation=margs.attn_implementation,
        trust_remote_code=getattr(margs, "trust_remote_code", False), gradient_checkpointing=targs.gradient_checkpointing)
    fmt = PairFormat(q_max_len=dargs.q_max_len, p_max_len=dargs.p_max_len)
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config

    targs.remove_unused_columns = False
    targs.label_names = ["teacher_scores"]
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=GroupCollator(tokenizer, fmt, fixed_length=not pools_on_last_real_token(tokenizer, config)),
        processing_class=tokenizer,
        loss_kwargs={"kind": dargs.rank_loss, "alpha": dargs.alpha, "temperature": dargs.temperature,
                     "mix_weight": dargs.mix_weight})
    resume = resolve_resume(targs.resume_from_checkpoint, targs.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    out = Path(targs.output_dir)
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
        save_pair_format(out, fmt)
        record = {
            "base_model": margs.model_name_or_path,
            "config": _jsonable({"distill": asdict(dargs), "model": asdict(margs), "training": targs.to_dict(),
                                 "argv": argv}),
            "versions": _versions(),
            "dataset": {"path": str(train_path), "fingerprint": file_fingerprint(train_path)},
            "task": "pointwise",
        }
        (out / "dear_training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        logger.info("student saved to %s", out)
    return out


def parse_args(argv: list[str] | None = None) -> tuple[DistillArguments, Any, Any]:
    from transformers import TrainingArguments
    from trl import ModelConfig, TrlParser

    parser = TrlParser((DistillArguments, TrainingArguments, ModelConfig), prog="dear distill")
    dargs, targs, margs = parser.parse_args_and_config(args=argv)
    return dargs, targs, margs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    dargs, targs, margs = parse_args(argv)
    from data_prep.schema import DataError

    try:
        train_distill(dargs, targs, margs, argv=argv)
    except DataError as err:
        print(f"dear distill: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
