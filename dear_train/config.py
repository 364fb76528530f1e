"""Config parsing shared by `dear train` and `dear distill`: YAML + CLI overrides through `trl.TrlParser`.

One mechanism for every training command:

* ``--config file.yaml`` gives defaults, CLI flags win (TRL's ``TrlParser``);
* an unknown key, in the YAML or on the command line, is a :class:`ConfigError` naming the key;
* precision is chosen for the machine: TRL's ``SFTConfig`` defaults ``bf16=True``, which raises on a host
  without a GPU, so on such a host bf16/fp16 are switched off (fp32) with a logged note instead
  (:func:`resolve_precision`, applied by :class:`AutoPrecisionMixin` before TRL validates the arguments).

This module imports TRL at import time (the dataclasses derive from TRL's); commands import it inside
``main()`` so that ``dear --help`` stays instant.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from trl import ModelConfig, SFTConfig, TrlParser

from data_prep.schema import DataError

logger = logging.getLogger(__name__)

# The DeAR listwise adapter's LoRA targets: every attention and MLP projection of a Llama block.
LLAMA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ConfigError(DataError):
    """A bad training configuration value; ``str()`` names the key/file and the fix."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_precision(args: Any) -> None:
    """Make ``args.bf16``/``args.fp16`` fit the machine, in place, before TrainingArguments validates them.

    * No CUDA device (and not ``use_cpu`` on purpose with bf16 autocast): bf16 and fp16 are turned off, so
      training runs in fp32; an explicit ``bf16: true`` in a GPU recipe is downgraded with a warning rather
      than failing, so the same YAML works for a CPU smoke run.
    * CUDA without bf16 support (pre-Ampere): bf16 left unset falls back to fp16.
    * Otherwise TRL's default (bf16 unless fp16 is set) stands.
    """
    bf16 = getattr(args, "bf16", None)
    fp16 = getattr(args, "fp16", False)
    if not cuda_available():
        if (bf16 or fp16) and not getattr(args, "use_cpu", False):
            if bf16:
                logger.warning("no CUDA device: bf16 requested but training in fp32 on CPU")
            if fp16:
                logger.warning("no CUDA device: fp16 requested but training in fp32 on CPU")
            args.bf16 = False
            args.fp16 = False
        elif bf16 is None:
            args.bf16 = False
        return
    import torch

    if bf16 is None and not fp16 and not torch.cuda.is_bf16_supported():
        logger.warning("this GPU has no bf16 support: training in fp16 mixed precision")
        args.bf16 = False
        args.fp16 = True


class AutoPrecisionMixin:
    """Put first in the bases of a ``TrainingArguments`` dataclass to run :func:`resolve_precision` first."""

    def __post_init__(self) -> None:
        resolve_precision(self)
        super().__post_init__()  # type: ignore[misc]


@dataclass
class DearSFTConfig(AutoPrecisionMixin, SFTConfig):
    """TRL's ``SFTConfig`` with machine-aware precision (all fields and defaults otherwise TRL's)."""


@dataclass
class DearModelConfig(ModelConfig):
    """TRL's ``ModelConfig`` with the DeAR listwise adapter as default (LoRA r=16/alpha=32/dropout=0.05 on
    every projection) and ``dtype="auto"`` (bf16 weights when training in bf16, else fp32)."""

    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (the DeAR recipe)."})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: list(LLAMA_LORA_TARGETS), metadata={"help": "LoRA target modules."}
    )
    dtype: str | None = field(
        default="auto",
        metadata={
            "help": "Base weights dtype: auto (bfloat16 when bf16 training, else float32), bfloat16, float16, float32.",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )


def resolve_model_dtype(dtype: str | None, *, bf16: bool, fp16: bool) -> str:
    """The dtype the base weights are loaded in: ``auto`` follows the training precision."""
    if dtype in (None, "auto"):
        return "bfloat16" if bf16 else "float16" if fp16 else "float32"
    return dtype


def _config_path(argv: Sequence[str]) -> str | None:
    args = list(argv)
    if "--config" in args:
        i = args.index("--config")
        return args[i + 1] if i + 1 < len(args) else None
    return None


def _known_keys(dataclass_types: Sequence[type]) -> set[str]:
    return {f.name for t in dataclass_types for f in fields(t)}


def _did_you_mean(keys: Sequence[str], known: set[str]) -> str:
    import difflib

    hints = []
    for k in keys:
        close = difflib.get_close_matches(str(k), known, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(hints)


def _load_yaml(path: str, known: set[str]) -> dict[str, Any]:
    """The config mapping, read BOM-tolerant as UTF-8 (TRL's own reader uses the locale's encoding);
    unknown keys are a ConfigError with a "did you mean"."""
    import yaml

    from data_prep.readers import read_text

    text = read_text(path, "config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"malformed YAML: {' '.join(str(err).split())}", path=path,
                          fix="fix the YAML syntax") from err
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping of key: value", path=path,
                          fix="write one `key: value` per line")
    unknown = sorted(str(k) for k in data if k != "env" and k not in known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {_did_you_mean(unknown, known)}", path=path,
                          fix="remove or rename them; `dear train --help` lists every key")
    env = data.pop("env", {}) or {}
    if not isinstance(env, dict):
        raise ConfigError("`env` must be a mapping of variable: value", path=path, fix="env: {WANDB_MODE: offline}")
    for key, value in env.items():
        os.environ[str(key)] = str(value)
    return data


def parse_config(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, *, prog: str | None = None
) -> tuple[Any, ...]:
    """Parse ``argv`` (``--config x.yaml`` plus ``--key value`` overrides) into ``dataclass_types``.

    Unknown keys, in the YAML or on the command line, raise :class:`ConfigError` naming them with a "did you
    mean"; abbreviated flags are refused (argparse would otherwise take ``--max_step`` as ``--max_steps``
    without a word); values the dataclasses reject raise too. ``--help`` exits through argparse as usual.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    known = _known_keys(dataclass_types)
    cfg = _config_path(args)
    if "--config" in args and cfg is None:
        raise ConfigError("--config needs a file path", fix="--config configs/train/tiny_cpu.yaml")
    parser = TrlParser(dataclass_types, prog=prog, allow_abbrev=False)
    if cfg is not None:
        config = _load_yaml(cfg, known)
        i = args.index("--config")
        del args[i:i + 2]
        parser.set_defaults_with_config(**config)
    # the values as parsed (YAML defaults, CLI flags), checked before the dataclasses see them: their own
    # checks let nan through and some crash on inf (int(inf) in TrainingArguments)
    values, _ = parser.parse_known_args(args)
    check_values(vars(values), config_path=cfg, ranges=float_ranges(dataclass_types))
    try:
        outputs = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except (ValueError, OverflowError) as err:  # TRL / TrainingArguments reject a value
        raise ConfigError(" ".join(str(err).split()), path=cfg, fix="correct the value named above") from err
    *parsed, remaining = outputs
    if remaining:
        flags = [s for s in remaining if s.startswith("-")]
        names = [f.lstrip("-").split("=", 1)[0] for f in flags]
        known_flags = known | {k.replace("_", "-") for k in known}
        what = _did_you_mean(["--" + n for n in names], {"--" + k for k in known_flags}) if flags \
            else repr(remaining)
        raise ConfigError(f"unknown argument(s) {what}", path=cfg,
                          fix=f"remove or rename them; `{prog or 'dear train'} --help` lists every key")
    for obj in parsed:
        keep_token_out(obj)
    check_paths(parsed, config_path=cfg)
    return tuple(parsed)


# the range of each float option of `dear train` / `dear distill` (bounds, whether each is included, the fix);
# a config class adds or overrides entries with a ``float_ranges`` class attribute (see :func:`float_ranges`)
Range = tuple[float | None, bool, float | None, bool, str]
FLOAT_RANGES: dict[str, Range] = {
    "learning_rate": (0.0, True, None, False, "e.g. 1e-4 (LoRA) or 2e-5"),
    "weight_decay": (0.0, True, None, False, "e.g. 0.0 or 0.01"),
    "adam_beta1": (0.0, True, 1.0, False, "e.g. 0.9"),
    "adam_beta2": (0.0, True, 1.0, False, "e.g. 0.999"),
    "adam_epsilon": (0.0, True, None, False, "e.g. 1e-8"),
    "max_grad_norm": (0.0, True, None, False, "e.g. 1.0 (0 for no clipping)"),
    "warmup_steps": (0.0, True, None, False, "a step count, or a share of the steps below 1 (e.g. 0.03)"),
    "num_train_epochs": (0.0, True, None, False, "e.g. 1 or 3"),
    "label_smoothing_factor": (0.0, True, 1.0, False, "0 for none, e.g. 0.1"),
    "neftune_noise_alpha": (0.0, True, None, False, "leave it out, or e.g. 5"),
    "logging_steps": (0.0, True, None, False, "a step count, or a share of the steps below 1"),
    "eval_steps": (0.0, True, None, False, "a step count, or a share of the steps below 1"),
    "save_steps": (0.0, True, None, False, "a step count, or a share of the steps below 1"),
    "eval_delay": (0.0, True, None, False, "0, or the steps/epochs to wait before the first evaluation"),
    "router_aux_loss_coef": (0.0, True, None, False, "leave it out, or e.g. 0.001"),
    "lora_dropout": (0.0, True, 1.0, False, "e.g. 0.05"),
    "first_token_loss_weight": (0.0, True, None, False, "0 for the LM loss only, 10 for FIRST's objective"),
    "alpha": (0.0, True, 1.0, True, "a share in [0, 1] (DeAR: 0.1)"),
    "temperature": (0.0, False, None, False, "a positive number (DeAR: 2)"),
    "mix_weight": (0.0, True, 1.0, True, "a share in [0, 1] (0.5 mixes equally)"),
}


def float_ranges(dataclass_types: Sequence[type]) -> dict[str, Range]:
    """:data:`FLOAT_RANGES` with each config class's own ``float_ranges`` over it: one table per command
    (GRPO's ``temperature`` samples completions; distillation's divides logits)."""
    ranges = dict(FLOAT_RANGES)
    for t in dataclass_types:
        ranges.update(getattr(t, "float_ranges", {}))
    return ranges


def check_values(values: dict[str, Any], *, config_path: str | None = None,
                 ranges: dict[str, Range] | None = None) -> None:
    """Every float option (and each number of a list option) is finite and in its range (``ranges``,
    default :data:`FLOAT_RANGES`), checked before any model or data loads: ``--first_token_loss_weight inf``
    trained an all-NaN adapter, ``nan`` silently nothing."""
    import math

    table = FLOAT_RANGES if ranges is None else ranges
    for name, given in values.items():
        each = " (each value)" if isinstance(given, (list, tuple)) else ""
        for value in given if each else [given]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            rule = table.get(name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{name} must be a finite number{each}, got {value}", path=config_path,
                                  fix=rule[4] if rule else "give a real number")
            if rule is None:
                continue
            low, low_in, high, high_in, fix = rule
            below = low is not None and (value < low or (value == low and not low_in))
            above = high is not None and (value > high or (value == high and not high_in))
            if below or above:
                lo = "" if low is None else ("[" if low_in else "(") + f"{low:g}"
                hi = "" if high is None else f"{high:g}" + ("]" if high_in else ")")
                where = f"in {lo}, {hi}" if low is not None and high is not None else (
                    f"{'>=' if low_in else '>'} {low:g}" if low is not None else f"{'<=' if high_in else '<'} {high:g}")
                raise ConfigError(f"--{name} must be {where}{each}, got {value}", path=config_path, fix=fix)


# paths a training command reads; --output_dir may be none of them, nor hold one (the trainer writes there)
INPUT_FIELDS = ("dataset_path", "eval_dataset_path", "ranking_eval_data", "ranking_eval_qrels", "sft_adapter")


def check_paths(parsed: Sequence[Any], *, config_path: str | None = None) -> None:
    """``--output_dir`` is not an input of the same training, nor a folder holding one (the trainer writes
    checkpoints, weights, tokenizer files and ``ranking_eval.jsonl`` there)."""
    from data_prep.cli_options import OptionError, check_outputs

    values: dict[str, Any] = {}
    for obj in parsed:
        values.update({f.name: getattr(obj, f.name) for f in fields(obj)})
    out = values.get("output_dir")
    if not out:
        return
    inputs: dict[str, Any] = {k: values.get(k) for k in INPUT_FIELDS if values.get(k)}
    model = values.get("model_name_or_path")
    if model and os.path.exists(model):  # a Hub id is no path
        inputs["model_name_or_path"] = model
    inputs["config"] = config_path
    try:
        check_outputs({"output_dir": out}, inputs, flags={k: f"--{k}" for k in (*inputs, "output_dir")})
    except OptionError as err:
        raise ConfigError(f"--{err.message}", path=config_path, fix=err.fix) from None


def keep_token_out(args: Any) -> None:
    """Move ``hub_token`` out of the arguments into this process's ``HF_TOKEN``, in place.

    The Trainer pickles its arguments into ``training_args.bin`` in every checkpoint and output folder, so a
    token left there is a secret written to disk in plain text. huggingface_hub reads ``HF_TOKEN`` whenever no
    token is passed, so pushing to the Hub works the same; nothing is written.
    """
    token = getattr(args, "hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = str(token)
        args.hub_token = None


def quantization_for(model_args: Any, *, qlora: bool, model_dtype: str) -> Any:
    """The bitsandbytes config the trainers load the base with: 8-bit, 4-bit as asked, or QLoRA's nf4 with
    double quantization in the compute dtype; None for full-precision weights."""
    if not (qlora or model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if model_args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.bnb_4bit_quant_type if model_args.load_in_4bit else "nf4",
        bnb_4bit_use_double_quant=True if qlora else model_args.use_bnb_nested_quant,
        bnb_4bit_compute_dtype=getattr(torch, model_dtype),
    )
