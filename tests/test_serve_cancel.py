"""The backends' cancel hook (``GenerationRequest.cancelled``): a cancelled request's row leaves the batch before
the next step, frees its slot for a waiting window, yields nothing, and leaves the others' outputs unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from inference.engine.hf import HFBackend
from inference.engine.types import GenerationRequest
from inference.engine.vllm import VLLMBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TEXTS = ["rank these passages about fleas and their life cycle",
         "a second prompt about paris, france and the eiffel tower, a little longer than the first",
         "third prompt: what is the capital of australia"]
BUDGET = 12


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32")


def _run(model, tokenizer, keys, *, limit, cancel_key=None, cancel_after_forwards=None):
    """Stream the TEXTS of ``keys``; ``cancel_key`` turns cancelled once the model ran that many forwards.
    Returns the generations by key and each forward's (batch rows, tokens per row)."""
    backend = HFBackend(model, tokenizer)
    backend.eos_ids = set()  # every row runs to its budget unless cancelled
    shapes: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)

    def cancelled():
        return len(shapes) >= cancel_after_forwards

    reqs = [GenerationRequest(key=k, text=TEXTS[k], add_special_tokens=True, max_new_tokens=BUDGET,
                              cancelled=cancelled if k == cancel_key else None) for k in keys]

    def pull(n):
        out = reqs[:n]
        del reqs[:n]
        return out

    try:
        gens = {g.key: g for g in backend.stream(pull, limit)}
    finally:
        hook.remove()
    return gens, shapes, backend


def test_a_cancelled_row_leaves_the_batch_at_the_next_step_and_the_other_is_unchanged(model, tiny_tokenizer):
    alone, _, _ = _run(model, tiny_tokenizer, [0], limit=2)
    gens, shapes, backend = _run(model, tiny_tokenizer, [0, 1], limit=2, cancel_key=1, cancel_after_forwards=2 + 4)
    assert set(gens) == {0} and backend.stats.cancelled == 1
    assert gens[0].token_ids == alone[0].token_ids and gens[0].text == alone[0].text
    decode_rows = [rows for rows, width in shapes if width == 1]
    assert decode_rows[:4] == [2, 2, 2, 2]  # both rows decoded until the cancel ...
    assert decode_rows[4:] == [1] * (len(decode_rows) - 4) and len(decode_rows) == BUDGET - 1  # ... then one


def test_a_cancelled_rows_slot_takes_the_waiting_window_at_once(model, tiny_tokenizer):
    alone, _, _ = _run(model, tiny_tokenizer, [0, 2], limit=2)
    gens, shapes, _ = _run(model, tiny_tokenizer, [0, 1, 2], limit=2, cancel_key=1, cancel_after_forwards=2 + 3)
    assert set(gens) == {0, 2}
    for k in (0, 2):
        assert gens[k].token_ids == alone[k].token_ids
    # two prefills, three decode steps of both rows, then the third window's prefill (not after row 1's budget)
    assert [w > 1 for _, w in shapes[:6]] == [True, True, False, False, False, True]


def test_a_request_cancelled_before_its_prefill_costs_nothing(model, tiny_tokenizer):
    gens, shapes, _ = _run(model, tiny_tokenizer, [1, 0], limit=2, cancel_key=1, cancel_after_forwards=0)
    assert set(gens) == {0} and sum(1 for _, w in shapes if w > 1) == 1


class _FakeVLLMEngine:
    """vLLM's engine surface the backend uses: add_request / step / abort_request; one token per step."""

    def __init__(self):
        self.live, self.aborted, self.steps = {}, [], 0

    def add_request(self, rid, prompt, params, lora_request=None):
        self.live[rid] = (params, [])

    def abort_request(self, rids):
        for rid in rids:
            self.aborted.append(rid)
            self.live.pop(rid, None)

    def step(self):
        self.steps += 1
        outs = []
        for rid, (budget, ids) in list(self.live.items()):
            ids.append(7)
            done = len(ids) >= budget
            outs.append(SimpleNamespace(request_id=rid, finished=done, outputs=[SimpleNamespace(
                text=" ".join("7" for _ in ids), token_ids=list(ids), finish_reason="length" if done else None)]))
            if done:
                del self.live[rid]
        return outs


def test_vllm_aborts_a_cancelled_request_and_yields_nothing_for_it(tiny_tokenizer):
    engine = _FakeVLLMEngine()
    backend = VLLMBackend(SimpleNamespace(llm_engine=engine), tiny_tokenizer)
    backend._params = lambda req: req.max_new_tokens  # the fake engine takes the budget as its params
    reqs = [GenerationRequest(key=0, text="a", add_special_tokens=True, max_new_tokens=6),
            GenerationRequest(key=1, text="b", add_special_tokens=True, max_new_tokens=6,
                              cancelled=lambda: engine.steps >= 3)]  # after 3 steps

    def pull(n):
        out = reqs[:n]
        del reqs[:n]
        return out

    gens = list(backend.stream(pull, 4))
    assert [g.key for g in gens] == [0] and gens[0].token_ids == [7] * 6
    assert engine.aborted == ["w1"] and backend.stats.cancelled == 1
