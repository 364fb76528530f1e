"""Last-row prefill (inference.engine.prefill): same cache, same kept logits, only where exact, always restored."""

from __future__ import annotations

import pytest
import torch
from conftest import shared_path

from data_prep.prompts import get_prompt_spec, render_prompt
from data_prep.readers import read_rankgpt_json
from inference.engine import prefill
from inference.engine.prefill import LAST_ROW_SDPA, _trims, can_trim, last_row_prefill
from inference.reranker import ListwiseReranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


class _QueryRows:
    """Records the number of query rows of every SDPA call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        real = torch.nn.functional.scaled_dot_product_attention

        def spy(query, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            self.rows.append(int(query.shape[-2]))
            return real(query, *args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)


def _prefill(model, ids, trim: bool):
    from transformers.cache_utils import DynamicCache

    with torch.inference_mode(), last_row_prefill(model, trim) as on:
        out = model(input_ids=ids, cache=DynamicCache(config=model.config), use_cache=True, logits_to_keep=1)
    return out.logits, out.cache, on


def _assert_same_prefill(model, ids, monkeypatch) -> None:
    full_logits, full_cache, on = _prefill(model, ids, trim=False)
    assert on is False
    spy = _QueryRows(monkeypatch)
    logits, cache, on = _prefill(model, ids, trim=True)
    assert on is True
    layers = model.config.num_hidden_layers
    assert spy.rows == [ids.shape[1]] * (layers - 1) + [1]  # only the last layer ran one query row
    for a, b in zip(full_cache.layers, cache.layers, strict=True):  # every layer's keys/values bit-identical
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(logits.argmax(-1), full_logits.argmax(-1))
    assert model.config._attn_implementation == "sdpa"


def test_trimmed_prefill_keeps_every_key_value_and_the_kept_logits(tiny, monkeypatch):
    model, _ = tiny
    ids = torch.randint(0, model.config.vocab_size, (1, 700), generator=torch.Generator().manual_seed(0))
    _assert_same_prefill(model, ids, monkeypatch)


def test_trimmed_prefill_on_a_peft_model(tiny_model_dir, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                            init_lora_weights=False)).eval()
    assert can_trim(model)
    ids = torch.randint(0, base.config.vocab_size, (1, 300), generator=torch.Generator().manual_seed(1))
    _assert_same_prefill(model, ids, monkeypatch)
    assert base.config._attn_implementation == "sdpa"


def test_the_attention_setting_is_restored_after_an_error(tiny):
    model, _ = tiny
    with pytest.raises(RuntimeError, match="boom"), last_row_prefill(model) as on:
        assert on and model.config._attn_implementation == LAST_ROW_SDPA
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_another_thread_running_the_model_meanwhile_gets_every_row(tiny):
    """The switch is the model config's (shared), the trim is this thread's: a full forward elsewhere is exact."""
    import threading

    model, _ = tiny
    ids = torch.randint(0, model.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(2))

    def full_logits():
        with torch.inference_mode():
            return model(input_ids=ids).logits

    expected, got = full_logits(), {}
    with last_row_prefill(model) as on:
        assert on
        worker = threading.Thread(target=lambda: got.update(logits=full_logits()))
        worker.start()
        worker.join()
    assert torch.equal(got["logits"], expected)


def test_no_trim_where_it_would_not_be_exact(tiny_model_dir, tiny):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert not can_trim(eager)
    with last_row_prefill(eager) as on:
        assert on is False and eager.config._attn_implementation == "eager"

    model, _ = tiny
    assert not prefill._ACTIVE.get()

    class RemoteCodeLlama(type(model)):  # stands in for trust_remote_code classes: not transformers' own
        pass

    assert not can_trim(RemoteCodeLlama(model.config))
    model.config.model_type = "some_hybrid"  # a family not known to mix positions only in attention
    try:
        assert not can_trim(model)
    finally:
        model.config.model_type = "llama"
    last = model.model.layers[-1].self_attn
    first = model.model.layers[0].self_attn
    q, k = torch.zeros(1, 4, 5, 16), torch.zeros(1, 2, 5, 16)
    assert not _trims(last, q, k, None, {})  # outside last_row_prefill (another thread's forward, say)
    token = prefill._ACTIVE.set(True)
    try:
        _check_cases(last, first, q, k)
    finally:
        prefill._ACTIVE.reset(token)


def _check_cases(last, first, q, k) -> None:
    assert _trims(last, q, k, None, {})
    assert not _trims(first, q, k, None, {})  # not the last layer: later layers read its output
    assert not _trims(last, q, k, torch.ones(1, 1, 5, 5, dtype=torch.bool), {})  # padded/masked input
    assert not _trims(last, q[:, :, :1], k, None, {})  # a decode step is one row already
    assert not _trims(last, q, k, None, {"sliding_window": 4})  # the last row would not see every key
    assert not _trims(last, q, k, None, {"output_attentions": True})
    last.train()
    try:
        assert not _trims(last, q, k, None, {})
    finally:
        last.eval()


def test_reranker_windows_equal_plain_generate(tiny):
    """The backend (trimmed prefill, batched decode, streamed early-stop checks) generates exactly what plain
    greedy ``generate`` does for every window of two DL19 queries."""
    from data_prep.ranking import parse_ranking
    from data_prep.windows import apply_window, window_plan

    model, tok = tiny
    reqs = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:2]
    spec = get_prompt_spec("dear-card")
    budget = 24
    expected = []
    for req in reqs:
        order = list(range(len(req.candidates)))
        for start, end in window_plan(30, 20, 10):
            idx = order[start:end]
            text = render_prompt(spec, req.query, [req.candidates[i].passage() for i in idx]).text
            enc = tok(text, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=budget, do_sample=False, pad_token_id=tok.pad_token_id)
            raw = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
            expected.append(raw)
            order = apply_window(order, (start, end), parse_ranking(raw, len(idx), base=spec.id_base).order)
    rr = ListwiseReranker(model, tok, spec, top_k=30, max_new_tokens=budget, batch_size=2)
    got = [w.raw for r in rr.rerank_batch(reqs) for w in r.windows]
    assert rr.backend.trim_prefill and prefill._registered
    assert got == expected


def test_gpu_rerank_bench_script_dry_run(tmp_path):
    """The prepared GPU reranking benchmark (random 8B-shaped bf16 Llama) runs end to end at a tiny shape on the
    CPU, and its own check holds: every approach gives the card approach's rankings and window outputs."""
    import importlib.util
    import json
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_rerank", repo / "scripts" / "bench_rerank.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "dry.json"
    assert mod.main(["--dry-run", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "dry run" in report["model"] and report["queries"] == 2
    (run,) = report["runs"]
    for name in ("ours", "ours_full_prefill"):
        assert run[name]["identical_rankings"] == "2/2" and run[name]["identical_window_outputs"] == "18/18"
        assert run[name]["windows"] == run["card"]["windows"] == 18
