"""The HF backend's batched text decoding equals ``tokenizer.decode`` exactly, or is not used."""

from __future__ import annotations

import pytest

from dear_train.tiny_model import build_tokenizer
from inference.backends import _exact_batch_decoder


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_batch_decoder_equals_decode(tokenizer) -> None:
    decode = _exact_batch_decoder(tokenizer)
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
        assert _exact_batch_decoder(tokenizer) is None  # decode would post-process: keep calling it
    finally:
        tokenizer.clean_up_tokenization_spaces = False


def test_batch_decoder_refuses_overridden_decode(tokenizer) -> None:
    class Custom(type(tokenizer)):
        def _decode(self, token_ids, skip_special_tokens=False, **kwargs):  # noqa: ANN001
            return super()._decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs).upper()

    tokenizer.__class__, original = Custom, tokenizer.__class__
    try:
        assert _exact_batch_decoder(tokenizer) is None
    finally:
        tokenizer.__class__ = original
