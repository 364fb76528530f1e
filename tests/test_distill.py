"""Stage-1 student and `dear distill`: input layout, batch-independent scores, a real learning proof on DL19."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.pointwise_format import PairFormat, encode_pair, encode_pairs
from tests._pointwise_helpers import distill_data, dl19, torch_threads

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "tiny_cpu_distill.yaml"
FMT = PairFormat(q_max_len=16, p_max_len=48)  # what tiny_cpu_distill.yaml sets


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@pytest.mark.parametrize("name", ["llama31_8b_pointwise_distill", "llama32_3b_pointwise_distill",
                                  "tiny_cpu_distill"])
def test_shipped_distill_configs_parse(name):
    from dear_train.distill import parse_args

    dargs, targs, margs = parse_args(["--config", str(CONFIG.parent / f"{name}.yaml"), "--dataset_path", "x",
                                      "--output_dir", "y"])
    assert sorted(margs.lora_target_modules) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert margs.use_peft and margs.lora_modules_to_save == ["score"]
    assert targs.bf16 is False  # no GPU here: fp32 even where the recipe says bf16
    if name != "tiny_cpu_distill":  # DeAR's recipe
        assert (dargs.rank_loss, dargs.alpha, dargs.temperature) == ("ce", 0.1, 2.0)
        assert (dargs.q_max_len, dargs.p_max_len, dargs.group_size) == (32, 196, 16)
        assert (margs.lora_r, margs.lora_alpha, margs.lora_dropout) == (32, 64, 0.1)
        assert margs.model_name_or_path == ("meta-llama/Llama-3.1-8B" if "8b" in name else "meta-llama/Llama-3.2-3B")
        assert targs.gradient_checkpointing and targs.report_to == ["wandb"]


def test_pair_layout_truncates_query_and_document_separately(tiny_tokenizer):
    tok = tiny_tokenizer
    fmt = PairFormat(q_max_len=5, p_max_len=10)
    long_q, long_d = "what is the life cycle of a flea " * 5, "the flea lives for three months " * 20
    ids = encode_pair(tok, long_q, long_d, fmt)
    q_ids = tok.encode("query: " + long_q, add_special_tokens=False)
    d_ids = tok.encode("document: " + long_d, add_special_tokens=False)
    bos = tok.bos_token_id
    assert ids == [bos] + q_ids[:5] + [bos] + d_ids[:7]  # document keeps p_max_len - 3 tokens, as DeAR
    fmt = PairFormat(q_max_len=32, p_max_len=64)
    short_ids = encode_pair(tok, "flea", "a title a text", fmt)
    assert short_ids == [bos] + tok.encode("query: flea", add_special_tokens=False) + [bos] + tok.encode(
        "document: a title a text", add_special_tokens=False)
    batch = encode_pairs(tok, [(long_q, long_d), ("flea", "a title a text")], fmt)
    assert tuple(batch["input_ids"].shape) == (2, fmt.max_length)  # fixed length, whatever the batch
    assert batch["attention_mask"][1].sum().item() == len(short_ids)
    assert (batch["input_ids"][1, len(short_ids):] == tok.pad_token_id).all()


def test_pair_score_is_the_same_alone_and_in_a_padded_batch(tiny_model_dir, tmp_path):
    from inference.pointwise import PointwiseReranker
    from tests._pointwise_helpers import build_tiny_classifier

    path = build_tiny_classifier(tiny_model_dir, tmp_path / "cls")
    ranker = PointwiseReranker.from_pretrained(path, pair_format=FMT, batch_size=8)
    requests, _ = dl19(num_queries=1, depth=8)
    docs = [c.text[: 12 + 20 * i] for i, c in enumerate(requests[0].candidates)]  # 12 to 152 chars
    batched = ranker.score(requests[0].query, docs)
    alone = [ranker.score(requests[0].query, [d])[0] for d in docs]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(round(s, 5) for s in batched)) == len(docs)  # the head really separates the pairs
    ranker.batch_size = 3
    assert ranker.score(requests[0].query, docs) == pytest.approx(batched, abs=1e-5)


def _ndcg_against_teacher(ranker, requests) -> float:
    """nDCG@10 of the student's order, with the teacher's (BM25) top-10 as graded judgments (10, 9, ..., 1)."""
    import ir_measures
    from ir_measures import nDCG

    qrels = [ir_measures.Qrel(r.qid, c.docid, 10 - i) for r in requests for i, c in enumerate(r.candidates[:10])]
    run = [ir_measures.ScoredDoc(res.qid, d, s) for res in ranker.rerank_batch(requests)
           for d, s in zip(res.docids, res.scores, strict=True)]
    return ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]


def test_student_learns_the_teacher_on_dl19(tiny_model_dir, tmp_path):
    """The CPU proof: a tiny Llama classifier's nDCG@10 against its BM25 teacher rises after distillation."""
    from safetensors import safe_open
    from transformers import set_seed

    from data_prep.readers import write_rankgpt_json
    from dear_train.distill import parse_args, train_distill
    from dear_train.pointwise_student import build_student
    from inference.pointwise import PointwiseReranker

    data, requests = distill_data(tmp_path)
    write_rankgpt_json(tmp_path / "heldout.json", requests)  # ranking eval during training, teacher's top-10 judged
    (tmp_path / "teacher.qrels").write_text("".join(f"{r.qid} 0 {c.docid} {10 - i}\n" for r in requests
                                                    for i, c in enumerate(r.candidates[:10])))
    dargs, targs, margs = parse_args([
        "--config", str(CONFIG), "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(data),
        "--output_dir", str(tmp_path / "out"), "--eval_strategy", "steps", "--eval_steps", "80",
        "--ranking_eval_data", str(tmp_path / "heldout.json"), "--ranking_eval_qrels", str(tmp_path / "teacher.qrels"),
        "--ranking_eval_top_k", "16"])
    assert (dargs.rank_loss, dargs.alpha, dargs.q_max_len, margs.lora_modules_to_save) == ("mix", 0.1, 16, ["score"])
    set_seed(targs.seed)  # the same initial student train_distill starts from
    model0, tok0 = build_student(str(tiny_model_dir), dtype="float32", lora_r=margs.lora_r,
                                 lora_alpha=margs.lora_alpha, lora_dropout=0.0)
    before = _ndcg_against_teacher(PointwiseReranker(model0, tok0, pair_format=FMT, batch_size=64), requests)

    train_distill(dargs, targs, margs)
    out = Path(targs.output_dir)
    trained = PointwiseReranker.from_pretrained(out, batch_size=64)
    assert trained.pair_format == FMT  # read back from pointwise_format.json
    after = _ndcg_against_teacher(trained, requests)
    assert after > before + 0.2, (before, after)
    assert after > 0.8
    (record,) = [json.loads(line) for line in (out / "ranking_eval.jsonl").read_text().splitlines()]
    assert record["step"] == 80 and record["dataset"] == "heldout" and record["valid_window_share"] == 1.0
    assert record["metrics"]["ndcg@10"] == pytest.approx(after, abs=1e-3)  # live model == reloaded adapter

    # the folder contract: adapter + score head, tokenizer, format, dear_training.json
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and "score" in cfg["modules_to_save"]
    assert set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("score" in k for k in keys) and any("lora_A" in k for k in keys)
    assert all("lora_" in k or "score" in k for k in keys)  # nothing of the frozen base is saved
    for name in ("tokenizer.json", "tokenizer_config.json", "pointwise_format.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "dear_training.json").read_text())
    assert record["task"] == "pointwise" and record["base_model"] == str(tiny_model_dir)
    assert record["config"]["rank_loss"] == "mix" and record["config"]["learning_rate"] == targs.learning_rate
    assert record["versions"]["peft"] and record["config"]["model_dtype"] == "float32"
    assert record["dataset"]["path"].endswith("train.jsonl") and len(record["dataset"]["fingerprint"]) == 64
    # a merged copy scores the same as the adapter
    merged = PointwiseReranker.from_pretrained(out, batch_size=64, merge=True)
    r = requests[0]
    assert merged.score(r.query, list(r.candidates)) == pytest.approx(trained.score(r.query, list(r.candidates)),
                                                                      abs=1e-4)


def test_cli_resumes_from_the_last_checkpoint(tiny_model_dir, tmp_path, capsys):
    from dear_train.cli import main as dear

    data, _ = distill_data(tmp_path, num_queries=4, depth=6, eval_queries=1)
    common = ["distill", "--config", str(CONFIG), "--model_name_or_path", str(tiny_model_dir),
              "--dataset_path", str(data), "--output_dir", str(tmp_path / "out"), "--save_strategy", "steps",
              "--save_steps", "2", "--logging_steps", "1", "--eval_strategy", "steps", "--eval_steps", "2"]
    assert dear(common + ["--max_steps", "2"]) == 0
    assert (tmp_path / "out" / "checkpoint-2").is_dir()
    assert dear(common + ["--max_steps", "4", "--resume_from_checkpoint", "auto"]) == 0
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == [1, 2, 3, 4] and state["global_step"] == 4  # steps 1-2 came from the resumed checkpoint
    evals = [h for h in state["log_history"] if "eval_loss" in h]
    assert [h["step"] for h in evals] == [2, 4] and all(h["eval_loss"] > 0 for h in evals)  # held-out groups
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text() + "rank_los: ce\n")  # a typo is an error naming the key, not ignored
    assert dear(["distill", "--config", str(bad), "--model_name_or_path", str(tiny_model_dir),
                 "--dataset_path", str(data), "--output_dir", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "rank_los" in err and "did you mean 'rank_loss'" in err and not (tmp_path / "o2").exists()
