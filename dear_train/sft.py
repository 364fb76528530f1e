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

logger = logging.getLogger(__name__)


@dataclass
class ListwiseScriptArguments:
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
    ranking_eval_data: str | None = field(
        default=None, metadata={"help": "RankGPT JSON of held-out queries to rerank at every evaluation."})
    ranking_eval_qrels: str | None = field(default=None, metadata={"help": "TREC qrels for ranking_eval_data."})
    ranking_eval_name: str | None = field(default=None, metadata={"help": "Name logged for the held-out set."})
    ranking_eval_queries: int | None = field(default=None, metadata={"help": "Use the first N judged queries."})
    ranking_eval_top_k: int = field(default=20, metadata={"help": "Candidates reranked per query."})
    ranking_eval_window: int = field(default=20, metadata={"help": "Sliding window size."})
    ranking_eval_stride: int = field(default=10, metadata={"help": "Sliding window stride."})
    ranking_eval_batch_size: int = field(default=4, metadata={"help": "Windows generated at once."})
    ranking_eval_max_new_tokens: int | None = field(default=None, metadata={"help": "Generation budget per window."})
    ranking_eval_scoring: str = field(
        default="generate", metadata={"help": "How the ranking eval orders a window: generate (decode the ranking) "
                                               "or first-token (one forward, ids by first-id logit).",
                                      "choices": ["generate", "first-token"]})
    ranking_eval_strategy: str = field(
        default="sliding", metadata={"help": "How the ranking eval turns windows into a ranking: sliding, single, "
                                              "tdpart or setwise (docs/inference.md).",
                                      "choices": ["sliding", "single", "tdpart", "setwise"]})
    ranking_eval_depth: int = field(default=10, metadata={"help": "tdpart's pivot depth / setwise's sorted head."})
    ranking_eval_set_size: int = field(default=3, metadata={"help": "setwise: passages compared at once."})
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
    if (script.ranking_eval_data is None) != (script.ranking_eval_qrels is None):
        raise ConfigError("ranking evaluation needs both ranking_eval_data and ranking_eval_qrels",
                          fix="set both, or neither")
    if script.ranking_eval_data is not None:
        if str(training_args.eval_strategy) in ("no", "IntervalStrategy.NO"):
            raise ConfigError("ranking evaluation is set but eval_strategy is 'no'",
                              fix="set eval_strategy: steps and eval_steps: N")
        if script.ranking_eval_window < 2 or script.ranking_eval_stride < 1:
            raise ConfigError("ranking_eval_window must be >= 2 and ranking_eval_stride >= 1",
                              fix="e.g. window 20, stride 10")
        if script.ranking_eval_window > script.ranking_eval_top_k:
            raise ConfigError(f"ranking_eval_window ({script.ranking_eval_window}) is larger than the data it "
                              f"ranks (ranking_eval_top_k = {script.ranking_eval_top_k} candidates per query)",
                              fix=f"set ranking_eval_window <= {script.ranking_eval_top_k} or raise ranking_eval_top_k")
        from inference.ranking import make_strategy

        try:  # the strategy's own checks of its knobs, with the config's names
            make_strategy(script.ranking_eval_strategy, window=script.ranking_eval_window,
                          stride=min(script.ranking_eval_stride, script.ranking_eval_window),
                          depth=script.ranking_eval_depth, set_size=script.ranking_eval_set_size)
        except ValueError as err:
            raise ConfigError(f"ranking_eval_{err}", fix="see docs/training.md (ranking evaluation)") from None
        if script.ranking_eval_stride >= script.ranking_eval_window:
            raise ConfigError(f"ranking_eval_stride ({script.ranking_eval_stride}) must be smaller than "
                              f"ranking_eval_window ({script.ranking_eval_window})",
                              fix="use stride = window / 2 (DeAR: 20 / 10)")
    if script.first_token_loss_weight < 0:
        raise ConfigError(f"first_token_loss_weight must be >= 0, got {script.first_token_loss_weight}",
                          fix="0 for the LM loss only, 10 for FIRST's objective")
    if script.qlora and (model_args.load_in_8bit):
        raise ConfigError("qlora and load_in_8bit are both set", fix="use one of them")


def _eval_strategy_on(training_args: Any) -> bool:
    return str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"


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

    init_kwargs = dict(training_args.model_init_kwargs or {})
    init_kwargs.setdefault("revision", model_revision)
    init_kwargs.setdefault("dtype", model_dtype)
    if attn_implementation:
        init_kwargs.setdefault("attn_implementation", attn_implementation)
    training_args.model_init_kwargs = init_kwargs

    eval_ds = splits.get(eval_split) if eval_split and _eval_strategy_on(training_args) else None
    if eval_ds is None and _eval_strategy_on(training_args) and not ranking_eval:
        # a missing or empty eval split (`dear prep --eval-fraction 0`) means no evaluation, not a crash
        # inside the Trainer ("eval_strategy ... but you didn't pass an eval_dataset")
        from transformers.trainer_utils import IntervalStrategy

        logger.warning("no %r split with records in %s: training without loss evaluation", eval_split,
                       dataset_path)
        training_args.eval_strategy = IntervalStrategy.NO
        training_args.do_eval = False
    callbacks = []
    rank_cb = None
    if ranking_eval:
        from dear_train.ranking_eval import RankingEvalCallback, load_held_out

        held = load_held_out(ranking_eval["data"], ranking_eval["qrels"], name=ranking_eval.get("name"),
                             num_queries=ranking_eval.get("queries"), top_k=ranking_eval["top_k"])
        rank_cb = RankingEvalCallback(
            held, spec, output_dir=training_args.output_dir, window=ranking_eval["window"],
            stride=ranking_eval["stride"], batch_size=ranking_eval["batch_size"],
            max_new_tokens=ranking_eval.get("max_new_tokens"), scoring=ranking_eval.get("scoring", "generate"),
            strategy=ranking_eval.get("strategy", "sliding"), depth=ranking_eval.get("depth", 10),
            set_size=ranking_eval.get("set_size", 3),
        )
        callbacks.append(rank_cb)
        if eval_ds is None:  # the Trainer only calls on_evaluate when there is an eval set
            eval_ds = splits[train_split].select(range(min(4, len(splits[train_split]))))

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
    from dear_train.config import resolve_model_dtype

    validate(script, training_args, model_args)
    model_dtype = resolve_model_dtype(model_args.dtype, bf16=bool(training_args.bf16), fp16=bool(training_args.fp16))
    quantization_config = None
    if script.qlora or model_args.load_in_4bit or model_args.load_in_8bit:
        import torch
        from transformers import BitsAndBytesConfig

        if model_args.load_in_8bit:
            quantization_config = BitsAndBytesConfig(load_in_8bit=True)
        else:
            quantization_config = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=model_args.bnb_4bit_quant_type if model_args.load_in_4bit else "nf4",
                bnb_4bit_use_double_quant=True if script.qlora else model_args.use_bnb_nested_quant,
                bnb_4bit_compute_dtype=getattr(torch, model_dtype),
            )
    ranking_eval = None
    if script.ranking_eval_data:
        ranking_eval = {
            "data": script.ranking_eval_data, "qrels": script.ranking_eval_qrels, "name": script.ranking_eval_name,
            "queries": script.ranking_eval_queries, "top_k": script.ranking_eval_top_k,
            "window": script.ranking_eval_window, "stride": script.ranking_eval_stride,
            "batch_size": script.ranking_eval_batch_size, "max_new_tokens": script.ranking_eval_max_new_tokens,
            "scoring": script.ranking_eval_scoring, "strategy": script.ranking_eval_strategy,
            "depth": script.ranking_eval_depth, "set_size": script.ranking_eval_set_size,
        }
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
