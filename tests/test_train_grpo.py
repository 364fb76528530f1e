"""`dear train --method grpo` in one process on the tiny model and real DL19 windows: what GRPO training must do.

A random model never writes a ranking (every reward 0: a group with equal rewards trains nothing), so the runs
continue a briefly SFT-trained tiny adapter and sample at the tiny config's low temperature: answers then differ
within a group and the ranking reward varies.
"""

from __future__ import annotations

import json
import math

import pytest

from tests._train_helpers import (
    DL19_JSON,
    DL19_QRELS,
    build_prep_folder,
    tiny_grpo_args,
    train_in_process,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grpo(argv: list[str], callbacks=()):
    """Parse like `dear train --method grpo` and train in-process; returns the trainer."""
    return train_in_process("grpo", argv, callbacks)


class _Snapshot:
    """Keeps a copy of every parameter when training begins and after the last step."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self
        self.saved: dict[str, dict] = {}

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                outer.saved["begin"] = {n: p.detach().clone() for n, p in model.named_parameters()}

            def on_train_end(self, args, state, control, model=None, **kw):
                outer.saved["end"] = {n: p.detach().clone() for n, p in model.named_parameters()}

        self.callback = _CB()


def test_grpo_continues_the_sft_adapter_trains_only_it_and_logs_each_reward(tiny_model_dir, prep_dir, sft_adapter,
                                                                             tmp_path, shared_data):
    """beta > 0 with an adapter: TRL keeps a frozen copy ("ref") as the KL reference. After 4 steps every LoRA tensor
    of the trained adapter moved; no base weight and no reference tensor did; each reward is logged on its own; the
    held-out ranking eval ran at steps 2 and 4; the output is an adapter folder like SFT's (no ref/)."""
    snap = _Snapshot()
    out = tmp_path / "grpo"
    trainer = _grpo(tiny_grpo_args(
        tiny_model_dir, prep_dir, out, "--sft_adapter", str(sft_adapter), "--beta", "0.04",
        "--eval_strategy", "steps", "--eval_steps", "2", "--max_eval_samples", "2",
        "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
        "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)), "--ranking_eval_queries", "1",
        "--ranking_eval_top_k", "6", "--ranking_eval_window", "4", "--ranking_eval_stride", "2",
        "--ranking_eval_max_new_tokens", "20"), callbacks=[snap.callback])
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logs] == [1, 2, 3, 4]
    for h in logs:
        assert 0.0 <= h["rewards/ranking_reward/mean"] <= 1.0 and 0.0 <= h["rewards/format_reward/mean"] <= 1.0
        assert h["reward"] == pytest.approx(h["rewards/ranking_reward/mean"] + h["rewards/format_reward/mean"],
                                            abs=1e-5)
        assert math.isfinite(h["loss"]) and "kl" in h
    assert any(h["reward_std"] > 0 for h in logs), "no group had rewards that differ: nothing could train"
    evals = [h for h in trainer.state.log_history if "eval_rewards/ranking_reward/mean" in h]
    assert [h["step"] for h in evals] == [2, 4]

    before, after = snap.saved["begin"], snap.saved["end"]
    trained = [n for n in before if "lora_" in n and ".default." in n]
    ref = [n for n in before if "lora_" in n and ".ref." in n]
    base = [n for n in before if "lora_" not in n]
    assert len(trained) == len(ref) == 2 * 7 * 2
    assert not [n for n in trained if after[n].equal(before[n])], "LoRA tensors that did not move"
    assert not [n for n in ref + base if not after[n].equal(before[n])], "frozen weights that moved"
    # the run started from the SFT adapter's weights, not a fresh LoRA
    from safetensors.torch import load_file

    sft = load_file(str(sft_adapter / "adapter_model.safetensors"))
    for n in trained:
        assert before[n].equal(sft[n.replace(".default", "")]), n

    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
            "prompt_spec.json", "dear_training.json", "ranking_eval.jsonl"} <= names and "ref" not in names
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert sorted(saved) == sorted(n.replace(".default", "") for n in trained)
    for n in trained:
        assert saved[n.replace(".default", "")].equal(after[n]), n
    assert (out / "prompt_spec.json").read_text() == (prep_dir / "prompt_spec.json").read_text()
    manifest = json.loads((out / "dear_training.json").read_text())
    assert manifest["method"] == "grpo" and manifest["task"] == "listwise"
    assert manifest["init_adapter"] == str(sft_adapter) and manifest["rewards"] == ["ranking_reward", "format_reward"]
    assert manifest["config"]["beta"] == 0.04 and manifest["config"]["num_generations"] == 4
    ranked = [json.loads(x) for x in (out / "ranking_eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ranked] == [2, 4] and all(0 <= r["metrics"]["ndcg@10"] <= 1 for r in ranked)

    # `dear export` takes it as it takes an SFT adapter: same bytes, logits equal the source's
    from dear_train.export.build import export_adapter

    exported = export_adapter(out, tmp_path / "export", dtype="fp32")
    assert (exported.out / "adapter_model.safetensors").read_bytes() == (out / "adapter_model.safetensors").read_bytes()
    assert exported.report.export_vs_source == 0.0


def test_grpo_from_the_base_model_adds_the_dear_lora(tiny_model_dir, prep_dir, tmp_path):
    """No sft_adapter: a new LoRA of the DeAR shape on the base (a random model scores 0: it runs, nothing to learn)."""
    out = tmp_path / "grpo"
    trainer = _grpo(tiny_grpo_args(tiny_model_dir, prep_dir, out, "--max_steps", "1"))
    assert trainer.state.global_step == 1
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32 and adapter["lora_dropout"] == 0.05
    assert sorted(adapter["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert json.loads((out / "dear_training.json").read_text())["init_adapter"] is None


def test_bad_settings_and_old_prep_folders_are_refused_with_the_fix(tiny_model_dir, shared_data, tmp_path, capsys):
    from dear_train.cli import main

    old = build_prep_folder(tmp_path / "old", shared_data, with_grades=False, train_queries=1, eval_queries=0)
    out = tmp_path / "out"
    assert main(["train", "--method", "grpo", *tiny_grpo_args(tiny_model_dir, old, out)]) == 2
    err = capsys.readouterr().err
    assert "lacks column(s) ['grades']" in err and "rerun `dear prep listwise" in err
    assert not out.exists()

    new = build_prep_folder(tmp_path / "new", shared_data, train_queries=1, eval_queries=0)
    assert main(["train", "--method", "grpo", *tiny_grpo_args(tiny_model_dir, new, out, "--num_generation", "4")]) == 2
    assert "'--num_generation' (did you mean '--num_generations'?)" in capsys.readouterr().err
    assert main(["train", "--method", "grpo", *tiny_grpo_args(tiny_model_dir, new, out, "--max_prompt_length",
                                                                "50")]) == 2
    err = capsys.readouterr().err
    assert "prompts are longer than max_prompt_length=50" in err and "raise --max_prompt_length to at least" in err
    assert main(["train", "--method", "grpo", *tiny_grpo_args(tiny_model_dir, new, out, "--reward_weights", "1.0")]) == 2
    assert "reward_weights has 1 values for 2 rewards (ranking_reward, format_reward)" in capsys.readouterr().err
    assert main(["train", "--method", "ppo", *tiny_grpo_args(tiny_model_dir, new, out)]) == 2
    assert "--method must be one of sft, grpo" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name", ["tiny_cpu_grpo.yaml", "llama31_8b_listwise_grpo.yaml"])
def test_shipped_grpo_configs_parse_with_the_dear_lora_and_whole_groups(name):
    from dear_train.config import parse_config
    from dear_train.grpo.config import config_classes
    from tests._train_helpers import REPO

    script, args, model = parse_config(config_classes(), ["--config", str(REPO / "configs" / "train" / name)])
    assert model.use_peft and (model.lora_r, model.lora_alpha, model.lora_dropout) == (16, 32, 0.05)
    assert sorted(model.lora_target_modules) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert args.bf16 is False  # no GPU here: fp32 chosen automatically
    for world in (1, 2, 8):  # every launch size gives whole groups of num_generations answers
        assert (args.per_device_train_batch_size * world * args.gradient_accumulation_steps) % args.num_generations == 0
    if name.startswith("llama31"):
        assert model.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct" and args.report_to == ["wandb"]
        assert (args.num_generations, args.beta, args.learning_rate) == (8, 0.001, 1e-5)
        assert args.use_vllm and args.vllm_max_model_length == script.max_prompt_length + args.max_completion_length
        from dear_train.grpo.train import setup_generation

        setup_generation(args)  # no GPU / no vllm here: transformers generation instead
        assert not args.use_vllm
