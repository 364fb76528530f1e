"""`dear teacher`: chain-of-thought listwise rankings from any OpenAI-compatible chat endpoint.

Modules: :mod:`.client` (the endpoint, retries, redaction), :mod:`.ratelimit` (token bucket),
:mod:`.pricing` (per-model price table), :mod:`.aggregate` (self-consistency and Borda over samples),
:mod:`.resume` (append-only output, request cache, crash repair), :mod:`.quality` (nDCG@10 filter),
:mod:`.generate` (the sliding-window driver that ties them together).
"""
