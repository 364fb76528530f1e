"""The quickstart: the whole DeAR pipeline on the embedded NovelEval sample, offline, on CPU, in minutes.

tiny model -> `dear prep listwise` (NovelEval judgments as the teacher) -> `dear train` (LoRA; the FIRST
first-token objective with --first-token-loss-weight) -> `dear rerank` held-out queries (untrained base; trained adapter with generation and
with first-token scoring, plus their per-window agreement) -> `dear eval` -> `dear export`, then one summary
table. Every step is a `dear` subcommand (the agreement a script), printed before it runs so it can be rerun.

A 1.3M-parameter random model cannot learn relevance in minutes. What the table can honestly show is
whether training took (the share of windows answered with a well-formed ranking and with a clean
permutation), and how nDCG@10 compares with the first-stage order's per query. Every sentence it prints
is derived from the figures it prints. The run is deterministic on a given machine (fixed seeds, one
thread per process); other CPUs can round differently and land on other figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/quickstart.py` from a checkout
    sys.path.insert(0, str(REPO))

from data_prep.readers import read_rankgpt_json, write_rankgpt_json, write_run  # noqa: E402
from data_prep.samples import noveleval_paths  # noqa: E402

# Windows of 5 passages cut to 100 characters: what a tiny model can learn to answer in ~2 minutes.
WINDOW, STRIDE, TOP_K, PASSAGE_CHARS = 5, 3, 20, 100
# A 1.3M-parameter Llama (hidden 128, 4 layers, 2k vocab). The 0.2M default of `dear tiny-model` learns the
# answer format but rarely a clean permutation in this time (measured: 10% of held-out windows vs 63%).
TINY = ("--hidden-size", "128", "--layers", "4", "--intermediate-size", "256", "--vocab-size", "2048")
# L of FIRST's objective (LM loss + L x weighted RankNet over the first-id logits), `--first-token-loss-weight`.
# 0 by default: on this 1.3M-parameter random model, L = 1 or 10 made generation collapse to one repeated id (0% clean
# permutations; BENCHMARKS.md, "First-token scoring"), since the rank term cannot be lowered by judging relevance
# here. The summary shows first-token scoring beside generation either way.
FIRST_WEIGHT = 0
RUN_NAMES = ("first_stage", "untrained", "trained", "trained_first_token")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                "WANDB_MODE": "offline", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"})
    # One thread per process: tiny matrices run faster so, and a fixed thread count keeps float sums (and so
    # the 600 training steps) identical from run to run.
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def dear(*args: str | Path, log: Path) -> float:
    """Run one `dear` subcommand, echoing it; its output goes to ``log``. Returns the wall time."""
    argv = [str(a) for a in args]
    print(f"$ dear {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n$ dear {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "dear_train.cli", *argv], stdout=f, stderr=subprocess.STDOUT,
                              env=_env(), cwd=REPO, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-25:])
        raise SystemExit(f"step failed (exit {proc.returncode}): dear {shlex.join(argv)}\n--- {log} ---\n{tail}")
    print(f"  done in {took:.1f} s", flush=True)
    return took


def window_stats(jsonl: Path) -> dict[str, float]:
    """Share of model-answered windows that were a clean permutation, and that were at least a full run."""
    windows = [w for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()
               for w in json.loads(line)["windows"] if w["raw"] is not None]
    clean = sum(1 for w in windows if not w["repairs"])
    well_formed = sum(1 for w in windows if w["source"] in ("run", "marker", "think")
                      and not w["repairs"].get("unparseable") and not w["repairs"].get("out_of_range"))
    n = max(len(windows), 1)
    return {"windows": len(windows), "clean_share": clean / n, "well_formed_share": well_formed / n}


def script(path: Path, *args: str | Path, log: Path) -> None:
    """Run one of the repository's scripts like a `dear` step (echoed, output to ``log``)."""
    argv = [str(a) for a in args]
    print(f"$ python {path.relative_to(REPO)} {shlex.join(argv)}", flush=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n$ python {path} {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, str(path), *argv], stdout=f, stderr=subprocess.STDOUT, env=_env(),
                              cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step failed (exit {proc.returncode}): python {path} {shlex.join(argv)} (see {log})")


def rerank_s_per_query(run: Path) -> float:
    """Reranking seconds per query of a `dear rerank` run (its summary; model loading not included)."""
    summary = json.loads(Path(str(run.with_suffix(".trec")) + ".summary.json").read_text(encoding="utf-8"))
    return summary["wall_s"] / max(summary["ranked"], 1)


def heldout_queries(data_dir: Path) -> set[str]:
    return {json.loads(line)["qid"] for line in (data_dir / "eval.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()}


def per_query_ndcg(runs: list[Path], qrels: Path) -> list[dict[str, float]]:
    """nDCG@10 of each run per query (trec_eval semantics), to compare runs query by query."""
    from data_prep.readers import read_qrels, read_run
    from inference.metrics import evaluate

    judged = read_qrels(qrels)
    return [evaluate(read_run(r), judged, ["ndcg@10"], per_query=True)["per_query"]["ndcg@10"] for r in runs]


def verdict(s: dict) -> list[str]:
    """The sentences under the table, each computed from the figures in it."""
    nd, w0, w1 = s["ndcg@10"], s["windows_untrained"], s["windows_trained"]
    first, trained = s["ndcg@10_per_query"]["first_stage"], s["ndcg@10_per_query"]["trained"]
    better = sum(1 for q in first if trained.get(q, 0.0) > first[q] + 1e-9)
    worse = sum(1 for q in first if trained.get(q, 0.0) < first[q] - 1e-9)
    diff = 100 * (nd["trained"] - nd["first_stage"])
    took = w1["well_formed_share"] > w0["well_formed_share"] or w1["clean_share"] > w0["clean_share"]
    out = [
        f"Training {'took' if took else 'did not take'}: windows answered with a well-formed ranking went from "
        f"{100 * w0['well_formed_share']:.0f}% to {100 * w1['well_formed_share']:.0f}%, and clean permutations "
        f"that needed no repair from {100 * w0['clean_share']:.0f}% to {100 * w1['clean_share']:.0f}%.",
        (f"nDCG@10: the trained adapter {'beats' if diff > 0 else 'trails'} the first-stage order by "
         f"{abs(diff):.2f} points" if abs(diff) >= 0.005 else "nDCG@10: the trained adapter ties the first-stage order")
        + f", better on {better} and worse on {worse} of the "
        f"{len(first)} held-out queries"
        + (": too few queries, and too small a random model, to read this as learned relevance."
           if len(first) < 30 else "."),
    ]
    ft = s.get("first_token")
    if ft:
        ratio = ft["gen_s_per_query"] / ft["s_per_query"] if ft["s_per_query"] > 0 else float("inf")
        pace = f"{ratio:.1f}x faster than" if ratio >= 1.05 else (
            f"{1 / ratio:.1f}x slower than" if ratio <= 1 / 1.05 else "as fast as")
        out.append(
            "First-token scoring (one forward pass per window; "
            + (f"the adapter was trained with the FIRST objective, L = {ft['loss_weight']:g}"
               if ft["loss_weight"] > 0 else "the adapter was trained with the LM loss only, L = 0")
            + f") took {ft['s_per_query']:.3f} s per query, {pace} generation "
            f"({ft['gen_s_per_query']:.3f} s), at nDCG@10 {100 * nd['trained_first_token']:.2f} against "
            f"{100 * nd['trained']:.2f}; on the {ft['agreement']['windows']} windows generation answered it agreed "
            f"with generation's order at Kendall tau {ft['agreement']['kendall_tau']:.2f} and on the top passage "
            f"in {100 * ft['agreement']['top1_agreement']:.0f}% of them.")
    out.append("The same flow with Llama-3.1-8B is one config change (README).")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, prog="quickstart", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="quickstart_out", help="folder for every artifact (replaced)")
    ap.add_argument("--steps", type=int, default=600, help="LoRA training steps")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--learning-rate", default="2e-3")
    ap.add_argument("--first-token-loss-weight", type=float, default=FIRST_WEIGHT,
                    help="L of the FIRST objective the adapter is trained with (0: LM loss only)")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True)
    log = out / "quickstart.log"
    data_json, qrels = noveleval_paths()
    base, data, adapter, export = out / "base-model", out / "data", out / "adapter", out / "export"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    print("1/8 a tiny random Llama-3.1-architecture model and tokenizer (offline)")
    timings["tiny-model"] = dear("tiny-model", base, *TINY, log=log)

    print("2/8 SFT data from the embedded NovelEval sample, judgments as the teacher")
    timings["prep"] = dear("prep", "listwise", "--teacher", data_json, "--format", "qrels", "--qrels", qrels,
                           "--out", data, "--prompt", "dear-card", "--window", WINDOW, "--stride", STRIDE,
                           "--passage-length", PASSAGE_CHARS, "--shuffle", 3, "--eval-fraction", 0.25, "--seed", 0,
                           log=log)

    held = heldout_queries(data)
    requests = [r for r in read_rankgpt_json(data_json) if r.qid in held]
    heldout = out / "heldout.json"
    write_rankgpt_json(heldout, requests)
    first_stage = out / "runs" / "first_stage.trec"
    write_run(first_stage, {r.qid: [(c.docid, float(len(r.candidates) - i)) for i, c in enumerate(r.candidates)]
                            for r in requests}, tag="first-stage")

    rerank_opts = ["--input", heldout, "--qrels", qrels, "--window", WINDOW, "--stride", STRIDE,
                   "--top-k", TOP_K, "--no-progress", "--metrics", "ndcg@10"]
    print(f"3/8 rerank the {len(requests)} held-out queries with the untrained model (same prompt spec)")
    untrained = out / "runs" / "untrained"
    timings["rerank untrained"] = dear("rerank", "--model", base, "--prompt", data,
                                       "--out", untrained.with_suffix(".trec"), "--jsonl", untrained.with_suffix(".jsonl"),
                                       *rerank_opts, log=log)

    print(f"4/8 LoRA fine-tuning ({args.steps} steps; embeddings and lm_head trained too: a random frozen "
          f"output layer caps a tiny model), LM loss + {args.first_token_loss_weight:g} x the FIRST first-token "
          "ranking loss")
    timings["train"] = dear("train", "--config", REPO / "configs" / "train" / "tiny_cpu.yaml",
                            "--model_name_or_path", base, "--dataset_path", data, "--output_dir", adapter,
                            "--max_steps", args.steps, "--per_device_train_batch_size", args.batch_size,
                            "--learning_rate", args.learning_rate, "--lr_scheduler_type", "cosine",
                            "--lora_modules_to_save", "lm_head", "embed_tokens",
                            "--gradient_checkpointing", "false", "--logging_steps", 50,
                            "--first_token_loss_weight", args.first_token_loss_weight, log=log)

    print("5/8 rerank the held-out queries with the trained adapter (prompt spec read from the adapter folder)")
    trained = out / "runs" / "trained"
    timings["rerank trained"] = dear("rerank", "--model", adapter, "--out", trained.with_suffix(".trec"),
                                     "--jsonl", trained.with_suffix(".jsonl"), *rerank_opts, log=log)

    print("6/8 the same with first-token scoring (one forward pass per window), and its per-window agreement "
          "with generation")
    first_token = out / "runs" / "trained_first_token"
    timings["rerank trained first-token"] = dear(
        "rerank", "--model", adapter, "--scoring", "first-token", "--out", first_token.with_suffix(".trec"),
        "--jsonl", first_token.with_suffix(".jsonl"), *rerank_opts, log=log)
    agreement = out / "first_token_agreement.json"
    script(REPO / "scripts" / "first_token_agreement.py", "--model", adapter, "--input", heldout,
           "--jsonl", trained.with_suffix(".jsonl"), "--out", agreement, log=log)

    print("7/8 evaluate the four runs (trec_eval semantics)")
    eval_json = out / "eval.json"
    runs = [first_stage, untrained.with_suffix(".trec"), trained.with_suffix(".trec"),
            first_token.with_suffix(".trec")]
    timings["eval"] = dear("eval", "--run", *runs, "--qrels", qrels, "--metrics", "ndcg@10", "ndcg@5",
                           "--out", eval_json, log=log)

    print("8/8 verify and export the adapter with its model card")
    timings["export"] = dear("export", "--adapter", adapter, "--out", export, "--dtype", "fp32", log=log)

    evaluated = json.loads(eval_json.read_text(encoding="utf-8"))["runs"]
    ndcg = {name: evaluated[str(path)]["metrics"]["ndcg@10"]
            for name, path in zip(RUN_NAMES, runs, strict=True)}
    per_query = per_query_ndcg(runs, qrels)
    before, after = window_stats(untrained.with_suffix(".jsonl")), window_stats(trained.with_suffix(".jsonl"))
    total = time.perf_counter() - started
    summary = {
        "heldout_queries": sorted(held),
        "ndcg@10": ndcg,
        "ndcg@10_per_query": dict(zip(RUN_NAMES, per_query, strict=True)),
        "windows_untrained": before,
        "windows_trained": after,
        "first_token": {"loss_weight": float(args.first_token_loss_weight), "s_per_query": rerank_s_per_query(first_token),
                        "gen_s_per_query": rerank_s_per_query(trained),
                        "agreement": json.loads(agreement.read_text(encoding="utf-8"))},
        "timings_s": {k: round(v, 1) for k, v in timings.items()} | {"total": round(total, 1)},
        "artifacts": {"base_model": str(base), "data": str(data), "adapter": str(adapter), "export": str(export),
                      "runs": str(out / "runs"), "eval": str(eval_json), "log": str(log)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(summary)
    return 0


def print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"quickstart: {len(s['heldout_queries'])} held-out NovelEval queries, windows of {WINDOW}")
    t.add_column("ranking")
    t.add_column("nDCG@10", justify="right")
    t.add_column("clean permutations", justify="right")
    t.add_column("well-formed runs", justify="right")
    t.add_column("s/query", justify="right")
    t.add_row("first-stage order", f"{100 * s['ndcg@10']['first_stage']:.2f}", "-", "-", "-")
    for key, label in (("untrained", "untrained tiny model"), ("trained", "trained LoRA adapter, generation")):
        w = s[f"windows_{key}"]
        speed = f"{s['first_token']['gen_s_per_query']:.3f}" if key == "trained" and s.get("first_token") else "-"
        t.add_row(label, f"{100 * s['ndcg@10'][key]:.2f}", f"{100 * w['clean_share']:.0f}% of {w['windows']}",
                  f"{100 * w['well_formed_share']:.0f}%", speed)
    if s.get("first_token"):
        t.add_row("trained LoRA adapter, first-token", f"{100 * s['ndcg@10']['trained_first_token']:.2f}",
                  "100% (by construction)", "-", f"{s['first_token']['s_per_query']:.3f}")
    a = Table(title="artifacts")
    a.add_column("what")
    a.add_column("where")
    for k, v in s["artifacts"].items():
        a.add_row(k, v)
    c = Console()
    c.print(t)
    for line in verdict(s):
        c.print(line)
    c.print(a)
    c.print(f"total {s['timings_s']['total']} s")


if __name__ == "__main__":
    raise SystemExit(main())
