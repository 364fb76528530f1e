"""Adapter folders for the export tests, built the way `dear train` lays them out (see the common contract).

Training is built elsewhere, so the tests make the folder themselves: the tiny Llama, PEFT's LoRA with a
small rank, lora_B perturbed away from its zero init (what a trained adapter looks like), and the
contract files next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

EVAL_RECORDS = [
    {"step": 50, "dataset": "noveleval-heldout", "metrics": {"ndcg@10": 0.5123, "ndcg@5": 0.4411},
     "valid_window_share": 0.25},
    {"step": 100, "dataset": "noveleval-heldout", "metrics": {"ndcg@10": 0.6789, "ndcg@5": 0.6012},
     "valid_window_share": 1.0},
]


def make_adapter_folder(
    base_dir: Path,
    out: Path,
    *,
    zero: bool = False,
    seed: int = 0,
    scale: float = 0.05,
    base_model: str | None = None,
    with_eval: bool = True,
    r: int = 4,
    modules_to_save: list[str] | None = None,
    train_saved_modules: bool = True,
    spec=None,
) -> Path:
    """Write a LoRA adapter folder over the tiny model at ``base_dir`` into ``out``.

    ``zero=True`` leaves lora_B at PEFT's zero init (an adapter that never trained).
    ``base_model`` is what dear_training.json records (default: the base folder itself).
    ``modules_to_save`` (e.g. ``["lm_head"]``) adds full trainable copies, perturbed when
    ``train_saved_modules``. ``spec`` is the prompt spec saved with it (default: the DeAR card's).
    """
    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_prep.prompts import DEAR_CARD, save_prompt_spec

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules=LORA_TARGETS,
                        modules_to_save=modules_to_save, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and not zero:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
            if "modules_to_save" in name and train_saved_modules:
                p.add_(torch.randn(p.shape, generator=gen) * scale)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    save_prompt_spec(out, spec or DEAR_CARD)
    training = {
        "base_model": base_model or str(base_dir),
        "config": {"learning_rate": 2e-4, "num_train_epochs": 1, "per_device_train_batch_size": 2,
                   "gradient_accumulation_steps": 4, "max_length": 1024, "lora_r": r, "seed": seed,
                   "prompt_template": "dear-card"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "dataset": {"path": "runs/prep/dataset", "fingerprint": "0123abcd"},
        "task": "listwise",
    }
    (out / "dear_training.json").write_text(json.dumps(training, indent=2) + "\n", encoding="utf-8")
    if with_eval:
        (out / "ranking_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVAL_RECORDS),
                                                encoding="utf-8")
    # training leftovers a clean export must not carry
    (out / "checkpoint-100").mkdir()
    (out / "checkpoint-100" / "optimizer.pt").write_bytes(b"\0" * 16)
    (out / "training_args.bin").write_bytes(b"\0" * 8)
    return out


def front_matter(card: str) -> dict:
    """The YAML metadata block of a model card."""
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def code_after(card: str, heading: str) -> str:
    """The first Python code block after ``heading`` in a model card."""
    return card.split(heading, 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
