"""The README's first command, end to end: tiny model -> prep -> train -> rerank -> eval -> export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


def _quickstart():
    import importlib.util

    spec = importlib.util.spec_from_file_location("quickstart", REPO / "scripts" / "quickstart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _summary(first, trained, w0, w1):
    return {"ndcg@10": {"first_stage": sum(first.values()) / len(first), "trained": sum(trained.values()) / len(trained)},
            "ndcg@10_per_query": {"first_stage": first, "trained": trained},
            "windows_untrained": {"well_formed_share": w0[0], "clean_share": w0[1]},
            "windows_trained": {"well_formed_share": w1[0], "clean_share": w1[1]}}


def test_the_quickstart_sentences_follow_the_figures():
    qs = _quickstart()
    lines = qs.verdict(_summary({"a": 0.5, "b": 0.7}, {"a": 0.4, "b": 0.7}, (0.0, 0.0), (1.0, 0.5)))
    assert lines[0].startswith("Training took:") and "from 0% to 100%" in lines[0] and "from 0% to 50%" in lines[0]
    assert "trails the first-stage order by 5.00 points, better on 0 and worse on 1 of the 2" in lines[1]
    lines = qs.verdict(_summary({"a": 0.5}, {"a": 0.9}, (0.2, 0.1), (0.2, 0.1)))
    assert lines[0].startswith("Training did not take:") and "beats the first-stage order by 40.00" in lines[1]
    assert "ties the first-stage order, better on 0 and worse on 0" in qs.verdict(
        _summary({"a": 0.5}, {"a": 0.5}, (0, 0), (1, 1)))[1]


@pytest.mark.slow
def test_quickstart_runs_offline_and_shows_that_training_took(tmp_path, subprocess_env):
    out = tmp_path / "qs"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "quickstart.py"), "--out", str(out)],
                          env=subprocess_env, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # every step is printed as the `dear` command a user can rerun
    for cmd in ("dear tiny-model", "dear prep listwise", "dear train", "dear rerank", "dear eval", "dear export"):
        assert f"$ {cmd}" in proc.stdout
    s = json.loads((out / "summary.json").read_text())
    assert len(s["heldout_queries"]) == 5
    before, after = s["windows_untrained"], s["windows_trained"]
    assert before["windows"] == after["windows"] == 30  # 5 queries x 6 windows of 5 over the top 20
    assert before["well_formed_share"] == 0.0 and after["well_formed_share"] >= 0.9
    assert after["clean_share"] > before["clean_share"]
    assert 0.0 < s["ndcg@10"]["first_stage"] <= 1.0
    # the export is a loadable adapter folder with its model card and the training prompt spec
    export = out / "export"
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "prompt_spec.json"):
        assert (export / name).is_file(), name
    assert json.loads((export / "prompt_spec.json").read_text())["truncate_length"] == 100
    for run in ("first_stage", "untrained", "trained"):
        lines = (out / "runs" / f"{run}.trec").read_text().splitlines()
        assert len(lines) == 5 * 20
    # every sentence under the table is the one derived from the summary's figures
    printed = " ".join(proc.stdout.split())
    for line in _quickstart().verdict(s):
        assert " ".join(line.split()) in printed
    evals = json.loads((out / "eval.json").read_text())["runs"]
    assert evals[str(out / "runs" / "trained.trec")]["metrics"]["ndcg@10"] == s["ndcg@10"]["trained"]

    # `dear export --dry-run` (adapter, and merged) on the quickstart's adapter: the folders load with plain
    # transformers/PEFT and rerank the held-out queries exactly as the source adapter did in `dear rerank`.
    merged = out / "export-merged"
    proc = subprocess.run([sys.executable, "-m", "dear_train.cli", "export", "--adapter", str(out / "adapter"),
                           "--out", str(merged), "--merge", "--dtype", "fp32", "--dry-run",
                           "--push-to-hub", "someone/dear-tiny"],
                          env={**subprocess_env, "HF_TOKEN": "hf_dry_run_token"},  # a dry run checks for one
                          capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dry run: would upload these" in proc.stdout

    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from data_prep.readers import read_rankgpt_json
    from inference import ListwiseReranker

    assert AutoPeftModelForCausalLM.from_pretrained(export) is not None
    assert AutoModelForCausalLM.from_pretrained(merged) is not None
    source = {r["qid"]: r["docids"] for r in map(json.loads, (out / "runs" / "trained.jsonl").read_text().splitlines())}
    requests = read_rankgpt_json(out / "heldout.json")
    for folder in (export, merged):
        reranker = ListwiseReranker.from_pretrained(str(folder), device_map="cpu", window=5, stride=3, top_k=20)
        got = {r.qid: list(r.docids) for r in reranker.rerank_batch(requests)}
        assert got == source, folder


def test_the_first_token_sentence_follows_its_figures():
    qs = _quickstart()
    s = _summary({"a": 0.5}, {"a": 0.5}, (0, 0), (1, 1))
    s["ndcg@10"]["trained_first_token"] = 0.4
    s["first_token"] = {"loss_weight": 10.0, "s_per_query": 0.1, "gen_s_per_query": 0.25,
                        "agreement": {"windows": 30, "kendall_tau": 0.8, "top1_agreement": 0.5}}
    (line,) = [x for x in qs.verdict(s) if x.startswith("First-token")]
    assert "FIRST objective, L = 10" in line and "0.100 s per query, 2.5x faster than generation (0.250 s)" in line
    assert "nDCG@10 40.00 against 50.00" in line and "30 windows" in line and "tau 0.80" in line and "50%" in line
    s["first_token"].update(loss_weight=0.0, s_per_query=0.3)
    (line,) = [x for x in qs.verdict(s) if x.startswith("First-token")]
    assert "LM loss only, L = 0" in line and "1.2x slower than generation" in line
