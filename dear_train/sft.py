"""`dear train`: LoRA SFT of a listwise reranker with TRL's SFTTrainer (one process, DDP or DeepSpeed).

    dear train --config configs/train/llama31_8b_listwise_lora.yaml --dataset_path PREP_OUT --output_dir OUT
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m dear_train.sft --config ...

Config = YAML + CLI overrides (``dear_train.config``): TRL's ``SFTConfig`` and ``ModelConfig`` plus
:class:`ListwiseScriptArguments`. Loss is on the completion only (prompt/completion records).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.schema import DataError
from dear_train.ranking_eval_options import (
    RankingEvalArguments,
    evaluation_setup,
    model_init_kwargs,
    ranking_eval_settings,
    validate_ranking_eval,
)

logger = logging.getLogger(__name__)


@dataclass
class ListwiseScriptArguments(RankingEvalArguments):
    """Options of `dear train` that are not TRL's."""

    dataset_path: str | None = field(
        default=None, metadata={"help": "Folder written by `dear prep listwise --out` (dataset/, prompt_spec.json)."})
    train_split: str = field(default="train", metadata={"help": "Training split name."})
    eval_split: str = field(default="eval", metadata={"help": "Eval split name (loss eval; '' for none)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N eval records."})
    check_lengths: bool = field(
        default=True, metadata={"help": "Fail when an example is longer than max_length (it would lose its target)."})
    qlora: bool = field(
        default=False, metadata={"help": "QLoRA: 4-bit nf4 base (double quant) via bitsandbytes; adapters train in "
                                         "the compute dtype."})
    first_token_loss_weight: float = field(
        default=0.0, metadata={"help": "FIRST objective: LM loss + L * weighted RankNet over the first-id logits "
                                       "(FIRST uses 10); 0 trains the LM loss only."})


def config_classes() -> tuple[type, ...]:
    from dear_train.config import DearModelConfig, DearSFTConfig

    return (ListwiseScriptArguments, DearSFTConfig, DearModelConfig)


def validate(script: ListwiseScriptArguments, training_args: Any, model_args: Any) -> None:
    """Config checks that need no model or data; each error names the fix."""
    from dear_train.config import ConfigError

    if not script.dataset_path:
        raise ConfigError("missing dataset path",
                          fix="pass --dataset_path DIR (the folder `dear prep listwise --out DIR` wrote)")
    if not Path(script.dataset_path).is_dir():
        raise ConfigError("dataset folder not found", path=script.dataset_path,
                          fix="pass --dataset_path DIR (the folder `dear prep listwise --out DIR` wrote)")
    if not model_args.model_name_or_path:
        raise ConfigError("missing base model", fix="set model_name_or_path (a Hub id or a local folder)")
    if not model_args.use_peft:
        raise ConfigError("use_peft is false", fix="`dear train` trains LoRA adapters; set use_peft: true")
    validate_ranking_eval(script, training_args)
    if script.first_token_loss_weight < 0:
        raise ConfigError(f"first_token_loss_weight must be >= 0, got {script.first_token_loss_weight}",
                          fix="0 for the LM loss only, 10 for FIRST's objective")
    if script.qlora and (model_args.load_in_8bit):
        raise ConfigError("qlora and load_in_8bit are both set", fix="use one of them")


def _setup_liger(training_args: Any) -> None:
    """Liger kernels only when asked for, installed, and on a GPU; otherwise a warning and off."""
    if not getattr(training_args, "use_liger_kernel", False):
        return
    import importlib.util

    from dear_train.config import cuda_available

    if not cuda_available() or importlib.util.find_spec("liger_kernel") is None:
        logger.warning("use_liger_kernel needs a CUDA GPU and `pip install liger-kernel`; continuing without it")
        training_args.use_liger_kernel = False


def train_listwise(
    training_args: Any,
    *,
    model_name_or_path: str,
    dataset_path: str,
    peft_config: Any,
    model_dtype: str,
    quantization_config: Any = None,
    train_split: str = "train",
    eval_split: str | None = "eval",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    check_lengths: bool = True,
    ranking_eval: dict[str, Any] | None = None,
    model_revision: str = "main",
    attn_implementation: str | None = None,
    resolved: dict[str, Any] | None = None,
    first_token_loss_weight: float = 0.0,
) -> Any:
    """Train a LoRA adapter on a prep folder and write the output folder; returns the trainer."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from dear_train.artifacts import dataset_fingerprint, finalize_output
    from dear_train.checkpoints import check_resume_settings, resolve_resume, trained_settings
    from dear_train.listwise_data import check_fits, load_prep_output, tokenize_special_text

    _setup_liger(training_args)
    splits, spec = load_prep_output(
        dataset_path, train_split=train_split, eval_split=eval_split or None,
        max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
    )
    fingerprint = dataset_fingerprint(splits)
    # resuming continues the same training: checked (and a fresh start recorded) before any model loads
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir,
                            require_optimizer=not training_args.save_only_model)
    check_resume_settings(training_args.output_dir, resume,
                          trained_settings({**(resolved or {}),  # the training split only: eval may change
                                            "dataset_fingerprint": dataset_fingerprint({train_split: splits[train_split]})}),
                          write=int(os.environ.get("RANK", "0")) == 0)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    if tokenizer.pad_token is None:
        pad = "<|finetune_right_pad_id|>" if "<|finetune_right_pad_id|>" in tokenizer.get_vocab() else None
        tokenizer.pad_token = pad or tokenizer.eos_token
    tokenizer.padding_side = "right"
    splits = {name: tokenize_special_text(ds, tokenizer) for name, ds in splits.items()}  # as inference tokenizes
    if check_lengths:
        for name, ds in splits.items():
            longest = check_fits(ds, tokenizer, training_args.max_length, split=name, path=dataset_path)
            logger.info("%s: %d examples, longest %d tokens (max_length %s)", name, len(ds), longest,
                        training_args.max_length)
    trainer_cls, first_token = SFTTrainer, None
    if first_token_loss_weight > 0:  # the FIRST objective (dear_train.first_token_loss); checked before any model loads
        from dear_train.first_token_loss import (
            FirstTokenObjective,
            check_first_token_examples,
            first_token_trainer_class,
        )

        id_tokens = check_first_token_examples(splits, tokenizer, spec, path=dataset_path)
        trainer_cls, first_token = first_token_trainer_class(), FirstTokenObjective(first_token_loss_weight, id_tokens)

    if training_args.padding_free and not training_args.packing and training_args.max_length is not None:
        # TRL does not truncate padding-free batches without packing; every example was just checked to fit.
        if not check_lengths:
            from dear_train.config import ConfigError

            raise ConfigError("padding_free without packing needs the length check (TRL cannot truncate there)",
                              fix="keep check_lengths: true, or set packing: true")
        training_args.max_length = None

    training_args.model_init_kwargs = model_init_kwargs(training_args, revision=model_revision, dtype=model_dtype,
                                                        attn_implementation=attn_implementation)
    eval_ds, callbacks, rank_cb = evaluation_setup(training_args, splits, eval_split=eval_split,
                                                   train_split=train_split, ranking_eval=ranking_eval, spec=spec,
                                                   dataset_path=dataset_path, what="loss", stand_in=4)

    from transformers import set_seed

    # SFTTrainer loads the model and draws the LoRA init before the Trainer seeds itself: seed first, so a
    # run is repeatable on a given machine (the quickstart's figures depend on it).
    set_seed(training_args.seed)
    trainer = trainer_cls(
        model=model_name_or_path,
        args=training_args,
        train_dataset=splits[train_split],
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=quantization_config,
        callbacks=callbacks,
    )
    if first_token is not None:
        trainer.first_token = first_token
    if rank_cb is not None:
        rank_cb.trainer = trainer
    if trainer.is_world_process_zero():
        trainable, total = trainer.model.get_nb_trainable_parameters()
        logger.info("trainable parameters: %d of %d (%.3f%%)", trainable, total, 100 * trainable / max(total, 1))
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        config = dict(resolved or {})
        finalize_output(training_args.output_dir, tokenizer=tokenizer, base_model=model_name_or_path,
                        config=config, dataset_path=dataset_path, fingerprint=fingerprint, task="listwise")
    trainer.accelerator.wait_for_everyone()
    return trainer


def run(script: ListwiseScriptArguments, training_args: Any, model_args: Any) -> Any:
    """From parsed config objects to flat arguments of :func:`train_listwise`."""
    from trl import get_peft_config

    from dear_train.artifacts import resolved_config
    from dear_train.config import quantization_for, resolve_model_dtype

    validate(script, training_args, model_args)
    model_dtype = resolve_model_dtype(model_args.dtype, bf16=bool(training_args.bf16), fp16=bool(training_args.fp16))
    quantization_config = quantization_for(model_args, qlora=script.qlora, model_dtype=model_dtype)
    ranking_eval = ranking_eval_settings(script)
    resolved = resolved_config(script, model_args, training_args)
    resolved["model_dtype"] = model_dtype
    return train_listwise(
        training_args,
        model_name_or_path=model_args.model_name_or_path,
        dataset_path=script.dataset_path,
        peft_config=get_peft_config(model_args),
        model_dtype=model_dtype,
        quantization_config=quantization_config,
        train_split=script.train_split,
        eval_split=script.eval_split or None,
        max_train_samples=script.max_train_samples,
        max_eval_samples=script.max_eval_samples,
        check_lengths=script.check_lengths,
        ranking_eval=ranking_eval,
        model_revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        resolved=resolved,
        first_token_loss_weight=script.first_token_loss_weight,
    )


METHODS = ("sft", "grpo")


def split_method(argv: list[str]) -> tuple[str, list[str]]:
    """(``--method`` value, the other arguments): `dear train --method grpo` hands over to dear_train.grpo."""
    args = list(argv)
    for i, a in enumerate(args):
        if a == "--method" or a.startswith("--method="):
            value = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            del args[i:i + (1 if "=" in a else 2)]
            return value, args
    return "sft", args


def main(argv: list[str] | None = None) -> int:
    from data_prep.cli_run import run_command

    return run_command("dear train", lambda: _main(list(sys.argv[1:] if argv is None else argv)))


def _main(argv: list[str]) -> int:
    method, argv = split_method(argv)
    if method not in METHODS:
        raise DataError(f"--method must be one of {', '.join(METHODS)}, got {method!r}",
                        fix="--method sft (supervised, the DeAR recipe) or --method grpo (ranking rewards)")
    if method == "grpo":
        from dear_train.grpo.train import main as grpo_main

        return grpo_main(argv)
    if "-h" in argv or "--help" in argv:
        print("dear train [--method sft|grpo] ...: sft (default) is below; `dear train --method grpo --help` lists "
              "GRPO's keys\n")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if int(os.environ.get("RANK", "0")) != 0:  # one log, from rank 0; other ranks report warnings only
        logging.getLogger().setLevel(logging.WARNING)
    from dear_train.deepspeed_cpu import install_deepspeed_cpu_shim

    install_deepspeed_cpu_shim()
    from dear_train.config import parse_config

    run(*parse_config(config_classes(), argv, prog="dear train"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
