"""The autograd mode for generating or scoring with a model that may be in the middle of training."""

from __future__ import annotations

from typing import Any


def inference_context(model: Any) -> Any:
    """``torch.inference_mode()`` when no parameter requires grad (an adapter loaded for inference, a frozen
    model); else ``torch.no_grad()``, which is always safe (no slower in the reranking benchmark) and is what a
    training-time evaluation needs. Wrappers such as DeepSpeed ZeRO-3 gather parameters during the forward; gathered
    in inference mode they can stay inference tensors, and the next training step fails with "Inference tensors
    cannot be saved for backward" (seen with ZeRO-3 after a listwise ranking evaluation; tested)."""
    import torch

    params = getattr(model, "parameters", None)
    if callable(params) and any(p.requires_grad for p in params()):
        return torch.no_grad()
    return torch.inference_mode()
