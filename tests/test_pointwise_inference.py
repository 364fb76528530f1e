"""PointwiseReranker (both released DeAR layouts) and the two-stage pipeline, on tiny models and real DL19."""

from __future__ import annotations

import json

import pytest
from _infer_helpers import ScriptedBackend

from data_prep.pointwise_format import PairFormat
from data_prep.readers import read_run, write_rankgpt_json
from inference import PointwiseReranker, TwoStageReranker
from inference.reranker import ListwiseReranker
from tests._pointwise_helpers import build_tiny_classifier, dl19, torch_threads

FMT = PairFormat(q_max_len=16, p_max_len=48)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def classifier(tiny_model_dir, tmp_path_factory):
    return build_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("pw") / "cls")


def test_scores_sorted_and_batched_equals_unbatched(classifier):
    requests, _ = dl19(num_queries=3, depth=12)
    big = PointwiseReranker.from_pretrained(classifier, pair_format=FMT, batch_size=16)
    one = PointwiseReranker.from_pretrained(classifier, pair_format=FMT, batch_size=1)
    results = big.rerank_batch(requests)
    for req, res in zip(requests, results, strict=True):
        assert sorted(res.docids) == sorted(c.docid for c in req.candidates)
        assert res.scores == sorted(res.scores, reverse=True)
        alone = one.score(req.query, list(req.candidates))
        assert [alone[i] for i in res.indices] == pytest.approx(res.scores, abs=1e-5)
        assert [req.candidates[i].docid for i in res.indices] == res.docids
    assert big.rerank(requests[0].query, [c.text for c in requests[0].candidates]) == results[0].indices


def test_dynamic_padding_gives_the_fixed_length_scores(classifier, tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    requests, _ = dl19(num_queries=2, depth=10)
    pairs = [(r.query, c.text[: 30 + 25 * i]) for r in requests for i, c in enumerate(r.candidates)]
    auto = PointwiseReranker.from_pretrained(classifier, pair_format=FMT, batch_size=4)
    fixed = PointwiseReranker.from_pretrained(classifier, pair_format=FMT, batch_size=4, dynamic_padding=False)
    assert auto.dynamic_padding and not fixed.dynamic_padding
    assert auto.score_pairs(pairs) == pytest.approx(fixed.score_pairs(pairs), abs=1e-5)
    # the released DeAR layout: no pad token (EOS pads), config pad_token_id 0 -> pooling on the last
    # position, so rows must keep the fixed length
    model = AutoModelForSequenceClassification.from_pretrained(classifier)
    model.config.pad_token_id = 0
    tok = AutoTokenizer.from_pretrained(classifier)
    tok.pad_token = None
    model.save_pretrained(tmp_path / "dear")
    tok.save_pretrained(tmp_path / "dear")
    dear = PointwiseReranker.from_pretrained(tmp_path / "dear", pair_format=FMT, batch_size=4)
    assert not dear.dynamic_padding and dear.tokenizer.pad_token_id == dear.tokenizer.eos_token_id
    one = PointwiseReranker.from_pretrained(tmp_path / "dear", pair_format=FMT, batch_size=1)
    assert dear.score_pairs(pairs) == pytest.approx(one.score_pairs(pairs), abs=1e-5)


def test_loads_a_peft_adapter_with_its_saved_score_head(tiny_model_dir, tmp_path):
    """The `dear-*-reranker-*-lora-v1` layout: a SEQ_CLS LoRA adapter (score head in modules_to_save), no tokenizer."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=[
        "q_proj", "v_proj", "o_proj", "down_proj", "up_proj", "gate_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "score" in name:
                p.normal_(std=0.3)
    model.save_pretrained(tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "score" in cfg["modules_to_save"] and not (tmp_path / "adapter" / "tokenizer.json").exists()

    requests, _ = dl19(num_queries=1, depth=6)
    r = requests[0]
    live = PointwiseReranker(model.eval(), AutoTokenizer.from_pretrained(tiny_model_dir), pair_format=FMT)
    loaded = PointwiseReranker.from_pretrained(tmp_path / "adapter", pair_format=FMT)
    expected = live.score(r.query, list(r.candidates))
    assert loaded.score(r.query, list(r.candidates)) == pytest.approx(expected, abs=1e-5)
    # the score head really came from the adapter: a fresh head would score differently
    bare = PointwiseReranker.from_pretrained(tiny_model_dir, pair_format=FMT)
    assert bare.score(r.query, list(r.candidates)) != pytest.approx(expected, abs=1e-3)


def _reverse_window(req) -> str:
    n = req.text.count("\n[")  # the dear-card prompt lists passages as lines "[i] ..."
    return " " + " > ".join(f"[{i}]" for i in reversed(range(n)))


def test_two_stage_reorders_only_the_pointwise_head(classifier, tiny_tokenizer):
    requests, _ = dl19(num_queries=2, depth=40)
    pointwise = PointwiseReranker.from_pretrained(classifier, pair_format=FMT, batch_size=32)
    backend = ScriptedBackend(_reverse_window)
    listwise = ListwiseReranker(None, tiny_tokenizer, "dear-card", window=6, stride=3, backend=backend)
    pipeline = TwoStageReranker(pointwise, listwise, pointwise_depth=30, listwise_depth=12)
    results, timings = pipeline.rerank_batch(requests)
    stage1 = pointwise.rerank_batch(requests, top_k=30)
    for req, res, pw in zip(requests, results, stage1, strict=True):
        assert sorted(res.docids) == sorted(c.docid for c in req.candidates)  # a permutation of the input
        assert set(res.docids[:12]) == set(pw.docids[:12])  # listwise reorders the pointwise top 12 ...
        assert list(res.docids[:12]) != pw.docids[:12]
        assert list(res.docids[12:30]) == pw.docids[12:30]  # ... the rest keeps the pointwise order
        assert list(res.docids[30:]) == [c.docid for c in req.candidates[30:]]  # below depth: first stage
    assert backend.requests and all(r.text.count("\n[") <= 6 for r in backend.requests)
    t = timings.as_dict()
    assert t["pointwise"]["pairs"] == 60 and t["queries"] == 2
    assert t["pointwise"]["wall_s"] > 0 and t["listwise"]["wall_s"] > 0
    assert t["pointwise"]["share"] + t["listwise"]["share"] == pytest.approx(1.0, abs=1e-3)


def test_dear_rerank_two_stage_cli(classifier, tiny_model_dir, tmp_path, dear_cmd, subprocess_env):
    import subprocess

    requests, _ = dl19(num_queries=2, depth=40)
    data = tmp_path / "two.json"
    write_rankgpt_json(data, requests)
    (classifier / "pointwise_format.json").write_text(json.dumps(FMT.to_json()))
    out = tmp_path / "run.trec"
    args = ["--pointwise", str(classifier), "--listwise", str(tiny_model_dir), "--input", str(data), "--out", str(out),
            "--pointwise-depth", "30", "--listwise-depth", "12", "--window", "6", "--stride", "3",
            "--max-new-tokens", "6", "--no-progress"]
    from inference.cli_rerank import main as rerank

    assert rerank(args + ["--limit", "1"]) == 0  # in-process: one query, then the CLI resumes the other
    proc = subprocess.run(dear_cmd + ["rerank", *args], env=subprocess_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "pointwise stage" in proc.stderr and "listwise stage" in proc.stderr
    run = read_run(out)
    pw = PointwiseReranker.from_pretrained(classifier).rerank_batch(requests, top_k=30)
    for req, p in zip(requests, pw, strict=True):
        docids = [d for d, _ in run[req.qid]]
        assert sorted(docids) == sorted(c.docid for c in req.candidates)
        assert docids[12:30] == p.docids[12:30] and docids[30:] == [c.docid for c in req.candidates[30:]]
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    stages = summary["stages"]
    assert summary["resumed"] == 1 and summary["ranked"] == 1
    assert stages["pointwise"]["pairs"] == 30 and stages["listwise"]["wall_s"] > 0  # only the query not yet done
    assert stages["pointwise"]["share"] + stages["listwise"]["share"] == pytest.approx(1.0, abs=1e-3)


def test_unreadable_pointwise_format_names_the_file(tmp_path):
    import pytest as _pytest

    from data_prep.pointwise_format import POINTWISE_FORMAT_FILE, load_pair_format
    from data_prep.schema import DataError

    (tmp_path / POINTWISE_FORMAT_FILE).write_text("{bad", encoding="utf-8")
    with _pytest.raises(DataError, match=r"pointwise_format\.json: unreadable pointwise format"):
        load_pair_format(tmp_path)
    assert load_pair_format(tmp_path / "absent") is None
