"""Prefill that runs the last decoder layer's attention for the one row whose logits are kept.

A window's prefill must store every layer's keys and values (decoding reads them), but it needs the logits of
the last prompt position only (``logits_to_keep=1``). The last layer's keys and values come from that layer's
*input*, so its attention *output* at the other positions feeds nothing: no later layer reads it and the LM
head only sees the last row. We compute that layer's attention for the last query row alone, which is exact
(the last row of causal attention sees every key, so it is plain attention of one query over all keys). It
saves one layer's share of prefill attention: half of it on the 2-layer tiny model, 1/32 on Llama-3.1-8B.

The other rows of the last layer's attention output are left at zero; nothing downstream reads them as long as
the caller keeps one logit row and asks for no hidden states, which is how ``HFBackend`` prefills.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

LAST_ROW_SDPA = "dear_sdpa_last_row"
_registered = False
# Set only inside ``last_row_prefill`` and per thread: another thread running the same model meanwhile (its
# config switched too) gets plain SDPA.
_ACTIVE: ContextVar[bool] = ContextVar("dear_last_row_prefill", default=False)


def _last_row_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, None]:
    """``sdpa_attention_forward``, except in the last layer of a plain causal prefill, where only the last
    query row is computed (the returned output has the full shape; its other rows are zero)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _trims(module, query, key, attention_mask, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)  # one query row over all keys: no causal mask to apply
    last, _ = sdpa_attention_forward(module, query[:, :, -1:, :], key, value, None, is_causal=False, **kwargs)
    batch, heads, rows, _ = query.shape
    out = last.new_zeros((batch, rows, heads, last.shape[-1]))
    out[:, -1:] = last
    return out, None


def _trims(module: Any, query: Any, key: Any, attention_mask: Any, kwargs: dict[str, Any]) -> bool:
    """True only where the trim is exact: the model's last layer, a causal multi-row query with no mask (a
    single unpadded prompt) that sees every key, no sliding window, no position bias, no training."""
    config = getattr(module, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    return (
        _ACTIVE.get()
        and layers is not None
        and getattr(module, "layer_idx", None) == layers - 1
        and attention_mask is None
        and query.shape[2] > 1
        and key.shape[2] >= query.shape[2]
        and getattr(module, "is_causal", True)
        and kwargs.get("is_causal", True) is not False
        and getattr(module, "sliding_window", None) is None
        and kwargs.get("sliding_window") is None
        and kwargs.get("position_bias") is None
        and not getattr(module, "training", False)
        and not kwargs.get("output_attentions", False)
    )


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(LAST_ROW_SDPA, _last_row_sdpa)
    AttentionMaskInterface.register(LAST_ROW_SDPA, sdpa_mask)  # masks are built exactly as for "sdpa"
    _registered = True


# Decoder-only families whose layers mix positions only in attention (per-token norms, MLPs and MoE after it), so
# the last layer's other rows really feed nothing. Others keep the full prefill: correct, just not trimmed.
TRIMMABLE_MODEL_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "phi3", "granite", "olmo2", "smollm3",
})


def can_trim(model: Any) -> bool:
    """True for transformers' own decoder models of the families above (PEFT-wrapped or not) whose attention runs
    PyTorch SDPA through the attention interface. Not for remote code, which may not read that interface."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    if not type(base).__module__.startswith("transformers.models."):
        return False
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    return getattr(config, "model_type", None) in TRIMMABLE_MODEL_TYPES  # plain decoder configs, no sub-configs


@contextmanager
def last_row_prefill(model: Any, enabled: bool = True) -> Iterator[bool]:
    """Within the block, a forward with ``logits_to_keep=1`` runs the last layer's attention for the last row
    only. Yields whether the trim is on (off for models it cannot apply to; then nothing changes)."""
    if not enabled or not can_trim(model):
        yield False
        return
    _register()
    config = model.config
    config._attn_implementation = LAST_ROW_SDPA
    token = _ACTIVE.set(True)
    try:
        yield True
    finally:
        _ACTIVE.reset(token)
        config._attn_implementation = "sdpa"
