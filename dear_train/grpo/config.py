"""The options of `dear train --method grpo`: TRL's ``GRPOConfig`` (machine-aware precision), the DeAR LoRA
``ModelConfig`` and :class:`GRPOScriptArguments`, parsed by ``dear_train.config.parse_config`` (YAML + CLI, unknown
keys are errors). Imports TRL at import time; commands import it inside ``main()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from trl import GRPOConfig

from dear_train.config import AutoPrecisionMixin, ConfigError, Range
from dear_train.ranking_eval_options import RankingEvalArguments, validate_ranking_eval


@dataclass
class DearGRPOConfig(AutoPrecisionMixin, GRPOConfig):
    """TRL's ``GRPOConfig`` with machine-aware precision (all fields and defaults otherwise TRL's).

    ``float_ranges``: the range of each GRPO float option (as ``dear_train.config.FLOAT_RANGES``, which
    ``parse_config`` checks before any model loads); TRL checks none of them, and ``--beta nan`` or
    ``--temperature inf`` would sample or train garbage without a word. Every other float is checked finite.
    """

    float_ranges: ClassVar[dict[str, Range]] = {
        "temperature": (0.0, False, None, False, "the sampling temperature, e.g. 1.0"),
        "top_p": (0.0, False, 1.0, True, "e.g. 1.0 (no nucleus cut) or 0.95"),
        "min_p": (0.0, True, 1.0, True, "leave it out, or e.g. 0.05"),
        "repetition_penalty": (0.0, False, None, False, "e.g. 1.0 (no penalty)"),
        "beta": (0.0, True, None, False, "0 for no KL term (TRL's default), e.g. 0.04 with a reference model"),
        "epsilon": (0.0, False, 1.0, True, "the clip range, e.g. 0.2"),
        "epsilon_high": (0.0, False, None, False, "leave it out (= epsilon), or e.g. 0.28 (DAPO)"),
        "delta": (1.0, False, None, False, "leave it out, or a bound above 1 + epsilon (e.g. 4)"),
        "reward_weights": (0.0, True, None, False, "one weight >= 0 per reward, e.g. 1.0 0.2"),
        "sapo_temperature_neg": (0.0, False, None, False, "e.g. 1.05"),
        "sapo_temperature_pos": (0.0, False, None, False, "e.g. 1.0"),
        "ref_model_mixup_alpha": (0.0, True, 1.0, True, "a share in [0, 1], e.g. 0.6"),
        "top_entropy_quantile": (0.0, True, 1.0, True, "a share in [0, 1]: 1.0 keeps every token, 0.2 as published"),
        "entropy_coef": (0.0, True, None, False, "0 for no entropy bonus"),
        "entropy_coef_min": (0.0, True, None, False, "e.g. 0.0"),
        "entropy_coef_max": (0.0, True, None, False, "e.g. 1.0"),
        "entropy_coef_delta": (0.0, True, None, False, "e.g. 0.005"),
        "entropy_target": (0.0, True, None, False, "a mean per-token entropy in nats, e.g. 0.2"),
        "off_policy_mask_threshold": (0.0, False, None, False, "leave it out, or e.g. 0.5"),
        "vllm_importance_sampling_clip_max": (0.0, False, None, False, "e.g. 3.0"),
        "vllm_importance_sampling_clip_min": (0.0, True, None, False, "leave it out, or e.g. 0.5"),
        "vllm_importance_sampling_cap": (0.0, False, None, False, "leave it out (use the clip_max option)"),
        "vllm_gpu_memory_utilization": (0.0, False, 1.0, True, "a share of GPU memory, e.g. 0.3"),
        "vllm_server_timeout": (0.0, False, None, False, "seconds, e.g. 240"),
    }


@dataclass
class GRPOScriptArguments(RankingEvalArguments):
    """Options of `dear train --method grpo` that are not TRL's."""

    dataset_path: str | None = field(
        default=None, metadata={"help": "Folder written by `dear prep listwise --out` (dataset/ with grades, "
                                        "prompt_spec.json)."})
    train_split: str = field(default="train", metadata={"help": "Training split name."})
    eval_split: str = field(default="eval", metadata={"help": "Eval split name (eval rewards; '' for none)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N eval records."})
    sft_adapter: str | None = field(
        default=None, metadata={"help": "Continue this LoRA adapter (a `dear train` output folder), trainable; its "
                                        "LoRA shape is kept (lora_* are ignored). Default: a new LoRA on the base."})
    qlora: bool = field(
        default=False, metadata={"help": "QLoRA: 4-bit nf4 base (double quant) via bitsandbytes."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Refuse prompts longer than N tokens (TRL does not cut prompts; a cut prompt "
                                        "loses passages the reward ranks). Default: no check."})
    ranking_reward_k: int = field(default=10, metadata={"help": "ranking_reward is nDCG@k of the parsed order."})
    length_reward_tokens: int | None = field(
        default=None, metadata={"help": "Add length_reward (chain of thought): 1 up to N completion tokens, falling "
                                        "linearly to 0 at 2N. Default: no length reward."})


def config_classes() -> tuple[type, ...]:
    from dear_train.config import DearModelConfig

    return (GRPOScriptArguments, DearGRPOConfig, DearModelConfig)


def validate(script: GRPOScriptArguments, training_args: Any, model_args: Any) -> None:
    """Config checks that need no model or data; each error names the fix."""
    prep_fix = "pass --dataset_path DIR (the folder `dear prep listwise --out DIR` wrote)"
    if not script.dataset_path:
        raise ConfigError("missing dataset path", fix=prep_fix)
    if not Path(script.dataset_path).is_dir():
        raise ConfigError("dataset folder not found", path=script.dataset_path, fix=prep_fix)
    if script.sft_adapter is not None and not (Path(script.sft_adapter) / "adapter_config.json").is_file():
        raise ConfigError("sft_adapter is not a LoRA adapter folder (no adapter_config.json)",
                          path=script.sft_adapter, fix="pass the output folder of `dear train` (or leave it unset)")
    if not model_args.model_name_or_path and script.sft_adapter is None:
        raise ConfigError("missing base model", fix="set model_name_or_path (a Hub id or a local folder)")
    if not model_args.use_peft and script.sft_adapter is None:
        raise ConfigError("use_peft is false", fix="`dear train --method grpo` trains LoRA adapters; set use_peft: true")
    if script.ranking_reward_k < 1:
        raise ConfigError(f"ranking_reward_k must be >= 1, got {script.ranking_reward_k}", fix="e.g. 10 (nDCG@10)")
    if script.length_reward_tokens is not None and script.length_reward_tokens < 1:
        raise ConfigError(f"length_reward_tokens must be >= 1, got {script.length_reward_tokens}",
                          fix="a completion budget in tokens (e.g. 1024), or leave it unset")
    if script.max_prompt_length is not None and script.max_prompt_length < 1:
        raise ConfigError(f"max_prompt_length must be >= 1, got {script.max_prompt_length}",
                          fix="a prompt budget in tokens, or leave it unset")
    weights = getattr(training_args, "reward_weights", None)
    if weights is not None and not any(w > 0 for w in weights):
        raise ConfigError(f"--reward_weights {list(weights)} pay nothing: every group's rewards are equal and GRPO "
                          "trains nothing", fix="give at least one reward a weight above 0 (e.g. 1.0 for ranking)")
    if script.qlora and model_args.load_in_8bit:
        raise ConfigError("qlora and load_in_8bit are both set", fix="use one of them")
    validate_ranking_eval(script, training_args)
