"""Generation backends behind one small Protocol.

A backend turns model-input strings into generations. The reranker feeds it through ``pull``: the backend
asks for at most ``n`` new requests whenever it has free slots, and yields each generation as soon as it
finishes, so a query's next window can enter the batch while other windows are still decoding.

``HFBackend`` (transformers, PEFT and bitsandbytes models alike) prefills every window alone (no
left-padded long prompts) and decodes all in-flight windows together over one left-padded KV cache, with
explicit positions, so greedy outputs equal unbatched ones. A window stops as soon as its ranking is complete
(``GenerationRequest.is_complete``), at end-of-turn, or at its token budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

FINISH_COMPLETE = "complete"  # the parsed ranking names every candidate
FINISH_EOS = "eos"
FINISH_LENGTH = "length"


@dataclass
class GenerationRequest:
    """One window to generate for."""

    key: Hashable
    text: str  # the exact model input string (plain prompt, or the chat template with the assistant header)
    add_special_tokens: bool  # True for plain prompts (the tokenizer adds BOS), False for chat-template text
    max_new_tokens: int
    is_complete: Callable[[str], bool] | None = None  # early stop once the decoded text holds a full ranking
    seed: int | None = None  # per-request sampling seed: sampled outputs do not depend on the batch


@dataclass
class Generation:
    key: Hashable
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str


@dataclass
class BackendStats:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    prefills: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


Pull = Callable[[int], list[GenerationRequest]]


@runtime_checkable
class GenerationBackend(Protocol):
    """What the reranker needs from a model server."""

    stats: BackendStats

    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        """Generate for requests obtained from ``pull(n)`` (at most ``n``; ``[]`` when none is ready), yielding
        each generation when it finishes. Ends when ``pull`` returns nothing and nothing is in flight."""
        ...


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-turn / end-of-text ids from the generation config and the tokenizer."""
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


@dataclass
class _Row:
    req: GenerationRequest
    prompt_len: int
    ids: list[int] = field(default_factory=list)
    generator: Any = None


class HFBackend:
    """Batched greedy/sampled decoding for any transformers causal LM (plain, PEFT-wrapped, quantized)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.stats = BackendStats()

    # -- helpers -------------------------------------------------------------------------------------
    def _device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    def _sync(self) -> None:
        import torch

        if self._device().type == "cuda":
            torch.cuda.synchronize()

    def _next_token(self, logits: Any, rows: list[_Row]) -> list[int]:
        import torch

        if not self.do_sample:
            return logits.argmax(dim=-1).tolist()
        out = []
        for i, row in enumerate(rows):
            scores = logits[i].float().cpu() / max(self.temperature, 1e-5)
            probs = torch.softmax(scores, dim=-1)
            if self.top_p < 1.0:
                sorted_p, idx = probs.sort(descending=True)
                keep = sorted_p.cumsum(0) - sorted_p < self.top_p
                sorted_p = sorted_p * keep
                probs = torch.zeros_like(probs).scatter(0, idx, sorted_p)
            out.append(int(torch.multinomial(probs, 1, generator=row.generator).item()))
        return out

    def _finished(self, row: _Row, token: int) -> str | None:
        if token in self.eos_ids:
            return FINISH_EOS
        row.ids.append(token)
        if row.req.is_complete is not None and row.req.is_complete(self._text(row)):
            return FINISH_COMPLETE
        if len(row.ids) >= row.req.max_new_tokens:
            return FINISH_LENGTH
        return None

    def _text(self, row: _Row) -> str:
        return self.tokenizer.decode(row.ids, skip_special_tokens=True)

    def _done(self, row: _Row, reason: str) -> Generation:
        self.stats.generated_tokens += len(row.ids) + (1 if reason == FINISH_EOS else 0)
        return Generation(key=row.req.key, text=self._text(row), token_ids=list(row.ids),
                          prompt_tokens=row.prompt_len, finish_reason=reason)

    # -- the loop ------------------------------------------------------------------------------------
    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        import torch
        from transformers.cache_utils import DynamicCache, DynamicLayer

        model = self.model
        was_training = bool(getattr(model, "training", False))
        model.eval()
        device = self._device()
        rows: list[_Row] = []
        cache: Any = None
        mask: Any = None  # (B, T) 1 for real tokens, 0 for left padding
        limit = max(1, max_in_flight)
        try:
            with torch.inference_mode():
                while True:
                    new = pull(limit - len(rows)) if len(rows) < limit else []
                    for req in new:
                        ids = self.tokenizer(req.text, add_special_tokens=req.add_special_tokens)["input_ids"]
                        row = _Row(req=req, prompt_len=len(ids))
                        if self.do_sample:
                            row.generator = torch.Generator().manual_seed(
                                self.seed if req.seed is None else req.seed)
                        t0 = time.perf_counter()
                        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True,
                                    cache=DynamicCache(config=model.config), logits_to_keep=1)
                        token = self._next_token(out.logits[:, -1, :], [row])[0]
                        self._sync()
                        self.stats.prefill_s += time.perf_counter() - t0
                        self.stats.prefills += 1
                        self.stats.prompt_tokens += len(ids)
                        reason = self._finished(row, token)
                        if reason is not None:
                            yield self._done(row, reason)
                            continue
                        row_cache = out.cache
                        if not all(type(layer) is DynamicLayer for layer in row_cache.layers):
                            limit = 1  # sliding-window or hybrid caches: decode one window at a time
                        if cache is None:
                            cache, mask = row_cache, torch.ones((1, len(ids)), dtype=torch.long, device=device)
                        else:
                            mask = _join(cache, mask, row_cache, len(ids))
                        rows.append(row)
                    if not rows:
                        if not new:
                            return
                        continue
                    t0 = time.perf_counter()
                    input_ids = torch.tensor([[r.ids[-1]] for r in rows], device=device)
                    positions = torch.tensor([[r.prompt_len + len(r.ids) - 1] for r in rows], device=device)
                    mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                cache=cache, use_cache=True, logits_to_keep=1)
                    tokens = self._next_token(out.logits[:, -1, :], rows)
                    self._sync()
                    self.stats.decode_s += time.perf_counter() - t0
                    self.stats.decode_steps += 1
                    keep, finished = [], []
                    for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
                        reason = self._finished(row, token)
                        if reason is None:
                            keep.append(i)
                        else:
                            finished.append(self._done(row, reason))
                    if finished:
                        if keep:
                            mask = _select(cache, mask, keep)
                            rows = [rows[i] for i in keep]
                        else:
                            rows, cache, mask = [], None, None
                        yield from finished
        finally:
            if was_training:
                model.train()


def _join(cache: Any, mask: Any, row_cache: Any, length: int) -> Any:
    """Append one prefilled row to the batch cache, left-padding whichever side is shorter."""
    import torch
    import torch.nn.functional as F

    total = mask.shape[1]
    width = max(total, length)
    for layer, new in zip(cache.layers, row_cache.layers, strict=True):
        layer.keys = torch.cat([F.pad(layer.keys, (0, 0, width - total, 0)),
                                F.pad(new.keys, (0, 0, width - length, 0))], dim=0)
        layer.values = torch.cat([F.pad(layer.values, (0, 0, width - total, 0)),
                                  F.pad(new.values, (0, 0, width - length, 0))], dim=0)
    row_mask = mask.new_zeros((1, width))
    row_mask[0, width - length:] = 1
    return torch.cat([F.pad(mask, (width - total, 0)), row_mask], dim=0)


def _select(cache: Any, mask: Any, keep: list[int]) -> Any:
    """Keep rows ``keep`` and drop the left columns that are padding for every remaining row."""
    import torch

    idx = torch.tensor(keep, device=mask.device)
    mask = mask.index_select(0, idx)
    first = int(mask.any(dim=0).nonzero()[0].item())
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, idx)[:, :, first:, :]
        layer.values = layer.values.index_select(0, idx)[:, :, first:, :]
    return mask[:, first:]
