"""Training throughput of `dear train` vs plain padded TRL batching, same data, same model, same run.

    PYTHONPATH=. python scripts/bench_train.py --markdown

A random Llama (hidden 512, 8 layers, GQA 8/4 heads, MLP 1536; matmuls dominate) with the tiny Llama-3-style
tokenizer; listwise SFT records rendered from DL19 BM25 top-100 (real passages, DeAR card prompt, 300
characters per passage, windows of ``--window`` passages, NIST qrels order as target). Both arms run
`dear train` (`dear_train.sft.run`) in a fresh subprocess over the same examples for one epoch:

* ``baseline``     : TRL defaults: random order, each batch padded to its longest example;
* ``dear``         : the shipped recipe's batching: ``train_sampling_strategy: group_by_length`` (batches of
                     similar length, so little padding; same examples, same number of steps);
* ``padding_free`` : TRL ``padding_free: true`` (examples concatenated in one row, no pad tokens), measured to
                     show why the recipe does not use it without a varlen flash-attention kernel.

Everything else is identical (LoRA r16 on all projections, gradient checkpointing, fp32 on CPU, batch size,
seed). Reported: useful (non-pad) tokens per second = the examples' total tokens / wall time of the training
loop, the same per CPU second of the training process (steadier than wall time on a shared machine; runs use
one thread by default), tokens actually pushed through the model, and the peak RSS of each training process. Arms alternate over
``--repeats`` and the median is taken, so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def build_model(out: Path, *, hidden: int, layers: int) -> Path:
    from dear_train.tiny_model import build_tiny_model

    return build_tiny_model(out, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=8,
                            num_key_value_heads=4, intermediate_size=3 * hidden, seed=0)


def build_data(out: Path, *, window: int, examples: int, seed: int = 0) -> Path:
    """DL19 windows (stride = window) as a prep output folder, ``examples`` of them, in a shuffled order."""
    import random

    from datasets import Dataset, DatasetDict

    from data_prep.prompts import get_prompt_spec, render_prompt, save_prompt_spec, training_record
    from data_prep.readers import read_qrels, read_rankgpt_json

    spec = get_prompt_spec("dear-card")
    reqs = read_rankgpt_json(DATA / "trec-dl19" / "retrieve_results_dl19_top100.json")
    qrels = read_qrels(DATA / "trec-dl19" / "qrels.dl19-passage.txt")
    recs = []
    for r in reqs:
        grades = qrels.get(r.qid, {})
        for s in range(0, len(r.candidates), window):
            cands = r.candidates[s : s + window]
            if len(cands) < 2:
                continue
            order = sorted(range(len(cands)), key=lambda i: (-grades.get(cands[i].docid, 0), i))
            rec = training_record(spec, render_prompt(spec, r.query, [c.passage() for c in cands]), order)
            recs.append({**rec, "qid": r.qid, "docids": [c.docid for c in cands]})
    random.Random(seed).shuffle(recs)
    recs = recs[:examples]
    out.mkdir(parents=True, exist_ok=True)
    DatasetDict({"train": Dataset.from_list(recs), "eval": Dataset.from_list(recs[:2])}).save_to_disk(
        str(out / "dataset"))
    save_prompt_spec(out, spec)
    return out


def pad_stats(*, window: int, batch: int, seeds: int = 5) -> dict:
    """Pad share of padded batches over ALL DL19 windows (not the training subset): random order (TRL default)
    vs the Trainer's length-grouped sampler, with the tokenizer the runs use. No training, just lengths."""
    import random

    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from dear_train.tiny_model import build_tokenizer

    tok = build_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(Path(tmp), window=window, examples=10**9)
        from datasets import load_from_disk

        ds = load_from_disk(str(Path(tmp) / "dataset"))["train"]
        lengths = [len(tok(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in ds]
    del data

    def padded(order: list[int]) -> int:
        return sum(max(lengths[i] for i in order[k : k + batch]) * len(order[k : k + batch])
                   for k in range(0, len(order), batch))

    useful = sum(lengths)
    out = {"windows": len(lengths), "useful_tokens": useful, "mean_len": useful / len(lengths),
           "min_len": min(lengths), "max_len": max(lengths)}
    rand, grouped = [], []
    for seed in range(seeds):
        order = list(range(len(lengths)))
        random.Random(seed).shuffle(order)
        rand.append(1 - useful / padded(order))
        g = torch.Generator().manual_seed(seed)
        grouped.append(1 - useful / padded(get_length_grouped_indices(lengths, batch, generator=g)))
    out["pad_share_random"] = statistics.mean(rand)
    out["pad_share_length_grouped"] = statistics.mean(grouped)
    return out


def worker(cfg_path: str) -> int:
    """One training run in this process; prints a JSON line with the timings and peak RSS."""
    cfg = json.loads(Path(cfg_path).read_text())
    import transformers

    from dear_train import sft
    from dear_train.config import parse_config

    clock: dict[str, float] = {}

    class Clock(transformers.TrainerCallback):
        """Wall and CPU seconds of the training loop only (no loading, tokenizing or saving)."""

        def on_train_begin(self, *a, **k):
            clock["wall0"], clock["cpu0"] = time.perf_counter(), time.process_time()

        def on_train_end(self, *a, **k):
            clock["wall"] = time.perf_counter() - clock["wall0"]
            clock["cpu"] = time.process_time() - clock["cpu0"]

    orig_init = transformers.Trainer.__init__

    def init_with_clock(self, *a, **kw):
        kw["callbacks"] = [*(kw.get("callbacks") or []), Clock()]
        orig_init(self, *a, **kw)

    transformers.Trainer.__init__ = init_with_clock
    script, args, model = parse_config(sft.config_classes(), cfg["argv"])
    t0 = time.perf_counter()
    trainer = sft.run(script, args, model)
    wall = time.perf_counter() - t0
    runtime = clock["wall"]
    # tokens the model processed (pads included) vs useful tokens, from the same batches the trainer used
    dl = trainer.get_train_dataloader()
    processed = useful = 0
    for batch in dl:
        processed += int(batch["input_ids"].numel())
        if "attention_mask" in batch:
            useful += int(batch["attention_mask"].sum())
        else:
            useful += int(batch["input_ids"].numel())
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("BENCH " + json.dumps({"train_runtime": runtime, "train_cpu_s": clock["cpu"], "wall": wall, "processed_tokens": processed,
                                 "useful_tokens": useful, "peak_rss_mb": rss_mb,
                                 "steps": trainer.state.global_step}), flush=True)
    return 0


ARMS = {
    "baseline": ["--padding_free", "false", "--train_sampling_strategy", "random"],
    "dear": ["--padding_free", "false", "--train_sampling_strategy", "group_by_length"],
    "padding_free": ["--padding_free", "true", "--train_sampling_strategy", "random"],
}
LABELS = {"baseline": "TRL default: random order, padded", "dear": "`dear train`: length-grouped, padded",
          "padding_free": "TRL padding-free (sdpa, no varlen kernel)"}


def run_arm(name: str, model: Path, data: Path, out: Path, batch: int, threads: int) -> dict:
    argv = ["--config", str(REPO / "configs" / "train" / "tiny_cpu.yaml"), "--model_name_or_path", str(model),
            "--dataset_path", str(data), "--output_dir", str(out / name), "--max_steps", "-1",
            "--num_train_epochs", "1", "--per_device_train_batch_size", str(batch), "--max_length", "8192",
            "--logging_steps", "1000", *ARMS[name]]
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / f"{name}.json"
    cfg.write_text(json.dumps({"argv": argv}))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, __file__, "--worker", str(cfg)], env=env, capture_output=True,
                          text=True, cwd=REPO)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{name} arm failed:\n{proc.stderr[-4000:]}")
    return json.loads(line[6:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--window", type=int, default=10, help="passages per training example")
    p.add_argument("--examples", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="OMP threads per run (1: CPU time is clean)")
    p.add_argument("--out", default=None, help="work folder (default: a temp dir)")
    p.add_argument("--arms", default="baseline,dear,padding_free")
    p.add_argument("--pad-stats", action="store_true",
                   help="only the pad share of padded batches over all DL19 windows, random vs length-grouped")
    p.add_argument("--markdown", action="store_true")
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker)
    if a.pad_stats:
        for w in sorted({a.window, 20}):
            st = pad_stats(window=w, batch=a.batch)
            print(f"window {w}: {st['windows']} windows, {st['min_len']}-{st['max_len']} tokens (mean "
                  f"{st['mean_len']:.0f}); pad share with batch {a.batch}: random order "
                  f"{st['pad_share_random']:.1%}, length-grouped {st['pad_share_length_grouped']:.1%}")
        return 0
    work = Path(a.out or tempfile.mkdtemp(prefix="bench_train_"))
    model = build_model(work / "model", hidden=a.hidden, layers=a.layers)
    data = build_data(work / "data", window=a.window, examples=a.examples)
    arms = a.arms.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    for i in range(a.repeats):
        for name in arms if i % 2 == 0 else arms[::-1]:
            r = run_arm(name, model, data, work / f"r{i}", a.batch, a.threads)
            runs[name].append(r)
            print(f"{name:8s} run {i}: {r['useful_tokens'] / r['train_runtime']:.1f} useful tok/s, "
                  f"{r['train_runtime']:.1f} s wall, {r['train_cpu_s']:.1f} s CPU, RSS {r['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "useful_tokens": rs[0]["useful_tokens"],
            "processed_tokens": rs[0]["processed_tokens"],
            "train_runtime_s": statistics.median(r["train_runtime"] for r in rs),
            "useful_tok_per_s": statistics.median(r["useful_tokens"] / r["train_runtime"] for r in rs),
            "train_cpu_s": statistics.median(r["train_cpu_s"] for r in rs),
            "useful_tok_per_cpu_s": statistics.median(r["useful_tokens"] / r["train_cpu_s"] for r in rs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
        }
    ratio = summary["dear"]["useful_tok_per_s"] / summary["baseline"]["useful_tok_per_s"]
    cpu_ratio = summary["dear"]["useful_tok_per_cpu_s"] / summary["baseline"]["useful_tok_per_cpu_s"]
    pad_share = 1 - summary["baseline"]["useful_tokens"] / summary["baseline"]["processed_tokens"]
    result = {"summary": summary, "speedup": ratio, "speedup_cpu_time": cpu_ratio, "baseline_pad_share": pad_share,
              "setup": vars(a) | {"work": str(work)}}
    (work / "bench_train.json").write_text(json.dumps(result, indent=2))
    if a.markdown:
        print("| arm | batching | useful tokens | tokens through the model | train wall s | useful tok/s | "
              "train CPU s | useful tok / CPU s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in arms:
            s, label = summary[name], LABELS[name]
            print(f"| {name} | {label} | {s['useful_tokens']:,} | {s['processed_tokens']:,} | "
                  f"{s['train_runtime_s']:.1f} | {s['useful_tok_per_s']:,.1f} | {s['train_cpu_s']:.1f} | "
                  f"{s['useful_tok_per_cpu_s']:,.1f} | {s['peak_rss_mb']:,.0f} |")
        print(f"\nspeedup dear / baseline: {ratio:.2f}x (wall), {cpu_ratio:.2f}x (CPU time); pad share of the baseline's tokens: "
              f"{pad_share:.1%}, of dear's: {1 - summary['dear']['useful_tokens'] / summary['dear']['processed_tokens']:.1%}")
        if "padding_free" in summary:
            pf, bl = summary["padding_free"], summary["baseline"]
            print(f"padding-free / baseline: {pf['useful_tok_per_s'] / bl['useful_tok_per_s']:.2f}x (wall), "
                  f"{pf['useful_tok_per_cpu_s'] / bl['useful_tok_per_cpu_s']:.2f}x (CPU time)")
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
