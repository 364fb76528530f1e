"""Resuming: ``--resume_from_checkpoint auto`` means the newest COMPLETE ``checkpoint-N`` in ``output_dir``.

A checkpoint is complete when its ``trainer_state.json`` (written last by the HF Trainer) parses and names
step N, the weights are there, and -- unless the run saved model-only checkpoints -- the optimizer and
scheduler state are there too (``optimizer.pt``/``scheduler.pt``, or DeepSpeed's ``global_stepN`` folder).
A run killed while writing a checkpoint leaves an incomplete one, which is skipped with a warning.

A resume continues the same training: ``dear_run_settings.json`` in ``output_dir`` records, when a training
starts, the settings that decide what is trained (:data:`TRAINED_SETTINGS` and the dataset's fingerprint);
a resume with other values is refused before any model loads (:func:`check_resume_settings`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
                "adapter_model.bin", "pytorch_model.bin")


def checkpoint_problem(path: str | Path, *, require_optimizer: bool = True) -> str | None:
    """Why ``path`` is not a complete checkpoint, or None when it is."""
    p = Path(path)
    m = _CKPT_RE.match(p.name)
    if not p.is_dir() or m is None:
        return "not a checkpoint-N folder"
    state_file = p / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "unreadable trainer_state.json"
    if int(state.get("global_step", -1)) != int(m.group(1)):
        return f"trainer_state.json says step {state.get('global_step')}"
    deepspeed_dirs = [d for d in p.glob("global_step*") if d.is_dir()]
    has_weights = any((p / f).is_file() and (p / f).stat().st_size > 0 for f in WEIGHT_FILES)
    if not has_weights and not deepspeed_dirs:
        return "no model/adapter weights"
    if require_optimizer and not deepspeed_dirs:
        for f in ("optimizer.pt", "scheduler.pt"):
            if not (p / f).is_file():
                return f"no {f}"
    return None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir``, oldest (smallest N) first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in out.iterdir() if d.is_dir() and (m := _CKPT_RE.match(d.name))]
    return [d for _, d in sorted(found)]


def latest_complete_checkpoint(output_dir: str | Path, *, require_optimizer: bool = True) -> Path | None:
    """The newest complete checkpoint in ``output_dir``; incomplete newer ones are skipped with a warning."""
    for ckpt in reversed(list_checkpoints(output_dir)):
        problem = checkpoint_problem(ckpt, require_optimizer=require_optimizer)
        if problem is None:
            return ckpt
        logger.warning("skipping incomplete checkpoint %s: %s", ckpt, problem)
    return None


def resolve_resume(value: str | bool | None, output_dir: str | Path, *, require_optimizer: bool = True) -> str | None:
    """Turn ``--resume_from_checkpoint`` into what ``Trainer.train`` takes.

    ``auto`` (or ``true``): the newest complete checkpoint, or None (a fresh start) when there is none.
    A path: used as given, after checking it is complete. None/empty/``false``: a fresh start.
    """
    from data_prep.schema import DataError

    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "none")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("auto", "true", "latest")):
        ckpt = latest_complete_checkpoint(output_dir, require_optimizer=require_optimizer)
        if ckpt is None:
            logger.info("resume auto: no complete checkpoint in %s, starting fresh", output_dir)
            return None
        logger.info("resume auto: resuming from %s", ckpt)
        return str(ckpt)
    problem = checkpoint_problem(value, require_optimizer=require_optimizer)
    if problem is not None:
        raise DataError(f"cannot resume from this checkpoint: {problem}", path=str(value),
                        fix="pass a complete checkpoint-N folder or `--resume_from_checkpoint auto`")
    return str(value)


RUN_SETTINGS_FILE = "dear_run_settings.json"
# what decides the trained weights: a resume must keep these (output, logging, evaluation and saving
# settings, precision and the number of steps may change)
TRAINED_SETTINGS = (
    "model_name_or_path", "model_revision", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "lora_modules_to_save", "lora_task_type", "use_rslora", "use_dora", "load_in_4bit", "load_in_8bit",
    "bnb_4bit_quant_type", "use_bnb_nested_quant", "qlora",
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "optim", "optim_args", "max_grad_norm", "seed", "data_seed",
    "per_device_train_batch_size", "gradient_accumulation_steps", "label_smoothing_factor", "neftune_noise_alpha",
    "max_length", "packing", "padding_free", "completion_only_loss", "assistant_only_loss", "loss_type",
    "train_split", "max_train_samples", "first_token_loss_weight",
    "rank_loss", "alpha", "temperature", "mix_weight", "q_max_len", "p_max_len", "group_size", "max_train_groups",
    # GRPO (dear_train.grpo): the method, what it continues, how it samples and what it pays
    "method", "sft_adapter", "beta", "num_generations", "reward_weights", "ranking_reward_k", "length_reward_tokens",
    "top_p", "top_k", "min_p", "repetition_penalty", "generation_kwargs", "max_completion_length",
    "mask_truncated_completions", "epsilon", "epsilon_high", "delta", "scale_rewards", "multi_objective_aggregation",
    "importance_sampling_level", "num_iterations", "steps_per_generation",
    "shuffle_dataset", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps", "top_entropy_quantile",
    "sapo_temperature_neg", "sapo_temperature_pos", "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
    "vespo_lambda_neg", "entropy_coef", "use_adaptive_entropy", "entropy_coef_min", "entropy_coef_max",
    "entropy_coef_delta", "entropy_target", "off_policy_mask_threshold", "use_bias_correction_kl", "disable_dropout",
    "chat_template_kwargs", "cast_lm_head_to_fp32",
    "dataset_fingerprint",
)


def trained_settings(config: dict) -> dict:
    """The entries of a resolved config (``dear_train.artifacts.resolved_config``) that decide the weights."""
    return {k: config[k] for k in TRAINED_SETTINGS if k in config}


def check_resume_settings(output_dir: str | Path, resume: str | None, settings: dict, *,
                          write: bool = True) -> None:
    """Before any model loads: refuse to resume a training with other :data:`TRAINED_SETTINGS` than it was
    started with; on a fresh start (``resume`` None) record ``settings`` in ``output_dir`` (when ``write``: the
    main process). A checkpoint from before the file existed resumes with a warning."""
    from data_prep.schema import DataError

    if resume is not None:
        recorded_path = Path(resume).parent / RUN_SETTINGS_FILE
        if not recorded_path.is_file():
            logger.warning("%s has no %s: cannot check that the resumed training keeps its settings", resume,
                           RUN_SETTINGS_FILE)
            return
        try:
            recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError("unreadable training settings", path=str(recorded_path),
                            fix="restore the file, or start a new training in a new --output_dir") from None
        changed = sorted(k for k in set(recorded) | set(settings)
                         if json.dumps(recorded.get(k), sort_keys=True) != json.dumps(settings.get(k), sort_keys=True))
        if changed:
            what = ", ".join(f"{k} {recorded.get(k)!r} -> {settings.get(k)!r}" for k in changed[:4])
            raise DataError(f"cannot resume {resume} with other training settings ({what}"
                            + (f", and {len(changed) - 4} more" if len(changed) > 4 else "") + ")",
                            path=str(recorded_path), reason="resume_mismatch",
                            fix="resume with the settings the training started with, or start a new training "
                                "in a new --output_dir")
        return
    if write:
        record_run_settings(output_dir, settings)


def record_run_settings(output_dir: str | Path, settings: dict) -> None:
    """Write ``settings`` as the training's :data:`RUN_SETTINGS_FILE` in ``output_dir`` (a fresh start, main
    process): what a later resume is checked against."""
    from data_prep.io import write_json_atomic

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RUN_SETTINGS_FILE, settings)
