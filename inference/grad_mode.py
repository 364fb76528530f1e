"""Eval and autograd modes for generating or scoring with a model that may be in the middle of training."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """Eval mode and :func:`inference_context` for the block; a model that was training is put back in training
    mode afterwards (a ranking evaluation in the middle of a training run)."""
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with inference_context(model):
            yield
    finally:
        if was_training:
            model.train()
