"""The KV slot allocator: the in-flight windows of the HF decode loop share one preallocated buffer per layer.

This module imports torch and transformers at its top; ``inference.engine.hf`` imports it only when decoding
starts, so importing ``inference`` stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

if TYPE_CHECKING:
    from inference.engine.types import Row


def takes_4d_mask(model: Any) -> bool:
    """True when every attention layer runs PyTorch SDPA, which takes a prepared boolean 4-D mask as is (the same
    mask transformers would build from the 2-D one for a one-token query that sees every cached column)."""
    config = getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    if impl != "sdpa":
        return False
    sub = [getattr(config, name, None) for name in ("text_config", "decoder")]
    return all(getattr(c, "_attn_implementation", "sdpa") == "sdpa" for c in sub if c is not None)


class BufferLayer(DynamicLayer):
    """A cache layer over a slice of a :class:`SlotBatch` buffer: ``update`` writes in place, never concatenates."""

    def __init__(self) -> None:
        super().__init__()
        self.is_initialized = True

    def bind(self, batch: SlotBatch, index: int) -> None:
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


class SlotBatch:
    """The in-flight windows: one slot per window in a shared, preallocated KV buffer per layer.

    Every slot's keys end at the same column (``length``); a slot's prompt is right-aligned there and the
    columns before it are masked out. A finished window frees its slot, and a new window of prompt length
    ``L <= length`` is written straight into it, so decoding never copies the cache per step; buffers grow
    (and drop all-padding columns) only when full.
    """

    HEADROOM = 256

    def __init__(self, template: Any, device: Any, *, mask_4d: bool = False) -> None:
        self.device = device
        self.mask_4d = mask_4d  # hand the model the final (slots, 1, 1, keys) boolean mask: no per-step mask building
        self.cache = DynamicCache()  # its layers are views into our buffers
        self.cache.layers = [BufferLayer() for _ in template.layers]
        first = template.layers[0].keys
        self.dtype = first.dtype
        self.rows: list[Row | None] = []
        self.length = 0
        self.kbuf: list[Any] = []
        self.vbuf: list[Any] = []
        self.shapes = [(layer.keys.shape[1], layer.keys.shape[3], layer.values.shape[3]) for layer in template.layers]
        self.devices = [layer.keys.device for layer in template.layers]  # layers may sit on several GPUs
        self.mask: Any = None
        self._alloc(0, 0)

    # buffers ------------------------------------------------------------------------------------------
    def _alloc(self, slots: int, cap: int) -> None:
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
        cols = self.mask[torch.tensor(used, device=self.device), : self.length].any(dim=0).nonzero()
        return int(cols[0].item()) if cols.numel() else self.length

    # rows ---------------------------------------------------------------------------------------------
    def active(self) -> int:
        return sum(r is not None for r in self.rows)

    def active_slots(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r is not None]

    def add_many(self, joining: list[tuple[Row, Any]]) -> None:
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

    def _place(self, slot: int, row: Row, row_cache: Any) -> None:
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
