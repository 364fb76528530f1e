"""Ranking evaluation while training: nDCG@10 of the live model on held-out DL19 queries, logged per eval."""

from __future__ import annotations

import json

from tests._train_helpers import DL19_JSON, DL19_QRELS, build_prep_folder, tiny_args


def test_ranking_eval_callback_logs_ndcg_of_the_live_model(tiny_model_dir, shared_data, tmp_path):
    from dear_train import sft
    from dear_train.config import parse_config

    data = build_prep_folder(tmp_path / "prep", shared_data)
    out = tmp_path / "out"
    argv = tiny_args(tiny_model_dir, data, out, "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
                     "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
                     "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)),
                     "--ranking_eval_name", "dl19-heldout", "--ranking_eval_queries", "2",
                     "--ranking_eval_top_k", "6", "--ranking_eval_window", "4", "--ranking_eval_stride", "2",
                     "--ranking_eval_max_new_tokens", "24")
    trainer = sft.run(*parse_config(sft.config_classes(), argv))

    lines = [json.loads(x) for x in (out / "ranking_eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    for r in lines:
        assert set(r) == {"step", "dataset", "metrics", "valid_window_share"}
        assert r["dataset"] == "dl19-heldout"
        assert 0.0 <= r["metrics"]["ndcg@10"] <= 1.0 and 0.0 <= r["valid_window_share"] <= 1.0
    # beside the loss in the Trainer's log (what wandb gets)
    logged = [h for h in trainer.state.log_history if "ranking_eval/ndcg@10" in h]
    assert [h["step"] for h in logged] == [2, 4]
    assert any("eval_loss" in h and h["step"] == 2 for h in trainer.state.log_history)

    # the step-4 figures are those of the final model, recomputed independently
    from data_prep.prompts import load_prompt_spec
    from data_prep.ranking import parse_ranking
    from dear_train.ranking_eval import load_held_out
    from inference import ListwiseReranker
    from inference.metrics import evaluate

    held = load_held_out(shared_data.joinpath(*DL19_JSON), shared_data.joinpath(*DL19_QRELS), num_queries=2, top_k=6)
    spec = load_prompt_spec(out)
    model = trainer.model.eval()
    rr = ListwiseReranker(model, trainer.processing_class, spec, window=4, stride=2, top_k=6, max_new_tokens=24)
    results = rr.rerank_batch(list(held.requests))
    assert all(sorted(res.docids) == sorted(c.docid for c in req.candidates)
               for res, req in zip(results, held.requests, strict=True))
    ndcg = evaluate({r.qid: list(zip(r.docids, r.scores, strict=True)) for r in results}, held.qrels,
                    metrics=("ndcg@10",))["ndcg@10"]
    assert abs(ndcg - lines[-1]["metrics"]["ndcg@10"]) < 1e-9
    windows = [w for r in results for w in r.windows if w.raw is not None]
    assert len(windows) == 2 * 2  # 6 candidates, window 4, stride 2 -> 2 windows per query
    ok = sum(parse_ranking(w.raw, len(w.docids), base=spec.id_base).ok for w in windows)
    assert abs(ok / len(windows) - lines[-1]["valid_window_share"]) < 1e-9


def test_ranking_eval_takes_a_strategy(tiny_model_dir, shared_data):
    """`ranking_eval_strategy`: the held-out queries are ranked with that strategy (tdpart here: pivot and
    partition windows), the same result `ListwiseReranker(strategy=...)` gives; bad knobs are config errors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_prep.prompts import get_prompt_spec
    from dear_train.ranking_eval import evaluate_ranking, load_held_out
    from inference import ListwiseReranker

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = get_prompt_spec("dear-card", truncate_length=40)
    held = load_held_out(shared_data.joinpath(*DL19_JSON), shared_data.joinpath(*DL19_QRELS), num_queries=2, top_k=8)
    out = evaluate_ranking(model, tok, spec, held, window=4, stride=2, max_new_tokens=12, strategy="tdpart", depth=2)
    rr = ListwiseReranker(model, tok, spec, window=4, top_k=8, max_new_tokens=12, strategy="tdpart", depth=2)
    results = rr.rerank_batch(list(held.requests))
    assert out["windows"] == sum(r.cost.model_calls for r in results) >= 2 * 3  # pivot + >= 2 partitions per query
    assert {w.role for r in results for w in r.windows} >= {"pivot", "partition"}
    assert 0.0 <= out["metrics"]["ndcg@10"] <= 1.0


def test_ranking_eval_strategy_knobs_are_checked_with_the_config_names(tiny_model_dir, shared_data, tmp_path):
    import pytest

    from dear_train import sft
    from dear_train.config import ConfigError, parse_config

    data = build_prep_folder(tmp_path / "prep", shared_data)
    argv = tiny_args(tiny_model_dir, data, tmp_path / "out", "--eval_strategy", "steps", "--eval_steps", "2",
                     "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
                     "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)),
                     "--ranking_eval_strategy", "tdpart", "--ranking_eval_depth", "20")
    with pytest.raises(ConfigError, match="ranking_eval_depth must be between 1 and the window - 1"):
        sft.validate(*parse_config(sft.config_classes(), argv))


def test_grpo_ranking_eval_takes_the_same_strategies_and_checks(tiny_model_dir, shared_data, tmp_path):
    """`dear train --method grpo` shares the ranking-eval options with SFT (one home): the strategy and its knobs
    reach the callback, and the same bad knob is refused with the same config name before any model loads."""
    import pytest

    from dear_train.config import ConfigError, parse_config
    from dear_train.grpo import config as grpo_config
    from dear_train.ranking_eval_options import ranking_eval_callback, ranking_eval_settings

    data = build_prep_folder(tmp_path / "prep", shared_data)
    base = ["--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(data), "--output_dir",
            str(tmp_path / "out"), "--use_cpu", "true", "--eval_strategy", "steps", "--eval_steps", "2",
            "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
            "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)), "--ranking_eval_top_k", "8",
            "--ranking_eval_window", "4", "--ranking_eval_stride", "2", "--ranking_eval_queries", "1"]
    script, args, model_args = parse_config(grpo_config.config_classes(),
                                            [*base, "--ranking_eval_strategy", "setwise", "--ranking_eval_set_size",
                                             "3"])
    grpo_config.validate(script, args, model_args)
    settings = ranking_eval_settings(script)
    assert (settings["strategy"], settings["set_size"]) == ("setwise", 3)
    from data_prep.prompts import get_prompt_spec

    cb = ranking_eval_callback(settings, get_prompt_spec("dear-card"), str(tmp_path / "out"))
    assert (cb.strategy, cb.set_size, cb.window, cb.stride) == ("setwise", 3, 4, 2)
    bad = parse_config(grpo_config.config_classes(), [*base, "--ranking_eval_strategy", "tdpart",
                                                      "--ranking_eval_depth", "20"])
    with pytest.raises(ConfigError, match="ranking_eval_depth must be between 1 and the window - 1"):
        grpo_config.validate(*bad)
