"""The engine loop: one thread owns the model and feeds ``ListwiseReranker.iter_feed`` from a bounded queue.

HTTP handlers never call the model. They ``submit`` a request and wait on its future; the engine thread takes
requests whenever the backend has a free slot, so windows of different clients' requests decode together
(continuous batching), exactly as the queries of ``dear rerank`` do. A request whose caller gave up (timeout,
disconnect) is cancelled: it takes no new window and its window in flight leaves the batch.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_prep.prompt_tokens import encode_plain
from data_prep.schema import Candidate, DataError, RerankRequest

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT = "timeout"
CANCEL_DISCONNECT = "disconnect"


def safe_trace(err: BaseException) -> str:
    """An exception's type and frames without its message, which may quote a document: safe to log."""
    return f"{type(err).__name__}\n" + "".join(traceback.format_tb(err.__traceback__))


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` waiting requests (answered 429 with Retry-After)."""


class EngineUnavailable(RuntimeError):
    """The model is not loaded yet, failed to load, or the server is shutting down (answered 503)."""


class RequestCancelled(RuntimeError):
    """The request was cancelled (its caller timed out or disconnected)."""


@dataclass(eq=False)
class Job:
    """One rerank request on its way through the engine; ``future`` resolves to its ``RerankResult``."""

    key: int
    request: RerankRequest
    deadline: float  # time.monotonic() past which the request is dropped
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    cancel_reason: str | None = None
    max_tokens_per_doc: int | None = None  # cut in the engine thread, which owns the tokenizer
    cut: set[int] = field(default_factory=set)  # documents cut to max_tokens_per_doc

    def gone(self) -> bool:
        return self.cancel_reason is not None or time.monotonic() > self.deadline


class RerankEngine:
    """The model's owner. ``start()`` loads it (via ``load``) in the engine thread; ``submit`` queues a request;
    ``close()`` stops accepting, finishes what is queued and in flight, and joins the thread.

    It is the reranker's :class:`~inference.reranker.RequestFeed`: ``take``, ``cancelled`` and ``reject`` are
    called from the engine thread only."""

    def __init__(self, load: Callable[[], Any], *, max_queue: int, request_timeout: float,
                 metrics: Any = None) -> None:
        self._load = load
        self.max_queue = max_queue
        self.request_timeout = request_timeout
        self.metrics = metrics
        self.reranker: Any = None
        self.load_error: str | None = None
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._jobs: dict[int, Job] = {}  # taken by the reranker, not finished
        self._next_key = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self.on_load_failed: Callable[[], None] | None = None  # the CLI stops the server

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="dear-serve-engine", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def ready(self) -> bool:
        return self.reranker is not None and not self._closing

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting; what is queued or in flight finishes (or times out) before the thread ends."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def queue_depth(self) -> int:
        return len(self._queue)

    def in_flight(self) -> int:
        return len(self._jobs)

    def backend_stats(self) -> dict[str, float]:
        stats = getattr(getattr(self.reranker, "backend", None), "stats", None)
        return stats.as_dict() if stats is not None else {}

    # -- the client side -----------------------------------------------------------------------------
    def submit(self, request_id: str, query: str, texts: Sequence[str], *, max_tokens_per_doc: int | None = None) -> Job:
        """Queue a checked request; raises QueueFull or EngineUnavailable instead of waiting."""
        request = RerankRequest(qid=request_id, query=query,
                                candidates=tuple(Candidate(docid=str(i), text=t) for i, t in enumerate(texts)))
        with self._cond:
            if self._closing:
                raise EngineUnavailable("the server is shutting down")
            if self.reranker is None:
                raise EngineUnavailable(self.load_error or "the model is still loading")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting (--max-queue {self.max_queue})")
            job = Job(key=self._next_key, request=request, deadline=time.monotonic() + self.request_timeout,
                      max_tokens_per_doc=max_tokens_per_doc)
            self._next_key += 1
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        """The caller gave up: the job takes no new window and its windows leave the batch."""
        if job.cancel_reason is None and not job.future.done():
            job.cancel_reason = reason
            if self.metrics is not None:
                self.metrics.cancelled.labels(reason=reason).inc()
            job.future.cancel()

    def _cut_tokens(self, job: Job) -> RerankRequest:
        """Cohere v2's ``max_tokens_per_doc``: each document cut to its first tokens (records which were cut).
        Runs in the engine thread: a fast tokenizer must not be used from two threads at once."""
        tok = self.reranker.tokenizer
        candidates = []
        for i, c in enumerate(job.request.candidates):
            cut = cut_to_tokens(tok, c.text, job.max_tokens_per_doc)
            if cut is not None:
                c = Candidate(docid=c.docid, text=cut)
                job.cut.add(i)
            candidates.append(c)
        return RerankRequest(qid=job.request.qid, query=job.request.query, candidates=tuple(candidates))

    # -- the feed (engine thread) --------------------------------------------------------------------
    def take(self, wait: bool) -> tuple[Hashable, RerankRequest] | None:
        with self._cond:
            while True:
                while self._queue:
                    job = self._queue.popleft()
                    if job.gone():  # gave up while queued: never enters the batch
                        self._drop(job)
                        continue
                    self._jobs[job.key] = job
                    if job.max_tokens_per_doc is None or self.reranker.tokenizer is None:
                        return job.key, job.request
                    try:
                        return job.key, self._cut_tokens(job)
                    except Exception as err:  # noqa: BLE001 - this request fails alone; the loop goes on
                        self.reject(job.key, err)
                if not wait or self._closing:
                    return None
                self._cond.wait(timeout=0.5)

    def cancelled(self, key: Hashable) -> bool:
        job = self._jobs.get(key)  # type: ignore[arg-type]
        if job is None:
            return True
        if job.gone():
            del self._jobs[job.key]
            self._drop(job)
            return True
        return False

    def reject(self, key: Hashable, error: Exception) -> None:
        """The request fails alone: a DataError (answered 422), or an error preparing one of its windows (500,
        logged with its trace, without texts); the requests in flight with it go on."""
        job = self._jobs.pop(key, None)  # type: ignore[arg-type]
        if job is None:
            return
        if not isinstance(error, DataError):
            logger.error("request %s failed while its window was prepared: %s", job.request.qid, safe_trace(error))
            error = RuntimeError("the engine failed while preparing this request")
        _settle(job.future, error=error)

    def _drop(self, job: Job) -> None:
        if job.cancel_reason is None:  # past its deadline before the handler noticed
            job.cancel_reason = CANCEL_TIMEOUT
            if self.metrics is not None:
                self.metrics.cancelled.labels(reason=CANCEL_TIMEOUT).inc()
        if not job.future.done():
            job.future.cancel()

    # -- the thread ----------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self.reranker = self._load()
        except Exception as err:  # noqa: BLE001 - any load failure is reported on /ready and in the log
            self.load_error = f"the model failed to load: {type(err).__name__}: {err}"  # no request text here
            logger.error("%s", self.load_error)
            if self.on_load_failed is not None:
                self.on_load_failed()
            return
        logger.info("model loaded; serving")
        while True:
            try:
                for key, result in self.reranker.iter_feed(self):
                    job = self._jobs.pop(key, None)  # type: ignore[arg-type]
                    if job is None:
                        continue
                    if self.metrics is not None:
                        self.metrics.observe_result(result)
                    _settle(job.future, result=result)
                return  # the feed closed: shutting down, nothing left in flight
            except Exception as err:  # noqa: BLE001 - fail the requests in flight, keep serving the rest
                logger.error("engine error; failing %d requests in flight: %s", len(self._jobs), safe_trace(err))
                failed, self._jobs = self._jobs, {}
                for job in failed.values():
                    _settle(job.future, error=RuntimeError("the engine failed while ranking this request"))
                if self._closing and not self._queue:
                    return


CUT_TRIES = 8  # token boundaries tried below the limit (a character spans at most 4 byte-level tokens)


def cut_to_tokens(tokenizer: Any, text: str, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` tokens (counted as plain text, as the prompt tokenizes passages), or None
    when it fits. The cut is a prefix of ``text`` that re-encodes to at most ``limit`` tokens: a byte-level
    tokenizer may split a character between two tokens, and decoding there gives U+FFFD, which re-encodes LONGER
    than the limit; the cut then moves back to the previous token boundary until it is whole."""
    ids = encode_plain(tokenizer, text)
    if len(ids) <= limit:
        return None
    fallback: str | None = None
    for k in range(limit, max(-1, limit - CUT_TRIES), -1):
        cut = tokenizer.decode(ids[:k], skip_special_tokens=True)
        if len(encode_plain(tokenizer, cut)) > limit:
            continue
        if text.startswith(cut):
            return cut
        if fallback is None:  # a tokenizer whose decode changes the text (normalizers, clean-up): fits, not a prefix
            fallback = cut
    return fallback if fallback is not None else ""


def _settle(future: concurrent.futures.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a future unless its caller already cancelled it (a race the engine thread must survive)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by its handler (timeout, disconnect) in the meantime
