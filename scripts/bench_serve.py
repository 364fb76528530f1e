"""Throughput of `dear serve`: 16 concurrent clients against one client sending the same requests one by one.

    python scripts/bench_serve.py --requests 64 --clients 16 --out bench_serve.json
    python scripts/bench_serve.py --model runs/listwise --device cuda --passage-chars 300

The server runs in its own process (`python -m inference.serve`, so client threads do not share its GIL) on a
free loopback port; without --model it serves a tiny random Llama built offline. The workload is DL19 queries
with their first --docs passages (cut to --passage-chars). Both phases send the same requests to the same
warm server; the ratio of their wall times is the gain of continuous batching across clients. The server's
/metrics split its time into prefill (per window, not shared) and batched decoding, which bounds the gain.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from data_prep.readers import read_rankgpt_json  # noqa: E402

DL19 = REPO.parent / "shared" / "data" / "trec-dl19" / "retrieve_results_dl19_top100.json"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bodies(path: Path, n: int, docs: int, chars: int) -> list[dict[str, Any]]:
    reqs = read_rankgpt_json(str(path))
    return [{"query": r.query, "documents": [c.passage()[:chars] for c in r.candidates[:docs]]}
            for r in (reqs[i % len(reqs)] for i in range(n))]


def _metrics(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("dear_serve_") and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _phase(url: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Send every body once with ``clients`` concurrent clients; latencies per request."""
    latencies: list[float] = []
    before = _metrics(url)

    def worker(chunk: list[dict[str, Any]]) -> list[float]:
        out = []
        with httpx.Client(base_url=url, timeout=600) as http:
            for b in chunk:
                t0 = time.perf_counter()
                resp = http.post("/v1/rerank", json=b)
                out.append(time.perf_counter() - t0)
                if resp.status_code != 200 or len(resp.json()["results"]) != len(b["documents"]):
                    raise RuntimeError(f"bad response {resp.status_code}: {resp.text[:200]}")
        return out

    chunks = [bodies[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for lat in pool.map(worker, chunks):
            latencies.extend(lat)
    wall = time.perf_counter() - t0
    after = _metrics(url)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    prefill = after["dear_serve_backend_prefill_seconds"] - before["dear_serve_backend_prefill_seconds"]
    decode = after["dear_serve_backend_decode_seconds"] - before["dear_serve_backend_decode_seconds"]
    steps = after["dear_serve_backend_decode_steps"] - before["dear_serve_backend_decode_steps"]
    tokens = after["dear_serve_generated_tokens_total"] - before["dear_serve_generated_tokens_total"]
    return {"clients": clients, "requests": len(bodies), "wall_s": round(wall, 3),
            "requests_per_s": round(len(bodies) / wall, 3), "p50_s": round(q[49], 3), "p99_s": round(q[98], 3),
            "prefill_s": round(prefill, 3), "decode_s": round(decode, 3), "decode_steps": int(steps),
            "generated_tokens": int(tokens), "tokens_per_decode_step": round(tokens / steps, 2) if steps else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or Hub id (default: a tiny random Llama built offline)")
    p.add_argument("--input", default=str(DL19), help="RankGPT JSON with passage text (default: DL19 top 100)")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--docs", type=int, default=20, help="documents per request")
    p.add_argument("--passage-chars", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=None, help="window budget (default: the full ranking's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--scoring", choices=["generate", "first-token"], default="generate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from dear_train.tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny"))
        port = _port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "inference.serve", "--model", model, "--port", str(port), "--device",
               args.device, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--max-queue", str(args.requests + 1), "--request-timeout", "3600", "--log-level", "warning",
               "--scoring", args.scoring]
        if args.max_new_tokens:
            cmd += ["--max-new-tokens", str(args.max_new_tokens)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
        server = subprocess.Popen(cmd, env=env)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.25)
            bodies = _bodies(Path(args.input), args.requests, args.docs, args.passage_chars)
            _phase(url, bodies[: min(4, len(bodies))], 1)  # warm-up
            load_before = os.getloadavg()
            one = _phase(url, bodies, 1)
            many = _phase(url, bodies, args.clients)
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(120)
    result = {"model": args.model or "tiny random Llama (dear_train.tiny_model)", "scoring": args.scoring,
              "docs": args.docs,
              "passage_chars": args.passage_chars, "batch_size": args.batch_size, "threads": args.threads,
              "one_client": one, "concurrent": many, "speedup": round(one["wall_s"] / many["wall_s"], 2),
              "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
              "cpus": os.cpu_count()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
