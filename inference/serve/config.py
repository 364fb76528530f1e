"""What a server runs with: its input limits, queue, timeout and key (one frozen object, built by the CLI)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """Limits are checked before a request is queued, so a bad request costs no model time."""

    model_name: str = "dear"  # echoed in responses; requests may name any model (one model per server)
    max_documents: int = 100
    max_document_chars: int = 20_000
    max_query_chars: int = 4_000
    max_body_bytes: int = 4 * 1024 * 1024
    max_queue: int = 64  # requests waiting for a slot; one more is answered 429
    request_timeout: float = 60.0  # seconds from arrival; past it 504 and the request's windows leave the batch
    retry_after: int = 1  # seconds, the Retry-After of a 429
    api_key: str | None = None  # Authorization: Bearer <key> required when set
    scoring: str = "generate"

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_chars", "max_query_chars", "max_body_bytes", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.request_timeout) and self.request_timeout > 0):
            raise ValueError(f"request_timeout must be a finite number > 0, got {self.request_timeout}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty")
