"""Generation backends behind one small Protocol.

A backend turns model-input strings into generations. The reranker feeds it through ``pull``: the backend
asks for at most ``n`` new requests whenever it has free slots, and yields each generation as soon as it
finishes, so a query's next window can enter the batch while other windows are still decoding.

``HFBackend`` (transformers, PEFT and bitsandbytes models alike) prefills every window alone (no
left-padded long prompts; the last layer's attention for the one kept row only, see ``inference.prefill``) and
decodes all in-flight windows together over one left-padded KV cache, with explicit positions, so greedy outputs
equal unbatched ones and plain ``generate``. A window stops as soon as its ranking is complete
(``GenerationRequest.is_complete``), at end-of-turn, or at its token budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from inference.grad_mode import evaluating
from inference.prefill import last_row_prefill

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
    text: str | None = None  # the decoded ``ids`` (None until decoded, and after each new token)
    stream: Any = None  # incremental decoder of ``ids`` for the early-stop check (fast tokenizers)
    stream_text: str = ""


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
        trim_prefill: bool = True,
    ) -> None:
        self.model = model
        self.trim_prefill = trim_prefill  # last layer's prefill attention for the kept row only (inference.prefill)
        self.tokenizer = tokenizer
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.stats = BackendStats()
        self._batch_decode: Any = None
        self._stream_factory: Any = None
        self._rust_tokenizer: Any = None

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
        return self._finish_many([row], [token])[0]

    def _finish_many(self, rows: list[_Row], tokens: list[int]) -> list[str | None]:
        """Each row's finish reason after taking its next token (None: keep decoding).

        The early-stop check reads each row's text so far. With a fast tokenizer that text grows by one
        incremental Rust decode step per token (``tokenizers.decoders.DecodeStream``), instead of decoding the
        whole generation again every step. Whenever a step releases text, the streamed text equals the full
        ``decode`` (tested); when it holds text back, and before any stop, the full decode decides, so every
        decision is the one a full decode gives."""
        reasons: list[str | None] = [None] * len(rows)
        check: list[int] = []
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            if token in self.eos_ids:
                reasons[i] = FINISH_EOS
                continue
            row.ids.append(token)
            row.text = None
            if row.req.is_complete is not None:
                check.append(i)
            elif len(row.ids) >= row.req.max_new_tokens:
                reasons[i] = FINISH_LENGTH
        if not check:
            return reasons
        stream = self._streamer()
        if stream is not None:
            full = []  # rows whose check needs the full decode
            for i in check:
                row = rows[i]
                if row.stream is None:
                    row.stream = stream()
                chunk = row.stream.step(self._rust_tokenizer, row.ids[-1])
                if chunk is None:  # text held back (a split character, a skipped special token)
                    full.append(i)
                    continue
                row.stream_text += chunk  # now equal to the full decode (tests/test_infer_backend_decode.py)
                if row.req.is_complete(row.stream_text):
                    full.append(i)  # confirmed on the full decode below
                elif len(row.ids) >= row.req.max_new_tokens:
                    reasons[i] = FINISH_LENGTH
            check = full
        if check:
            texts = self._decode_many([rows[i].ids for i in check])
            for i, text in zip(check, texts, strict=True):
                row = rows[i]
                row.text = text
                if row.req.is_complete(text):
                    reasons[i] = FINISH_COMPLETE
                elif len(row.ids) >= row.req.max_new_tokens:
                    reasons[i] = FINISH_LENGTH
        return reasons

    def _streamer(self) -> Callable[[], Any] | None:
        """A factory of incremental decoders equal to ``decode(..., skip_special_tokens=True)``, or None when only
        the tokenizer's own ``decode`` is exact (see ``_exact_batch_decoder``)."""
        if self._stream_factory is None:
            self._stream_factory = False
            if self._exact_decoder() is not None:
                try:
                    from tokenizers.decoders import DecodeStream
                except ImportError:  # pragma: no cover - tokenizers < 0.21
                    DecodeStream = None
                if DecodeStream is not None:
                    self._rust_tokenizer = self.tokenizer._tokenizer
                    self._stream_factory = lambda: DecodeStream(skip_special_tokens=True)
        return self._stream_factory or None

    def _exact_decoder(self) -> Callable[[list[list[int]]], list[str]] | None:
        if self._batch_decode is None:
            self._batch_decode = _exact_batch_decoder(self.tokenizer) or False
        return self._batch_decode or None

    def _decode_many(self, seqs: list[list[int]]) -> list[str]:
        """``[tokenizer.decode(ids, skip_special_tokens=True) for ids in seqs]``, in one call to the Rust
        tokenizer when that is exactly what ``decode`` runs (a fast tokenizer without text clean-up)."""
        decode = self._exact_decoder()
        if decode is not None:
            return decode(seqs)
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in seqs]

    def _tokenize(self, reqs: list[GenerationRequest]) -> list[list[int]]:
        """Token ids of each request's text, in one batched tokenizer call per ``add_special_tokens`` value (a fast
        tokenizer encodes a batch on all cores, and the next windows of many queries often arrive together)."""
        out: list[list[int]] = [[] for _ in reqs]
        for special in (True, False):
            pos = [i for i, r in enumerate(reqs) if r.add_special_tokens is special]
            if pos:
                enc = self.tokenizer([reqs[i].text for i in pos], add_special_tokens=special)["input_ids"]
                for i, ids in zip(pos, enc, strict=True):
                    out[i] = list(ids)
        return out

    def _text(self, row: _Row) -> str:
        if row.text is None:
            row.text = self._decode_many([row.ids])[0]
        return row.text

    def _done(self, row: _Row, reason: str) -> Generation:
        self.stats.generated_tokens += len(row.ids) + (1 if reason == FINISH_EOS else 0)
        return Generation(key=row.req.key, text=self._text(row), token_ids=list(row.ids),
                          prompt_tokens=row.prompt_len, finish_reason=reason)

    # -- the loop ------------------------------------------------------------------------------------
    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        import torch
        from transformers.cache_utils import DynamicCache, DynamicLayer

        model = self.model
        device = self._device()
        limit = max(1, max_in_flight)
        batch: _SlotBatch | None = None
        pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        with evaluating(model):
            while True:
                active = batch.active() if batch is not None else 0
                new = pull(limit - active) if active < limit else []
                joining = []
                for req, ids in zip(new, self._tokenize(new), strict=True):
                    row = _Row(req=req, prompt_len=len(ids))
                    if self.do_sample:
                        row.generator = torch.Generator().manual_seed(
                            self.seed if req.seed is None else req.seed)
                    t0 = time.perf_counter()
                    with last_row_prefill(model, self.trim_prefill):
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
                    if not all(type(layer) is DynamicLayer for layer in out.cache.layers):
                        limit = 1  # sliding-window or hybrid caches: decode one window at a time
                    joining.append((row, out.cache))
                if joining:
                    if batch is None:
                        batch = _SlotBatch(joining[0][1], device, mask_4d=limit > 1 and _sdpa(model))
                    batch.add_many(joining)
                if batch is not None:
                    batch.maybe_compact()
                if batch is None or batch.active() == 0:
                    if not new:
                        return
                    continue
                t0 = time.perf_counter()
                input_ids, positions, mask = batch.step_inputs(pad_id)
                out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                            cache=batch.cache, use_cache=True, logits_to_keep=1)
                batch.after_step()
                slots = batch.active_slots()
                logits = out.logits[:, -1, :]
                rows = [batch.rows[i] for i in slots]
                tokens = self._next_token(logits[slots] if len(slots) < logits.shape[0] else logits, rows)
                self._sync()
                self.stats.decode_s += time.perf_counter() - t0
                self.stats.decode_steps += 1
                finished = []
                for slot, row, reason in zip(slots, rows, self._finish_many(rows, tokens), strict=True):
                    if reason is not None:
                        batch.remove(slot)
                        finished.append(self._done(row, reason))
                yield from finished


def _sdpa(model: Any) -> bool:
    """True when every attention layer runs PyTorch SDPA, which takes a prepared boolean 4-D mask as is (the same
    mask transformers would build from the 2-D one for a one-token query that sees every cached column)."""
    config = getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    if impl != "sdpa":
        return False
    sub = [getattr(config, name, None) for name in ("text_config", "decoder")]
    return all(getattr(c, "_attn_implementation", "sdpa") == "sdpa" for c in sub if c is not None)


def _exact_batch_decoder(tokenizer: Any) -> Callable[[list[list[int]]], list[str]] | None:
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


class _SlotBatch:
    """The in-flight windows: one slot per window in a shared, preallocated KV buffer per layer.

    Every slot's keys end at the same column (``length``); a slot's prompt is right-aligned there and the
    columns before it are masked out. A finished window frees its slot, and a new window of prompt length
    ``L <= length`` is written straight into it, so decoding never copies the cache per step; buffers grow
    (and drop all-padding columns) only when full.
    """

    HEADROOM = 256

    def __init__(self, template: Any, device: Any, *, mask_4d: bool = False) -> None:
        from transformers.cache_utils import DynamicCache

        self.device = device
        self.mask_4d = mask_4d  # hand the model the final (slots, 1, 1, keys) boolean mask: no per-step mask building
        self.cache = DynamicCache()  # its layers are views into our buffers
        self.cache.layers = [_new_buffer_layer() for _ in template.layers]
        first = template.layers[0].keys
        self.dtype = first.dtype
        self.rows: list[_Row | None] = []
        self.length = 0
        self.kbuf: list[Any] = []
        self.vbuf: list[Any] = []
        self.shapes = [(layer.keys.shape[1], layer.keys.shape[3], layer.values.shape[3]) for layer in template.layers]
        self.devices = [layer.keys.device for layer in template.layers]  # layers may sit on several GPUs
        self.mask: Any = None
        self._alloc(0, 0)

    # buffers ------------------------------------------------------------------------------------------
    def _alloc(self, slots: int, cap: int) -> None:
        import torch

        self.kbuf = [torch.zeros((slots, h, cap, dk), dtype=self.dtype, device=dev)
                     for (h, dk, _), dev in zip(self.shapes, self.devices, strict=True)]
        self.vbuf = [torch.zeros((slots, h, cap, dv), dtype=self.dtype, device=dev)
                     for (h, _, dv), dev in zip(self.shapes, self.devices, strict=True)]
        self.mask = torch.zeros((slots, cap), dtype=torch.long, device=self.device)

    def _rebuild(self, slots: int, keep: list[int], shift: int, drop: int, cap: int) -> None:
        """New buffers with ``slots`` rows: old rows ``keep`` copied to rows 0.., columns moved by ``shift - drop``."""
        old_k, old_v, old_mask, n = self.kbuf, self.vbuf, self.mask, self.length
        self._alloc(slots, cap)
        if keep and n - drop > 0:
            import torch

            idx = torch.tensor(keep, device=self.device)
            for i in range(len(old_k)):
                li = idx.to(self.devices[i])
                self.kbuf[i][: len(keep), :, shift: shift + n - drop] = old_k[i].index_select(0, li)[:, :, drop:n]
                self.vbuf[i][: len(keep), :, shift: shift + n - drop] = old_v[i].index_select(0, li)[:, :, drop:n]
            self.mask[: len(keep), shift: shift + n - drop] = old_mask.index_select(0, idx)[:, drop:n]
        self.rows = [self.rows[i] for i in keep] + [None] * (slots - len(keep))
        self.length = n - drop + shift
        self._bind()

    def _bind(self) -> None:
        for i, layer in enumerate(self.cache.layers):
            layer.bind(self, i)

    def _first_used_column(self) -> int:
        used = [i for i, r in enumerate(self.rows) if r is not None]
        if not used:
            return self.length
        import torch

        cols = self.mask[torch.tensor(used, device=self.device), : self.length].any(dim=0).nonzero()
        return int(cols[0].item()) if cols.numel() else self.length

    # rows ---------------------------------------------------------------------------------------------
    def active(self) -> int:
        return sum(r is not None for r in self.rows)

    def active_slots(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r is not None]

    def add_many(self, joining: list[tuple[_Row, Any]]) -> None:
        """Place prefilled rows into free slots; one buffer rebuild at most (more slots, or a longer prompt)."""
        free = [i for i, r in enumerate(self.rows) if r is None]
        longest = max(row.prompt_len for row, _ in joining)
        if longest > self.length or len(free) < len(joining):
            drop = self._first_used_column()
            new_len = max(self.length - drop, longest)
            busy = self.active_slots()
            self._rebuild(max(len(self.rows), len(busy) + len(joining)), busy, new_len - (self.length - drop),
                          drop, new_len + self.HEADROOM)
            free = [i for i, r in enumerate(self.rows) if r is None]
        for (row, row_cache), slot in zip(joining, free, strict=False):
            self._place(slot, row, row_cache)

    def _place(self, slot: int, row: _Row, row_cache: Any) -> None:
        start = self.length - row.prompt_len
        for i, layer in enumerate(row_cache.layers):
            self.kbuf[i][slot, :, :start] = 0
            self.vbuf[i][slot, :, :start] = 0
            self.kbuf[i][slot, :, start: self.length] = layer.keys[0]
            self.vbuf[i][slot, :, start: self.length] = layer.values[0]
        self.mask[slot].zero_()
        self.mask[slot, start: self.length] = 1
        self.rows[slot] = row

    def remove(self, slot: int) -> None:
        self.rows[slot] = None
        self.mask[slot].zero_()

    def maybe_compact(self) -> None:
        """Drop idle slots once at most half are busy after refilling (the end of a run), so idle rows stop
        costing compute."""
        busy = self.active()
        if busy and busy * 2 <= len(self.rows):
            drop = self._first_used_column()
            self._rebuild(busy, self.active_slots(), 0, drop, self.kbuf[0].shape[2] - drop)

    # one decode step ----------------------------------------------------------------------------------
    def step_inputs(self, pad_id: int) -> tuple[Any, Any, Any]:
        import torch

        if self.length + 1 > self.kbuf[0].shape[2]:
            drop = self._first_used_column()
            self._rebuild(len(self.rows), list(range(len(self.rows))), 0, drop,
                          self.length - drop + self.HEADROOM)
        ids, pos = [], []
        for r in self.rows:
            ids.append(r.ids[-1] if r is not None else pad_id)
            pos.append(r.prompt_len + len(r.ids) - 1 if r is not None else 0)
        self.mask[:, self.length] = 1  # every slot sees its own new token (idle slots see only that)
        mask = self.mask[:, : self.length + 1]
        if self.mask_4d:
            mask = mask.bool()[:, None, None, :]
        return (torch.tensor(ids, device=self.device).unsqueeze(1),
                torch.tensor(pos, device=self.device).unsqueeze(1), mask)

    def after_step(self) -> None:
        self.length += 1
        for i, r in enumerate(self.rows):
            if r is None:
                self.mask[i, self.length - 1] = 0
        self._bind()


_BUFFER_LAYER_CLASS: Any = None


def _new_buffer_layer() -> Any:
    """A cache layer over a slice of a preallocated buffer: ``update`` writes in place, never concatenates.
    (A DynamicLayer subclass, defined on first use so importing this module does not import transformers.)"""
    global _BUFFER_LAYER_CLASS
    if _BUFFER_LAYER_CLASS is None:
        from transformers.cache_utils import DynamicLayer

        class BufferLayer(DynamicLayer):
            def __init__(self) -> None:
                super().__init__()
                self.is_initialized = True

            def bind(self, batch: _SlotBatch, index: int) -> None:
                self.batch, self.index = batch, index
                n = batch.length
                self.keys = batch.kbuf[index][:, :, :n]
                self.values = batch.vbuf[index][:, :, :n]

            def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
                n, q = self.batch.length, key_states.shape[-2]
                kb, vb = self.batch.kbuf[self.index], self.batch.vbuf[self.index]
                kb[:, :, n: n + q] = key_states
                vb[:, :, n: n + q] = value_states
                return kb[:, :, : n + q], vb[:, :, : n + q]

            def get_seq_length(self) -> int:
                return self.batch.length

            def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
                return self.batch.length + query_length, 0

        _BUFFER_LAYER_CLASS = BufferLayer
    return _BUFFER_LAYER_CLASS()
