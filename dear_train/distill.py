"""`dear distill` / `accelerate launch -m dear_train.distill`: stage-1 pointwise distillation.

    loss = (1 - alpha) * L_rank + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

over groups of one positive plus N negatives from ``dear prep pointwise``. Same plumbing as `dear train`
(reused, not copied): config = YAML + CLI overrides through ``dear_train.config.parse_config`` (TRL's
``TrlParser``; unknown keys are errors; bf16 switched off on a host without CUDA) into
:class:`DistillArguments`, :class:`DistillTrainingArguments` (both in ``dear_train.distill_config``) and
``DearModelConfig``;
``--resume_from_checkpoint auto`` via ``dear_train.checkpoints``; the DeepSpeed-on-CPU shim; the output folder
via ``dear_train.artifacts`` (tokenizer, ``dear_training.json`` with ``task: "pointwise"``) plus the LoRA adapter
with its score head and ``pointwise_format.json``.

    dear distill --config configs/train/llama31_8b_pointwise_distill.yaml --dataset_path PW --output_dir OUT
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m dear_train.distill --config ...
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dear_train.distill_config import DistillArguments

logger = logging.getLogger(__name__)


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


def ranking_eval_callback(held_out: Any, *, output_dir: str, pair_format: Any, batch_size: int) -> Any:
    """The Trainer callback that reranks a held-out set with the live student at every evaluation and
    appends ``{"step", "dataset", "metrics", "valid_window_share"}`` to ``ranking_eval.jsonl`` (the listwise
    callback's file and record; a pointwise ranking is always a valid permutation, so the share is 1.0)."""
    from transformers import TrainerCallback

    class PointwiseRankingEvalCallback(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None
            self.history: list[dict[str, Any]] = []

        def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):  # noqa: ANN001
            if model is None or processing_class is None:
                return control
            from dear_train.ranking_eval import publish_ranking_eval
            from inference.grad_mode import evaluating
            from inference.metrics import evaluate
            from inference.pointwise import PointwiseReranker

            with evaluating(model):
                ranker = PointwiseReranker(model, processing_class, pair_format=pair_format, batch_size=batch_size)
                results = ranker.rerank_batch(list(held_out.requests))
            scores = evaluate({r.qid: r.ranked() for r in results}, held_out.qrels, metrics=("ndcg@10",))
            record = {"step": int(state.global_step), "dataset": held_out.name,
                      "metrics": {k: float(v) for k, v in scores.items()}, "valid_window_share": 1.0}
            publish_ranking_eval(record, state=state, output_dir=output_dir, trainer=self.trainer,
                                 history=self.history, log_share=False)
            return control

    return PointwiseRankingEvalCallback()


def validate(dargs: DistillArguments, margs: Any) -> None:
    """Config checks that need no model or data; each error names the fix."""
    from dear_train.config import ConfigError
    from dear_train.distill_losses import RANK_LOSSES

    if not dargs.dataset_path:
        raise ConfigError("missing dataset path",
                          fix="pass --dataset_path DIR (the folder `dear prep pointwise --out DIR` wrote)")
    if not margs.model_name_or_path:
        raise ConfigError("missing base model", fix="set model_name_or_path (a Llama base, or the tiny model)")
    if dargs.rank_loss not in RANK_LOSSES:
        raise ConfigError(f"rank_loss {dargs.rank_loss!r} is unknown", fix=f"use one of {list(RANK_LOSSES)}")
    if (dargs.ranking_eval_data is None) != (dargs.ranking_eval_qrels is None):
        raise ConfigError("ranking evaluation needs both ranking_eval_data and ranking_eval_qrels",
                          fix="set both, or neither")
    if not 0.0 <= dargs.alpha <= 1.0 or dargs.temperature <= 0:
        raise ConfigError(f"alpha={dargs.alpha}, temperature={dargs.temperature}",
                          fix="alpha in [0, 1] (DeAR: 0.1) and temperature > 0 (DeAR: 2)")


def train_distill(dargs: DistillArguments, targs: Any, margs: Any) -> Any:
    """Train the student and write the output folder; returns the trainer."""
    from transformers import set_seed

    from data_prep.pointwise import read_groups
    from data_prep.pointwise_format import PairFormat, pools_on_last_real_token, save_pair_format
    from dear_train.artifacts import finalize_output, resolved_config
    from dear_train.checkpoints import check_resume_settings, resolve_resume, trained_settings
    from dear_train.config import resolve_model_dtype
    from dear_train.pointwise_student import GroupCollator, GroupDataset, build_student, file_fingerprint

    validate(dargs, margs)
    train_path, eval_path = _dataset_files(dargs.dataset_path, dargs.eval_dataset_path)
    groups = read_groups(train_path)
    if not groups:
        from data_prep.schema import DataError

        raise DataError("the training file holds no groups", path=str(train_path), reason="no_records",
                        fix="rebuild it with `dear prep pointwise` (its report.json says why queries were dropped)")
    if dargs.max_train_groups:
        groups = groups[: dargs.max_train_groups]
    train_ds = GroupDataset(groups, dargs.group_size, str(train_path))
    eval_ds = None
    if eval_path is not None and str(getattr(targs.eval_strategy, "value", targs.eval_strategy)) != "no":
        eval_ds = GroupDataset(read_groups(eval_path), train_ds.group_size, str(eval_path))

    resolved = resolved_config(dargs, margs, targs)
    fingerprint = file_fingerprint(train_path)
    # resuming continues the same training: checked (and a fresh start recorded) before any model loads
    resume = resolve_resume(targs.resume_from_checkpoint, targs.output_dir,
                            require_optimizer=not targs.save_only_model)
    check_resume_settings(targs.output_dir, resume,
                          trained_settings({**resolved, "dataset_fingerprint": fingerprint}),
                          write=int(os.environ.get("RANK", "0")) == 0)
    set_seed(targs.seed)  # the student's fresh score head is reproducible
    model_dtype = resolve_model_dtype(margs.dtype, bf16=bool(targs.bf16), fp16=bool(targs.fp16))
    quant = None
    if margs.load_in_4bit or margs.load_in_8bit:
        from trl import get_quantization_config

        quant = get_quantization_config(margs)
    model, tokenizer = build_student(
        margs.model_name_or_path, dtype=model_dtype, use_peft=margs.use_peft, lora_r=margs.lora_r,
        lora_alpha=margs.lora_alpha, lora_dropout=margs.lora_dropout,
        lora_target_modules=margs.lora_target_modules, lora_modules_to_save=margs.lora_modules_to_save,
        quantization_config=quant, attn_implementation=margs.attn_implementation,
        trust_remote_code=bool(getattr(margs, "trust_remote_code", False)),
        gradient_checkpointing=targs.gradient_checkpointing)
    fmt = PairFormat(q_max_len=dargs.q_max_len, p_max_len=dargs.p_max_len)
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config

    callbacks = []
    if dargs.ranking_eval_data:
        from dear_train.ranking_eval import load_held_out

        if str(getattr(targs.eval_strategy, "value", targs.eval_strategy)) == "no":
            from dear_train.config import ConfigError

            raise ConfigError("ranking evaluation is set but eval_strategy is 'no'",
                              fix="set eval_strategy: steps and eval_steps: N")
        held = load_held_out(dargs.ranking_eval_data, dargs.ranking_eval_qrels, name=dargs.ranking_eval_name,
                             num_queries=dargs.ranking_eval_queries, top_k=dargs.ranking_eval_top_k)
        callbacks.append(ranking_eval_callback(held, output_dir=targs.output_dir, pair_format=fmt,
                                               batch_size=dargs.ranking_eval_batch_size))
        if eval_ds is None:  # the Trainer calls on_evaluate only when it has an eval set
            eval_ds = GroupDataset(groups[:4], train_ds.group_size, str(train_path))
    elif eval_ds is None and str(getattr(targs.eval_strategy, "value", targs.eval_strategy)) != "no":
        # no eval groups (`dear prep pointwise` without --eval-queries): no evaluation, not a Trainer crash
        from transformers.trainer_utils import IntervalStrategy

        logger.warning("no eval groups beside %s: training without loss evaluation", train_path)
        targs.eval_strategy = IntervalStrategy.NO
        targs.do_eval = False

    targs.remove_unused_columns = False
    targs.label_names = ["teacher_scores"]
    trainer = _make_trainer_class()(
        model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=GroupCollator(tokenizer, fmt, fixed_length=not pools_on_last_real_token(tokenizer, config)),
        processing_class=tokenizer, callbacks=callbacks,
        loss_kwargs={"kind": dargs.rank_loss, "alpha": dargs.alpha, "temperature": dargs.temperature,
                     "mix_weight": dargs.mix_weight})
    for cb in callbacks:
        cb.trainer = trainer
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(targs.output_dir)
    if trainer.is_world_process_zero():
        resolved = resolved_config(dargs, margs, targs)
        resolved["model_dtype"] = model_dtype
        finalize_output(targs.output_dir, tokenizer=tokenizer, base_model=margs.model_name_or_path, config=resolved,
                        dataset_path=train_path, fingerprint=fingerprint, task="pointwise",
                        copy_spec=False)
        save_pair_format(targs.output_dir, fmt)
        logger.info("student saved to %s", targs.output_dir)
    trainer.accelerator.wait_for_everyone()
    return trainer


def parse_args(argv: list[str] | None = None) -> tuple[DistillArguments, Any, Any]:
    """(DistillArguments, DistillTrainingArguments, DearModelConfig) from ``--config`` YAML + CLI flags."""
    from dear_train.config import parse_config
    from dear_train.distill_config import config_classes

    dargs, targs, margs = parse_config(config_classes(), argv, prog="dear distill")
    return dargs, targs, margs


def main(argv: list[str] | None = None) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dear_train.deepspeed_cpu import install_deepspeed_cpu_shim

    install_deepspeed_cpu_shim()
    from data_prep.cli_run import run_command

    # a ConfigError is a DataError whose message already names the flag (--max_steps) as the user typed it
    def body() -> int:
        train_distill(*parse_args(argv))
        return 0

    return run_command("dear distill", body)


if __name__ == "__main__":
    raise SystemExit(main())
