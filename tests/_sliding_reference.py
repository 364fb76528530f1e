"""Sliding-window reference cases: the run and JSONL bytes `dear rerank` wrote BEFORE the ranking core was split
into strategies (issue 19), kept in tests/data/sliding_reference.json so the `sliding` strategy is proven
byte-identical to it.

Scripted backends only (no model): their answers depend on the prompt text, the window's size and its sampling
seed, so any change in which windows are shown, in what order, with which seeds, how answers are parsed,
repaired and folded, or how results are written changes the bytes. Regenerate ONLY from the pre-refactor code:

    PYTHONPATH=. python tests/_sliding_reference.py tests/data/sliding_reference.json
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.schema import Candidate, RerankRequest
from inference.engine import BackendStats, Generation

_PASSAGE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


def _passages(text: str) -> list[tuple[int, str]]:
    return [(int(i), p) for i, p in _PASSAGE.findall(text)]


def _noisy_answer(req: Any) -> str:
    """A deterministic answer from the prompt: passages by a hash of their text mixed with the request's seed;
    every fifth window is malformed in a way the parser must repair."""
    found = _passages(req.text)
    seed = req.seed or 0
    order = sorted(found, key=lambda t: zlib.crc32(f"{seed % 7}|{t[1][:40]}".encode()))
    ids = [i for i, _ in order]
    h = zlib.crc32(req.text.encode()) % 5
    if h == 0 and len(ids) > 2:
        ids = ids[:-2] + [ids[0], 99]  # a duplicate, an out-of-range id and a missing one
    if h == 1:
        return "I cannot rank these passages."
    return " " + " > ".join(f"[{i}]" for i in ids)


class NoisyBackend:
    """Answers with :func:`_noisy_answer`, finishing the newest request first (out-of-order completion)."""

    def __init__(self) -> None:
        self.stats = BackendStats()

    def stream(self, pull, max_in_flight: int) -> Iterator[Generation]:
        flying: list[Any] = []
        while True:
            flying.extend(pull(max_in_flight - len(flying)))
            if not flying:
                return
            req = flying.pop()
            text = _noisy_answer(req)
            yield Generation(key=req.key, text=text, token_ids=list(range(len(text.split()))),
                             prompt_tokens=len(req.text.split()), finish_reason="eos")


class HashScorer:
    """A first-token stand-in: logits from a hash of each passage's text (ties on purpose for equal texts)."""

    def __init__(self) -> None:
        self.stats = BackendStats()

    def stream(self, pull, max_in_flight: int):
        from inference.engine.first_token import WindowScores

        while True:
            reqs = pull(max_in_flight)
            if not reqs:
                return
            for req in reversed(reqs):
                found = _passages(req.text)
                logits = [float(zlib.crc32(p[:30].encode()) % 97) / 7.0 for _, p in found][: len(req.id_tokens)]
                logits += [0.0] * (len(req.id_tokens) - len(logits))
                yield WindowScores(key=req.key, logits=logits, prompt_tokens=len(req.text.split()))


def synthetic_requests() -> list[RerankRequest]:
    reqs = []
    for j in range(7):
        n = [1, 2, 5, 9, 23, 31, 40][j]
        cands = [Candidate(f"s{j}-d{i}", f"passage {i} of query {j}: " + "word " * ((7 * i + j) % 11))
                 for i in range(n)]
        if j == 4:
            cands.append(Candidate(f"s{j}-d3", "a duplicated docid"))  # counted, first occurrence kept
        reqs.append(RerankRequest(qid=f"s{j}", query=f"synthetic query {j}", candidates=tuple(cands)))
    return reqs


CASES: list[dict[str, Any]] = [
    {"name": "generate-20-10-100", "scoring": "generate", "window": 20, "stride": 10, "top_k": 100},
    {"name": "generate-5-2-17", "scoring": "generate", "window": 5, "stride": 2, "top_k": 17, "batch_size": 3},
    {"name": "generate-4-4-9", "scoring": "generate", "window": 4, "stride": 4, "top_k": 9, "batch_size": 1},
    {"name": "generate-sample-6-3-20", "scoring": "generate", "window": 6, "stride": 3, "top_k": 20,
     "do_sample": True, "seed": 11},
    {"name": "generate-shrunk-8-4-16", "scoring": "generate", "window": 8, "stride": 4, "top_k": 16,
     "max_prompt_tokens": 400, "tokenizer": True},
    {"name": "first-token-10-5-30", "scoring": "first-token", "window": 10, "stride": 5, "top_k": 30,
     "tokenizer": True},
    {"name": "first-token-one-window-12", "scoring": "first-token", "window": 12, "stride": 6, "top_k": 12,
     "tokenizer": True},
]


def dl19_requests(shared: Path) -> list[RerankRequest]:
    from data_prep.readers import read_rankgpt_json

    return read_rankgpt_json(shared / "trec-dl19" / "retrieve_results_dl19_top100.json")[:3]


def run_case(case: dict[str, Any], requests: list[RerankRequest], tokenizer: Any,
             reranker_kwargs: dict[str, Any] | None = None) -> dict[str, str]:
    """The run and JSONL `dear rerank` writes for ``case`` (through the command's own run writer)."""
    from inference import cli_rerank
    from inference.reranker import ListwiseReranker

    kw = {k: case[k] for k in ("window", "stride", "top_k", "batch_size", "do_sample", "seed", "max_prompt_tokens")
          if k in case}
    if case["scoring"] != "generate":
        kw["scoring"] = case["scoring"]
    kw.update(reranker_kwargs or {})
    backend = HashScorer() if case["scoring"] == "first-token" else NoisyBackend()
    rr = ListwiseReranker(None, tokenizer if case.get("tokenizer") else None, "dear-card", backend=backend, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        out, jl = Path(tmp) / "run.trec", Path(tmp) / "run.jsonl"
        cli_rerank.run_rerank(rr, requests, out=str(out), jsonl=str(jl), settings={"case": case["name"]},
                              progress=False)
        return {"run": out.read_text(encoding="utf-8"), "jsonl": jl.read_text(encoding="utf-8")}


def build(shared: Path, tokenizer: Any) -> dict[str, Any]:
    requests = synthetic_requests() + dl19_requests(shared)
    return {case["name"]: run_case(case, requests, tokenizer) for case in CASES}


if __name__ == "__main__":
    import tempfile as _t

    from transformers import AutoTokenizer

    from dear_train.tiny_model import build_tiny_model

    repo = Path(__file__).resolve().parents[1]
    tok = AutoTokenizer.from_pretrained(build_tiny_model(Path(_t.mkdtemp())))
    ref = build(repo.parent / "shared" / "data", tok)
    Path(sys.argv[1]).write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n", encoding="utf-8")
