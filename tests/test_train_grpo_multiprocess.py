"""GRPO with two processes over gloo on CPU: DDP (torchrun) and DeepSpeed ZeRO-2 (the shipped accelerate profile)
through the same entry point as one process, and kill -9 after a checkpoint + `--resume_from_checkpoint auto`."""

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
)
from tests._train_helpers import tiny_grpo_args as grpo_args

ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


def _port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.multiprocess
def test_ddp_two_processes_share_the_groups_and_end_identical(tiny_model_dir, prep_dir, sft_adapter, tmp_path,
                                                               subprocess_env):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _port(),
           str(REPO / "tests" / "_train_worker.py"), "--method", "grpo",
           *grpo_args(tiny_model_dir, prep_dir, out, "--use_cpu", "true", "--sft_adapter", str(sft_adapter),
                      "--max_steps", "2")]
    proc = run_cmd(cmd, subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    infos = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for info in infos:
        assert info["world_size"] == 2 and "MULTI_CPU" in info["distributed_type"]
        assert info["generation_batch_size"] == 16 and info["global_step"] == 2  # 4 windows x 4 answers a step
        assert info["log_history"][-1]["epoch"] == 1.0  # 8 windows / 4 per step: one epoch in 2 steps
    from safetensors.torch import load_file

    w0, w1 = (load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys() and len(w0) == 28
    for k in w0:
        assert w0[k].equal(w1[k]), k
    start = load_adapter_tensors(sft_adapter)
    assert any(not w0[k].equal(start[k.replace(".default", "")]) for k in w0)  # trained
    assert len(load_adapter_tensors(out)) == 28


@pytest.mark.multiprocess
def test_deepspeed_zero2_two_processes(tiny_model_dir, prep_dir, sft_adapter, tmp_path, subprocess_env):
    out = tmp_path / "z2"
    cmd = [*ACCELERATE, "--config_file", str(REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml"),
           "--num_processes", "2", "--main_process_port", _port(), "-m", "dear_train.grpo",
           *grpo_args(tiny_model_dir, prep_dir, out, "--sft_adapter", str(sft_adapter), "--max_steps", "2",
                      "--save_strategy", "steps", "--save_steps", "2")]
    proc = run_cmd(cmd, subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    assert "accelerate backend set to gloo" in proc.stdout + proc.stderr  # the shim was needed and applied
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in logs] == [1, 2] and logs[-1]["epoch"] == 1.0  # global generation batch 16
    assert all("rewards/ranking_reward/mean" in h for h in logs)
    assert (out / "checkpoint-2" / "global_step2").is_dir()
    adapter, start = load_adapter_tensors(out), load_adapter_tensors(sft_adapter)
    assert adapter.keys() == start.keys() and any(not adapter[k].equal(start[k]) for k in adapter)
    assert json.loads((out / "dear_training.json").read_text())["method"] == "grpo"


@pytest.mark.multiprocess
def test_deepspeed_zero3_with_the_ranking_eval(tiny_model_dir, prep_dir, sft_adapter, tmp_path, subprocess_env,
                                               shared_data):
    """ZeRO-3 shards the base and the continued adapter; generation gathers them (TRL), and the ranking eval at
    step 2 runs on every rank over the sharded weights (rank 0 writes it once)."""
    out = tmp_path / "z3"
    cmd = [*ACCELERATE, "--config_file", str(REPO / "configs" / "accelerate" / "deepspeed_zero3.yaml"),
           "--num_processes", "2", "--main_process_port", _port(), "-m", "dear_train.grpo",
           *grpo_args(tiny_model_dir, prep_dir, out, "--sft_adapter", str(sft_adapter), "--max_steps", "2",
                      "--eval_strategy", "steps", "--eval_steps", "2", "--max_eval_samples", "2",
                      "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
                      "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)), "--ranking_eval_queries", "1",
                      "--ranking_eval_top_k", "6", "--ranking_eval_window", "4", "--ranking_eval_stride", "2",
                      "--ranking_eval_max_new_tokens", "20")]
    proc = run_cmd(cmd, subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    evals = [json.loads(x) for x in (out / "ranking_eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [2] and 0.0 <= evals[0]["metrics"]["ndcg@10"] <= 1.0
    adapter, start = load_adapter_tensors(out), load_adapter_tensors(sft_adapter)
    assert adapter.keys() == start.keys()
    assert all(adapter[k].shape == start[k].shape for k in adapter)  # gathered whole, not a rank's shard
    assert all(not adapter[k].equal(start[k]) for k in adapter)  # every LoRA tensor trained


@pytest.mark.slow
def test_kill_after_checkpoint_then_resume_auto_equals_uninterrupted(tiny_model_dir, prep_dir, sft_adapter, tmp_path,
                                                                       subprocess_env):
    """The Trainer restores step, optimizer, scheduler, data order and the RNG (the sampling draws from it), so the
    resumed run samples the same answers and ends with the same adapter and the same per-step rewards."""
    from dear_train.checkpoints import checkpoint_problem

    common = ("--sft_adapter", str(sft_adapter), "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2",
              "--lr_scheduler_type", "cosine", "--warmup_steps", "1")
    dear = [sys.executable, "-m", "dear_train.cli", "train", "--method", "grpo"]
    ref = tmp_path / "ref"
    proc = run_cmd([*dear, *grpo_args(tiny_model_dir, prep_dir, ref, *common)], subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)

    out = tmp_path / "killed"
    child = subprocess.Popen([*dear, *grpo_args(tiny_model_dir, prep_dir, out, *common)], env=subprocess_env,
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and child.poll() is None:
            if checkpoint_problem(out / "checkpoint-2") is None:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "adapter_model.safetensors").exists() and not (out / "checkpoint-6").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")
                    if checkpoint_problem(p) is None)

    proc = run_cmd([*dear, *grpo_args(tiny_model_dir, prep_dir, out, *common, "--resume_from_checkpoint", "auto")],
                   subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    assert f"resume auto: resuming from {out / f'checkpoint-{killed_at}'}" in proc.stderr + proc.stdout
    # it went on from the checkpoint (restored step, optimizer, scheduler, RNG), not from scratch: this process
    # logged only the steps after it
    assert (proc.stdout + proc.stderr).count("{'loss':") == 6 - killed_at
    import torch

    a, b = load_adapter_tensors(ref), load_adapter_tensors(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5, msg=k)
    # the steps after the checkpoint sampled the same answers: same rewards and losses step by step
    def steps(run: Path) -> dict[int, dict]:
        state = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())
        return {h["step"]: h for h in state["log_history"] if "loss" in h}

    resumed, reference = steps(out), steps(ref)
    after = [s for s in resumed if s > killed_at]
    assert after == list(range(killed_at + 1, 7))
    for s in after:
        for key in ("reward", "rewards/ranking_reward/mean", "loss", "grad_norm"):
            assert resumed[s][key] == pytest.approx(reference[s][key], abs=1e-6), (s, key)
