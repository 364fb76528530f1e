"""Test helpers for training: a prep output folder built from real DL19 data with the foundation only.

Writes exactly the `dear prep listwise --out DIR` contract (train.jsonl, eval.jsonl, dataset/ as a
DatasetDict, prompt_spec.json, report.json), so training tests do not depend on the prep CLI. The teacher
order is the qrels order (grade descending, first-stage rank breaking ties), a perfect ranking to learn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from data_prep.prompts import get_prompt_spec, render_prompt, save_prompt_spec, training_record
from data_prep.readers import read_qrels, read_rankgpt_json

REPO = Path(__file__).resolve().parents[1]
DL19_JSON = ("trec-dl19", "retrieve_results_dl19_top100.json")
DL19_QRELS = ("trec-dl19", "qrels.dl19-passage.txt")


def build_prep_folder(
    out: str | Path,
    shared_data: Path,
    *,
    spec_name: str = "dear-card",
    window: int = 4,
    truncate_length: int = 60,
    train_queries: int = 4,
    eval_queries: int = 2,
    windows_per_query: int = 2,
    with_grades: bool = True,
) -> Path:
    """A small listwise SFT dataset from DL19 BM25 top-100 + qrels, in the prep output format; with ``grades`` (the
    qrels grades, GRPO's) unless ``with_grades`` is False (a prep folder from before GRPO)."""
    from datasets import Dataset, DatasetDict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = get_prompt_spec(spec_name, truncate_length=truncate_length)
    requests = read_rankgpt_json(shared_data.joinpath(*DL19_JSON))
    qrels = read_qrels(shared_data.joinpath(*DL19_QRELS))
    judged = [r for r in requests if r.qid in qrels][: train_queries + eval_queries]
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    for qi, req in enumerate(judged):
        split = "train" if qi < train_queries else "eval"
        grades = qrels[req.qid]
        for w in range(windows_per_query):
            cands = req.candidates[w * window : (w + 1) * window]
            if len(cands) < 2:
                break
            order = sorted(range(len(cands)), key=lambda i: (-grades.get(cands[i].docid, 0), i))
            prompt = render_prompt(spec, req.query, [c.passage() for c in cands])
            rec = training_record(spec, prompt, order)
            rec["qid"] = req.qid
            rec["docids"] = [c.docid for c in cands]
            if with_grades:
                rec["grades"] = [max(0, grades.get(c.docid, 0)) for c in cands]
            splits[split].append(rec)
    for name, recs in splits.items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for rec in recs:
                f.write(json.dumps(rec) + "\n")
    DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(out / "dataset"))
    save_prompt_spec(out, spec)
    (out / "report.json").write_text(json.dumps(
        {"source": "tests/_train_helpers.py (DL19 BM25 + qrels order)", "records": {k: len(v) for k, v in splits.items()},
         "window": window, "prompt_spec": spec.name}, indent=2) + "\n")
    return out


def tiny_args(model_dir: Path, data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    """`dear train` argv using the shipped tiny CPU config."""
    return ["--config", str(REPO / "configs" / "train" / "tiny_cpu.yaml"),
            "--model_name_or_path", str(model_dir), "--dataset_path", str(data_dir),
            "--output_dir", str(out_dir), *extra]


def tiny_grpo_args(model_dir: Path, data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    """`dear train --method grpo` argv (without the --method) using the shipped tiny CPU GRPO config."""
    return ["--config", str(REPO / "configs" / "train" / "tiny_cpu_grpo.yaml"),
            "--model_name_or_path", str(model_dir), "--dataset_path", str(data_dir),
            "--output_dir", str(out_dir), *extra]


def run_cmd(cmd: list[str], env: dict[str, str], *, timeout: int = 600, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a command, and on failure show its output in the assertion message."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc


def fail_msg(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-8000:]}"


def python() -> str:
    return sys.executable


def load_adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def train_in_process(method: str, argv: list[str], callbacks=()):
    """Parse like `dear train [--method grpo]` and train in-process with extra Trainer ``callbacks``; returns
    the trainer."""
    from dear_train.config import parse_config

    if method == "grpo":
        from dear_train.grpo import config as method_config
        from dear_train.grpo import train as runner
    else:
        from dear_train import sft as method_config
        from dear_train import sft as runner
    script, training_args, model_args = parse_config(method_config.config_classes(), argv)
    if not callbacks:
        return runner.run(script, training_args, model_args)
    import transformers

    orig = transformers.Trainer.__init__

    def patched(self, *a, **kw):
        kw["callbacks"] = list(kw.get("callbacks") or []) + list(callbacks)
        orig(self, *a, **kw)

    transformers.Trainer.__init__ = patched
    try:
        return runner.run(script, training_args, model_args)
    finally:
        transformers.Trainer.__init__ = orig


def train_sft_adapter(model_dir: Path, data_dir: Path, out_dir: Path) -> Path:
    """A tiny adapter SFT-trained until its low-temperature samples are ranking-shaped (ids, '>'), so GRPO's
    rewards vary within a group."""
    train_in_process("sft", tiny_args(model_dir, data_dir, out_dir, "--max_steps", "20", "--learning_rate", "1e-2",
                                      "--per_device_train_batch_size", "8", "--lora_dropout", "0.0"))
    return out_dir
