"""The HF backend's batched text decoding equals ``tokenizer.decode`` exactly, or is not used."""

from __future__ import annotations

import pytest

from dear_train.tiny_model import build_tokenizer
from inference.engine.text import exact_batch_decoder


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_batch_decoder_equals_decode(tokenizer) -> None:
    decode = exact_batch_decoder(tokenizer)
    assert decode is not None
    texts = ["[3] > [1] > [20]", "  déjà vu — 東京 [7]", "<|eot_id|>[2] > [4]<|end_of_text|>", ""]
    seqs = [tokenizer.encode(t, add_special_tokens=True) for t in texts]
    seqs.append(tokenizer.encode("東京", add_special_tokens=False)[:1])  # a cut inside a multi-byte character
    seqs.append([])
    expected = [tokenizer.decode(s, skip_special_tokens=True) for s in seqs]
    assert decode(seqs) == expected
    assert any("\ufffd" in e for e in expected)  # the cut really splits a character
    assert "<|eot_id|>" not in expected[2] and "[2] > [4]" in expected[2]


def test_batch_decoder_refuses_text_cleanup(tokenizer) -> None:
    tokenizer.clean_up_tokenization_spaces = True
    try:
        assert exact_batch_decoder(tokenizer) is None  # decode would post-process: keep calling it
    finally:
        tokenizer.clean_up_tokenization_spaces = False


def test_batch_decoder_refuses_overridden_decode(tokenizer) -> None:
    class Custom(type(tokenizer)):
        def _decode(self, token_ids, skip_special_tokens=False, **kwargs):  # noqa: ANN001
            return super()._decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs).upper()

    tokenizer.__class__, original = Custom, tokenizer.__class__
    try:
        assert exact_batch_decoder(tokenizer) is None
    finally:
        tokenizer.__class__ = original


def test_streamed_text_equals_decode_whenever_a_step_releases_text(tokenizer) -> None:
    """The property the HF backend's early-stop check relies on (random ids: byte tokens split characters,
    special tokens are skipped)."""
    import random

    from tokenizers.decoders import DecodeStream

    rng = random.Random(0)
    held = released = 0
    for _ in range(150):
        ids = [rng.randrange(len(tokenizer)) for _ in range(40)]
        stream, text = DecodeStream(skip_special_tokens=True), ""
        for k in range(1, len(ids) + 1):
            chunk = stream.step(tokenizer._tokenizer, ids[k - 1])
            if chunk is None:
                held += 1
                continue
            text += chunk
            released += 1
            assert text == tokenizer.decode(ids[:k], skip_special_tokens=True)
    assert held > 100 and released > 3000  # both branches really ran


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _requests(tok, n: int, budget: int, stop_at: dict[int, str] | None = None):
    from inference.engine import GenerationRequest

    texts = [f"Rank these: [{i}] alpha [{i + 1}] beta. Query {i}?" for i in range(n)]
    reqs = []
    for i, text in enumerate(texts):
        target = (stop_at or {}).get(i)
        check = None if target is None else (lambda t, target=target: t.startswith(target))
        reqs.append(GenerationRequest(key=i, text=text, add_special_tokens=i % 2 == 0, max_new_tokens=budget,
                                      is_complete=check))
    return reqs


def _run(backend, reqs, in_flight: int):
    pending = list(reqs)

    def pull(n: int):
        out, pending[:] = pending[:n], pending[n:]
        return out

    return {g.key: g for g in backend.stream(pull, in_flight)}


def test_batched_tokenization_equals_one_call_per_request(tiny) -> None:
    from inference.engine import HFBackend

    model, tok = tiny
    reqs = _requests(tok, 5, 4)
    got = HFBackend(model, tok)._tokenize(reqs)
    assert got == [tok(r.text, add_special_tokens=r.add_special_tokens)["input_ids"] for r in reqs]
    assert got[0][0] == tok.bos_token_id and got[1][0] != tok.bos_token_id


@pytest.mark.parametrize("streamed", [True, False])
def test_early_stop_lands_on_the_exact_token_in_a_batch(tiny, streamed: bool) -> None:
    """A window stops at the first token whose full decode passes its check, batched with windows that run to
    their budget; streamed checks (fast tokenizer) and full-decode checks (text clean-up on) agree."""
    import torch

    from inference.engine import FINISH_COMPLETE, FINISH_LENGTH, HFBackend

    model, tok = tiny
    tok.clean_up_tokenization_spaces = not streamed
    try:
        free = _run(HFBackend(model, tok), _requests(tok, 4, 20), 4)
        stop_after = {1: 7, 2: 12}
        targets = {}
        for key, k in stop_after.items():
            ids = free[key].token_ids
            assert len(ids) == 20
            target = tok.decode(ids[:k], skip_special_tokens=True)
            assert target != tok.decode(ids[: k - 1], skip_special_tokens=True)
            targets[key] = target
        backend = HFBackend(model, tok)
        with torch.inference_mode():
            got = _run(backend, _requests(tok, 4, 20, targets), 4)
        assert (backend.decoder.streams() is not None) is streamed
    finally:
        tok.clean_up_tokenization_spaces = False
    for key in range(4):
        if key in stop_after:
            assert got[key].finish_reason == FINISH_COMPLETE
            assert got[key].token_ids == free[key].token_ids[: stop_after[key]]
            assert got[key].text == targets[key]
        else:
            assert got[key].finish_reason == FINISH_LENGTH and got[key].token_ids == free[key].token_ids
