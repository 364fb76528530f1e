"""Prometheus metrics of one server (its own registry, so several apps in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ServeMetrics:
    """Requests by route and status, latency, queue depth and requests in flight, and what the model did:
    windows, model calls, prompt and generated tokens, repairs by kind, truncated documents, cancellations."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("dear_serve_requests", "HTTP rerank requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("dear_serve_request_seconds", "rerank request latency (arrival to response)",
                                 ["route"], registry=r,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.queue_depth = Gauge("dear_serve_queue_depth", "requests waiting for a batch slot", registry=r)
        self.in_flight = Gauge("dear_serve_in_flight", "requests whose windows are in the batch", registry=r)
        self.windows = Counter("dear_serve_windows", "windows ranked", registry=r)
        self.model_calls = Counter("dear_serve_model_calls", "windows that needed a model call", registry=r)
        self.prompt_tokens = Counter("dear_serve_prompt_tokens", "prompt tokens of ranked windows", registry=r)
        self.generated_tokens = Counter("dear_serve_generated_tokens", "tokens generated", registry=r)
        self.repairs = Counter("dear_serve_repairs", "model output repairs by kind", ["kind"], registry=r)
        self.documents = Counter("dear_serve_documents", "documents ranked", registry=r)
        self.truncated = Counter("dear_serve_truncated_documents", "documents cut to the limits", registry=r)
        self.backend = {name: Gauge(f"dear_serve_backend_{name}", help_, registry=r) for name, help_ in (
            ("prefill_seconds", "time the backend spent prefilling windows"),
            ("decode_seconds", "time the backend spent in batched decoding steps"),
            ("decode_steps", "batched decoding steps"))}
        self.cancelled = Counter("dear_serve_cancelled", "requests cancelled before their result, by reason",
                                 ["reason"], registry=r)

    def track(self, queue_depth: Callable[[], int], in_flight: Callable[[], int],
              backend_stats: Callable[[], dict[str, float]]) -> None:
        """Gauges read at scrape time: the queue, the requests in flight, the backend's time split (what bounds
        the gain of batching: prefill is per window, decoding is shared)."""
        self.queue_depth.set_function(queue_depth)
        self.in_flight.set_function(in_flight)
        for name, key in (("prefill_seconds", "prefill_s"), ("decode_seconds", "decode_s"),
                          ("decode_steps", "decode_steps")):
            self.backend[name].set_function(lambda key=key: float(backend_stats().get(key, 0.0)))

    def observe_result(self, result: Any) -> None:
        self.windows.inc(len(result.windows))
        self.model_calls.inc(sum(1 for w in result.windows if w.raw is not None))
        self.prompt_tokens.inc(sum(w.prompt_tokens for w in result.windows))
        self.generated_tokens.inc(result.generated_tokens)
        self.documents.inc(len(result.docids))
        for kind, n in result.repairs.items():
            self.repairs.labels(kind=kind).inc(n)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
