"""From token ids to text: end-of-turn ids, an exact batched decoder, and streamed (incremental) decoding.

The early-stop check reads each window's text after every token, so decoding must be cheap and must equal
``tokenizer.decode(ids, skip_special_tokens=True)`` exactly: a faster path is used only where it is exactly
what ``decode`` runs (tests/test_infer_engine_decode.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def tokenize_texts(tokenizer: Any, reqs: Sequence[Any]) -> list[list[int]]:
    """Token ids of each request's ``text``, in one batched tokenizer call per ``add_special_tokens`` value (a fast
    tokenizer encodes a batch on all cores, and the next windows of many queries often arrive together). A request
    that carries its ``token_ids`` (a passage holds special-token text: see ``data_prep.prompt_tokens``) keeps them."""
    out: list[list[int]] = [[] for _ in reqs]
    for i, r in enumerate(reqs):
        given = getattr(r, "token_ids", None)
        if given is not None:
            out[i] = list(given)
    for special in (True, False):
        pos = [i for i, r in enumerate(reqs)
               if r.add_special_tokens is special and getattr(r, "token_ids", None) is None]
        if pos:
            enc = tokenizer([reqs[i].text for i in pos], add_special_tokens=special)["input_ids"]
            for i, ids in zip(pos, enc, strict=True):
                out[i] = list(ids)
    return out


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-turn / end-of-text ids from the generation config (``model`` may be None) and the tokenizer."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(i) for i in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for tok in ("<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "</s>"):
        if tok in vocab:
            ids.add(int(vocab[tok]))
    return ids


def exact_batch_decoder(tokenizer: Any) -> Callable[[list[list[int]]], list[str]] | None:
    """A batched ``decode(..., skip_special_tokens=True)`` for transformers' fast tokenizers, or None when
    ``decode`` would do more than the Rust decoder (text clean-up, a slow tokenizer, added post-processing)."""
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - older transformers
        return None
    if type(tokenizer)._decode is not TokenizersBackend._decode or type(tokenizer).decode is not TokenizersBackend.decode:
        return None
    if getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return None
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "decode_batch"):
        return None

    def decode(seqs: list[list[int]]) -> list[str]:
        return backend.decode_batch(seqs, skip_special_tokens=True)

    return decode


class TextDecoder:
    """``decode(ids, skip_special_tokens=True)`` for many sequences at once, and incremental decoders.

    Both fast paths are chosen on first use (the tokenizer may be configured after the backend is built) and
    only when exact; otherwise every call goes to the tokenizer's own ``decode``."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._batch: Any = None  # None: not chosen yet; False: no exact batched decoder
        self._streams: Any = None
        self._rust: Any = None

    def _exact(self) -> Callable[[list[list[int]]], list[str]] | None:
        if self._batch is None:
            self._batch = exact_batch_decoder(self.tokenizer) or False
        return self._batch or None

    def decode_many(self, seqs: list[list[int]]) -> list[str]:
        """``[tokenizer.decode(ids, skip_special_tokens=True) for ids in seqs]``, in one call to the Rust
        tokenizer when that is exactly what ``decode`` runs (a fast tokenizer without text clean-up)."""
        decode = self._exact()
        if decode is not None:
            return decode(seqs)
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in seqs]

    def streams(self) -> Callable[[], Any] | None:
        """A factory of incremental decoders (``tokenizers.decoders.DecodeStream``) equal to the full decode
        whenever a step releases text, or None when only the tokenizer's own ``decode`` is exact."""
        if self._streams is None:
            self._streams = False
            if self._exact() is not None:
                try:
                    from tokenizers.decoders import DecodeStream
                except ImportError:  # pragma: no cover - tokenizers < 0.21
                    DecodeStream = None
                if DecodeStream is not None:
                    self._rust = self.tokenizer._tokenizer
                    self._streams = lambda: DecodeStream(skip_special_tokens=True)
        return self._streams or None

    def step(self, stream: Any, token: int) -> str | None:
        """The text ``token`` adds to ``stream``; None when the stream holds it back (a split character, a
        skipped special token)."""
        return stream.step(self._rust, token)
