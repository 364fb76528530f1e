"""Shipped configs parse; bad configs fail naming the fix; the 8B recipe has DeAR's adapter size."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests._train_helpers import REPO, build_prep_folder, tiny_args

CONFIGS = REPO / "configs"


def _parse(argv):
    from dear_train import sft
    from dear_train.config import parse_config

    return parse_config(sft.config_classes(), argv)


@pytest.mark.parametrize("path", sorted(p for p in (CONFIGS / "train").glob("*.yaml")
                                       if "distill" not in p.name and "grpo" not in p.name),
                         ids=lambda p: p.name)  # *distill*.yaml: `dear distill` (tests/test_distill.py); *grpo*.yaml:
#                                                  `dear train --method grpo` (tests/test_train_grpo.py)
def test_every_train_config_parses(path: Path):
    script, args, model = _parse(["--config", str(path), "--dataset_path", "x"])
    assert model.use_peft and model.lora_r == 16 and model.lora_alpha == 32 and model.lora_dropout == 0.05
    assert sorted(model.lora_target_modules) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert model.lora_task_type == "CAUSAL_LM"
    assert args.gradient_checkpointing
    assert args.bf16 is False  # this host has no GPU: fp32 chosen automatically, even where the YAML says bf16
    if path.name.startswith("llama31_8b"):
        assert model.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
        assert args.learning_rate == 1e-4 and str(args.lr_scheduler_type.value) == "cosine"
        assert args.warmup_steps == 0.1 and args.max_length == 5120
        assert args.report_to == ["wandb"]
        assert args.train_sampling_strategy == "group_by_length" and not args.padding_free
        assert script.qlora == ("qlora" in path.name)


def test_bf16_is_kept_when_a_gpu_is_present(monkeypatch):
    """On a bf16-capable GPU the recipe's bf16 stands (the auto-downgrade is CPU-only)."""
    from dear_train import config

    class Args:
        bf16 = True
        fp16 = False
        use_cpu = False

    monkeypatch.setattr(config, "cuda_available", lambda: True)
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    a = Args()
    config.resolve_precision(a)
    assert a.bf16 is True
    monkeypatch.setattr(config, "cuda_available", lambda: False)
    config.resolve_precision(a)
    assert a.bf16 is False and a.fp16 is False
    assert config.resolve_model_dtype("auto", bf16=True, fp16=False) == "bfloat16"
    assert config.resolve_model_dtype("auto", bf16=False, fp16=False) == "float32"


@pytest.mark.parametrize("path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_loads(path: Path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.num_processes >= 1
    ds = (cfg.deepspeed_config or {}).get("deepspeed_config_file")
    if "deepspeed" in path.name or "multi_node" in path.name:
        assert ds and (REPO / ds).is_file(), ds
        stage = json.loads((REPO / ds).read_text())["zero_optimization"]["stage"]
        assert stage == (3 if "zero3" in path.name else 2)
    if "multi_node" in path.name:
        assert cfg.num_machines == 2 and cfg.num_processes == 16


@pytest.mark.parametrize("path", sorted((CONFIGS / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_every_deepspeed_config_is_valid(path: Path):
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    data = json.loads(path.read_text())
    assert "optimizer" not in data  # the Trainer's AdamW (no fused_adam build); see ENGINEERING.md
    assert data["train_micro_batch_size_per_gpu"] == "auto" and data["bf16"]["enabled"] == "auto"
    hf = HfDeepSpeedConfig(data)
    assert hf.is_zero3() == (data["zero_optimization"]["stage"] == 3)


def test_slurm_script_is_valid_bash():
    script = REPO / "scripts" / "slurm_train.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "accelerate launch" in text and "-m dear_train.sft" in text and "--resume_from_checkpoint auto" in text


def test_llama31_8b_lora_has_deare_adapter_size():
    """The shipped recipe on the real Llama-3.1-8B architecture (meta device, no weights): 41,943,040
    trainable parameters = 83.9 MB in bf16, the size of DeAR's released listwise adapter (~42M / ~84 MB)."""
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import get_peft_config

    _, _, model_args = _parse(["--config", str(CONFIGS / "train" / "llama31_8b_listwise_lora.yaml")])
    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                      rope_theta=500000.0, tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
        peft_model = get_peft_model(model, get_peft_config(model_args))
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert trainable == 41_943_040
    assert 8.0e9 < total - trainable < 8.1e9  # Llama-3.1-8B itself
    assert abs(trainable * 2 / 1e6 - 83.9) < 0.1  # MB in bf16


# ---- bad configs: exit non-zero, message names the fix ---------------------------------------------------

def _main(argv, capsys):
    from dear_train import sft

    rc = sft.main(argv)
    return rc, capsys.readouterr().err


def test_unknown_yaml_key_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "train" / "tiny_cpu.yaml").read_text() + "\nlearning_rte: 0.1\n")
    rc, err = _main(["--config", str(bad), "--dataset_path", "x"], capsys)
    assert rc == 2
    assert "learning_rte" in err and "did you mean 'learning_rate'" in err and "fix:" in err


def test_unknown_cli_flag_is_an_error(capsys):
    rc, err = _main(["--config", str(CONFIGS / "train" / "tiny_cpu.yaml"), "--lora_rank", "8"], capsys)
    assert rc == 2 and "--lora_rank" in err and "fix:" in err


def test_missing_dataset_path(tiny_model_dir, capsys):
    rc, err = _main(["--config", str(CONFIGS / "train" / "tiny_cpu.yaml"), "--model_name_or_path",
                     str(tiny_model_dir)], capsys)
    assert rc == 2 and "missing dataset path" in err and "--dataset_path" in err


def test_dataset_folder_without_prompt_spec(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    rc, err = _main(tiny_args(tiny_model_dir, tmp_path / "d", tmp_path / "o"), capsys)
    assert rc == 2 and "prompt_spec.json" in err and "dear prep listwise" in err


def test_examples_longer_than_max_length(tiny_model_dir, shared_data, tmp_path, capsys):
    data = build_prep_folder(tmp_path / "d", shared_data)
    rc, err = _main(tiny_args(tiny_model_dir, data, tmp_path / "o", "--max_length", "64"), capsys)
    assert rc == 2 and "longer than max_length=64" in err and "raise --max_length to at least" in err
    assert not (tmp_path / "o" / "adapter_model.safetensors").exists()


def test_ranking_eval_window_larger_than_the_data(tiny_model_dir, shared_data, tmp_path, capsys):
    rc, err = _main(tiny_args(tiny_model_dir, tmp_path, tmp_path / "o", "--eval_strategy", "steps",
                              "--ranking_eval_data", str(shared_data / "trec-dl19" / "retrieve_results_dl19_top100.json"),
                              "--ranking_eval_qrels", str(shared_data / "trec-dl19" / "qrels.dl19-passage.txt"),
                              "--ranking_eval_top_k", "5", "--ranking_eval_window", "20"), capsys)
    assert rc == 2 and "larger than the data" in err and "ranking_eval_window <= 5" in err


def test_bad_value_type(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's own message: "invalid float value: 'fast'"
        _main(["--config", str(CONFIGS / "train" / "tiny_cpu.yaml"), "--learning_rate", "fast"], capsys)
    assert exc.value.code == 2
    assert "learning_rate" in capsys.readouterr().err


def test_cli_exit_code_through_dear(dear_cmd, subprocess_env, tmp_path):
    proc = subprocess.run([*dear_cmd, "train", "--config", str(CONFIGS / "train" / "tiny_cpu.yaml")],
                          env=subprocess_env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "missing dataset path" in proc.stderr and "fix:" in proc.stderr


def test_gpu_bench_script_dry_run(tmp_path):
    """The prepared GPU benchmark runs end to end on a tiny shape on CPU (the real run needs CUDA)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bench_train", REPO / "scripts" / "gpu_bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "dry.json"
    assert mod.main(["--dry-run", "--steps", "2", "--warmup", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dry_run"] and res["lora_trainable_params"] == 32768  # r16 on 7 projections x 2 layers
    assert res["tokens_per_s"] > 0 and len(res["step_s_all"]) == 2
    # the FLOP model: on the 8B shape at 5120 tokens the LoRA step is ~1.65e14 model FLOPs
    mflops, hflops = mod.model_flops_per_step(base_params=6_979_321_856, lora_params=41_943_040, layers=32,
                                              hidden=4096, seq=5120, batch=1, head_params=525_336_576,
                                              loss_tokens=100)
    assert 1.4e14 < mflops < 2.0e14 and hflops > mflops
    assert mod.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.4
    assert mod.peak_tflops("NVIDIA H100 PCIe", None) == 756.0 and mod.peak_tflops("NVIDIA H200", None) == 989.4
    assert mod.main(["--steps", "1"]) == 2  # no CUDA here: a clear refusal, not a crash
