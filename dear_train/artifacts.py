"""What every training output / adapter folder carries besides the weights (shared by `dear train` and
`dear distill`): the tokenizer + chat template, the prompt spec the data was built with, and
``dear_training.json`` = {base_model, config (fully resolved), versions, dataset {path, fingerprint}, task}.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from data_prep.io.versions import package_versions
from data_prep.prompts import PROMPT_SPEC_FILE

logger = logging.getLogger(__name__)

TRAINING_MANIFEST = "dear_training.json"
RANKING_EVAL_FILE = "ranking_eval.jsonl"
def dataset_fingerprint(splits: Mapping[str, Any]) -> str:
    """A stable id of the training data: sha256 over each split's name, row count and `datasets` fingerprint
    (which `save_to_disk`/`load_from_disk` preserve), so two runs on the same prep output agree."""
    h = hashlib.sha256()
    for name in sorted(splits):
        ds = splits[name]
        h.update(f"{name}:{len(ds)}:{getattr(ds, '_fingerprint', '')};".encode())
    return h.hexdigest()[:32]


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths, dtypes... as plain JSON values (for the resolved config)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "value") and isinstance(value.value, (str, int)):  # enums
        return value.value
    return str(value)


def resolved_config(*parts: Any) -> dict[str, Any]:
    """Merge config dataclasses into one flat dict; TrainingArguments go through ``to_dict`` (secrets masked)."""
    out: dict[str, Any] = {}
    for part in parts:
        if hasattr(part, "to_dict"):
            out.update(jsonable(part.to_dict()))
        else:
            out.update(jsonable(part))
    return out


def copy_prompt_spec(dataset_path: str | Path, output_dir: str | Path) -> Path:
    """Copy the data's ``prompt_spec.json`` into the output so inference renders the same bytes."""
    from data_prep.schema import DataError

    src = Path(dataset_path) / PROMPT_SPEC_FILE
    if not src.is_file():
        raise DataError("the dataset folder has no prompt_spec.json", path=str(src),
                        fix="pass the folder `dear prep listwise --out` wrote (it saves the prompt spec)")
    dst = Path(output_dir) / PROMPT_SPEC_FILE
    shutil.copyfile(src, dst)
    return dst


def write_training_manifest(
    output_dir: str | Path,
    *,
    base_model: str,
    config: Mapping[str, Any],
    dataset_path: str | Path,
    fingerprint: str,
    task: Literal["listwise", "pointwise"],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``dear_training.json`` (the contract in the project brief)."""
    record: dict[str, Any] = {
        "base_model": str(base_model),
        "config": jsonable(dict(config)),
        "versions": package_versions(),
        "dataset": {"path": str(Path(dataset_path).resolve()), "fingerprint": fingerprint},
        "task": task,
    }
    if extra:
        record.update(jsonable(dict(extra)))
    path = Path(output_dir) / TRAINING_MANIFEST
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def finalize_output(
    output_dir: str | Path,
    *,
    tokenizer: Any,
    base_model: str,
    config: Mapping[str, Any],
    dataset_path: str | Path,
    fingerprint: str,
    task: Literal["listwise", "pointwise"],
    copy_spec: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Everything but the weights: tokenizer files + chat template, prompt spec, ``dear_training.json`` (plus
    ``extra`` top-level keys, e.g. GRPO's ``method``). Call on the main process only, after the trainer saved the
    adapter."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    if copy_spec:
        copy_prompt_spec(dataset_path, out)
    write_training_manifest(out, base_model=base_model, config=config, dataset_path=dataset_path,
                            fingerprint=fingerprint, task=task, extra=extra)
    logger.info("training artefacts written to %s", out)
