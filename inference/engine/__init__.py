"""The generation engine: model-input strings in, generations out, behind one small Protocol.

- ``types``: ``GenerationRequest``, ``Generation``, ``BackendStats``, ``Pull``, the ``GenerationBackend`` Protocol.
- ``hf``: ``HFBackend``, the Hugging Face decode loop (``stream(pull, max_in_flight)``).
- ``kv_slots``: the KV slot allocator the decode loop batches windows in (imports torch; loaded when decoding).
- ``prefill``: the last-row prefill (the last layer's attention for the one kept row only).
- ``text``: token ids to text (end-of-turn ids, the exact batched decoder, streamed decoding).
- ``vllm``: ``VLLMBackend`` (optional extra, needs a GPU; imported on first use).
- ``first_token``: first-token scoring (FIRST): the id-token check, ``HFFirstTokenScorer`` (one forward per
  window, batched across queries) and ``VLLMFirstTokenScorer`` (imported on first use).

Importing this package does not import torch or transformers.
"""

from __future__ import annotations

from typing import Any

from inference.engine.hf import HFBackend
from inference.engine.types import (
    FINISH_COMPLETE,
    FINISH_EOS,
    FINISH_LENGTH,
    BackendStats,
    Generation,
    GenerationBackend,
    GenerationRequest,
    Pull,
)

__all__ = ["FINISH_COMPLETE", "FINISH_EOS", "FINISH_LENGTH", "BackendStats", "Generation", "GenerationBackend",
           "GenerationRequest", "HFBackend", "Pull", "VLLMBackend"]


def __getattr__(name: str) -> Any:
    if name == "VLLMBackend":  # a module of its own: the optional extra stays out of plain imports
        from inference.engine.vllm import VLLMBackend

        return VLLMBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
