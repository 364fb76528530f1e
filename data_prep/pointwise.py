"""`dear prep pointwise`: distillation groups (one positive + N negatives) with the teacher's scores.

Inputs people already have:
- teacher scores: TSV/whitespace ``qid docid score`` or JSONL ``{"qid", "docid", "score"}``, from any teacher
  (a cross-encoder, RankLLaMA-13B, an LLM's logits), or computed with ``--teacher-model`` (the model scoring
  is inference and lives in ``inference.teacher_scores``; this package imports no model code);
- the candidates' texts: RankGPT JSON, or a TREC run + corpus + topics (``data_prep.readers``);
- optionally qrels.

Positives: with qrels, every teacher-scored candidate graded ``>= min_rel`` (up to ``max_positives`` per query,
highest teacher score first), and negatives are drawn from the other scored candidates (judged non-relevant
or unjudged). Without qrels the positive is the teacher's top-1 and the rest are negatives (what DeAR's
distillation data amounts to: the student learns the teacher's order). Negatives are sampled without
replacement with a generator seeded by ``(seed, qid, positive docid)``, so a group does not depend on the
order of the files or on which other queries were kept. Each group carries the teacher scores of exactly
its passages, positive first.

Accounting (report.json): every query read is written or dropped with a reason, every score line read is
used or dropped with a reason; ``fail`` raises on the first bad record (file, line, qid, fix), ``skip``
drops and counts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_prep.io.atomic import write_json_atomic, write_jsonl_atomic
from data_prep.readers import Qrels, open_text
from data_prep.report import PrepReport
from data_prep.schema import Candidate, DataError, RerankRequest

logger = logging.getLogger(__name__)

OnError = Literal["fail", "skip"]
TeacherScores = dict[str, dict[str, float]]  # qid -> docid -> score


@dataclass
class PointwiseReport:
    """Two ledgers (``data_prep.report.PrepReport``): queries and teacher-score lines, each with
    ``read == written + dropped``; groups per split are the queries' ``outputs``."""

    queries: PrepReport = field(default_factory=PrepReport)
    score_lines: PrepReport = field(default_factory=PrepReport)
    candidates_unscored: int = 0
    positive_source: Counter[str] = field(default_factory=Counter)

    def check(self) -> None:
        self.queries.check()
        self.score_lines.check()

    def to_json(self) -> dict[str, Any]:
        return {
            "queries": self.queries.to_json(),
            "score_lines": self.score_lines.to_json(),
            "groups": {k.removesuffix("_groups"): v for k, v in sorted(self.queries.outputs.items())},
            "candidates_unscored": self.candidates_unscored,
            "positive_source": dict(self.positive_source),
        }


# --------------------------------------------------------------------------------------------- teacher scores

def _parse_score_line(line: str, path: str, lineno: int, is_jsonl: bool) -> tuple[str, str, float]:
    if is_jsonl:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed JSON: {err.msg}", path=path, line=lineno, reason="malformed",
                            fix='one {"qid": ..., "docid": ..., "score": ...} object per line') from err
        if not isinstance(rec, dict) or not {"qid", "docid", "score"} <= set(rec):
            raise DataError("record lacks 'qid', 'docid' or 'score'", path=path, line=lineno, reason="malformed",
                            fix='one {"qid": ..., "docid": ..., "score": ...} object per line')
        qid, docid, raw = str(rec["qid"]), str(rec["docid"]), rec["score"]
    else:
        parts = line.split()
        if len(parts) != 3:
            raise DataError(f"expected 3 columns 'qid docid score', got {len(parts)}", path=path, line=lineno,
                            reason="malformed", fix="one 'qid<TAB>docid<TAB>score' per line")
        qid, docid, raw = parts
    try:
        score = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"score {raw!r} is not a number", path=path, line=lineno, qid=qid, reason="malformed",
                        fix="scores are real numbers (logits or probabilities)") from None
    if score != score or score in (float("inf"), float("-inf")):
        raise DataError(f"score {raw!r} is not finite", path=path, line=lineno, qid=qid, reason="malformed",
                        fix="drop or recompute the pair's score")
    return qid, docid, score


def read_teacher_scores(path: str | Path, report: PointwiseReport, *, on_error: OnError = "fail",
                        known: dict[str, set[str]] | None = None) -> TeacherScores:
    """Teacher scores keyed by qid then docid.

    ``known`` (qid -> candidate docids with text) checks each line against the candidates: a line for a query
    that is not among the candidates is counted as ``unknown_qid`` (a teacher file may cover more queries);
    a docid the query's candidates lack is an error in ``fail`` mode (its text is missing).
    """
    p = str(path)
    is_jsonl = p.endswith((".jsonl", ".jsonl.gz", ".json"))
    scores: TeacherScores = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or (not is_jsonl and line.lstrip().startswith("#")):
                continue
            ledger = report.score_lines
            ledger.record_read()
            try:
                qid, docid, score = _parse_score_line(line, p, lineno, is_jsonl)
                if known is not None and qid not in known:
                    ledger.record_dropped("unknown_qid", line=lineno, qid=qid,
                                          message="query is not among the candidates")
                    continue
                if known is not None and docid not in known[qid]:
                    raise DataError(f"teacher scored docid {docid!r}, which is not among the query's candidates",
                                    path=p, line=lineno, qid=qid, reason="unknown_docid",
                                    fix="pass the candidates (RankGPT JSON or run + corpus) the teacher scored")
                if docid in scores.get(qid, {}):
                    raise DataError(f"second score for docid {docid!r}", path=p, line=lineno, qid=qid,
                                    reason="duplicate", fix="keep one score per (qid, docid)")
            except DataError as err:
                if on_error == "fail":
                    raise
                ledger.record_dropped(err.reason, message=err.message, line=lineno, qid=err.qid)
                continue
            scores.setdefault(qid, {})[docid] = score
            ledger.record_written()
    return scores


# --------------------------------------------------------------------------------------------------- groups

def _group_rng(seed: int, qid: str, positive: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{qid}\x1f{positive}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_groups(
    request: RerankRequest,
    scores: dict[str, float],
    *,
    num_negatives: int,
    seed: int = 0,
    qrels: dict[str, int] | None = None,
    min_rel: int = 1,
    max_positives: int = 1,
    negative_depth: int | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The distillation groups of one query and where its positives came from (``qrels``/``teacher_top1``).

    Raises :class:`DataError` (reason ``no_teacher_scores``, ``no_positive`` or ``too_few_negatives``) when the
    query can give no group.
    """
    pool = [c for c in request.candidates if c.docid in scores]
    if not pool:
        raise DataError("no candidate has a teacher score", qid=request.qid, reason="no_teacher_scores",
                        fix="score the query's candidates with the teacher, or drop it")
    # teacher order, ties broken by first-stage order (stable sort)
    by_teacher = sorted(pool, key=lambda c: -scores[c.docid])
    if qrels is not None:
        positives = [c for c in by_teacher if qrels.get(c.docid, 0) >= min_rel]
        if not positives:
            raise DataError(f"no teacher-scored candidate is judged >= {min_rel}", qid=request.qid,
                            reason="no_positive", fix="omit --qrels to use the teacher's top-1 as the positive")
        source = "qrels"
        negatives_all = [c for c in by_teacher if qrels.get(c.docid, 0) < min_rel]
    else:
        positives = by_teacher[:1]
        source = "teacher_top1"
        negatives_all = by_teacher[1:]
    if negative_depth is not None:
        negatives_all = negatives_all[:negative_depth]
    if len(negatives_all) < num_negatives:
        raise DataError(f"{len(negatives_all)} negatives available, {num_negatives} needed", qid=request.qid,
                        reason="too_few_negatives", fix="lower --negatives or raise --negative-depth")
    groups = []
    for pos in positives[:max_positives]:
        sampled = _group_rng(seed, request.qid, pos.docid).sample(negatives_all, num_negatives)
        members: list[Candidate] = [pos, *sampled]
        groups.append({
            "qid": request.qid,
            "query": request.query,
            "docids": [c.docid for c in members],
            "passages": [{"title": c.title or "", "text": c.text} for c in members],
            "teacher_scores": [scores[c.docid] for c in members],
            "positive_source": source,
        })
    return groups, source


def _split(qids: list[str], eval_queries: int, seed: int) -> set[str]:
    if eval_queries <= 0:
        return set()
    if eval_queries >= len(qids):
        raise DataError(f"--eval-queries {eval_queries} leaves no training query ({len(qids)} written)",
                        fix="hold out fewer queries")
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return set(order[:eval_queries])


def prep_pointwise(
    out_dir: str | Path,
    requests: list[RerankRequest],
    *,
    teacher_scores: str | Path,
    qrels: Qrels | None = None,
    num_negatives: int = 15,
    seed: int = 0,
    min_rel: int = 1,
    max_positives: int = 1,
    negative_depth: int | None = None,
    eval_queries: int = 0,
    on_error: OnError = "fail",
    sources: dict[str, Any] | None = None,
) -> PointwiseReport:
    """Write ``out_dir/{train,eval}.jsonl`` and ``report.json`` (atomically); return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PointwiseReport()
    known = {r.qid: {c.docid for c in r.candidates} for r in requests}
    if len(known) != len(requests):
        dup = Counter(r.qid for r in requests).most_common(1)[0][0]
        raise DataError("the candidates list a query twice", qid=dup, fix="merge or drop the duplicate query")
    scores = read_teacher_scores(teacher_scores, report, on_error=on_error, known=known)

    kept: list[tuple[str, list[dict[str, Any]]]] = []
    for req in requests:
        report.queries.record_read()
        q_scores = scores.get(req.qid, {})
        report.candidates_unscored += sum(1 for c in req.candidates if c.docid not in q_scores)
        try:
            groups, source = build_groups(
                req, q_scores, num_negatives=num_negatives, seed=seed,
                qrels=None if qrels is None else qrels.get(req.qid, {}), min_rel=min_rel,
                max_positives=max_positives, negative_depth=negative_depth)
        except DataError as err:
            if on_error == "fail":
                raise err.located(path=str(teacher_scores)) from None
            report.queries.record_dropped(err.reason, message=err.message, qid=req.qid)
            continue
        report.queries.record_written()
        report.positive_source[source] += 1
        kept.append((req.qid, groups))

    held_out = _split([q for q, _ in kept], eval_queries, seed)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for qid, groups in kept:
        splits["eval" if qid in held_out else "train"].extend(groups)
    for split, groups in splits.items():
        report.queries.outputs[f"{split}_groups"] = write_jsonl_atomic(out / f"{split}.jsonl", groups)
    report.check()
    payload = {
        "task": "pointwise",
        **report.to_json(),
        "settings": {"num_negatives": num_negatives, "seed": seed, "min_rel": min_rel,
                     "max_positives": max_positives, "negative_depth": negative_depth,
                     "eval_queries": eval_queries, "on_error": on_error,
                     "positives": "qrels" if qrels is not None else "teacher_top1"},
        "sources": sources or {},
    }
    write_json_atomic(out / "report.json", payload)
    logger.info("pointwise prep: %d/%d queries written, %d train / %d eval groups -> %s", report.queries.written,
                report.queries.read, len(splits["train"]), len(splits["eval"]), out)
    return report


def read_groups(path: str | Path) -> list[dict[str, Any]]:
    """Groups written by :func:`prep_pointwise`, each checked (same number of passages and teacher scores)."""
    from data_prep.readers import iter_jsonl

    groups = []
    for lineno, rec in iter_jsonl(path):
        missing = {"qid", "query", "passages", "teacher_scores"} - set(rec)
        if missing:
            raise DataError(f"group lacks {sorted(missing)}", path=str(path), line=lineno,
                            fix="build the file with `dear prep pointwise`")
        if len(rec["passages"]) != len(rec["teacher_scores"]) or len(rec["passages"]) < 2:
            raise DataError("a group needs >= 2 passages and one teacher score per passage", path=str(path),
                            line=lineno, qid=str(rec["qid"]), fix="rebuild it with `dear prep pointwise`")
        groups.append(rec)
    return groups
