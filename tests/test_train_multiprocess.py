"""Training with two processes over gloo on CPU: DDP (torchrun), DeepSpeed ZeRO-2 and ZeRO-3 through the same
`dear_train.sft` entry point and the shipped accelerate configs, and kill -9 + `--resume_from_checkpoint auto`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._train_helpers import (
    DL19_JSON,
    DL19_QRELS,
    REPO,
    fail_msg,
    load_adapter_tensors,
    run_cmd,
    tiny_args,
)

ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


def _port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.multiprocess
def test_ddp_two_processes_identical_weights_and_double_batch(tiny_model_dir, prep_dir, tmp_path, subprocess_env):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _port(),
           str(REPO / "tests" / "_train_worker.py"),
           *tiny_args(tiny_model_dir, prep_dir, out, "--use_cpu", "true", "--num_train_epochs", "1",
                      "--max_steps", "-1", "--lora_dropout", "0.0", "--first_token_loss_weight", "10")]
    proc = run_cmd(cmd, subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    infos = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for info in infos:
        assert info["world_size"] == 2 and "MULTI_CPU" in info["distributed_type"]
        assert info["total_train_batch_size"] == 2 * info["per_device_train_batch_size"] == 4
        # 8 examples / global batch 4 = 2 optimizer steps for the epoch (one process would take 4)
        assert info["global_step"] == 2
        # the FIRST objective ran on both ranks (its rank term is logged, averaged over the processes)
        assert all("first_token_rank_loss" in h for h in info["log_history"] if "loss" in h)
    from safetensors.torch import load_file

    w0, w1 = (load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys() and len(w0) == 28
    for k in w0:
        assert w0[k].equal(w1[k]), k
    assert any(v.abs().sum() > 0 for k, v in w0.items() if "lora_B" in k)  # trained, not the zero init
    saved = load_adapter_tensors(out)
    assert len(saved) == len(w0)


def _deepspeed(stage: int, model, data, out, env, *extra: str) -> subprocess.CompletedProcess:
    cmd = [*ACCELERATE, "--config_file", str(REPO / "configs" / "accelerate" / f"deepspeed_zero{stage}.yaml"),
           "--num_processes", "2", "--main_process_port", _port(), "-m", "dear_train.sft",
           *tiny_args(model, data, out, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "4", *extra)]
    return run_cmd(cmd, env)


def _check_deepspeed_run(out: Path) -> dict:
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in logs] == [1, 2, 3, 4]
    assert logs[0]["epoch"] == 0.5  # 8 examples, global batch 2 processes x 2 = 4 -> 2 steps per epoch
    adapter = load_adapter_tensors(out)
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert len(lora_b) == 14 and all(v.abs().sum() > 0 for v in lora_b.values())  # trained (init is zero)
    assert (out / "dear_training.json").is_file() and (out / "prompt_spec.json").is_file()
    return adapter


@pytest.mark.multiprocess
def test_deepspeed_zero2_two_processes(tiny_model_dir, prep_dir, tmp_path, subprocess_env):
    out = tmp_path / "z2"
    proc = _deepspeed(2, tiny_model_dir, prep_dir, out, subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    assert "accelerate backend set to gloo" in proc.stdout + proc.stderr  # the shim was needed and applied
    _check_deepspeed_run(out)
    assert (out / "checkpoint-4" / "global_step4").is_dir()


@pytest.mark.multiprocess
def test_deepspeed_zero3_saves_trained_adapter_and_converts(tiny_model_dir, prep_dir, tmp_path, subprocess_env,
                                                            shared_data):
    """Also ranks held-out DL19 queries every 2 steps: every rank generates over the sharded weights (rank 0
    alone would wait forever for the others' parameter gathers), and rank 0 records the figures. Trains with the
    FIRST objective (first_token_loss_weight 10): its LM-head call on the first-id rows gathers the sharded head."""
    out = tmp_path / "z3"
    proc = _deepspeed(3, tiny_model_dir, prep_dir, out, subprocess_env,
                      "--eval_strategy", "steps", "--eval_steps", "2",
                      "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
                      "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)),
                      "--ranking_eval_queries", "2", "--ranking_eval_top_k", "6", "--ranking_eval_window", "4",
                      "--ranking_eval_stride", "2", "--ranking_eval_max_new_tokens", "12",
                      "--first_token_loss_weight", "10")
    assert proc.returncode == 0, fail_msg(proc)
    adapter = _check_deepspeed_run(out)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    ranks = [h["first_token_rank_loss"] for h in state["log_history"] if "loss" in h]
    assert len(ranks) == 4 and all(r > 0 for r in ranks)
    evals = [json.loads(x) for x in (out / "ranking_eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [2, 4]  # written once (rank 0), per evaluation
    assert all(0.0 <= r["metrics"]["ndcg@10"] <= 1.0 for r in evals)
    # the sharded ZeRO-3 checkpoint converts (zero_to_fp32; the trainable tensors are the LoRA ones) to fp32
    # weights equal to the adapter saved from ZeRO-3
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    full = get_fp32_state_dict_from_zero_checkpoint(str(out / "checkpoint-4"))
    lora_full = {k.replace(".default", ""): v for k, v in full.items() if "lora_" in k}
    assert lora_full.keys() == adapter.keys()
    for k, v in adapter.items():
        assert v.float().equal(lora_full[k].float()), k


@pytest.mark.slow
def test_kill_after_checkpoint_then_resume_auto_equals_uninterrupted(tiny_model_dir, prep_dir, tmp_path,
                                                                       subprocess_env):
    from dear_train.checkpoints import checkpoint_problem

    common = ("--max_steps", "12", "--save_strategy", "steps", "--save_steps", "3", "--lr_scheduler_type", "cosine",
              "--warmup_steps", "2")
    dear = [sys.executable, "-m", "dear_train.cli", "train"]
    ref = tmp_path / "ref"
    proc = run_cmd([*dear, *tiny_args(tiny_model_dir, prep_dir, ref, *common, "--save_strategy", "no")],
                   subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)

    out = tmp_path / "killed"
    child = subprocess.Popen([*dear, *tiny_args(tiny_model_dir, prep_dir, out, *common)], env=subprocess_env,
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and child.poll() is None:
            if checkpoint_problem(out / "checkpoint-3") is None:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "adapter_model.safetensors").exists()  # killed mid-run: no final adapter
    assert not (out / "checkpoint-12").exists()

    proc = run_cmd([*dear, *tiny_args(tiny_model_dir, prep_dir, out, *common, "--resume_from_checkpoint", "auto")],
                   subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    assert "resume auto: resuming from" in proc.stderr + proc.stdout
    a, b = load_adapter_tensors(ref), load_adapter_tensors(out)
    assert a.keys() == b.keys()
    import torch

    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4, msg=k)
    # the resumed run restarted from a checkpoint, not from scratch: its log starts after step 1
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12
