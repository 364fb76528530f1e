"""What a generation backend takes and gives: requests, generations, counters, and the Protocol itself.

A backend turns model-input strings into generations. The reranker feeds it through ``pull``: the backend
asks for at most ``n`` new requests whenever it has free slots, and yields each generation as soon as it
finishes, so a query's next window can enter the batch while other windows are still decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
    cancelled: Callable[[], bool] | None = None  # True once nobody waits for it: the row leaves the batch, no output
    # the ids of ``text`` when plain tokenization of it would be wrong: a passage holds special-token text, which
    # must stay text (data_prep.prompt_tokens.model_input_ids); None: tokenize ``text`` as usual
    token_ids: list[int] | None = None


@dataclass
class Row:
    """One window in flight in a decode loop (``inference.engine.hf``, placed in KV slots by
    ``inference.engine.kv_slots``): its request, prompt length and the tokens generated so far."""

    req: GenerationRequest
    prompt_len: int
    ids: list[int] = field(default_factory=list)
    generator: Any = None
    text: str | None = None  # the decoded ``ids`` (None until decoded, and after each new token)
    stream: Any = None  # incremental decoder of ``ids`` for the early-stop check (fast tokenizers)
    stream_text: str = ""


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
    cancelled: int = 0  # rows dropped because their request was cancelled

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


Pull = Callable[[int], list[GenerationRequest]]


@runtime_checkable
class GenerationBackend(Protocol):
    """What the reranker needs from a model server."""

    stats: BackendStats

    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        """Generate for requests obtained from ``pull(n)`` (at most ``n``; ``[]`` when none is ready), yielding
        each generation when it finishes. Ends when ``pull`` returns nothing and nothing is in flight. A request
        whose ``cancelled()`` turns true leaves the batch before the next step and yields nothing (backends that
        cannot drop a row may finish it; the reranker ignores that generation)."""
        ...
