"""Build an export folder from a training/adapter folder, verify it, then move it into place atomically.

The folder is assembled in a hidden temporary directory beside ``out`` (same filesystem), checked with
:mod:`dear_train.export.verify`, given its model card, and only then renamed to ``out``. On any failure
the temporary directory is removed and ``out`` is untouched.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from data_prep.io.atomic import replace_dir_atomic
from data_prep.pointwise_format import POINTWISE_FORMAT_FILE, PairFormat, load_pair_format
from data_prep.prompts import PROMPT_SPEC_FILE, PromptSpec, load_prompt_spec
from data_prep.schema import DataError
from dear_train.export.kinds import ListwiseKind, PointwiseKind
from dear_train.export.verify import (
    ADAPTER_WEIGHTS,
    TORCH_DTYPES,
    ExportVerificationError,
    VerificationReport,
    check_adapter_file,
    check_adapter_loaded,
    compare_logits,
)

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
TRAINING_FILE = "dear_training.json"
EVAL_FILE = "ranking_eval.jsonl"


@dataclass(frozen=True)
class SourceAdapter:
    """A training output / adapter folder as the shared contract describes it."""

    path: Path
    adapter_config: dict[str, Any]
    training: dict[str, Any]
    spec: PromptSpec | None  # listwise: the prompt it was trained on
    evals: tuple[dict[str, Any], ...]
    pair_format: PairFormat | None = None  # pointwise: how a (query, passage) pair was encoded

    @property
    def recorded_base(self) -> str:
        return str(self.training.get("base_model") or self.adapter_config.get("base_model_name_or_path") or "")

    @property
    def kind(self) -> ListwiseKind | PointwiseKind:
        if self.pair_format is not None:
            return PointwiseKind(self.pair_format)
        assert self.spec is not None
        return ListwiseKind(self.spec)


@dataclass(frozen=True)
class ExportResult:
    out: Path
    files: tuple[tuple[str, int], ...]  # (relative path, bytes), sorted
    report: VerificationReport
    merged: bool
    task: str = "listwise"  # or "pointwise"


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"missing {what}", path=str(path), fix=fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON: {err.msg}", path=str(path), line=err.lineno, fix=fix) from err
    if not isinstance(data, dict):
        raise DataError("expected a JSON object", path=str(path), fix=fix)
    return data


def read_ranking_eval(path: Path) -> list[dict[str, Any]]:
    """``ranking_eval.jsonl`` records ({step, dataset, metrics, valid_window_share}); [] when absent."""
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed JSON: {err.msg}", path=str(path), line=n,
                            fix="one JSON object per line, as `dear train` writes it") from err
        if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
            raise DataError("expected {step, dataset, metrics: {...}, valid_window_share}", path=str(path),
                            line=n, fix="one evaluation record per line, as `dear train` writes it")
        records.append(rec)
    return records


def read_source(adapter_dir: str | Path) -> SourceAdapter:
    """Read and check the folder contract; every problem names the file and the fix."""
    path = Path(adapter_dir)
    if not path.is_dir():
        raise DataError("adapter folder not found", path=str(path), fix="pass the --output_dir of `dear train`")
    cfg = _read_json(path / ADAPTER_CONFIG, "adapter config", "pass a PEFT adapter folder (save_pretrained)")
    if cfg.get("peft_type") != "LORA":
        raise DataError(f"peft_type is {cfg.get('peft_type')!r}, expected 'LORA'", path=str(path / ADAPTER_CONFIG),
                        fix="only LoRA adapters can be exported")
    task_type = cfg.get("task_type")
    if task_type not in (None, "CAUSAL_LM", "SEQ_CLS"):
        raise DataError(f"adapter task_type is {task_type!r}: dear export handles listwise (CAUSAL_LM) and "
                        "pointwise (SEQ_CLS) adapters", path=str(path / ADAPTER_CONFIG), reason="unknown_task",
                        fix="export a `dear train` (listwise) or `dear distill` (pointwise) output")
    if not (path / ADAPTER_WEIGHTS).is_file():
        raise DataError(f"missing {ADAPTER_WEIGHTS}", path=str(path),
                        fix="save the adapter with safetensors (PEFT's default) or convert adapter_model.bin")
    training = _read_json(path / TRAINING_FILE, "training record",
                          "export a folder written by `dear train` (it records base model, config, versions)")
    evals = tuple(read_ranking_eval(path / EVAL_FILE))
    if task_type == "SEQ_CLS":
        fmt = load_pair_format(path)
        if fmt is None:
            raise DataError(f"missing {POINTWISE_FORMAT_FILE}", path=str(path),
                            fix="save the pair format the student was trained with: data_prep.pointwise_format."
                                "save_pair_format(DIR, PairFormat()) for DeAR's 32/196-token default")
        return SourceAdapter(path, cfg, training, None, evals, pair_format=fmt)
    spec = load_prompt_spec(path)
    if spec is None:
        raise DataError(f"missing {PROMPT_SPEC_FILE}", path=str(path),
                        fix="save the spec the adapter was trained with: "
                            "data_prep.prompts.save_prompt_spec(DIR, get_prompt_spec('dear-card'))")
    return SourceAdapter(path, cfg, training, spec, evals)


def folder_files(folder: Path) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((p.relative_to(folder).as_posix(), p.stat().st_size)
                        for p in folder.rglob("*") if p.is_file()))


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError("output folder exists and is not empty", path=str(out),
                        fix="choose a new --out (an export never overwrites files)")


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {device} but no CUDA device is visible", fix="use --device cpu or auto")
    return device


def _load_tokenizer(src: SourceAdapter, base_model: str, local_files_only: bool) -> Any:
    from inference.models import ModelOptions, folder_has_tokenizer, load_tokenizer

    if folder_has_tokenizer(src.path):
        return load_tokenizer(src.path, ModelOptions())
    logger.warning("%s has no tokenizer; taking the base model's (%s)", src.path, base_model)
    return load_tokenizer(base_model, ModelOptions(local_files_only=local_files_only))


def _copy_contract_files(src: SourceAdapter, tokenizer: Any, dst: Path) -> None:
    """Input spec (prompt spec or pair format), training record and evaluation log: the files every exported
    folder carries."""
    src.kind.save_spec(dst)
    shutil.copy2(src.path / TRAINING_FILE, dst / TRAINING_FILE)
    if (src.path / EVAL_FILE).is_file():
        shutil.copy2(src.path / EVAL_FILE, dst / EVAL_FILE)
    tokenizer.save_pretrained(dst)


SAFETENSORS_DTYPES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}


def saved_dtypes(folder: Path) -> set[str]:
    """The dtypes written in the safetensors headers of ``folder`` (what is on disk, not what loads)."""
    from safetensors import safe_open

    found: set[str] = set()
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            found.update(f.get_slice(k).get_dtype() for k in f.keys())  # noqa: SIM118
    return found


def merge_and_save(peft_model: Any, dst: Path, *, max_shard_size: str) -> None:
    """``merge_and_unload`` and save as safetensors shards (a seam the tests use to break a merge)."""
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(dst, max_shard_size=max_shard_size, safe_serialization=True)


def export_adapter(
    adapter_dir: str | Path,
    out: str | Path,
    *,
    merge: bool = False,
    dtype: str = "bf16",
    base_model: str | None = None,
    max_shard_size: str = "5GB",
    repo_id: str | None = None,
    license: str | None = None,
    local_files_only: bool = False,
    n_probes: int = 3,
    probe_window: int = 5,
    device: str = "auto",
) -> ExportResult:
    """Export ``adapter_dir`` to ``out``: a clean adapter folder, or (``merge``) the merged model in
    ``dtype``; verified on ranking prompts (listwise) or (query, passage) pairs (pointwise) before ``out``
    appears. Returns the file list and the checks."""
    from transformers import AutoTokenizer

    from dear_train.export.model_card import build_model_card, is_hub_id
    from inference.models import ModelOptions, attach_adapter

    if dtype not in TORCH_DTYPES:
        raise DataError(f"unknown dtype {dtype!r}", fix=f"use one of {sorted(TORCH_DTYPES)}")
    out = Path(out).absolute()
    src = read_source(adapter_dir)
    _check_out(out)
    check_adapter_file(src.path / ADAPTER_WEIGHTS)
    base = base_model or src.recorded_base
    if not base:
        raise DataError("no base model recorded", path=str(src.path / TRAINING_FILE), fix="pass --base-model PATH")
    if base_model and src.recorded_base and base_model != src.recorded_base:
        logger.info("loading base model from %s (training recorded %s)", base_model, src.recorded_base)
    if repo_id and not merge and not is_hub_id(str(src.adapter_config.get("base_model_name_or_path", ""))):
        logger.warning("adapter_config.json names the base model by a local path (%s): people loading %s from the "
                       "Hub must pass the base model themselves", src.adapter_config.get("base_model_name_or_path"),
                       repo_id)
    options = ModelOptions(dtype=TORCH_DTYPES[dtype], device_map=_device(device), local_files_only=local_files_only)

    result: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        """Everything is written into ``tmp`` and checked there; only a verified folder becomes ``out``."""
        kind = src.kind
        tokenizer = _load_tokenizer(src, base, local_files_only)
        logger.info("loading %s (%s) with the %s adapter from %s", base, dtype, kind.task, src.path)
        model = kind.load(base, options, tokenizer)
        model = attach_adapter(model, src.path)
        model.eval()
        check_adapter_loaded(model, src.path / ADAPTER_WEIGHTS)
        probes = kind.probes(tokenizer, n_probes=n_probes, window=probe_window)
        source_logits = kind.outputs(model, tokenizer, probes)
        with model.disable_adapter():
            base_logits = kind.outputs(model, tokenizer, probes)

        _copy_contract_files(src, tokenizer, tmp)
        if merge:
            merge_and_save(model, tmp, max_shard_size=max_shard_size)
            del model
            saved = saved_dtypes(tmp)
            if saved != {SAFETENSORS_DTYPES[dtype]}:
                raise ExportVerificationError(f"the merged shards hold {sorted(saved)} tensors, expected "
                                              f"{SAFETENSORS_DTYPES[dtype]} only")
            exported = kind.load(tmp, replace(options, local_files_only=True), tokenizer)
            export_logits = kind.outputs(exported.eval(), tokenizer, probes)
            del exported
        else:
            shutil.copy2(src.path / ADAPTER_CONFIG, tmp / ADAPTER_CONFIG)
            shutil.copy2(src.path / ADAPTER_WEIGHTS, tmp / ADAPTER_WEIGHTS)
            model.load_adapter(tmp, adapter_name="export")
            check_adapter_loaded(model, tmp / ADAPTER_WEIGHTS, adapter_name="export")
            model.set_adapter("export")
            export_logits = kind.outputs(model, tokenizer, probes)
            del model
        report = compare_logits(kind="merged" if merge else "adapter", dtype=dtype, export=export_logits,
                                source=source_logits, base=base_logits)
        kind.check_copy(tokenizer, AutoTokenizer.from_pretrained(tmp), probes, tmp)

        card = build_model_card(
            training=src.training, adapter_config=src.adapter_config, spec=src.spec, evals=list(src.evals),
            merged=merge, dtype=dtype, repo_id=repo_id or f"./{out.name}", tokenizer=tokenizer,
            verification=report, license=license, pair_format=src.pair_format,
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
        result.update(files=folder_files(tmp), report=report)

    replace_dir_atomic(out, build)  # ``out`` is absent or empty (checked above)
    files, report = result["files"], result["report"]
    logger.info("export written to %s (%d files)", out, len(files))
    return ExportResult(out=out, files=files, report=report, merged=merge, task=src.kind.task)
