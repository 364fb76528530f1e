"""`dear distill` with two processes: DeepSpeed ZeRO-2 and ZeRO-3 over gloo on CPU through `dear train`'s
accelerate configs and DeepSpeed-on-CPU shim (reused), the same launch line as on a GPU node."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from tests._pointwise_helpers import distill_data
from tests._train_helpers import REPO, fail_msg, load_adapter_tensors, run_cmd


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.multiprocess
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_two_processes(stage, tiny_model_dir, tmp_path, subprocess_env, shared_data):
    """ZeRO-3 also ranks held-out DL19 queries every 2 steps on every rank (the sharded weights need all ranks in
    each forward) and keeps training afterwards."""
    from tests._train_helpers import DL19_JSON, DL19_QRELS

    data, _ = distill_data(tmp_path, num_queries=4, depth=6)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(REPO / "configs" / "accelerate" / f"deepspeed_zero{stage}.yaml"),
           "--num_processes", "2", "--main_process_port", _port(), "-m", "dear_train.distill",
           "--config", str(REPO / "configs" / "train" / "tiny_cpu_distill.yaml"),
           "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(data),
           "--output_dir", str(out), "--max_steps", "4", "--logging_steps", "1", "--save_strategy", "steps",
           "--save_steps", "4"]
    if stage == 3:
        cmd += ["--eval_strategy", "steps", "--eval_steps", "2",
                "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
                "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)),
                "--ranking_eval_queries", "2", "--ranking_eval_top_k", "10"]
    proc = run_cmd(cmd, subprocess_env)
    assert proc.returncode == 0, fail_msg(proc)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in logs] == [1, 2, 3, 4]
    # 4 groups, 2 per device x 2 processes: one optimizer step per epoch (one process would need two)
    assert logs[0]["epoch"] == 1.0
    assert (out / "checkpoint-4" / "global_step4").is_dir()  # a DeepSpeed checkpoint
    adapter = load_adapter_tensors(out)
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert len(lora_b) == 14 and all(v.abs().sum() > 0 for v in lora_b)  # trained (init is zero)
    assert any("score" in k for k in adapter)
    record = json.loads((out / "dear_training.json").read_text())
    assert record["task"] == "pointwise" and (out / "pointwise_format.json").is_file()
    if stage == 3:
        evals = [json.loads(x) for x in (out / "ranking_eval.jsonl").read_text().splitlines()]
        assert [r["step"] for r in evals] == [2, 4]
        assert all(0.0 <= r["metrics"]["ndcg@10"] <= 1.0 for r in evals)
