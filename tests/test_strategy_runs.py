"""Strategies end to end on the tiny model: `dear rerank --strategy` (both scoring modes, JSONL cost records,
resume refusing another strategy), `dear serve --strategy`, and `-m inference.rerank` on 2 processes over gloo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, shared_path

from data_prep.readers import read_rankgpt_json, read_run, write_rankgpt_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = ["--top-k", "12", "--window", "5", "--stride", "2", "--depth", "2", "--max-new-tokens", "10",
         "--device", "cpu", "--dtype", "float32", "--no-progress"]


@pytest.fixture(scope="module")
def dl19_input(tmp_path_factory):
    from _serve_helpers import short_requests

    reqs = short_requests(read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:4],
                          16, 150)
    path = tmp_path_factory.mktemp("in") / "four.json"
    write_rankgpt_json(path, reqs)
    return path, reqs


def _check_run(out, jl, reqs, strategy):
    run = read_run(out)
    records = {json.loads(line)["qid"]: json.loads(line) for line in jl.read_text().splitlines()}
    for r in reqs:
        docids = [d for d, _ in run[r.qid]]
        assert sorted(docids) == sorted(c.docid for c in r.candidates)  # every candidate exactly once
        assert docids[12:] == [c.docid for c in r.candidates[12:]]
        rec = records[r.qid]
        assert rec["strategy"] == strategy and rec["docids"] == docids
        calls = [w for w in rec["windows"] if w["raw"] is not None]
        assert rec["cost"]["model_calls"] == len(calls) and rec["cost"]["rounds"] == max(w["round"] for w in calls)
        assert rec["cost"]["prompt_tokens"] == sum(w["prompt_tokens"] for w in calls) > 0
    return records


@pytest.mark.parametrize("strategy,scoring", [("tdpart", "generate"), ("setwise", "first-token"),
                                              ("single", "generate")])
def test_dear_rerank_with_a_strategy(strategy, scoring, tiny_model_dir, dl19_input, tmp_path):
    from inference import cli_rerank
    from inference.reranker import ListwiseReranker

    path, reqs = dl19_input
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    argv = ["--model", str(tiny_model_dir), "--input", str(path), "--out", str(out), "--jsonl", str(jl), *SMALL,
            "--strategy", strategy, "--scoring", scoring,
            "--qrels", str(shared_path("trec-dl19", "qrels.dl19-passage.txt"))]
    assert cli_rerank.main(argv) == 0
    records = _check_run(out, jl, reqs, strategy)
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    assert summary["strategy"] == strategy
    assert summary["sequential_rounds"] == sum(r["cost"]["rounds"] for r in records.values())
    assert summary["prompt_tokens"] == sum(r["cost"]["prompt_tokens"] for r in records.values())
    assert json.loads((tmp_path / "run.trec.meta.json").read_text())["settings"]["strategy"] == strategy
    # the same ranking as the Python API with the same options
    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", top_k=12, window=5,
                                          stride=2, depth=2, max_new_tokens=10, strategy=strategy, scoring=scoring)
    api = rr.rerank_batch(reqs)
    assert {r.qid: list(r.docids) for r in api} == {q: rec["docids"] for q, rec in records.items()}
    # a rerun with another strategy is refused, not mixed into the same run
    other = "sliding" if strategy != "sliding" else "tdpart"
    assert cli_rerank.main([*argv[:-2], "--strategy", other]) == 2


def test_dear_serve_with_a_strategy_ranks_as_the_api(tiny_model_dir, dl19_input, tmp_path, subprocess_env):
    import httpx
    from _serve_helpers import body, free_port, serve_process

    from inference.reranker import ListwiseReranker

    _, reqs = dl19_input
    port = free_port()
    opts = ["--strategy", "tdpart", "--window", "5", "--depth", "2", "--top-k", "12", "--max-new-tokens", "10"]
    with serve_process(tiny_model_dir, port, subprocess_env, tmp_path / "serve.log", *opts):
        got = [httpx.post(f"http://127.0.0.1:{port}/v1/rerank", json=body(r), timeout=120).json() for r in reqs[:2]]
    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", top_k=12, window=5,
                                          depth=2, max_new_tokens=10, strategy="tdpart")
    for req, data, exp in zip(reqs[:2], got, rr.rerank_batch(reqs[:2]), strict=True):
        order = [req.candidates[r["index"]].docid for r in data["results"]]
        assert order == list(exp.docids) and len(exp.windows) >= 3


def test_dear_serve_setwise_first_token_in_process(tiny_model_dir, dl19_input):
    from _serve_helpers import LiveServer, body

    from inference.reranker import ListwiseReranker

    _, reqs = dl19_input
    kw = dict(device_map=None, dtype="float32", top_k=12, strategy="setwise", set_size=4, depth=3,
              scoring="first-token")
    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), **kw)
    expected = ListwiseReranker(rr.model, rr.tokenizer, rr.spec, top_k=12, strategy="setwise", set_size=4, depth=3,
                                scoring="first-token").rerank_batch(reqs[:2])
    with LiveServer(rr, scoring="first-token") as s, s.client() as c:
        for req, exp in zip(reqs[:2], expected, strict=True):
            data = c.post("/v1/rerank", json=body(req)).json()
            assert [req.candidates[r["index"]].docid for r in data["results"]] == list(exp.docids)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_strategies_on_two_processes_over_gloo_equal_one_process(tiny_model_dir, dl19_input, tmp_path,
                                                                  subprocess_env):
    from inference import cli_rerank

    path, _ = dl19_input
    for strategy in ("tdpart", "setwise"):
        opts = ["--model", str(tiny_model_dir), "--input", str(path), *SMALL, "--strategy", strategy]
        ref, out = tmp_path / f"{strategy}-ref.trec", tmp_path / f"{strategy}.trec"
        assert cli_rerank.main([*opts, "--out", str(ref), "--jsonl", str(ref) + ".jsonl"]) == 0
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "inference.rerank", *opts, "--out", str(out), "--jsonl", str(out) + ".jsonl"]
        proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert out.read_bytes() == ref.read_bytes()
        assert (tmp_path / f"{strategy}.trec.jsonl").read_bytes() == (tmp_path / f"{strategy}-ref.trec.jsonl").read_bytes()
        summary = json.loads((tmp_path / f"{strategy}.trec.summary.json").read_text())
        ref_summary = json.loads((tmp_path / f"{strategy}-ref.trec.summary.json").read_text())
        assert summary["world_size"] == 2 and summary["strategy"] == strategy
        for key in ("model_calls", "prompt_tokens", "sequential_rounds", "generated_tokens"):
            assert summary[key] == ref_summary[key], key
