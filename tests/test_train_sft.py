"""`dear train` in one process on the tiny model and real DL19 listwise data: what training must do."""

from __future__ import annotations

import json
import math

import pytest

from tests._train_helpers import tiny_args, train_in_process


def _train(argv: list[str], callbacks=()):
    """Parse like `dear train` and train in-process; returns the trainer."""
    return train_in_process("sft", argv, callbacks)


class _Snapshot:
    """A TrainerCallback that keeps a copy of every parameter at given global steps."""

    def __init__(self, steps):
        from transformers import TrainerCallback

        outer = self
        self.steps = set(steps)
        self.saved: dict[int, dict] = {}

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                outer.saved[0] = {n: p.detach().clone() for n, p in model.named_parameters()}

            def on_step_end(self, args, state, control, model=None, **kw):
                if state.global_step in outer.steps:
                    outer.saved[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

        self.callback = _CB()


def test_loss_decreases_and_only_lora_changes(tiny_model_dir, prep_dir, tmp_path):
    """Repeated batch: loss finite and falling over 24 steps; after two steps every LoRA tensor moved, no base
    weight did (LoRA B starts at zero, so A only moves from step two)."""
    snap = _Snapshot([2])
    trainer = _train(tiny_args(tiny_model_dir, prep_dir, tmp_path / "out", "--max_train_samples", "2",
                               "--max_steps", "24", "--learning_rate", "2e-3", "--lora_dropout", "0.0"),
                     callbacks=[snap.callback])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 24
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses
    before, after = snap.saved[0], snap.saved[2]
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert len(lora) == 2 * 7 * 2  # A and B for 7 projections in 2 layers
    unchanged = [n for n in lora if after[n].equal(before[n])]
    assert not unchanged, f"LoRA tensors that did not move: {unchanged}"
    moved = [n for n in base if not after[n].equal(before[n])]
    assert not moved, f"base weights that moved: {moved}"
    # the saved adapter is what was trained
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    final = {n: p for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert len(saved) == len(final)
    for n, p in final.items():
        key = n.replace(".default", "")
        assert saved[key].equal(p.detach()), key


def test_labels_are_exactly_completion_plus_eot(tiny_model_dir, tiny_tokenizer, prep_dir, tmp_path):
    """The tokens that carry loss decode to the completion text followed by <|eot_id|>, for every record."""
    trainer = _train(tiny_args(tiny_model_dir, prep_dir, tmp_path / "out", "--max_steps", "1"))
    records = [json.loads(x) for x in (prep_dir / "train.jsonl").read_text().splitlines()]
    ds = trainer.train_dataset
    assert len(ds) == len(records)
    for i, rec in enumerate(records):
        batch = trainer.data_collator([ds[i]])
        labels = batch["labels"][0]
        kept = labels[labels != -100].tolist()
        text = tiny_tokenizer.decode(kept, skip_special_tokens=False)
        assert text == rec["completion"] + "<|eot_id|>", (text, rec["completion"])
        # and the prompt tokens carry none: the loss span starts right after the prompt
        ids = batch["input_ids"][0].tolist()
        first = next(j for j, v in enumerate(labels.tolist()) if v != -100)
        assert tiny_tokenizer.decode(ids[:first], skip_special_tokens=True) == rec["prompt"]


def test_output_folder_contract(tiny_model_dir, prep_dir, tmp_path):
    out = tmp_path / "out"
    _train(tiny_args(tiny_model_dir, prep_dir, out, "--max_steps", "2"))
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "chat_template.jinja", "prompt_spec.json", "dear_training.json"):
        assert (out / f).is_file(), f
    assert (out / "prompt_spec.json").read_text() == (prep_dir / "prompt_spec.json").read_text()
    manifest = json.loads((out / "dear_training.json").read_text())
    assert manifest["task"] == "listwise"
    assert manifest["base_model"] == str(tiny_model_dir)
    assert manifest["dataset"]["path"] == str(prep_dir.resolve())
    assert len(manifest["dataset"]["fingerprint"]) == 32
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        assert manifest["versions"][pkg]
    cfg = manifest["config"]
    assert cfg["lora_r"] == 16 and cfg["lora_alpha"] == 32 and cfg["max_steps"] == 2
    assert cfg["bf16"] is False and cfg["model_dtype"] == "float32"  # CPU: fp32 chosen automatically
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32 and adapter["lora_dropout"] == 0.05
    assert sorted(adapter["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert adapter["task_type"] == "CAUSAL_LM"
    # same data -> same fingerprint on a second run; the tokenizer reloads with its chat template
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|start_header_id|>" in tok.chat_template


def test_padding_free_examples_do_not_attend_to_each_other(tiny_model_dir, prep_dir):
    """Padding-free batches concatenate examples in one row (TRL collator: position_ids restart, no mask).
    Each example's logits there must equal its logits alone, i.e. no attention across examples. As in
    SFTTrainer.compute_loss the forward runs with use_cache=False: transformers derives the block-diagonal
    mask from position_ids only when there is no attention mask and no KV cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    records = [json.loads(x) for x in (prep_dir / "train.jsonl").read_text().splitlines()][:3]
    examples = [{"input_ids": tok(r["prompt"] + r["completion"])["input_ids"]} for r in records]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(examples)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for ex in examples:
            n = len(ex["input_ids"])
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            torch.testing.assert_close(packed[start : start + n], alone, atol=1e-4, rtol=1e-4)
            start += n
        # control: without position_ids the model does attend across the boundary
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        n0 = len(examples[0]["input_ids"])
        assert not torch.allclose(leaky[n0 : n0 + 5], packed[n0 : n0 + 5], atol=1e-3)


def test_padding_free_training_runs(tiny_model_dir, prep_dir, tmp_path):
    trainer = _train(tiny_args(tiny_model_dir, prep_dir, tmp_path / "out", "--max_steps", "2", "--padding_free",
                               "true", "--per_device_train_batch_size", "2"))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_qlora_trains_on_cpu(tiny_model_dir, prep_dir, tmp_path):
    """4-bit nf4 base via bitsandbytes; LoRA adapters train, the 4-bit base is frozen."""
    snap = _Snapshot([2])
    trainer = _train(tiny_args(tiny_model_dir, prep_dir, tmp_path / "out", "--max_steps", "3", "--qlora", "true",
                               "--lora_dropout", "0.0"), callbacks=[snap.callback])
    import bitsandbytes as bnb

    base = trainer.model.get_base_model()
    assert getattr(base, "is_loaded_in_4bit", False)
    q = [m for m in base.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert q and q[0].weight.quant_type == "nf4"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    lora = [n for n in snap.saved[0] if "lora_" in n]
    assert lora and all(not snap.saved[2][n].equal(snap.saved[0][n]) for n in lora)
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_wandb_offline_writes_a_run(tiny_model_dir, prep_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    _train(tiny_args(tiny_model_dir, prep_dir, tmp_path / "out", "--max_steps", "2", "--report_to", "wandb",
                     "--run_name", "dear-test"))
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wb").rglob("*"))[:20]
    files = list(runs[0].glob("*.wandb"))
    assert files and files[0].stat().st_size > 0


@pytest.mark.parametrize("prompt", ["dear-card", "rankgpt"])
def test_trains_on_real_prep_output(tiny_model_dir, tmp_path, prompt):
    """`dear prep listwise` output (NovelEval, qrels as teacher; plain and chat prompts) trains as is, and the
    chat records' loss is on the assistant turn only."""
    from data_prep.listwise_cli import main as prep_main
    from data_prep.samples import noveleval_paths

    data, qrels = noveleval_paths()
    prep = tmp_path / "prep"
    assert prep_main(["--teacher", str(data), "--qrels", str(qrels), "--out", str(prep), "--prompt", prompt,
                      "--window", "4", "--top-k", "8", "--eval-fraction", "0.2"]) == 0
    trainer = _train(tiny_args(tiny_model_dir, prep, tmp_path / "out", "--max_steps", "2", "--max_length", "4096"))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert (tmp_path / "out" / "prompt_spec.json").read_text() == (prep / "prompt_spec.json").read_text()
    rec = json.loads((prep / "train.jsonl").read_text().splitlines()[0])
    batch = trainer.data_collator([trainer.train_dataset[0]])
    kept = batch["labels"][0][batch["labels"][0] != -100].tolist()
    text = trainer.processing_class.decode(kept, skip_special_tokens=False)
    target = rec["completion"] if isinstance(rec["completion"], str) else rec["completion"][0]["content"]
    assert text == target + "<|eot_id|>"
