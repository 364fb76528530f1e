"""`sliding` after the split into strategies writes the same run and JSONL bytes as the reranker before it
(references written by the pre-strategy code: tests/_sliding_reference.py and the tiny model's `dear rerank`)."""

import json
import subprocess

import pytest
from _sliding_reference import CASES, build, dl19_requests, run_case, synthetic_requests
from conftest import REPO, SHARED_DATA, shared_path

from data_prep.readers import write_rankgpt_json

REFERENCE = json.loads((REPO / "tests" / "data" / "sliding_reference.json").read_text(encoding="utf-8"))
TINY_REFERENCE = json.loads((REPO / "tests" / "data" / "sliding_reference_tiny.json").read_text(encoding="utf-8"))


def test_scripted_cases_write_the_reference_bytes(tiny_tokenizer):
    shared_path("trec-dl19", "retrieve_results_dl19_top100.json")
    got = build(SHARED_DATA, tiny_tokenizer)
    assert sorted(got) == sorted(REFERENCE)
    for name in REFERENCE:
        assert got[name]["run"] == REFERENCE[name]["run"], name
        assert got[name]["jsonl"] == REFERENCE[name]["jsonl"], name


def test_explicit_sliding_strategy_object_is_the_default(tiny_tokenizer):
    from inference.ranking import Sliding

    shared_path("trec-dl19", "retrieve_results_dl19_top100.json")
    requests = synthetic_requests() + dl19_requests(SHARED_DATA)
    case = next(c for c in CASES if c["name"] == "generate-5-2-17")
    got = run_case(case, requests, tiny_tokenizer, {"strategy": Sliding(5, 2)})
    assert got == REFERENCE[case["name"]]


@pytest.mark.parametrize("name", sorted(TINY_REFERENCE))
def test_tiny_model_dear_rerank_writes_the_reference_bytes(name, tiny_model_dir, tmp_path, dear_cmd, subprocess_env):
    """Greedy generation and first-token scoring on the tiny model (fp32, CPU): byte-identical runs and JSONL."""
    from data_prep.readers import read_rankgpt_json

    reqs = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:2]
    write_rankgpt_json(tmp_path / "two.json", reqs)
    ref = TINY_REFERENCE[name]
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    cmd = dear_cmd + ["rerank", "--model", str(tiny_model_dir), "--input", str(tmp_path / "two.json"),
                      "--out", str(out), "--jsonl", str(jl), "--top-k", "30", "--batch-size", "2", "--no-progress",
                      *ref["args"]]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == ref["run"]
    assert jl.read_text() == ref["jsonl"]
