"""Benchmark: data-parallel `dear rerank` (`inference.rerank` under torchrun) against one process, same run.

Workload: DL19 BM25 top-100, all 43 queries, window 20 / stride 10 / top 100 (387 windows), greedy, batch 16,
the tiny random Llama, fp32 on the CPU. Arms, each a fresh `--out`, one torch thread per process:

- baseline: ``python -m inference.rerank ...`` (one process, exactly `dear rerank`);
- data parallel: ``torchrun --standalone --nproc_per_node N -m inference.rerank ...`` (same options).

Throughput is queries over the reranking wall time from each run's summary (the slowest rank for N > 1, so
imbalance counts against it); the end-to-end column adds start-up, model loading and the merge, timed from
outside. Each rank's share and time are printed, and the merged run must equal the baseline byte for byte.
The CPU columns are each process's CPU seconds inside the reranking loop: on a machine other jobs share, the
wall-time ratio says how much CPU the others left, while "CPU-bound speedup" (the baseline's CPU seconds over
the busiest rank's) is what the split gives when every process has a core to itself.

    python scripts/bench_rerank_dp.py                         # 1 x 1 thread vs 2 x 1 thread, tiny model
    python scripts/bench_rerank_dp.py --processes 2 3 --repeats 2 --json bench_dp.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=str(REPO.parent / "shared/data/trec-dl19/retrieve_results_dl19_top100.json"))
    p.add_argument("--model", help="model folder (default: build the tiny random Llama)")
    p.add_argument("--queries", type=int, default=43)
    p.add_argument("--processes", type=int, nargs="+", default=[2], help="process counts to compare with 1")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1, help="runs per arm, alternating arms; the median counts")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args(argv)


def rerank_cmd(n: int, model: str, args: argparse.Namespace, out: Path) -> list[str]:
    launch = ([sys.executable, "-m", "inference.rerank"] if n == 1 else
              [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
               "-m", "inference.rerank"])
    return [*launch, "--model", model, "--input", args.input, "--limit", str(args.queries), "--out", str(out),
            "--jsonl", str(out.with_suffix(".jsonl")), "--window", "20", "--stride", "10", "--top-k", "100",
            "--batch-size", str(args.batch_size), "--device", "cpu", "--no-progress"]


def run_arm(n: int, model: str, args: argparse.Namespace, work: Path, rep: int) -> dict:
    out = work / f"p{n}-r{rep}" / "run.trec"
    out.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(rerank_cmd(n, model, args, out), env=env, capture_output=True, text=True, cwd=REPO)
    end_to_end = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{n} processes failed:\n{proc.stderr[-4000:]}")
    summary = json.loads(Path(str(out) + ".summary.json").read_text())
    return {"processes": n, "rep": rep, "out": str(out), "end_to_end_s": end_to_end, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_dp_") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from dear_train.tiny_model import build_tiny_model

            model = str(build_tiny_model(work / "tiny"))
        load = os.getloadavg()
        runs: list[dict] = []
        for rep in range(args.repeats):
            for n in [1, *args.processes]:
                runs.append(run_arm(n, model, args, work, rep))
                print(f"rep {rep}: {n} process(es): {runs[-1]['summary']['wall_s']:.2f} s reranking, "
                      f"{runs[-1]['end_to_end_s']:.1f} s end to end", file=sys.stderr)
        base = [r for r in runs if r["processes"] == 1]
        ref_bytes = Path(base[0]["out"]).read_bytes(), Path(base[0]["out"]).with_suffix(".jsonl").read_bytes()
        rows = []
        for n in [1, *args.processes]:
            mine = [r for r in runs if r["processes"] == n]
            wall = statistics.median(r["summary"]["wall_s"] for r in mine)
            e2e = statistics.median(r["end_to_end_s"] for r in mine)
            identical = all((Path(r["out"]).read_bytes(), Path(r["out"]).with_suffix(".jsonl").read_bytes())
                            == ref_bytes for r in mine)
            last = mine[-1]["summary"]
            rows.append({
                "processes": n, "threads_per_process": args.threads, "queries": last["ranked"],
                "windows": last["windows"], "generated_tokens": last["generated_tokens"],
                "rerank_wall_s": round(wall, 3), "queries_per_s": round(last["ranked"] / wall, 3),
                "rerank_cpu_s": statistics.median(r["summary"].get("cpu_s", 0.0) for r in mine),
                "busiest_rank_cpu_s": statistics.median(
                    max([x.get("cpu_s", 0.0) for x in r["summary"].get("ranks", [])] or [r["summary"].get("cpu_s", 0.0)])
                    for r in mine),
                "end_to_end_s": round(e2e, 2), "identical_to_1_process": identical,
                "imbalance": last.get("imbalance"),
                "ranks": [{k: r.get(k) for k in ("rank", "queries", "windows", "generated_tokens", "wall_s",
                                                 "cpu_s", "load_s")} for r in last.get("ranks", [])],
                "runs_wall_s": [r["summary"]["wall_s"] for r in mine],
            })
    base_row = rows[0]
    for row in rows:
        row["speedup"] = round(base_row["rerank_wall_s"] / row["rerank_wall_s"], 3)
        row["end_to_end_speedup"] = round(base_row["end_to_end_s"] / row["end_to_end_s"], 3)
        row["cpu_bound_speedup"] = round(base_row["busiest_rank_cpu_s"] / row["busiest_rank_cpu_s"], 3)
    result = {"load_average_before": [round(x, 2) for x in load], "load_average_after":
              [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(), "rows": rows}
    print(markdown(rows))
    print(json.dumps({"load_average_before": result["load_average_before"],
                      "load_average_after": result["load_average_after"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def markdown(rows: list[dict]) -> str:
    lines = ["| processes x threads | queries/s | reranking wall s | speedup | end-to-end s | end-to-end speedup "
             "| per-rank queries | per-rank wall s | slowest / mean | reranking CPU s (all ranks) "
             "| CPU-bound speedup | identical to 1 process |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        imb = r["imbalance"] or {}
        lines.append(
            f"| {r['processes']} x {r['threads_per_process']} | {r['queries_per_s']:.2f} | {r['rerank_wall_s']:.2f} "
            f"| **{r['speedup']:.2f}x** | {r['end_to_end_s']:.1f} | {r['end_to_end_speedup']:.2f}x "
            f"| {' / '.join(map(str, imb.get('queries', [r['queries']])))} "
            f"| {' / '.join(f'{w:.2f}' for w in imb.get('wall_s', [r['rerank_wall_s']]))} "
            f"| {imb.get('max_over_mean') or 1.0:.3f} | {r['rerank_cpu_s']:.1f} | {r['cpu_bound_speedup']:.2f}x "
            f"| {'yes' if r['identical_to_1_process'] else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
