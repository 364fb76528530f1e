"""The reranker on the tiny random Llama: real HF generation, PEFT adapters, the model card's prompt bytes."""

import json
import re
import shutil

import pytest
from _infer_helpers import RecordingBackend
from conftest import shared_path

from data_prep.prompts import get_prompt_spec, save_prompt_spec
from data_prep.readers import read_rankgpt_json
from data_prep.schema import DataError
from inference.engine import HFBackend
from inference.reranker import ListwiseReranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def dl19_requests():
    return read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:4]


def _permutation_of(result, request):
    return sorted(result.docids) == sorted(c.docid for c in request.candidates)


def test_batched_equals_unbatched_greedy_and_results_are_permutations(tiny, dl19_requests):
    model, tok = tiny
    reqs = dl19_requests[:3]
    kw = dict(top_k=30, max_new_tokens=16)
    alone = ListwiseReranker(model, tok, "dear-card", batch_size=1, **kw).rerank_batch(reqs)
    batched_rr = ListwiseReranker(model, tok, "dear-card", batch_size=3, **kw)
    batched = batched_rr.rerank_batch(reqs)
    assert [w.raw for r in batched for w in r.windows] == [w.raw for r in alone for w in r.windows]
    assert batched == alone
    for res, req in zip(batched, reqs, strict=True):
        assert _permutation_of(res, req)
        assert res.docids[30:] == tuple(c.docid for c in req.candidates[30:])  # tail untouched
        assert [(w.start, w.end) for w in res.windows] == [(10, 30), (0, 20)]
        total: dict[str, int] = {}
        for w in res.windows:
            assert sorted(w.order) == list(range(20)) and w.raw is not None
            for k, v in w.repairs.items():
                total[k] = total.get(k, 0) + v
        assert res.repairs == total
    assert sum(sum(r.repairs.values()) for r in batched) > 0  # a random model's output needs repair
    stats = batched_rr.backend.stats
    assert stats.prefills == 6 and stats.generated_tokens > 0
    assert stats.decode_steps < sum(len(w.raw) for r in batched for w in r.windows) + 12  # windows shared steps


def test_sampling_with_a_seed_does_not_depend_on_the_batch(tiny, dl19_requests):
    model, tok = tiny
    kw = dict(top_k=20, max_new_tokens=12, do_sample=True, temperature=1.0, seed=7)
    a = ListwiseReranker(model, tok, "dear-card", batch_size=1, **kw).rerank_batch(dl19_requests[:3])
    b = ListwiseReranker(model, tok, "dear-card", batch_size=3, **kw).rerank_batch(dl19_requests[:3])
    greedy = ListwiseReranker(model, tok, "dear-card", top_k=20, max_new_tokens=12).rerank_batch(dl19_requests[:3])
    assert [w.raw for r in a for w in r.windows] == [w.raw for r in b for w in r.windows]
    assert [w.raw for r in a for w in r.windows] != [w.raw for r in greedy for w in r.windows]


# The model card's ListwiseLoRAReranker.create_prompt, verbatim (indentation restored).
def card_create_prompt(query, documents):
    doc_list = "\n".join([f"[{i}] {doc[:300]}" for i, doc in enumerate(documents)])
    return f"""I will provide you with {len(documents)} passages, each indicated by a number identifier [].
Rank the passages based on their relevance to the search query: {query}.
{doc_list}
Search Query: {query}.
Rank the passages above based on their relevance to the search query. Output the ranking as a list of numbers."""


def card_parse_ranking(text, num_docs):
    numbers = re.findall(r"\[(\d+)\]", text)
    ranking = [int(n) for n in numbers if int(n) < num_docs]
    for i in range(num_docs):
        if i not in ranking:
            ranking.append(i)
    return ranking[:num_docs]


def test_card_drop_in_sends_the_cards_prompt_bytes(tiny, dl19_requests):
    model, tok = tiny
    query = "When did Thomas Edison invent the light bulb?"
    documents = ["Lightning strike at Seoul National University",
                 "Thomas Edison tried to invent a device for car but failed", "Coffee is good for diet",
                 "KEPCO fixes light problems", "Thomas Edison invented the light bulb in 1879"]
    rec = RecordingBackend(HFBackend(model, tok))
    rr = ListwiseReranker(model, tok, "dear-card", backend=rec, max_new_tokens=50)
    order = rr.rerank(query, documents)
    assert sorted(order) == list(range(5))
    (req,) = rec.requests
    assert req.text.encode() == card_create_prompt(query, documents).encode()
    card_ids = tok(card_create_prompt(query, documents), truncation=True, max_length=2048)["input_ids"]
    assert tok(req.text, add_special_tokens=req.add_special_tokens)["input_ids"] == card_ids
    # the card's own generate + parse on the same prompt gives the same order on a well-formed answer
    assert card_parse_ranking(" [4] > [1] > [0] > [3] > [2]", 5) == [4, 1, 0, 3, 2]
    # 20 real passages of 300+ characters: the window prompt is still the card's, byte for byte
    req20 = dl19_requests[0]
    docs = [c.text for c in req20.candidates[:20]]
    rec = RecordingBackend(HFBackend(model, tok))
    ListwiseReranker(model, tok, "dear-card", backend=rec, max_new_tokens=4).rerank(req20.query, docs)
    assert rec.requests[0].text.encode() == card_create_prompt(req20.query, docs).encode()


def _save_adapter(model_dir, out, *, spec=None, init_lora_weights=False):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "k_proj", "o_proj"],
                     task_type="CAUSAL_LM", init_lora_weights=init_lora_weights)
    peft_model = get_peft_model(base, cfg)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    if spec is not None:
        save_prompt_spec(out, spec)
    return peft_model


def test_adapter_folder_loads_with_its_spec_and_matches_the_live_peft_model(tiny_model_dir, tmp_path, tiny,
                                                                               dl19_requests):
    _, tok = tiny
    spec = get_prompt_spec("rankgpt")
    live = _save_adapter(tiny_model_dir, tmp_path / "adapter", spec=spec)
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_model_dir)
    kw = dict(top_k=20, max_new_tokens=16, batch_size=2)
    loaded = ListwiseReranker.from_pretrained(str(tmp_path / "adapter"), device_map=None, dtype="float32", **kw)
    assert loaded.spec == spec
    in_memory = ListwiseReranker(live, tok, spec, **kw)  # the training-time constructor with a PeftModel
    a = loaded.rerank_batch(dl19_requests[:2])
    b = in_memory.rerank_batch(dl19_requests[:2])
    assert [w.raw for r in a for w in r.windows] == [w.raw for r in b for w in r.windows]
    base_rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, prompt="rankgpt", **kw)
    c = base_rr.rerank_batch(dl19_requests[:2])
    assert [w.raw for r in a for w in r.windows] != [w.raw for r in c for w in r.windows]  # the adapter acts


def test_training_mode_is_restored_after_reranking(tiny_model_dir, tmp_path, tiny, dl19_requests):
    _, tok = tiny
    live = _save_adapter(tiny_model_dir, tmp_path / "a2")
    live.train()
    ListwiseReranker(live, tok, "dear-card", top_k=2, max_new_tokens=2).rerank_batch(dl19_requests[:1])
    assert live.training


def test_released_adapter_layout_defaults_to_dear_card_and_bad_folders_fail_clearly(tiny_model_dir, tmp_path):
    _save_adapter(tiny_model_dir, tmp_path / "released", init_lora_weights=True)
    rr = ListwiseReranker.from_pretrained(str(tmp_path / "released"), device_map=None, max_new_tokens=4)
    assert rr.spec.name == "dear-card"
    # an adapter folder whose weights are missing
    (tmp_path / "released" / "adapter_model.safetensors").unlink()
    with pytest.raises(DataError, match="no adapter weights") as err:
        ListwiseReranker.from_pretrained(str(tmp_path / "released"))
    assert err.value.reason == "no_weights"
    # a model folder without weights
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_model_dir / "config.json", bare / "config.json")
    with pytest.raises(DataError, match="no weights"):
        ListwiseReranker.from_pretrained(str(bare))
    with pytest.raises(DataError, match="not found"):
        ListwiseReranker.from_pretrained(str(tmp_path / "missing"))


def test_a_huge_passage_is_shrunk_to_fit_and_counted(tiny):
    model, tok = tiny
    from data_prep.schema import Candidate, RerankRequest

    req = RerankRequest(qid="big", query="q", candidates=(Candidate("a", "x" * 100_000), Candidate("b", "short")))
    rr = ListwiseReranker(model, tok, "rankgpt", max_new_tokens=4, max_prompt_tokens=600)
    (res,) = rr.rerank_batch([req])
    assert sorted(res.docids) == ["a", "b"] and res.repairs.get("prompt_shrunk") == 1
    assert res.windows[0].prompt_tokens <= 600


def test_slot_reuse_growth_and_compaction_keep_greedy_outputs_exact(tiny, monkeypatch):
    """Short prompts of different lengths and a budget past the buffer headroom: windows join, leave,
    reuse slots, grow the buffer and compact at the end, and every output equals decoding alone."""
    from data_prep.schema import Candidate, RerankRequest
    from inference.engine.kv_slots import SlotBatch

    model, tok = tiny
    monkeypatch.setattr(SlotBatch, "HEADROOM", 8)  # grow often without long generations
    words = "light bulb edison invent patent lamp current wire glass carbon filament vacuum".split()
    reqs = [RerankRequest(qid=f"s{j}", query=" ".join(words[j: j + 3]),
                          candidates=tuple(Candidate(f"s{j}-{i}", " ".join(words[: 1 + (3 * i + 5 * j) % 12]))
                                           for i in range(8)))
            for j in range(5)]
    budget = 30
    kw = dict(window=4, stride=2, max_new_tokens=budget, early_stop=False)
    alone = ListwiseReranker(model, tok, "dear-card", batch_size=1, **kw).rerank_batch(reqs)
    together = ListwiseReranker(model, tok, "dear-card", batch_size=3, **kw).rerank_batch(reqs)
    assert [w.raw for r in together for w in r.windows] == [w.raw for r in alone for w in r.windows]
    lengths = {w.generated_tokens for r in together for w in r.windows}
    assert max(lengths) > SlotBatch.HEADROOM  # the buffer had to grow
    assert len({w.prompt_tokens for r in together for w in r.windows}) > 3  # prompts of different lengths


def test_adapter_on_a_4bit_base_keeps_lora_layers_and_ranks(tiny_model_dir, tmp_path):
    from data_prep.samples import load_noveleval_sample

    _save_adapter(tiny_model_dir, tmp_path / "qlora", spec=get_prompt_spec("dear-card"))
    rr = ListwiseReranker.from_pretrained(str(tmp_path / "qlora"), quantization="4bit", device_map={"": "cpu"},
                                          max_new_tokens=6, batch_size=2)
    names = {type(m).__name__ for m in rr.model.modules()}
    assert "Linear4bit" in names and any("lora" in n.lower() for n in names)  # quantized base, unmerged LoRA
    requests, _ = load_noveleval_sample()
    for res, req in zip(rr.rerank_batch(requests[:2]), requests[:2], strict=True):
        assert _permutation_of(res, req) and len(res.windows) == 1


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="cannot reach the Hub") as err:
        ListwiseReranker.from_pretrained("abdoelsayed/dear-8b-reranker-listwise-lora-v1")
    assert err.value.reason == "offline" and "HF_HUB_OFFLINE" in str(err.value)


def test_autograd_mode_follows_whether_the_model_is_being_trained(tiny):
    """Inference mode for a frozen model; no_grad for one with trainable parameters (training-time evaluation),
    whose sharded parameters (ZeRO-3) must not become inference tensors."""
    import torch

    from inference.grad_mode import inference_context

    model, _ = tiny
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with inference_context(model):
            assert torch.is_inference_mode_enabled()
        next(model.parameters()).requires_grad_(True)
        with inference_context(model):
            assert not torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
