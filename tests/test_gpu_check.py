"""`scripts/gpu_check.sh --dry-run`: the GPU check's code paths at tiny shapes on the CPU, with every output."""

from __future__ import annotations

import json
import subprocess
import sys

from tests._train_helpers import REPO


def test_gpu_check_dry_run_records_training_generation_and_first_token_figures(tmp_path, subprocess_env):
    env = dict(subprocess_env, OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    logs = {s["step"]: (tmp_path / f"{s['step']}.log").read_text()[-3000:] for s in steps}
    assert [s["step"] for s in steps] == ["gpu_bench_train", "bench_rerank_8b"]
    assert all(s["rc"] == 0 for s in steps), logs
    train = json.loads((tmp_path / "gpu_bench_train.json").read_text())
    assert train["dry_run"] and train["lora_trainable_params"] > 0
    # the GRPO row: steps of TRL's GRPOTrainer on the same LoRA model with the GRPO recipe's settings
    grpo = train["grpo"]
    assert grpo["steps_timed"] == 2 and grpo["step_s_median"] > 0 and grpo["beta"] == 0.001
    assert grpo["answers_per_step"] == grpo["windows_per_step"] * grpo["num_generations"] == 8
    bench = json.loads((tmp_path / "bench_rerank_8b.json").read_text())
    (run,) = bench["runs"]
    assert "card" not in run and run["ours"]["generated_tokens"] > 0 and run["ours"]["windows"] > 0
    for bs in (1, 2):
        row = run[f"first_token_b{bs}"]
        assert row["windows"] == run["ours"]["windows"] and row["generated_tokens"] == 0 and row["vs_generate"] > 0
    assert run["first_token_b2"]["forwards"] < run["first_token_b1"]["forwards"]
    table = (tmp_path / "bench_rerank_8b.md").read_text()
    assert "first-token (batch 2)" in table and "ours (batched" in table
    assert "torch" in (tmp_path / "environment.txt").read_text()
