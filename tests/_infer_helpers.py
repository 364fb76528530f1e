"""A scripted generation backend for reranker tests: known generations, out-of-order completion."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from inference.engine import BackendStats, Generation, GenerationRequest, Pull


class ScriptedBackend:
    """Answers each request with ``script(request)``; takes up to ``max_in_flight`` requests at a time and
    finishes them in reverse order of arrival, so queries complete out of order like in a real batch."""

    def __init__(self, script: Callable[[GenerationRequest], str]) -> None:
        self.script = script
        self.stats = BackendStats()
        self.requests: list[GenerationRequest] = []
        self.max_seen_in_flight = 0
        self.in_flight_keys: list[list[tuple[int, int]]] = []

    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        in_flight: list[GenerationRequest] = []
        while True:
            new = pull(max_in_flight - len(in_flight))
            self.requests.extend(new)
            in_flight.extend(new)
            if not in_flight:
                return
            self.max_seen_in_flight = max(self.max_seen_in_flight, len(in_flight))
            self.in_flight_keys.append([r.key for r in in_flight])
            req = in_flight.pop()  # the newest finishes first
            text = self.script(req)
            self.stats.generated_tokens += len(text.split())
            yield Generation(key=req.key, text=text, token_ids=list(range(len(text.split()))),
                             prompt_tokens=len(req.text.split()), finish_reason="eos")


_PLAIN_PASSAGE = re.compile(r"^\[(\d+)\] rel=(\d+)", re.MULTILINE)


def rank_by_relevance(req: GenerationRequest) -> str:
    """An oracle for plain prompts whose passages read ``rel=<int> ...``: ids by descending rel."""
    found = [(int(i), int(r)) for i, r in _PLAIN_PASSAGE.findall(req.text)]
    order = sorted(found, key=lambda t: -t[1])
    return " " + " > ".join(f"[{i}]" for i, _ in order)


class RecordingBackend:
    """Wraps a real backend and records every request it is handed (to inspect prompt bytes)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.requests: list[GenerationRequest] = []

    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        def recording_pull(n: int) -> list[GenerationRequest]:
            got = pull(n)
            self.requests.extend(got)
            return got

        yield from self.inner.stream(recording_pull, max_in_flight)


def relevance_logits(req) -> list[float]:
    """First-token stand-in for plain prompts whose passages read ``rel=<int> ...``: each id's logit is its rel."""
    found = dict((int(i), float(r)) for i, r in _PLAIN_PASSAGE.findall(req.text))
    return [found.get(i, 0.0) for i in range(len(req.id_tokens))]


class ScriptedScorer:
    """A first-token backend answering ``logits(request)``; takes up to ``max_in_flight`` windows at a time and
    answers them newest first, recording what was in flight together."""

    def __init__(self, logits: Callable = relevance_logits) -> None:
        self.logits = logits
        self.stats = BackendStats()
        self.requests: list = []
        self.in_flight_keys: list[list] = []

    def stream(self, pull, max_in_flight: int):
        from inference.engine.first_token import WindowScores

        while True:
            reqs = pull(max_in_flight)
            if not reqs:
                return
            self.requests.extend(reqs)
            self.in_flight_keys.append([r.key for r in reqs])
            for req in reversed(reqs):
                yield WindowScores(key=req.key, logits=self.logits(req), prompt_tokens=len(req.text.split()))
