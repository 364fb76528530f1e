"""Reading the `dear prep listwise` output folder for training, and checking it fits ``max_length``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from data_prep.prompts import PromptSpec, load_prompt_spec
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

TRAIN_COLUMNS = ("prompt", "completion")


def load_prep_output(
    dataset_path: str | Path | None,
    *,
    train_split: str = "train",
    eval_split: str | None = "eval",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> tuple[dict[str, Any], PromptSpec]:
    """The splits (only ``prompt``/``completion`` kept, as TRL wants) and the prompt spec of a prep folder.

    Reads ``DIR/dataset`` (a saved ``DatasetDict``) when present, else ``DIR/train.jsonl``/``DIR/eval.jsonl``.
    """
    from datasets import Dataset

    if not dataset_path:
        raise DataError("no dataset given", fix="pass --dataset_path DIR, the folder `dear prep listwise --out DIR` wrote")
    root = Path(dataset_path)
    if not root.is_dir():
        raise DataError("dataset folder not found", path=str(root),
                        fix="pass --dataset_path DIR, the folder `dear prep listwise --out DIR` wrote")
    spec = load_prompt_spec(root)
    if spec is None:
        raise DataError("no prompt_spec.json in the dataset folder", path=str(root),
                        fix="pass the folder `dear prep listwise --out` wrote (it saves the prompt spec)")
    if (root / "dataset").is_dir():
        splits = _load_dataset_dir(root / "dataset")
    else:
        splits = {}
        for name in (train_split, eval_split):
            f = root / f"{name}.jsonl"
            if name and f.is_file() and f.stat().st_size > 0:  # datasets cannot load an empty JSONL
                splits[name] = Dataset.from_json(str(f))
    if train_split not in splits:
        raise DataError(f"no {train_split!r} split (found {sorted(splits)})", path=str(root),
                        fix="re-run `dear prep listwise` or set --train_split")
    out: dict[str, Any] = {}
    for name, limit in ((train_split, max_train_samples), (eval_split, max_eval_samples)):
        if not name or name not in splits:
            continue
        ds = splits[name]
        missing = [c for c in TRAIN_COLUMNS if c not in ds.column_names]
        if missing:
            raise DataError(f"split {name!r} lacks column(s) {missing}", path=str(root),
                            fix="records need TRL prompt/completion fields (data_prep.prompts.training_record)")
        if len(ds) == 0:
            if name != train_split:  # an empty eval split (`dear prep --eval-fraction 0`): no evaluation
                logger.info("split %r of %s is empty: no loss evaluation", name, root)
                continue
            raise DataError(f"split {name!r} is empty", path=str(root), fix="prepare more data")
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        out[name] = ds.select_columns(list(TRAIN_COLUMNS))
    return out, spec


def _load_dataset_dir(path: Path) -> dict[str, Any]:
    """The splits of a saved ``DatasetDict``; an empty saved split (older prep outputs, which ``datasets``
    cannot load back: IndexError deep inside ``load_from_disk``) is skipped instead."""
    import json

    from datasets import Dataset, DatasetDict, load_from_disk

    index = path / "dataset_dict.json"
    if not index.is_file():
        dsd = load_from_disk(str(path))
        if not isinstance(dsd, DatasetDict):
            raise DataError("dataset/ holds a single Dataset, not a DatasetDict", path=str(path),
                            fix="save a DatasetDict with splits 'train' and 'eval'")
        return dict(dsd)
    from data_prep.readers import load_json

    names = load_json(index, "dataset index", fix="re-run `dear prep listwise`").get("splits", [])
    splits: dict[str, Any] = {}
    for name in names:
        state = path / name / "state.json"
        if state.is_file() and not json.loads(state.read_text(encoding="utf-8")).get("_data_files"):
            continue  # saved empty
        splits[name] = Dataset.load_from_disk(str(path / name))
    return splits


def example_token_lengths(dataset: Any, tokenizer: Any) -> list[int]:
    """Tokens of prompt + completion per record, as the trainer will see them (chat template for chat records, the
    EOS TRL appends to plain ones)."""
    from data_prep.prompt_tokens import record_token_ids

    return [len(record_token_ids(rec, tokenizer)[1]) for rec in dataset]


def tokenize_special_text(dataset: Any, tokenizer: Any) -> Any:
    """``dataset`` with ``input_ids`` and ``completion_mask`` columns when any record holds special-token text
    (a passage quoting ``<|eot_id|>``), else unchanged.

    TRL tokenizes a record's text with special tokens parsed, so such a passage would train on a forged end of
    turn while inference (``data_prep.prompt_tokens``) feeds the same characters as plain text. Records tokenized
    here by the function inference uses make TRL skip its own tokenization (it takes ``input_ids`` as they are and
    masks the loss with ``completion_mask``). Without special-token text both give the same ids, and TRL's own
    path is kept."""
    from data_prep.prompt_tokens import record_has_special_text, record_token_ids

    if not any(record_has_special_text(rec, tokenizer) for rec in dataset):
        return dataset

    def tokenize(rec: dict[str, Any]) -> dict[str, Any]:
        prompt, full = record_token_ids(rec, tokenizer)
        k = 0
        while k < min(len(prompt), len(full)) and prompt[k] == full[k]:
            k += 1
        return {"input_ids": full, "completion_mask": [0] * k + [1] * (len(full) - k)}

    logger.info("records hold special-token text: tokenized with it as plain text (data_prep.prompt_tokens)")
    return dataset.map(tokenize)


def check_fits(dataset: Any, tokenizer: Any, max_length: int | None, *, split: str, path: str) -> int:
    """The longest example's token count; raises when it exceeds ``max_length`` (TRL would cut the
    completion off the end, silently training on a truncated ranking)."""
    lengths = example_token_lengths(dataset, tokenizer)
    longest = max(lengths) if lengths else 0
    if max_length is not None and longest > max_length:
        over = sum(n > max_length for n in lengths)
        raise DataError(
            f"{over} of {len(lengths)} {split} examples are longer than max_length={max_length} "
            f"(longest {longest} tokens); truncation would cut the target ranking",
            path=path,
            fix=f"raise --max_length to at least {longest}, or rebuild the data with a smaller window / "
            "`dear prep listwise --max-tokens`",
            reason="too_long",
        )
    return longest
