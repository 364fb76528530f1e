"""Resuming: ``--resume_from_checkpoint auto`` means the newest COMPLETE ``checkpoint-N`` in ``output_dir``.

A checkpoint is complete when its ``trainer_state.json`` (written last by the HF Trainer) parses and names
step N, the weights are there, and -- unless the run saved model-only checkpoints -- the optimizer and
scheduler state are there too (``optimizer.pt``/``scheduler.pt``, or DeepSpeed's ``global_stepN`` folder).
A run killed while writing a checkpoint leaves an incomplete one, which is skipped with a warning.
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
