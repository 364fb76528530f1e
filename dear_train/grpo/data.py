"""The GRPO view of a `dear prep listwise` folder: prompts plus what the rewards need (``docids``, ``grades``).

One prep folder serves SFT and GRPO: SFT keeps ``prompt``/``completion``; GRPO keeps ``prompt``, ``qid``, ``docids``
and ``grades`` (TRL hands every column but the prompt to the reward functions by name). A folder written before
the grades existed is refused with the command that rebuilds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.prompts import PromptSpec, load_prompt_spec
from data_prep.schema import DataError

REPREP_FIX = ("rerun `dear prep listwise ... --out DIR` with this toolkit: it writes each window's candidate ids and "
              "grades beside the SFT fields (older prep folders lack the grades GRPO's rewards need)")


def load_grpo_splits(
    dataset_path: str | Path,
    *,
    train_split: str = "train",
    eval_split: str | None = "eval",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> tuple[dict[str, Any], PromptSpec]:
    """The splits with ``prompt``, ``qid``, ``docids``, ``grades`` (checked per record) and the prompt spec."""
    from dear_train.listwise_data import GRPO_COLUMNS, load_prep_output

    splits, spec = load_prep_output(
        dataset_path, train_split=train_split, eval_split=eval_split, max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples, columns=GRPO_COLUMNS, missing_fix=REPREP_FIX,
    )
    for name, ds in splits.items():
        for i, (qid, docids, grades) in enumerate(zip(ds["qid"], ds["docids"], ds["grades"], strict=True)):
            if grades is None or docids is None or len(grades) != len(docids) or len(docids) < 2:
                raise DataError(f"split {name!r} record {i}: {len(docids or [])} docids but "
                                f"{len(grades or [])} grades (a window needs >= 2 candidates, one grade each)",
                                path=str(dataset_path), qid=str(qid), fix=REPREP_FIX)
    return splits, spec


def prompt_lengths(dataset: Any, tokenizer: Any) -> list[int]:
    """Tokens of each prompt as GRPOTrainer tokenizes it (plain text with BOS, or the chat template with the
    assistant header opened)."""
    out: list[int] = []
    for prompt in dataset["prompt"]:
        if isinstance(prompt, str):
            out.append(len(tokenizer(prompt)["input_ids"]))
        else:
            ids = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
            out.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def check_prompt_lengths(dataset: Any, tokenizer: Any, max_prompt_length: int, *, split: str, path: str) -> int:
    """The longest prompt's token count; a DataError when one exceeds ``max_prompt_length``."""
    lengths = prompt_lengths(dataset, tokenizer)
    longest = max(lengths, default=0)
    if longest > max_prompt_length:
        over = sum(n > max_prompt_length for n in lengths)
        raise DataError(f"{over} of {len(lengths)} {split} prompts are longer than max_prompt_length="
                        f"{max_prompt_length} (longest {longest} tokens)", path=path, reason="too_long",
                        fix=f"raise --max_prompt_length to at least {longest}, or rebuild the data with a smaller "
                        "window / `dear prep listwise --max-tokens`")
    return longest


def check_adapter_spec(sft_adapter: str | Path, spec: PromptSpec, *, dataset_path: str | Path) -> None:
    """The adapter continued by GRPO must have been trained on the data's prompt spec (prompt drift costs nDCG)."""
    adapter_spec = load_prompt_spec(sft_adapter)
    if adapter_spec is not None and adapter_spec != spec:
        raise DataError(f"the adapter was trained with prompt spec {adapter_spec.name!r} ({adapter_spec.to_json()}) "
                        f"but the data uses {spec.name!r} ({spec.to_json()})", path=str(dataset_path),
                        fix="prepare the GRPO data with the adapter's prompt (`dear prep listwise --prompt ...`, same "
                        "passage length)")


def adapter_base_model(sft_adapter: str | Path) -> str:
    """The base model an adapter folder names (its ``adapter_config.json``)."""
    from data_prep.readers import load_json

    cfg = load_json(Path(sft_adapter) / "adapter_config.json", "adapter config",
                    fix="pass the output folder of `dear train`")
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise DataError("the adapter does not name its base model", path=str(sft_adapter),
                        fix="set model_name_or_path")
    return str(base)
