"""The `dear teacher` driver: sliding windows of listwise CoT prompts, K samples each, aggregation,
quality filtering, resumable output and a report that accounts for every input query.

Records. Each window the teacher ranks becomes one canonical teacher record
(:meth:`data_prep.schema.RankingExample.to_json`): ``candidates`` are that window's passages in the order
they were shown, ``ranking`` the teacher's order of their docids, ``reasoning`` that response's chain of
thought (whose ``[i]`` identifiers refer to exactly those candidates). That is the shape of DeAR's
20-passage chain-of-thought training examples, so ``dear prep listwise`` turns each record into a training
example whose reasoning matches its prompt. When the top-k fits one window (the default, ``--top-k`` =
``--window``) there is one record per query, with the query's qid. With several windows each record has
its own qid ``<qid>@<start>-<end>`` (training-data readers reject duplicate qids) and every record carries
``source_qid``, the input query's qid, which resume and qrels use. With ``--records query`` each query instead gets one record
over its whole top-k with the final sliding-window permutation; its per-window reasonings are kept under
``windows`` but not merged into ``reasoning`` (their identifiers refer to different windows), so such
records train rankers without chain of thought. Every window record also carries ``query_ranking``: the
final top-k permutation after all windows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from data_prep.prompts import PromptSpec, render_prompt
from data_prep.ranking import add_repairs, parse_ranking
from data_prep.readers import Qrels
from data_prep.schema import Candidate, DataError, RankingExample, RerankRequest
from data_prep.teacher.aggregate import aggregate
from data_prep.teacher.client import ChatClient, Completion, Rejection, RequestFailed
from data_prep.teacher.pricing import Price
from data_prep.teacher.quality import ndcg_at_10
from data_prep.teacher.resume import JsonlAppender, RequestCache, load_finished, request_key
from data_prep.windows import window_plan

logger = logging.getLogger(__name__)

RECORD_MODES = ("window", "query")
_FINAL_RE = re.compile(r"#+\s*final\s+re-?ranking\s*:?", re.IGNORECASE)


class ProgressLike(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def set_postfix_str(self, s: str, refresh: bool = True) -> Any: ...


def window_qid(qid: str, start: int, end: int) -> str:
    """The qid of one window's record when a query has several: ``<qid>@<start>-<end>``."""
    return f"{qid}@{start}-{end}"


def split_reasoning(text: str, spec: PromptSpec) -> str | None:
    """The chain of thought before the final ranking (``### Final Reranking:`` or ``</think>``)."""
    if not spec.cot:
        return None
    markers = list(_FINAL_RE.finditer(text))
    if markers:
        body = text[: markers[-1].start()]
    elif "</think>" in text:
        body = text[: text.rfind("</think>")]
    else:
        return None
    body = body.replace("<think>", "").strip()
    return body or None


def messages_for(spec: PromptSpec, query: str, passages: list[str]) -> list[dict[str, str]]:
    prompt = render_prompt(spec, query, passages)
    if prompt.messages is not None:
        return [dict(m) for m in prompt.messages]
    return [{"role": "user", "content": prompt.text or ""}]


@dataclass
class Sample:
    completion: Completion
    order: list[int]
    repairs: dict[str, int]
    attempts: int
    cached: bool


@dataclass
class WindowResult:
    start: int
    end: int
    shown: list[Candidate]
    order: list[int]  # 0-based positions in ``shown``
    samples: list[Sample]
    chosen: int
    agreement: list[float]
    reasoning_matches: bool
    failed_samples: list[str]


@dataclass
class QueryFailed(Exception):
    reason: str
    message: str


@dataclass
class TeacherSettings:
    """Flat settings of one run (what the CLI parsed)."""

    spec: PromptSpec
    model: str
    window: int = 20
    stride: int = 10
    top_k: int | None = None
    records: str = "window"
    temperature: float = 0.0
    samples: int = 1
    aggregate: str = "consistency"
    qrels: Qrels | None = None
    min_ndcg: float | None = None
    price: Price | None = None


@dataclass
class RunState:
    repairs: Counter = field(default_factory=Counter)
    failed: list[dict[str, Any]] = field(default_factory=list)
    filtered: list[dict[str, Any]] = field(default_factory=list)
    written_queries: int = 0
    filtered_queries: int = 0
    written_records: int = 0
    failed_samples: Counter = field(default_factory=Counter)
    agreement: list[float] = field(default_factory=list)
    teacher_ndcg: list[float] = field(default_factory=list)
    input_ndcg: list[float] = field(default_factory=list)
    unjudged_records: int = 0


class Teacher:
    def __init__(self, settings: TeacherSettings, client: ChatClient, cache: RequestCache) -> None:
        self.s = settings
        self.client = client
        self.cache = cache
        self.state = RunState()

    # -- one sampled request --------------------------------------------------------------------
    async def _sample(self, messages: list[dict[str, str]], n: int, k: int) -> Sample:
        spec = self.s.spec
        key = request_key({"model": self.s.model, "messages": messages, "temperature": self.s.temperature,
                           "sample": k})
        hit = self.cache.get(key)
        if hit is not None:
            completion, attempts, cached = Completion.from_json(hit), 0, True
            self.client.stats.cached += 1
        else:
            def validate(c: Completion) -> Rejection | None:
                parsed = parse_ranking(c.text, n, base=spec.id_base, cot=spec.cot)
                if not parsed.repairs.get("unparseable"):
                    return None
                if c.finish_reason == "length":  # cut at the token limit: asking again repeats it
                    return Rejection("output_truncated", "the answer hit the completion token limit before "
                                     "its final ranking; raise --max-tokens", retryable=False)
                return Rejection("unparseable", "the answer has no final ranking")

            completion, attempts = await self.client.complete(messages, temperature=self.s.temperature,
                                                              validate=validate)
            self.cache.put(key, completion.to_json())
            cached = False
        parsed = parse_ranking(completion.text, n, base=spec.id_base, cot=spec.cot)
        return Sample(completion, parsed.order, dict(parsed.repairs), attempts, cached)

    # -- one window -----------------------------------------------------------------------------
    async def _window(self, query: str, shown: list[Candidate], start: int, end: int) -> WindowResult:
        messages = messages_for(self.s.spec, query, [c.passage() for c in shown])
        outcomes = await asyncio.gather(
            *(self._sample(messages, len(shown), k) for k in range(self.s.samples)), return_exceptions=True
        )
        ok: list[Sample] = []
        failures: list[RequestFailed] = []
        for o in outcomes:
            if isinstance(o, RequestFailed):
                failures.append(o)
            elif isinstance(o, BaseException):
                raise o
            else:
                ok.append(o)
        if not ok:
            f = failures[0]
            raise QueryFailed(f.reason, f"window {start}-{end}: {f.message} (after {f.attempts} attempts)")
        agg = aggregate([s.order for s in ok], self.s.aggregate)
        for f in failures:
            self.state.failed_samples[f.reason] += 1
        return WindowResult(start, end, shown, agg.order, ok, agg.chosen, agg.agreement, agg.reasoning_matches,
                            [f.reason for f in failures])

    # -- one query ------------------------------------------------------------------------------
    async def run_query(self, req: RerankRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(records to write, filtered records) for one query; raises QueryFailed."""
        s = self.s
        cands = list(req.candidates[: s.top_k or s.window])
        if not cands:
            raise QueryFailed("no_candidates", "the query has no candidates")
        order = list(range(len(cands)))
        results: list[WindowResult] = []
        for start, end in window_plan(len(cands), s.window, s.stride):
            shown_pos = order[start:end]
            res = await self._window(req.query, [cands[i] for i in shown_pos], start, end)
            order[start:end] = [shown_pos[p] for p in res.order]
            results.append(res)
        final = [cands[i].docid for i in order]
        if s.qrels is not None:
            t = ndcg_at_10(req.qid, final, s.qrels)
            i = ndcg_at_10(req.qid, [c.docid for c in cands], s.qrels)
            if t is not None and i is not None:
                self.state.teacher_ndcg.append(t)
                self.state.input_ndcg.append(i)
        if s.records == "query":
            examples = [self._query_record(req, cands, final, results)]
        else:
            examples = [self._window_record(req, res, j, len(results), final) for j, res in enumerate(results)]
        for res in results:
            add_repairs(self.state.repairs, res.samples[res.chosen].repairs)
        keep, dropped = [], []
        for ex in examples:
            rec = ex.to_json()
            if s.qrels is not None:
                score = ndcg_at_10(req.qid, list(ex.ranking), s.qrels)
                rec["ndcg@10"] = score
                if score is None:
                    self.state.unjudged_records += 1
                elif s.min_ndcg is not None and score < s.min_ndcg:
                    dropped.append({"qid": rec["qid"], "source_qid": req.qid, "window": rec.get("window"),
                                    "ndcg@10": score})
                    continue
            keep.append(rec)
        for j, rec in enumerate(keep):
            rec["source_qid"] = req.qid
            rec["group"] = {"index": j, "size": len(keep)}
        return keep, dropped

    def _teacher_meta(self) -> dict[str, Any]:
        return {"model": self.s.model, "prompt": self.s.spec.name, "prompt_version": self.s.spec.version,
                "id_base": self.s.spec.id_base, "temperature": self.s.temperature, "samples": self.s.samples,
                "aggregate": self.s.aggregate}

    def _window_meta(self, res: WindowResult) -> dict[str, Any]:
        chosen = res.samples[res.chosen]
        usage = {"prompt_tokens": sum(x.completion.prompt_tokens for x in res.samples),
                 "completion_tokens": sum(x.completion.completion_tokens for x in res.samples)}
        meta: dict[str, Any] = {
            "raw_response": chosen.completion.text,
            "finish_reason": chosen.completion.finish_reason,
            "repairs": chosen.repairs,
            "usage": usage,
            "attempts": sum(x.attempts for x in res.samples),
        }
        if self.s.samples > 1:
            self.state.agreement.append(res.agreement[res.chosen])
            meta["consistency"] = {
                "chosen": res.chosen,
                "mean_kendall_tau": res.agreement,
                "reasoning_matches_ranking": res.reasoning_matches,
                "failed_samples": res.failed_samples,
            }
            meta["samples"] = [{"raw_response": x.completion.text, "order": x.order, "repairs": x.repairs}
                               for x in res.samples]
        return meta

    def _window_record(self, req: RerankRequest, res: WindowResult, j: int, count: int,
                       final: list[str]) -> RankingExample:
        chosen = res.samples[res.chosen]
        reasoning = split_reasoning(chosen.completion.text, self.s.spec) if res.reasoning_matches else None
        meta = {"teacher": self._teacher_meta(),
                "window": {"index": j, "count": count, "start": res.start, "end": res.end},
                **self._window_meta(res)}
        if reasoning:
            meta["reasoning_id_base"] = self.s.spec.id_base  # how the reasoning numbers the passages
        qid = req.qid
        if count > 1:
            meta["query_ranking"] = final
            qid = window_qid(req.qid, res.start, res.end)
        return RankingExample(qid=qid, query=req.query, candidates=tuple(res.shown),
                              ranking=tuple(res.shown[p].docid for p in res.order), reasoning=reasoning, meta=meta)

    def _query_record(self, req: RerankRequest, cands: list[Candidate], final: list[str],
                      results: list[WindowResult]) -> RankingExample:
        if len(results) == 1:
            return self._window_record(req, results[0], 0, 1, final)
        windows = []
        for res in results:
            w = {"start": res.start, "end": res.end, "docids": [c.docid for c in res.shown],
                 "ranking": [res.shown[p].docid for p in res.order],
                 "reasoning": split_reasoning(res.samples[res.chosen].completion.text, self.s.spec)}
            w.update(self._window_meta(res))
            windows.append(w)
        usage = {k: sum(w["usage"][k] for w in windows) for k in ("prompt_tokens", "completion_tokens")}
        repairs: Counter = Counter()
        for w in windows:
            repairs.update(w["repairs"])
        meta = {"teacher": self._teacher_meta(), "windows": windows, "usage": usage, "repairs": dict(repairs)}
        return RankingExample(qid=req.qid, query=req.query, candidates=tuple(cands), ranking=tuple(final),
                              reasoning=None, meta=meta)


def _cost(settings: TeacherSettings, client: ChatClient) -> float | None:
    if settings.price is None:
        return None
    return settings.price.cost(client.stats.prompt_tokens, client.stats.completion_tokens)


def _postfix(settings: TeacherSettings, client: ChatClient) -> str:
    st = client.stats
    cost = _cost(settings, client)
    return (f"{st.requests_per_second():.2f} req/s, {st.prompt_tokens + st.completion_tokens:,} tok, "
            + (f"${cost:.4f}" if cost is not None else "cost n/a")
            + (f", {sum(st.retries.values())} retries" if st.retries else ""))


async def run_teacher(
    requests: list[RerankRequest],
    settings: TeacherSettings,
    client: ChatClient,
    *,
    out: str | Path,
    cache_path: str | Path | None,
    progress: ProgressLike | None = None,
    concurrency: int = 8,
    report_path: str | Path | None = None,
    report_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Teach every query not yet in ``out``; returns the report (also covering skipped queries).

    With ``report_path`` the report is written there even when the run is interrupted (Ctrl-C), marked
    ``"interrupted": true``; rerunning resumes.
    """
    seen: set[str] = set()
    for r in requests:
        if r.qid in seen:
            raise DataError(f"qid {r.qid!r} appears twice in the input", qid=r.qid,
                            fix="give each query a unique qid (resume and the output are keyed by qid)")
        seen.add(r.qid)
    started = time.monotonic()
    done = load_finished(out)
    resumed = [r.qid for r in requests if r.qid in done]
    pending = [r for r in requests if r.qid not in done]
    if resumed:
        logger.info("resuming: %d of %d queries already in %s", len(resumed), len(requests), out)
    cache = RequestCache(cache_path)
    teacher = Teacher(settings, client, cache)
    writer = JsonlAppender(out)
    queue: asyncio.Queue[RerankRequest] = asyncio.Queue()
    for r in pending:
        queue.put_nowait(r)
    state = teacher.state

    async def worker() -> None:
        while True:
            try:
                req = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                keep, dropped = await teacher.run_query(req)
            except QueryFailed as err:
                state.failed.append({"qid": req.qid, "reason": err.reason, "message": client.redact(err.message)})
            except DataError as err:
                state.failed.append({"qid": req.qid, "reason": err.reason, "message": str(err)})
            except Exception as err:  # noqa: BLE001 -- every query must end written or reported
                logger.exception("qid %s failed unexpectedly", req.qid)
                state.failed.append({"qid": req.qid, "reason": f"error:{type(err).__name__}",
                                     "message": client.redact(str(err))})
            else:
                writer.write_group(keep)
                state.filtered.extend(dropped)
                state.written_records += len(keep)
                if keep:
                    state.written_queries += 1
                else:
                    state.filtered_queries += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix_str(_postfix(settings, client), refresh=False)

    interrupted = True
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(pending) or 1)))))
        interrupted = False
    finally:
        writer.close()
        cache.close()
        report = build_report(settings, client, state, total=len(requests), resumed=len(resumed),
                              elapsed=time.monotonic() - started)
        report["interrupted"] = interrupted
        report.update(report_extra or {})
        if report_path is not None:
            rp = Path(report_path)
            rp.parent.mkdir(parents=True, exist_ok=True)
            rp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def build_report(settings: TeacherSettings, client: ChatClient, state: RunState, *, total: int, resumed: int,
                 elapsed: float) -> dict[str, Any]:
    st = client.stats
    failed_reasons = Counter(f["reason"] for f in state.failed)
    return {
        "queries": {"total": total, "written": state.written_queries, "resumed": resumed,
                    "filtered": state.filtered_queries, "failed": len(state.failed)},
        "records": {"written": state.written_records, "filtered": len(state.filtered),
                    "unjudged": state.unjudged_records},
        "failed": state.failed,
        "failed_by_reason": dict(failed_reasons),
        "filtered": state.filtered,
        "repairs": dict(state.repairs),
        "requests": {"sent": st.requests_sent, "accepted": st.responses_ok, "from_cache": st.cached,
                     "retries": dict(st.retries), "failed": dict(st.failures),
                     "failed_samples": dict(state.failed_samples)},
        "tokens": {"prompt": st.prompt_tokens, "completion": st.completion_tokens,
                   "total": st.prompt_tokens + st.completion_tokens},
        "cost_usd": _cost(settings, client),
        "price_per_1m_tokens": (None if settings.price is None
                                else {"input": settings.price.input, "output": settings.price.output}),
        "quality": {
            "samples": settings.samples, "aggregate": settings.aggregate, "min_ndcg": settings.min_ndcg,
            "mean_consistency_kendall_tau": _mean(state.agreement),
            "teacher_ndcg@10": _mean(state.teacher_ndcg), "input_ndcg@10": _mean(state.input_ndcg),
            "judged_queries": len(state.teacher_ndcg),
        },
        "settings": {"model": settings.model, "prompt": settings.spec.name, "window": settings.window,
                     "stride": settings.stride, "top_k": settings.top_k or settings.window,
                     "records": settings.records, "temperature": settings.temperature},
        "elapsed_s": round(elapsed, 3),
    }
