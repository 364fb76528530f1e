"""The Hugging Face decode loop: ``HFBackend.stream(pull, max_in_flight)``.

``HFBackend`` (transformers, PEFT and bitsandbytes models alike) prefills every window alone (no left-padded long
prompts; the last layer's attention for the one kept row only, see :mod:`inference.engine.prefill`) and decodes
all in-flight windows together over one left-padded KV cache (:mod:`inference.engine.kv_slots`), with explicit
positions, so greedy outputs equal unbatched ones and plain ``generate``. A window stops as soon as its ranking
is complete (``GenerationRequest.is_complete``), at end-of-turn, or at its token budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from inference.engine.prefill import last_row_prefill
from inference.engine.text import TextDecoder, eos_token_ids, tokenize_texts
from inference.engine.types import (
    FINISH_COMPLETE,
    FINISH_EOS,
    FINISH_LENGTH,
    BackendStats,
    Generation,
    GenerationRequest,
    Pull,
    Row,
)
from inference.grad_mode import evaluating

if TYPE_CHECKING:
    from inference.engine.kv_slots import SlotBatch


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
        self.trim_prefill = trim_prefill  # last layer's prefill attention for the kept row only (inference.engine.prefill)
        self.tokenizer = tokenizer
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.stats = BackendStats()
        self.decoder = TextDecoder(tokenizer)  # ids -> text, exact and batched/streamed where that is exact

    # -- helpers -------------------------------------------------------------------------------------
    def _device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    def _sync(self) -> None:
        import torch

        if self._device().type == "cuda":
            torch.cuda.synchronize()

    def _next_token(self, logits: Any, rows: list[Row]) -> list[int]:
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

    def _finished(self, row: Row, token: int) -> str | None:
        return self._finish_many([row], [token])[0]

    def _finish_many(self, rows: list[Row], tokens: list[int]) -> list[str | None]:
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
        stream = self.decoder.streams()
        if stream is not None:
            full = []  # rows whose check needs the full decode
            for i in check:
                row = rows[i]
                if row.stream is None:
                    row.stream = stream()
                chunk = self.decoder.step(row.stream, row.ids[-1])
                if chunk is None:  # text held back (a split character, a skipped special token)
                    full.append(i)
                    continue
                row.stream_text += chunk  # now equal to the full decode (tests/test_infer_engine_decode.py)
                if row.req.is_complete(row.stream_text):
                    full.append(i)  # confirmed on the full decode below
                elif len(row.ids) >= row.req.max_new_tokens:
                    reasons[i] = FINISH_LENGTH
            check = full
        if check:
            texts = self.decoder.decode_many([rows[i].ids for i in check])
            for i, text in zip(check, texts, strict=True):
                row = rows[i]
                row.text = text
                if row.req.is_complete(text):
                    reasons[i] = FINISH_COMPLETE
                elif len(row.ids) >= row.req.max_new_tokens:
                    reasons[i] = FINISH_LENGTH
        return reasons

    def _tokenize(self, reqs: list[GenerationRequest]) -> list[list[int]]:
        return tokenize_texts(self.tokenizer, reqs)

    def _text(self, row: Row) -> str:
        if row.text is None:
            row.text = self.decoder.decode_many([row.ids])[0]
        return row.text

    def _done(self, row: Row, reason: str) -> Generation:
        self.stats.generated_tokens += len(row.ids) + (1 if reason == FINISH_EOS else 0)
        return Generation(key=row.req.key, text=self._text(row), token_ids=list(row.ids),
                          prompt_tokens=row.prompt_len, finish_reason=reason)

    def _drop_cancelled(self, batch: SlotBatch) -> None:
        """Free the slots of rows whose request was cancelled (no generation is yielded for them)."""
        for slot in batch.active_slots():
            if _is_cancelled(batch.rows[slot].req):
                batch.remove(slot)
                self.stats.cancelled += 1

    # -- the loop ------------------------------------------------------------------------------------
    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        import torch
        from transformers.cache_utils import DynamicCache, DynamicLayer

        from inference.engine.kv_slots import (  # imports transformers: load it only now
            SlotBatch,
            takes_4d_mask,
        )

        model = self.model
        device = self._device()
        limit = max(1, max_in_flight)
        batch: SlotBatch | None = None
        pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        with evaluating(model):
            while True:
                if batch is not None:
                    self._drop_cancelled(batch)  # before refilling: a freed slot takes a new window now
                active = batch.active() if batch is not None else 0
                new = pull(limit - active) if active < limit else []
                new = [r for r in new if not _is_cancelled(r)]
                joining = []
                for req, ids in zip(new, self._tokenize(new), strict=True):
                    row = Row(req=req, prompt_len=len(ids))
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
                        batch = SlotBatch(joining[0][1], device, mask_4d=limit > 1 and takes_4d_mask(model))
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


def _is_cancelled(req: GenerationRequest) -> bool:
    return req.cancelled is not None and req.cancelled()
