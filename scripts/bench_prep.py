"""Throughput of `dear prep listwise` on the real teacher files, against a raw JSON read of the same file.

Cases:
  r2r-cot   Reason-to-Rank msmarco_500.jsonl (500 queries x 5 passages), --cot, dear-card prompt
  dl19-qrels  DL19 BM25 top-100 RankGPT JSON + NIST qrels (judgments teacher), --window 20, rankgpt prompt

For each case: the median of --repeats in-process runs of the command (read, validate, window, render,
split, write JSONL + datasets folder + report), records/s and windows/s, and the ratio to the baseline:
json-decoding the same file and nothing else. One more run as a subprocess gives what a user waits
(interpreter start and imports included).

    PYTHONPATH=. python scripts/bench_prep.py [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

CASES = {
    "r2r-cot": ["--teacher", str(DATA / "listwise-cot-reason-to-rank" / "msmarco_500.jsonl"), "--cot"],
    "dl19-qrels": ["--teacher", str(DATA / "trec-dl19" / "retrieve_results_dl19_top100.json"),
                   "--qrels", str(DATA / "trec-dl19" / "qrels.dl19-passage.txt"), "--window", "20",
                   "--prompt", "rankgpt"],
}


def raw_json_read(path: Path) -> float:
    t = time.perf_counter()
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        json.loads(text)
    else:
        for line in text.split("\n"):
            if line.strip():
                json.loads(line)
    return time.perf_counter() - t


def run_case(name: str, argv: list[str], repeats: int) -> dict:
    import contextlib
    import io

    from data_prep.listwise_cli import main

    times, report = [], {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                rc = main([*argv, "--out", str(out)])
            times.append(time.perf_counter() - t)
            if rc != 0:
                raise SystemExit(f"{name}: dear prep listwise exited {rc}")
            report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    teacher = Path(argv[argv.index("--teacher") + 1])
    base = statistics.median(raw_json_read(teacher) for _ in range(repeats))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dear_train.cli", "prep", "listwise", *argv, "--out", f"{tmp}/o"],
                       check=True, capture_output=True, env=env)
        cli_s = time.perf_counter() - t
    med = statistics.median(times)
    return {
        "case": name,
        "records": report["records"]["read"],
        "windows": report["outputs"]["records"],
        "median_s": med,
        "records_per_s": report["records"]["read"] / med,
        "windows_per_s": report["outputs"]["records"] / med,
        "raw_json_s": base,
        "ratio_to_raw_json": med / base,
        "cli_wall_s": cli_s,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md table")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    rows = [run_case(name, case, args.repeats) for name, case in CASES.items()]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.markdown:
        print(f"Machine: {machine}; median of {args.repeats} runs.\n")
        print("| case | input records | output records (windows) | prep s | records/s | windows/s "
              "| raw JSON read s | prep / raw read | `dear prep listwise` wall s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['records']} | {r['windows']} | {r['median_s']:.3f} | "
                  f"{r['records_per_s']:,.0f} | {r['windows_per_s']:,.0f} | {r['raw_json_s']:.3f} | "
                  f"{r['ratio_to_raw_json']:.1f}x | {r['cli_wall_s']:.2f} |")
    else:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
