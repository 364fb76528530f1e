"""Does GRPO learn here? From a briefly SFT-trained tiny adapter, N GRPO steps on real DL19 windows.

    PYTHONPATH=. python scripts/grpo_learning_check.py --steps 60 --png docs/img/grpo_learning_curve.png

Not a test (no pass/fail gate in CI): a check with figures. It

1. builds the tiny random Llama (`dear tiny-model`) and a prep folder with `dear prep listwise` from DL19 BM25 with
   the NIST qrels as teacher (``--format qrels``: the grades are the qrels grades), windows of 4 over the top 8,
   a fifth of the queries held out;
2. SFT-trains a LoRA adapter briefly (`dear train`, ``--sft-steps``): the tiny model then writes ranking-shaped
   answers at low temperature, so rewards differ within a group (a random model scores 0 everywhere);
3. reranks the held-out queries and the training queries with it (the ranking eval, nDCG@10, greedy generation);
4. continues it with `dear train --method grpo` (configs/train/tiny_cpu_grpo.yaml) for ``--steps`` steps;
5. reranks again, and reports the mean total reward (ranking + format) over the first and the last 10 steps,
   each reward apart, nDCG before and after, and seconds per step; writes the curve (``--png``) and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DL19 = DATA / "trec-dl19" / "retrieve_results_dl19_top100.json"
QRELS = DATA / "trec-dl19" / "qrels.dl19-passage.txt"


def prep(out: Path) -> Path:
    from data_prep.listwise_cli import main as prep_main

    rc = prep_main(["--teacher", str(DL19), "--qrels", str(QRELS), "--out", str(out), "--window", "4",
                    "--stride", "4", "--top-k", "8", "--passage-length", "60", "--eval-fraction", "0.2"])
    if rc != 0:
        raise SystemExit(f"dear prep listwise failed ({rc})")
    return out


def train_queries_file(prep_dir: Path, out: Path) -> Path:
    """The training queries' candidates as RankGPT JSON (the prep folder writes the held-out ones only)."""
    from data_prep.readers import rankgpt_json, read_rankgpt_json

    held = {r["qid"] for r in json.loads((prep_dir / "eval_queries.json").read_text())} if (
        prep_dir / "eval_queries.json").exists() else set()
    train = [r for r in read_rankgpt_json(DL19) if r.qid not in held]
    out.write_text(json.dumps(rankgpt_json(train)), encoding="utf-8")
    return out


def ranking_ndcg(model_dir: Path, adapter: Path, queries: Path, *, num_queries: int) -> dict:
    """nDCG@10 of reranking ``queries`` (top 8, window 4, stride 2) with the adapter, greedy, as the ranking eval."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_prep.prompts import load_prompt_spec
    from dear_train.ranking_eval import evaluate_ranking, load_held_out

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                      adapter).eval()
    held = load_held_out(queries, QRELS, num_queries=num_queries, top_k=8)
    out = evaluate_ranking(model, tokenizer, load_prompt_spec(adapter), held, window=4, stride=2, batch_size=8,
                           max_new_tokens=24)
    return {"ndcg@10": out["metrics"]["ndcg@10"], "valid_window_share": out["valid_window_share"],
            "queries": len(held.requests)}


def plot(result: dict, png: Path) -> None:
    """Per-step total reward (faint), its 10-step running mean, and the format reward, against the GRPO step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    steps = [c["step"] for c in curve]
    total = [c["reward"] for c in curve]
    running = [statistics.fmean(total[max(0, i - 9):i + 1]) for i in range(len(total))]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(steps, total, color="tab:blue", alpha=0.3, linewidth=1, label="total reward (step)")
    ax.plot(steps, running, color="tab:blue", linewidth=2, label="total reward (mean of last 10 steps)")
    ax.plot(steps, [c["format"] for c in curve], ":", color="tab:red", label="format reward")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward (8 answers)")
    ax.set_title(f"GRPO on the tiny model from a {result['sft_steps']}-step SFT adapter (DL19 windows of 4)",
                 fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--steps", type=int, default=60, help="GRPO steps")
    p.add_argument("--sft-steps", type=int, default=40, help="SFT steps before GRPO")
    p.add_argument("--learning-rate", type=float, default=2e-4, help="GRPO learning rate")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--png", default=None, help="write the reward curve here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replot", default=None, metavar="JSON", help="only redraw --png from a --json this wrote")
    a = p.parse_args(argv)
    if a.replot:
        if not a.png:
            p.error("--replot needs --png")
        plot(json.loads(Path(a.replot).read_text(encoding="utf-8")), Path(a.png))
        return 0
    if a.steps < 20:
        p.error("--steps must be >= 20 (first and last 10 steps are compared)")

    import torch

    torch.set_num_threads(a.threads)
    from dear_train import sft
    from dear_train.config import parse_config
    from dear_train.grpo import train as grpo
    from dear_train.grpo.config import config_classes
    from dear_train.tiny_model import build_tiny_model

    work = Path(a.work or tempfile.mkdtemp(prefix="grpo-check-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_model(work / "tiny")
    prep_dir = prep(work / "prep")
    held_out = prep_dir / "eval_queries.json"
    train_q = train_queries_file(prep_dir, work / "train_queries.json")
    n_held = len(json.loads(held_out.read_text()))

    started = time.perf_counter()
    sft_out = work / "sft"
    sft.run(*parse_config(sft.config_classes(), [
        "--config", str(REPO / "configs" / "train" / "tiny_cpu.yaml"), "--model_name_or_path", str(model_dir),
        "--dataset_path", str(prep_dir), "--output_dir", str(sft_out), "--max_steps", str(a.sft_steps),
        "--learning_rate", "1e-2", "--per_device_train_batch_size", "8", "--lora_dropout", "0.0"]))
    sft_s = time.perf_counter() - started
    before = {"held_out": ranking_ndcg(model_dir, sft_out, held_out, num_queries=n_held),
              "train": ranking_ndcg(model_dir, sft_out, train_q, num_queries=n_held)}

    grpo_out = work / "grpo"
    trainer = grpo.run(*parse_config(config_classes(), [
        "--config", str(REPO / "configs" / "train" / "tiny_cpu_grpo.yaml"), "--model_name_or_path", str(model_dir),
        "--dataset_path", str(prep_dir), "--sft_adapter", str(sft_out), "--output_dir", str(grpo_out),
        "--max_steps", str(a.steps), "--learning_rate", str(a.learning_rate)]))
    logs = [h for h in trainer.state.log_history if "reward" in h and "loss" in h]
    runtime = next(h["train_runtime"] for h in trainer.state.log_history if "train_runtime" in h)
    after = {"held_out": ranking_ndcg(model_dir, grpo_out, held_out, num_queries=n_held),
             "train": ranking_ndcg(model_dir, grpo_out, train_q, num_queries=n_held)}

    def window(key: str, part: slice) -> float:
        return statistics.fmean(h[key] for h in logs[part])

    keys = {"total": "reward", "ranking": "rewards/ranking_reward/mean", "format": "rewards/format_reward/mean"}
    result = {
        "steps": len(logs), "sft_steps": a.sft_steps, "sft_seconds": round(sft_s, 1),
        "grpo_seconds_per_step": round(runtime / len(logs), 3),
        "grpo_step_time_median": round(statistics.median(h["step_time"] for h in logs), 3),
        "first10": {k: round(window(v, slice(0, 10)), 4) for k, v in keys.items()},
        "last10": {k: round(window(v, slice(-10, None)), 4) for k, v in keys.items()},
        "ndcg_before": before, "ndcg_after": after,
        "curve": [{"step": h["step"], "reward": h["reward"], "ranking": h[keys["ranking"]],
                   "format": h[keys["format"]], "completion_length": h["completions/mean_length"]} for h in logs],
        "threads": a.threads,
    }
    result["learned"] = result["last10"]["total"] > result["first10"]["total"]
    print(f"GRPO {len(logs)} steps from a {a.sft_steps}-step SFT tiny adapter ({runtime / len(logs):.2f} s/step):")
    for name in keys:
        print(f"  mean {name:>8} reward  first 10 steps {result['first10'][name]:.3f}  last 10 "
              f"{result['last10'][name]:.3f}")
    for split in ("train", "held_out"):
        print(f"  nDCG@10 {split:>9}: {before[split]['ndcg@10']:.4f} -> {after[split]['ndcg@10']:.4f} "
              f"(valid windows {before[split]['valid_window_share']:.2f} -> {after[split]['valid_window_share']:.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if a.png:
        plot(result, Path(a.png))
    return 0 if result["learned"] else 1


if __name__ == "__main__":
    sys.exit(main())
