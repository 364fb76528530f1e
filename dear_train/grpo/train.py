"""`dear train --method grpo`: GRPO of a listwise LoRA reranker with TRL's GRPOTrainer (one process, DDP, DeepSpeed).

    dear train --method grpo --config configs/train/llama31_8b_listwise_grpo.yaml --dataset_path PREP_OUT \\
        --sft_adapter SFT_OUT --output_dir OUT
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m dear_train.grpo --config ...
    torchrun --nproc_per_node 2 -m dear_train.grpo --config ... --use_cpu true      # CPU smoke run over gloo

Same prep folder, prompt spec, launchers, checkpoints, ranking eval and output folder as SFT (dear_train.sft); the
rewards are dear_train.grpo.rewards (ranking = nDCG@k of the parsed answer, format = an unrepaired permutation).
From the base model with a new LoRA (the DeAR shape), or continuing an SFT adapter (``sft_adapter``, loaded
trainable). The output folder is an adapter folder like SFT's, so `dear rerank`, `dear serve` and `dear export`
take it as they take an SFT adapter.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def setup_generation(training_args: Any) -> None:
    """TRL's vLLM generation where it can run (a CUDA GPU and ``vllm`` installed); HF generation otherwise, with a
    warning, so the same recipe runs on a machine without vLLM (and on CPU for a smoke run)."""
    if not getattr(training_args, "use_vllm", False):
        return
    import importlib.util

    from dear_train.config import cuda_available

    if not cuda_available() or importlib.util.find_spec("vllm") is None:
        logger.warning("use_vllm needs a CUDA GPU and `pip install vllm`; generating with transformers instead")
        training_args.use_vllm = False


def _tokenizer(model_name_or_path: str, revision: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=revision,
                                              trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # the same choice as SFT (dear_train.sft)
        pad = "<|finetune_right_pad_id|>" if "<|finetune_right_pad_id|>" in tokenizer.get_vocab() else None
        tokenizer.pad_token = pad or tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only generation
    return tokenizer


def _continued_adapter(model_name_or_path: str, sft_adapter: str, init_kwargs: dict[str, Any],
                       quantization_config: Any) -> Any:
    """The base model with the SFT adapter loaded trainable (its LoRA shape, its weights)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    kwargs = dict(init_kwargs)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    base = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    return PeftModel.from_pretrained(base, sft_adapter, is_trainable=True)


def train_grpo(
    training_args: Any,
    *,
    model_name_or_path: str,
    dataset_path: str,
    peft_config: Any,
    model_dtype: str,
    sft_adapter: str | None = None,
    quantization_config: Any = None,
    train_split: str = "train",
    eval_split: str | None = "eval",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_prompt_length: int | None = None,
    ranking_reward_k: int = 10,
    length_reward_tokens: int | None = None,
    ranking_eval: dict[str, Any] | None = None,
    model_revision: str = "main",
    attn_implementation: str | None = None,
    resolved: dict[str, Any] | None = None,
) -> Any:
    """Train a LoRA adapter with GRPO on a prep folder and write the output folder; returns the trainer."""
    from transformers import set_seed
    from trl import GRPOTrainer

    from dear_train.artifacts import dataset_fingerprint, finalize_output
    from dear_train.checkpoints import (
        check_resume_settings,
        record_run_settings,
        resolve_resume,
        trained_settings,
    )
    from dear_train.grpo.data import check_adapter_spec, check_prompt_lengths, load_grpo_splits
    from dear_train.grpo.rewards import reward_functions, reward_names
    from dear_train.ranking_eval_options import evaluation_setup, model_init_kwargs

    setup_generation(training_args)
    splits, spec = load_grpo_splits(dataset_path, train_split=train_split, eval_split=eval_split or None,
                                    max_train_samples=max_train_samples, max_eval_samples=max_eval_samples)
    if sft_adapter is not None:
        check_adapter_spec(sft_adapter, spec, dataset_path=dataset_path)
    fingerprint = dataset_fingerprint(splits)
    # resuming continues the same training (as SFT): a resume with other settings is refused here, before any
    # model loads; a fresh start is recorded below, once the checks that write nothing have passed
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir,
                            require_optimizer=not training_args.save_only_model)
    settings = trained_settings({**(resolved or {}), "model_name_or_path": model_name_or_path, "sft_adapter": sft_adapter,
                                 "method": "grpo",  # and the training split only: the eval split may change
                                 "dataset_fingerprint": dataset_fingerprint({train_split: splits[train_split]})})
    check_resume_settings(training_args.output_dir, resume, settings, write=False)
    tokenizer = _tokenizer(model_name_or_path, model_revision, training_args.trust_remote_code)
    if max_prompt_length is not None:
        for name, ds in splits.items():
            longest = check_prompt_lengths(ds, tokenizer, max_prompt_length, split=name, path=dataset_path)
            logger.info("%s: %d prompts, longest %d tokens (max_prompt_length %d)", name, len(ds), longest,
                        max_prompt_length)
    funcs = reward_functions(spec, k=ranking_reward_k, length_target_tokens=length_reward_tokens)
    if training_args.reward_weights is not None and len(training_args.reward_weights) != len(funcs):
        from dear_train.config import ConfigError

        raise ConfigError(f"reward_weights has {len(training_args.reward_weights)} values for {len(funcs)} rewards "
                          f"({', '.join(reward_names(funcs))})", fix=f"give {len(funcs)} weights in that order")
    if resume is None and int(os.environ.get("RANK", "0")) == 0:  # every check passed: record the fresh start
        record_run_settings(training_args.output_dir, settings)

    init_kwargs = model_init_kwargs(training_args, revision=model_revision, dtype=model_dtype,
                                    attn_implementation=attn_implementation)
    eval_ds, callbacks, rank_cb = evaluation_setup(training_args, splits, eval_split=eval_split,
                                                   train_split=train_split, ranking_eval=ranking_eval, spec=spec,
                                                   dataset_path=dataset_path, what="reward", stand_in=2)

    # the LoRA init (new adapter) and the sampling draw from the seeded generators: seed before the model exists
    set_seed(training_args.seed)
    if sft_adapter is not None:
        model: Any = _continued_adapter(model_name_or_path, sft_adapter, init_kwargs, quantization_config)
        peft_config = quantization_config = None
    else:
        model = model_name_or_path
        training_args.model_init_kwargs = init_kwargs
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=training_args,
        train_dataset=splits[train_split],
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=quantization_config,
        callbacks=callbacks,
    )
    if rank_cb is not None:
        rank_cb.trainer = trainer
    if trainer.is_world_process_zero():
        trainable, total = trainer.model.get_nb_trainable_parameters()
        logger.info("trainable parameters: %d of %d (%.3f%%); rewards: %s", trainable, total,
                    100 * trainable / max(total, 1), ", ".join(reward_names(funcs)))
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        # continuing an adapter with beta > 0, TRL keeps a frozen copy named "ref" as the KL reference; PEFT saves it
        # under ref/. It equals the SFT adapter: the output is the trained adapter alone, like an SFT output folder.
        shutil.rmtree(Path(training_args.output_dir) / "ref", ignore_errors=True)
        config = dict(resolved or {})
        finalize_output(training_args.output_dir, tokenizer=tokenizer, base_model=model_name_or_path,
                        config=config, dataset_path=dataset_path, fingerprint=fingerprint, task="listwise",
                        extra={"method": "grpo", "init_adapter": sft_adapter,
                               "rewards": reward_names(funcs), "grades": _grades_note(dataset_path)})
    trainer.accelerator.wait_for_everyone()
    return trainer


def _grades_note(dataset_path: str) -> Any:
    """How the prep folder made its grades (report.json's ``grades``), recorded with the adapter."""
    import json

    report = Path(dataset_path) / "report.json"
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("grades")
    except (OSError, ValueError, AttributeError):
        return None


def run(script: Any, training_args: Any, model_args: Any) -> Any:
    """From parsed config objects to flat arguments of :func:`train_grpo`."""
    from trl import get_peft_config

    from dear_train.artifacts import resolved_config
    from dear_train.config import quantization_for, resolve_model_dtype
    from dear_train.grpo.config import validate
    from dear_train.grpo.data import adapter_base_model
    from dear_train.ranking_eval_options import ranking_eval_settings

    validate(script, training_args, model_args)
    base = model_args.model_name_or_path
    if script.sft_adapter is not None:
        named = adapter_base_model(script.sft_adapter)
        if not base:
            base = named
        elif base != named:
            logger.warning("model_name_or_path %s differs from the base model the adapter names (%s); using %s",
                           base, named, base)
    model_dtype = resolve_model_dtype(model_args.dtype, bf16=bool(training_args.bf16), fp16=bool(training_args.fp16))
    quantization_config = quantization_for(model_args, qlora=script.qlora, model_dtype=model_dtype)
    resolved = resolved_config(script, model_args, training_args)
    resolved["model_dtype"] = model_dtype
    resolved["method"] = "grpo"
    return train_grpo(
        training_args,
        model_name_or_path=base,
        dataset_path=script.dataset_path,
        peft_config=get_peft_config(model_args) if script.sft_adapter is None else None,
        model_dtype=model_dtype,
        sft_adapter=script.sft_adapter,
        quantization_config=quantization_config,
        train_split=script.train_split,
        eval_split=script.eval_split or None,
        max_train_samples=script.max_train_samples,
        max_eval_samples=script.max_eval_samples,
        max_prompt_length=script.max_prompt_length,
        ranking_reward_k=script.ranking_reward_k,
        length_reward_tokens=script.length_reward_tokens,
        ranking_eval=ranking_eval_settings(script),
        model_revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        resolved=resolved,
    )


PROG = "dear train --method grpo"


def main(argv: list[str] | None = None) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if int(os.environ.get("RANK", "0")) != 0:  # one log, from rank 0; other ranks report warnings only
        logging.getLogger().setLevel(logging.WARNING)
    from dear_train.deepspeed_cpu import install_deepspeed_cpu_shim

    install_deepspeed_cpu_shim()
    from data_prep.cli_run import run_command
    from dear_train.config import parse_config
    from dear_train.grpo.config import config_classes

    def body() -> int:
        run(*parse_config(config_classes(), argv, prog=PROG))
        return 0

    return run_command(PROG, body)
