"""`ListwiseReranker`: sliding-window listwise reranking over any generation backend.

Queries advance independently: each query has at most one window in flight, and its next window enters the
batch as soon as the previous one is parsed, so ``batch_size`` windows of different queries decode together.
Prompts come from :func:`data_prep.prompts.render_prompt` and outputs are parsed and repaired by
:func:`data_prep.ranking.parse_ranking`, the same functions training data is built with.

``scoring="first-token"`` (FIRST) replaces generation by one forward pass per window: the prompt plus the forced
answer start, and the window's ids ordered by the logit of their token at the first-id position
(``inference.engine.first_token``). Each window then carries its ids' log-probabilities, and a query whose top-k
fits one window gets those probabilities as its scores.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from data_prep.prompt_tokens import model_input_ids, prompt_has_special_text
from data_prep.prompts import (
    PromptSpec,
    answer_start,
    get_prompt_spec,
    model_input_text,
    prompt_token_count,
    render_prompt,
)
from data_prep.ranking import add_repairs, format_ranking, is_complete_ranking, parse_ranking
from data_prep.schema import Candidate, DataError, RerankRequest
from data_prep.windows import apply_window, check_window, window_plan
from inference.engine.types import GenerationBackend, GenerationRequest

logger = logging.getLogger(__name__)

_TRAILING_NUMBER = re.compile(r"\d+\s*$")
_NUMBER = re.compile(r"\d+")

# Input repairs, counted next to the parser's kinds (data_prep.ranking.REPAIR_KINDS).
DUPLICATE_DOCID = "duplicate_docid"
PROMPT_SHRUNK = "prompt_shrunk"

SCORING_MODES = ("generate", "first-token")
FIRST_TOKEN = "first-token"


@dataclass(frozen=True)
class WindowRecord:
    """One ranked window: what was shown, what came back, and what it took to make it a permutation."""

    start: int
    end: int
    docids: tuple[str, ...]  # in prompt order
    # the generation (None for windows of one candidate, which need no model call); for first-token scoring the
    # ranking the logits give, written in the answer format
    raw: str | None
    order: tuple[int, ...]  # 0-based positions into ``docids``, best first
    repairs: dict[str, int] = field(default_factory=dict)
    source: str = "none"  # what the parser read (run, marker, ...), or "first-token"
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = "trivial"
    # first-token scoring: log-probability of each window position's id (prompt order; softmax over the ids)
    logprobs: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"start": self.start, "end": self.end, "docids": list(self.docids), "raw": self.raw,
               "order": list(self.order), "repairs": self.repairs, "source": self.source,
               "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
               "finish_reason": self.finish_reason}
        if self.logprobs is not None:
            out["logprobs"] = list(self.logprobs)
        return out


@dataclass(frozen=True)
class RerankResult:
    """A query's new order (reranked top-k, then the rest in first-stage order) with rank-derived scores."""

    qid: str
    docids: tuple[str, ...]
    # strictly decreasing with rank: n..1, or (first-token scoring, top-k in one window) the first-id
    # probabilities of the top-k followed by -1, -2, ... for the candidates past it
    scores: tuple[float, ...]
    windows: tuple[WindowRecord, ...] = ()
    repairs: dict[str, int] = field(default_factory=dict)

    @property
    def generated_tokens(self) -> int:
        return sum(w.generated_tokens for w in self.windows)

    def ranked(self) -> list[tuple[str, float]]:
        return list(zip(self.docids, self.scores, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"qid": self.qid, "docids": list(self.docids), "scores": list(self.scores),
                "repairs": self.repairs, "windows": [w.to_json() for w in self.windows]}


def rank_scores(n: int) -> tuple[float, ...]:
    """Monotone scores for ranks 1..n: n, n-1, ..., 1 (exact in a TREC run, no ties)."""
    return tuple(float(n - i) for i in range(n))


class RequestFeed(Protocol):
    """A live source of rerank requests for :meth:`ListwiseReranker.iter_feed` (e.g. a server's queue)."""

    def take(self, wait: bool) -> tuple[Hashable, RerankRequest] | None:
        """The next request and its key; None when none is waiting, or (``wait``: block until one comes) when
        the feed is closed."""
        ...

    def cancelled(self, key: Hashable) -> bool:
        """True once the caller gave up on the request (timeout, disconnect): its windows leave the batch."""
        ...

    def reject(self, key: Hashable, error: Exception) -> None:
        """The request is invalid (a :class:`DataError`), or preparing one of its windows failed; it yields
        nothing more."""
        ...


@dataclass
class _State:
    index: int
    request: RerankRequest
    candidates: tuple[Candidate, ...]
    order: list[int]  # current order of candidate indices
    plan: list[tuple[int, int]]
    next_window: int = 0
    windows: list[WindowRecord] = field(default_factory=list)
    repairs: Counter[str] = field(default_factory=Counter)
    in_window: tuple[int, ...] = ()  # candidate indices of the window in flight
    shrunk: bool = False
    probs: dict[int, float] | None = None  # first-token, one-window queries: candidate index -> probability


class ListwiseReranker:
    """Rerank candidates with a listwise LLM (a DeAR adapter, a merged model, or anything ``backend`` serves).

    ``ListwiseReranker(model, tokenizer, spec, ...)`` wraps live objects (e.g. a PEFT model during training);
    :meth:`from_pretrained` loads an adapter folder, a merged model or a Hub id.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        spec: PromptSpec | str = "dear-card",
        *,
        window: int = 20,
        stride: int = 10,
        top_k: int = 100,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
        cot_max_new_tokens: int = 1024,
        early_stop: bool = True,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        max_prompt_tokens: int | None = None,
        backend: GenerationBackend | None = None,
        scoring: str = "generate",
    ) -> None:
        check_window(window, stride)
        if scoring not in SCORING_MODES:
            raise ValueError(f"scoring must be one of {SCORING_MODES}, got {scoring!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.spec = get_prompt_spec(spec) if isinstance(spec, str) else spec
        self.window, self.stride, self.top_k = window, stride, top_k
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.cot_max_new_tokens = cot_max_new_tokens
        self.early_stop = early_stop
        self.seed = seed
        self.scoring = scoring
        self._id_tokens: Any = None
        if scoring == FIRST_TOKEN:
            from inference.engine.first_token import IdTokenTable

            answer_start(self.spec)  # chain-of-thought specs are refused here, with the fix
            self._id_tokens = IdTokenTable(tokenizer, self.spec)
            self._id_tokens.for_window(min(window, top_k) if top_k >= 2 else window)  # refuse before any work
        self._budget_cache: dict[int, int] = {}
        if max_prompt_tokens is None and model is not None:
            ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
            if isinstance(ctx, int) and ctx > 0:
                max_prompt_tokens = ctx - self._budget(window)
        self.max_prompt_tokens = max_prompt_tokens
        if backend is None and scoring == FIRST_TOKEN:
            from inference.engine.first_token import HFFirstTokenScorer

            backend = HFFirstTokenScorer(model, tokenizer)
        if backend is None:
            from inference.engine.hf import HFBackend

            backend = HFBackend(model, tokenizer, do_sample=do_sample, temperature=temperature,
                                top_p=top_p, seed=seed)
        self.backend = backend

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        base_model: str | None = None,
        dtype: str = "auto",
        quantization: str | None = None,
        device_map: str | dict[str, Any] | None = "auto",
        prompt: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        backend: str = "hf",
        **kwargs: Any,
    ) -> ListwiseReranker:
        """Load a PEFT adapter folder, a merged model folder or a Hub id (see :mod:`inference.models`)."""
        from inference.models import ModelOptions, describe_source, load_causal_lm, resolve_spec

        if backend == "vllm":
            from inference.engine.vllm import VLLMBackend, max_model_len

            vb, tokenizer, spec = VLLMBackend.from_pretrained(path, base_model=base_model, dtype=dtype,
                                                              prompt=prompt, trust_remote_code=trust_remote_code,
                                                              revision=revision, seed=kwargs.get("seed", 0),
                                                              do_sample=kwargs.pop("do_sample", False),
                                                              temperature=kwargs.pop("temperature", 1.0),
                                                              top_p=kwargs.pop("top_p", 1.0),
                                                              first_token=kwargs.get("scoring") == FIRST_TOKEN,
                                                              max_logprobs=max(100, kwargs.get("window", 20)))
            ctx = max_model_len(vb)
            if ctx is not None and kwargs.get("max_prompt_tokens") is None:
                kwargs["max_prompt_tokens"] = ctx - (kwargs.get("max_new_tokens") or 512)
            if kwargs.get("scoring") == FIRST_TOKEN:
                from inference.engine.first_token import VLLMFirstTokenScorer

                return cls(None, tokenizer, spec, backend=VLLMFirstTokenScorer(vb), **kwargs)
            return cls(None, tokenizer, spec, backend=vb, **kwargs)
        if backend != "hf":
            raise ValueError(f"unknown backend {backend!r}: use 'hf' or 'vllm'")
        options = ModelOptions(base_model=base_model, dtype=dtype, quantization=quantization, device_map=device_map,
                               revision=revision, trust_remote_code=trust_remote_code)
        source = describe_source(path, revision=revision)
        spec = resolve_spec(source, prompt, revision=revision)  # a bad prompt fails before any weights load
        model, tokenizer = load_causal_lm(source, options)
        return cls(model, tokenizer, spec, **kwargs)

    # -- public API ----------------------------------------------------------------------------------
    def rerank(self, query: str, documents: Sequence[str]) -> list[int]:
        """The model card's drop-in: indices of ``documents`` best first (a full permutation)."""
        req = RerankRequest(qid="0", query=query,
                            candidates=tuple(Candidate(docid=str(i), text=d) for i, d in enumerate(documents)))
        (result,) = self.rerank_batch([req])
        return [int(d) for d in result.docids]

    def rerank_batch(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        """Rerank many queries with their windows batched together; results in input order."""
        by_index: dict[int, RerankResult] = {}
        for i, result in self.iter_rerank(requests, with_index=True):
            by_index[i] = result
        return [by_index[i] for i in range(len(requests))]

    def iter_rerank(self, requests: Iterable[RerankRequest], *, with_index: bool = False) -> Iterator[Any]:
        """Yield each query's result as soon as its last window is parsed (completion order).

        All requests are validated before the first generation, so bad input fails before any work is done.
        """
        states = [self._new_state(i, r) for i, r in enumerate(requests)]
        pending = deque(states)

        def take(wait: bool) -> _State | None:
            return pending.popleft() if pending else None

        for st in self._drive(take, None):
            result = self._result(st)
            yield (st.index, result) if with_index else result
        unfinished = [s.request.qid for s in states if s.next_window < len(s.plan)]
        if unfinished:
            raise RuntimeError(f"backend stopped before queries {unfinished[:5]} were ranked")

    def iter_feed(self, feed: RequestFeed) -> Iterator[tuple[Hashable, RerankResult]]:
        """Rerank requests from a live ``feed`` (a server's queue) until it closes, yielding ``(key, result)``.

        New requests join the batch whenever a slot is free, so windows of requests that arrived at different
        times decode together exactly as the queries of :meth:`iter_rerank` do. A request the feed reports
        cancelled takes no new window, its window in flight leaves the backend's batch (for backends that
        honour ``GenerationRequest.cancelled``), and it yields nothing. An invalid request goes back through
        ``feed.reject`` without disturbing the others."""
        keys: dict[int, Hashable] = {}
        counter = 0

        def take(wait: bool) -> _State | None:
            nonlocal counter
            while True:
                got = feed.take(wait)
                if got is None:
                    return None
                key, request = got
                try:
                    st = self._new_state(counter, request)
                except DataError as err:
                    feed.reject(key, err)
                    continue
                keys[counter] = key
                counter += 1
                return st

        def cancelled(st: _State) -> bool:
            key = keys.get(st.index)  # None once yielded (a backend may still ask about a dropped row)
            return key is None or feed.cancelled(key)

        def failed(st: _State, err: Exception) -> None:  # preparing its window failed: only this request fails
            key = keys.pop(st.index, None)
            if key is not None:
                feed.reject(key, err)

        for st in self._drive(take, cancelled, failed):
            key = keys.pop(st.index)
            if not feed.cancelled(key):
                yield key, self._result(st)

    def _drive(self, take: Callable[[bool], _State | None], cancelled: Callable[[_State], bool] | None,
               failed: Callable[[_State, Exception], None] | None = None) -> Iterator[_State]:
        """The scheduler behind :meth:`iter_rerank` and :meth:`iter_feed`: yields each finished query's state.

        ``take(wait)`` gives the next new query, or None when there is none now; it is asked to ``wait`` only
        when no window is in flight and no result is waiting to be yielded, so a live source never stalls
        decoding, and None then means the source is closed. The backend's stream ends whenever it is idle; a new
        one starts until the source is closed. With ``failed``, a query whose next window cannot be prepared
        (rendering, truncation) is handed to it and dropped, and the others go on; without it the error propagates."""
        ready: deque[_State] = deque()
        done: deque[_State] = deque()
        flying: dict[int, _State] = {}  # queries with a window in the backend
        closed = False
        hook = cancelled  # handed to the backend with each window (None: nothing is ever cancelled)
        cancelled = cancelled or _never

        def pull(n: int) -> list[GenerationRequest]:
            nonlocal closed
            for i in [i for i, st in flying.items() if cancelled(st)]:
                done.append(flying.pop(i))  # the backend drops its row (or finishes it; that generation is ignored)
            out: list[GenerationRequest] = []
            while len(out) < n:
                if ready:
                    st = ready.popleft()
                else:
                    wait = not (flying or out or done)
                    st = take(wait)
                    if st is None:
                        closed = closed or wait
                        break
                try:
                    req = None if cancelled(st) else self._next_request(st)
                except Exception as err:
                    if failed is None:
                        raise
                    failed(st, err)
                    continue
                if req is None:
                    done.append(st)
                    continue
                if hook is not None and hasattr(req, "cancelled"):  # requests of other kinds carry no hook
                    req.cancelled = partial(hook, st)
                flying[st.index] = st
                out.append(req)
            return out

        while not closed:
            for gen in self.backend.stream(pull, self.batch_size):
                st = flying.pop(gen.key[0], None)
                if st is None:  # its query was cancelled while the window decoded
                    continue
                self._apply(st, gen)
                (ready if st.next_window < len(st.plan) else done).append(st)
                while done:
                    yield done.popleft()
            while done:
                yield done.popleft()
            lost = [st.request.qid for st in flying.values() if not cancelled(st)]
            if lost:  # the backend ended with windows that never came back: no restart would bring them
                raise RuntimeError(f"backend stopped before queries {lost[:5]} were ranked")

    # -- internals -----------------------------------------------------------------------------------
    def _new_state(self, index: int, req: RerankRequest) -> _State:
        if not req.query.strip():
            raise DataError("empty query", qid=req.qid, fix="give the query text or drop the query",
                            reason="empty_query")
        seen: set[str] = set()
        cands: list[Candidate] = []
        repairs: Counter[str] = Counter()
        for c in req.candidates:
            if c.docid in seen:
                repairs[DUPLICATE_DOCID] += 1
                continue
            seen.add(c.docid)
            cands.append(c)
        if repairs:
            logger.warning("qid %s: dropped %d duplicate docids (first occurrence kept)", req.qid,
                           repairs[DUPLICATE_DOCID])
        k = min(self.top_k, len(cands))
        return _State(index=index, request=req, candidates=tuple(cands), order=list(range(len(cands))),
                      plan=window_plan(k, self.window, self.stride), repairs=repairs)

    def _budget(self, n: int) -> int:
        """Token budget of a window of ``n`` candidates: a full ranking's tokens plus slack (and CoT room)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        cached = self._budget_cache.get(n)
        if cached is not None:
            return cached
        target = self.spec.completion_prefix + format_ranking(range(n), base=self.spec.id_base)
        if self.tokenizer is not None:
            need = len(self.tokenizer.encode(target, add_special_tokens=False))
        else:
            need = 4 * n
        budget = need + need // 4 + 8
        if self.spec.cot:
            budget += self.cot_max_new_tokens
        self._budget_cache[n] = budget
        return budget

    def _next_request(self, st: _State) -> GenerationRequest | None:
        """The next window's generation request, or None when the query is finished; windows of one
        candidate are applied without a model call."""
        while st.next_window < len(st.plan):
            start, end = st.plan[st.next_window]
            idx = tuple(st.order[start:end])
            if len(idx) > 1:
                st.in_window = idx
                return self._request(st, idx)
            st.windows.append(WindowRecord(start=start, end=end, docids=tuple(st.candidates[i].docid for i in idx),
                                           raw=None, order=tuple(range(len(idx)))))
            st.next_window += 1
        return None

    def _request(self, st: _State, idx: tuple[int, ...]) -> GenerationRequest:
        spec = self.spec
        passages = [st.candidates[i].passage() for i in idx]
        prompt = render_prompt(spec, st.request.query, passages, tokenizer=self.tokenizer)
        if self.max_prompt_tokens is not None and self.tokenizer is not None and not _surely_fits(
                prompt, self.max_prompt_tokens):
            if prompt_token_count(prompt, self.tokenizer) > self.max_prompt_tokens:
                prompt = render_prompt(spec, st.request.query, passages, tokenizer=self.tokenizer,
                                       max_tokens=self.max_prompt_tokens)
                st.repairs[PROMPT_SHRUNK] += 1
                logger.warning("qid %s: window prompt over %d tokens; passages shrunk to fit",
                               st.request.qid, self.max_prompt_tokens)
        if prompt.text is not None:
            text, special = prompt.text, True
        else:
            text, special = model_input_text(prompt, self.tokenizer), False
        n = len(idx)
        suffix = answer_start(spec) if self.scoring == FIRST_TOKEN else ""
        ids = None  # special-token text in a passage or the query stays text: the ids are built piecewise
        if self.tokenizer is not None and prompt_has_special_text(prompt, self.tokenizer):
            ids = model_input_ids(prompt, self.tokenizer, suffix)
        if self.scoring == FIRST_TOKEN:
            from inference.engine.first_token import ScoreRequest

            return ScoreRequest(key=(st.index, st.next_window), text=text + suffix, add_special_tokens=special,
                                id_tokens=self._id_tokens.for_window(n), token_ids=ids)
        return GenerationRequest(
            key=(st.index, st.next_window), text=text, add_special_tokens=special, token_ids=ids,
            max_new_tokens=self._budget(n),
            is_complete=_completion_check(n, spec.id_base, spec.cot) if self.early_stop else None,
            seed=zlib.crc32(f"{self.seed}\t{st.request.qid}\t{st.next_window}".encode()),
        )

    def _apply(self, st: _State, gen: Any) -> None:
        if self.scoring == FIRST_TOKEN:
            self._apply_scores(st, gen)
            return
        start, end = st.plan[st.next_window]
        idx = st.in_window
        parsed = parse_ranking(gen.text, len(idx), base=self.spec.id_base, cot=self.spec.cot)
        st.order = apply_window(st.order, (start, end), parsed.order)
        add_repairs(st.repairs, parsed.repairs)
        st.windows.append(WindowRecord(
            start=start, end=end, docids=tuple(st.candidates[i].docid for i in idx), raw=gen.text,
            order=tuple(parsed.order), repairs=dict(parsed.repairs), source=parsed.source,
            prompt_tokens=gen.prompt_tokens, generated_tokens=len(gen.token_ids), finish_reason=gen.finish_reason))
        st.next_window += 1

    def _apply_scores(self, st: _State, scored: Any) -> None:
        """A first-token window: ids by logit (ties by first-stage rank), log-probabilities over the window's ids."""
        import math

        from inference.engine.first_token import id_log_probs, window_order

        start, end = st.plan[st.next_window]
        idx = st.in_window
        order = window_order(scored.logits, idx)  # candidate indices are first-stage ranks
        logprobs = id_log_probs(scored.logits)
        st.order = apply_window(st.order, (start, end), order)
        if len(st.plan) == 1:  # the whole top-k in one window: its probabilities are the query's scores
            st.probs = {idx[k]: math.exp(lp) for k, lp in enumerate(logprobs)}
        st.windows.append(WindowRecord(
            start=start, end=end, docids=tuple(st.candidates[i].docid for i in idx),
            raw=format_ranking(order, base=self.spec.id_base), order=tuple(order), repairs={}, source=FIRST_TOKEN,
            prompt_tokens=scored.prompt_tokens, generated_tokens=0, finish_reason=FIRST_TOKEN,
            logprobs=tuple(logprobs)))
        st.next_window += 1

    def _result(self, st: _State) -> RerankResult:
        docids = tuple(st.candidates[i].docid for i in st.order)
        scores = rank_scores(len(docids)) if st.probs is None else probability_scores(st.order, st.probs)
        return RerankResult(qid=st.request.qid, docids=docids, scores=scores,
                            windows=tuple(st.windows), repairs=dict(st.repairs))


# TREC runs carry 6 decimals (data_prep.readers.write_run): probabilities closer than this are moved apart
# (2e-6: two such scores never print alike).
SCORE_GAP = 2e-6


def probability_scores(order: Sequence[int], probs: dict[int, float]) -> tuple[float, ...]:
    """Scores for a final order whose head was ranked by probabilities: those probabilities, each moved just below
    the one before where it is not at least ``SCORE_GAP`` lower (equal logits, or rounding in a 6-decimal TREC run
    would let tools that sort by score reorder them), then -1, -2, ... for the candidates past the ranked head
    (they keep their first-stage order)."""
    out: list[float] = []
    tail = 0
    for cand in order:
        if cand in probs:
            p = probs[cand]
            if out and p > out[-1] - SCORE_GAP:
                p = out[-1] - SCORE_GAP
            out.append(p)
        else:
            tail += 1
            out.append(-float(tail))
    return tuple(out)


def _never(st: _State) -> bool:
    return False


def _completion_check(n: int, base: int, cot: bool) -> Callable[[str], bool]:
    """Early stop once the final ranking names all ``n`` ids; a trailing number may still grow ("[1" -> "[12]")."""

    def check(text: str) -> bool:
        if len(_NUMBER.findall(text)) < n:  # cheap: a full ranking holds at least n numbers
            return False
        return is_complete_ranking(_TRAILING_NUMBER.sub("", text), n, base=base, cot=cot)

    return check


def _surely_fits(prompt: Any, max_tokens: int) -> bool:
    """True when the prompt cannot exceed ``max_tokens`` without tokenizing it: byte-level and byte-fallback
    tokenizers emit at most one token per UTF-8 byte (plus a few special tokens)."""
    text = prompt.text if prompt.text is not None else "".join(m["content"] for m in prompt.messages or ())
    extra = 16 if prompt.text is not None else 16 + 8 * len(prompt.messages or ())
    return len(text.encode("utf-8")) + extra <= max_tokens
