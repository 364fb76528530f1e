"""`ListwiseReranker`: listwise reranking over any generation backend, any strategy and either scoring mode.

Two independent axes, each an object: the strategy (:mod:`inference.ranking.strategies`: ``sliding`` by default,
``single``, ``tdpart``, ``setwise``) says which windows a query needs next and folds their orders back; the scorer
(:mod:`inference.ranking.scorers`: ``generate`` or ``first-token``) turns a window's prompt into a backend request
and the backend's answer into an order. The scheduler here runs the windows of many queries, and the windows of
one query that do not depend on each other, in one continuous batch: a window enters as soon as a slot is free,
and a query's next windows as soon as the ones they depend on are folded. Prompts come from
:func:`data_prep.prompts.render_prompt` and generations are parsed and repaired by
:func:`data_prep.ranking.parse_ranking`, the same functions training data is built with.

With first-token scoring each window carries its ids' log-probabilities, and a query whose top-k was ranked by
one window gets those probabilities as its scores.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from data_prep.prompt_tokens import model_input_ids, prompt_has_special_text
from data_prep.prompts import PromptSpec, get_prompt_spec, model_input_text, prompt_token_count, render_prompt
from data_prep.schema import Candidate, DataError, RerankRequest
from inference.engine.types import GenerationBackend
from inference.ranking.scorers import (
    FIRST_TOKEN,
    SCORING_MODES,
    Scorer,
    WindowAnswer,
    make_scorer,
    scorer_class,
)
from inference.ranking.strategies import HEAPSORT, Order, Plan, Strategy, Window, make_strategy

logger = logging.getLogger(__name__)

__all__ = ["DUPLICATE_DOCID", "FIRST_TOKEN", "PROMPT_SHRUNK", "SCORING_MODES", "ListwiseReranker", "QueryCost",
           "RequestFeed", "RerankResult", "WindowRecord", "probability_scores", "rank_scores"]

# Input repairs, counted next to the parser's kinds (data_prep.ranking.REPAIR_KINDS).
DUPLICATE_DOCID = "duplicate_docid"
PROMPT_SHRUNK = "prompt_shrunk"


@dataclass(frozen=True)
class WindowRecord:
    """One ranked window: what was shown, what came back, and what it took to make it a permutation."""

    start: int | None  # sliding: the span of the running order it covered; None for other strategies
    end: int | None
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
    role: str = "slide"  # the strategy step that made it (sliding: "slide"; tdpart: "pivot", "partition", "rank")
    round: int = 0  # the query's sequential round it ran in (1-based; 0: no model call)

    def to_json(self, *, with_role: bool = True) -> dict[str, Any]:
        out = {"start": self.start, "end": self.end, "docids": list(self.docids), "raw": self.raw,
               "order": list(self.order), "repairs": self.repairs, "source": self.source,
               "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
               "finish_reason": self.finish_reason}
        if self.logprobs is not None:
            out["logprobs"] = list(self.logprobs)
        if with_role:
            out["role"] = self.role
            out["round"] = self.round
        return out


@dataclass(frozen=True)
class QueryCost:
    """What ranking one query took: model calls, tokens in and out, and the sequential rounds (the latency no
    batching removes: windows of one round run together, a round waits for the one before)."""

    model_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    rounds: int = 0

    def to_json(self) -> dict[str, int]:
        return {"model_calls": self.model_calls, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens, "rounds": self.rounds}


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
    cost: QueryCost = field(default_factory=QueryCost)
    strategy: str = "sliding"
    # whether the JSON record carries the strategy, the cost and each window's role (False for sliding, whose
    # records stay as they were before strategies existed: its cost is its windows, one round each)
    records_cost: bool = False

    @property
    def generated_tokens(self) -> int:
        return sum(w.generated_tokens for w in self.windows)

    def ranked(self) -> list[tuple[str, float]]:
        return list(zip(self.docids, self.scores, strict=True))

    def to_json(self) -> dict[str, Any]:
        out = {"qid": self.qid, "docids": list(self.docids), "scores": list(self.scores),
               "repairs": self.repairs, "windows": [w.to_json(with_role=self.records_cost) for w in self.windows]}
        if self.records_cost:
            out["strategy"] = self.strategy
            out["cost"] = self.cost.to_json()
        return out


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
    """One query being ranked: its strategy's plan and the windows of the plan's current step."""

    index: int
    request: RerankRequest
    candidates: tuple[Candidate, ...]
    k: int  # candidates the strategy ranks (the rest keep their first-stage order)
    plan: Plan
    step: list[Window] = field(default_factory=list)  # the windows the plan asked for last
    answers: dict[int, Order] = field(default_factory=dict)  # position in ``step`` -> its order
    first_seq: int = 0  # the window number of step[0] (windows are numbered in the order they were asked for)
    asked: int = 0
    records: dict[int, WindowRecord] = field(default_factory=dict)  # window number -> record
    repairs: Counter[str] = field(default_factory=Counter)
    rounds: int = 0
    order: list[int] | None = None  # the final order of all candidates, once the plan returned the top-k's
    closed: bool = False  # finished or cancelled: yielded once
    probs: dict[int, float] | None = None  # a window over the whole top-k (first-token): candidate -> probability

    @property
    def finished(self) -> bool:
        return self.order is not None


class ListwiseReranker:
    """Rerank candidates with a listwise LLM (a DeAR adapter, a merged model, or anything ``backend`` serves).

    ``ListwiseReranker(model, tokenizer, spec, ...)`` wraps live objects (e.g. a PEFT model during training);
    :meth:`from_pretrained` loads an adapter folder, a merged model or a Hub id. ``strategy`` is a name
    (``sliding``, ``single``, ``tdpart``, ``setwise``; knobs ``window``, ``stride``, ``depth``, ``set_size``,
    ``setwise_sort``) or a :class:`~inference.ranking.strategies.Strategy` object.
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
        strategy: str | Strategy = "sliding",
        depth: int = 10,
        set_size: int = 3,
        setwise_sort: str = HEAPSORT,
    ) -> None:
        self.strategy: Strategy = strategy if not isinstance(strategy, str) else make_strategy(
            strategy, window=window, stride=stride, depth=depth, set_size=set_size, setwise_sort=setwise_sort)
        scorer_class(scoring)  # an unknown scoring mode is refused before anything else
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
        self.scorer: Scorer = make_scorer(scoring, self.spec, tokenizer, early_stop=early_stop)
        largest = self.strategy.largest_window(top_k)
        self.scorer.check(min(largest, top_k) if top_k >= 2 else largest)  # refuse before any work
        self._budget_cache: dict[int, int] = {}
        if max_prompt_tokens is None and model is not None:
            ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
            if isinstance(ctx, int) and ctx > 0:
                max_prompt_tokens = ctx - self._budget(largest)
        self.max_prompt_tokens = max_prompt_tokens
        if backend is None:
            backend = self.scorer.default_backend(model, tokenizer, do_sample=do_sample, temperature=temperature,
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

            scorer = scorer_class(kwargs.get("scoring", "generate"))
            vb, tokenizer, spec = VLLMBackend.from_pretrained(path, base_model=base_model, dtype=dtype,
                                                              prompt=prompt, trust_remote_code=trust_remote_code,
                                                              revision=revision, seed=kwargs.get("seed", 0),
                                                              do_sample=kwargs.pop("do_sample", False),
                                                              temperature=kwargs.pop("temperature", 1.0),
                                                              top_p=kwargs.pop("top_p", 1.0),
                                                              first_token=scorer.wants_logprobs,
                                                              max_logprobs=max(100, kwargs.get("window", 20)))
            ctx = max_model_len(vb)
            if ctx is not None and kwargs.get("max_prompt_tokens") is None:
                kwargs["max_prompt_tokens"] = ctx - (kwargs.get("max_new_tokens") or 512)
            rr = cls(None, tokenizer, spec, backend=vb, **kwargs)
            rr.backend = rr.scorer.vllm_backend(vb)
            return rr
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
        unfinished = [s.request.qid for s in states if not s.finished]
        if unfinished:
            raise RuntimeError(f"backend stopped before queries {unfinished[:5]} were ranked")

    def iter_feed(self, feed: RequestFeed) -> Iterator[tuple[Hashable, RerankResult]]:
        """Rerank requests from a live ``feed`` (a server's queue) until it closes, yielding ``(key, result)``.

        New requests join the batch whenever a slot is free, so windows of requests that arrived at different
        times decode together exactly as the queries of :meth:`iter_rerank` do. A request the feed reports
        cancelled takes no new window, its windows in flight leave the backend's batch (for backends that
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
            key = keys.pop(st.index, None)
            if key is not None and not feed.cancelled(key):
                yield key, self._result(st)

    def _drive(self, take: Callable[[bool], _State | None], cancelled: Callable[[_State], bool] | None,
               failed: Callable[[_State, Exception], None] | None = None) -> Iterator[_State]:
        """The scheduler behind :meth:`iter_rerank` and :meth:`iter_feed`: yields each finished query's state.

        ``take(wait)`` gives the next new query, or None when there is none now; it is asked to ``wait`` only
        when no window is in flight and no result is waiting to be yielded, so a live source never stalls
        decoding, and None then means the source is closed. The backend's stream ends whenever it is idle; a new
        one starts until the source is closed. Windows wait in ``ready`` (in the order their queries asked for
        them) until the backend has a slot. With ``failed``, a query whose next window cannot be prepared
        (rendering, truncation) is handed to it and dropped (its windows in flight are ignored), and the others
        go on; without it the error propagates."""
        ready: deque[tuple[_State, int]] = deque()  # (query, window number) ready to run
        done: deque[_State] = deque()
        flying: dict[Hashable, tuple[_State, int]] = {}  # backend key -> (query, window number)
        closed = False
        hook = cancelled  # handed to the backend with each window (None: nothing is ever cancelled)
        cancelled = cancelled or _never

        def finish(st: _State) -> None:
            if not st.closed:
                st.closed = True
                done.append(st)

        def drop(st: _State, err: Exception) -> None:
            if failed is None:
                raise err
            st.closed = True  # never yielded: its other windows are skipped and their answers ignored
            failed(st, err)

        def advance(st: _State) -> None:
            """Ask the plan for its next windows: queue them, or finish the query."""
            for seq in self._advance(st):
                ready.append((st, seq))
            if st.finished:
                finish(st)

        def pull(n: int) -> list[Any]:
            nonlocal closed
            for key in [key for key, (st, _) in flying.items() if cancelled(st)]:
                finish(flying.pop(key)[0])  # the backend drops its row (or finishes it; that answer is ignored)
            out: list[Any] = []
            while len(out) < n:
                if ready:
                    st, seq = ready.popleft()
                    if st.closed:
                        continue
                    if cancelled(st):
                        finish(st)
                        continue
                    try:
                        req = self._request(st, seq)
                    except Exception as err:  # noqa: BLE001 - handed to ``failed`` (or re-raised) by drop
                        drop(st, err)
                        continue
                    if hook is not None and hasattr(req, "cancelled"):  # requests of other kinds carry no hook
                        req.cancelled = partial(hook, st)
                    flying[req.key] = (st, seq)
                    out.append(req)
                    continue
                wait = not (flying or out or done)
                st = take(wait)
                if st is None:
                    closed = closed or wait
                    break
                if cancelled(st):
                    finish(st)
                    continue
                try:
                    advance(st)
                except Exception as err:  # noqa: BLE001 - handed to ``failed`` (or re-raised) by drop
                    drop(st, err)
            return out

        while not closed:
            for answer in self.backend.stream(pull, self.batch_size):
                got = flying.pop(answer.key, None)
                if got is None or got[0].closed:  # its query was cancelled while the window ran
                    continue
                st, seq = got
                try:
                    if self._fold(st, seq, answer):
                        advance(st)
                except Exception as err:  # noqa: BLE001 - handed to ``failed`` (or re-raised) by drop
                    drop(st, err)
                while done:
                    yield done.popleft()
            while done:
                yield done.popleft()
            lost = {id(st): st.request.qid for st, _ in flying.values() if not st.closed and not cancelled(st)}
            if lost:  # the backend ended with windows that never came back: no restart would bring them
                raise RuntimeError(f"backend stopped before queries {list(lost.values())[:5]} were ranked")

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
        candidates = tuple(cands)
        self.strategy.check_fits(k, partial(self._fits, req.query, candidates))
        return _State(index=index, request=req, candidates=candidates, k=k, plan=self.strategy.plan(k),
                      repairs=repairs)

    def _fits(self, query: str, candidates: Sequence[Candidate], m: int) -> bool:
        """Whether a window of the first ``m`` candidates fits the context without shrinking its passages."""
        if self.max_prompt_tokens is None or self.tokenizer is None:
            return True
        prompt = render_prompt(self.spec, query, [c.passage() for c in candidates[:m]], tokenizer=self.tokenizer)
        return _surely_fits(prompt, self.max_prompt_tokens) or (
            prompt_token_count(prompt, self.tokenizer) <= self.max_prompt_tokens)

    def _advance(self, st: _State) -> list[int]:
        """Send the plan the orders of its last step and take its next one, until a step needs the model (its
        window numbers are returned) or the plan returns the final order. Windows of one candidate are answered
        here, without a model call."""
        answers: list[Order] | None = None
        if st.step:
            answers = [st.answers[i] for i in range(len(st.step))]
        while True:
            try:
                step = st.plan.send(answers) if answers is not None else next(st.plan)
            except StopIteration as stop:
                st.order = list(stop.value) + list(range(st.k, len(st.candidates)))
                st.step = []
                return []
            st.step, st.answers, st.first_seq = list(step), {}, st.asked
            st.asked += len(step)
            model = []
            for i, win in enumerate(step):
                if len(win.items) > 1:
                    model.append(st.first_seq + i)
                    continue
                st.answers[i] = tuple(range(len(win.items)))
                start, end = _span(win)
                st.records[st.first_seq + i] = WindowRecord(
                    start=start, end=end, docids=self._docids(st, win.items), raw=None, order=st.answers[i],
                    role=win.role)
            if model:
                st.rounds += 1
                return model
            answers = [st.answers[i] for i in range(len(step))]

    def _docids(self, st: _State, items: Sequence[int]) -> tuple[str, ...]:
        return tuple(st.candidates[i].docid for i in items)

    def _budget(self, n: int) -> int:
        """Token budget of a window of ``n`` candidates: a full ranking's tokens plus slack (and CoT room)."""
        from data_prep.ranking import format_ranking

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

    def _request(self, st: _State, seq: int) -> Any:
        """The backend request of window ``seq`` of ``st``'s current step."""
        win = st.step[seq - st.first_seq]
        spec = self.spec
        passages = [st.candidates[i].passage() for i in win.items]
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
        ids = None  # special-token text in a passage or the query stays text: the ids are built piecewise
        if self.tokenizer is not None and prompt_has_special_text(prompt, self.tokenizer):
            ids = model_input_ids(prompt, self.tokenizer, self.scorer.suffix)
        n = len(win.items)
        return self.scorer.request((st.index, seq), text, special, n, budget=self._budget(n),
                                   seed=zlib.crc32(f"{self.seed}\t{st.request.qid}\t{seq}".encode()),
                                   best_only=win.best_only, token_ids=ids)

    def _fold(self, st: _State, seq: int, out: Any) -> bool:
        """Record window ``seq``'s answer; True when its step is complete (the plan can go on)."""
        i = seq - st.first_seq
        win = st.step[i]
        ans: WindowAnswer = self.scorer.read(out, len(win.items), win.items, best_only=win.best_only)
        st.answers[i] = ans.order
        for kind, count in ans.repairs.items():
            st.repairs[kind] += count
        if ans.logprobs is not None and len(win.items) == st.k:  # a window over the whole top-k
            st.probs = {win.items[p]: math.exp(lp) for p, lp in enumerate(ans.logprobs)}
        start, end = _span(win)
        st.records[seq] = WindowRecord(
            start=start, end=end, docids=self._docids(st, win.items), raw=ans.raw, order=ans.order,
            repairs=ans.repairs, source=ans.source, prompt_tokens=ans.prompt_tokens,
            generated_tokens=ans.generated_tokens, finish_reason=ans.finish_reason, logprobs=ans.logprobs,
            role=win.role, round=st.rounds)
        return len(st.answers) == len(st.step)

    def _result(self, st: _State) -> RerankResult:
        order = st.order if st.order is not None else list(range(len(st.candidates)))
        windows = tuple(st.records[s] for s in sorted(st.records))
        called = [w for w in windows if w.raw is not None]
        docids = tuple(st.candidates[i].docid for i in order)
        probs = st.probs if len(called) == 1 else None  # the top-k was ranked by that one window alone
        scores = rank_scores(len(docids)) if probs is None else probability_scores(order, probs)
        cost = QueryCost(model_calls=len(called), prompt_tokens=sum(w.prompt_tokens for w in called),
                         generated_tokens=sum(w.generated_tokens for w in called), rounds=st.rounds)
        return RerankResult(qid=st.request.qid, docids=docids, scores=scores, windows=windows,
                            repairs=dict(st.repairs), cost=cost, strategy=self.strategy.name,
                            records_cost=self.strategy.records_cost)


def _span(win: Window) -> tuple[int | None, int | None]:
    return win.span if win.span is not None else (None, None)


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


def _surely_fits(prompt: Any, max_tokens: int) -> bool:
    """True when the prompt cannot exceed ``max_tokens`` without tokenizing it: byte-level and byte-fallback
    tokenizers emit at most one token per UTF-8 byte (plus a few special tokens)."""
    text = prompt.text if prompt.text is not None else "".join(m["content"] for m in prompt.messages or ())
    extra = 16 if prompt.text is not None else 16 + 8 * len(prompt.messages or ())
    return len(text.encode("utf-8")) + extra <= max_tokens
