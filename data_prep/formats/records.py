"""What every teacher-format reader shares: the record type, the meta keys, and the checks on candidates.

A reader (one module per format in this package) turns each input record (a JSONL line, an entry of a
JSON list; read by ``data_prep.readers.iter_json_records``) into one :class:`TeacherRecord` holding the
example or the :class:`DataError` rejecting it, so nothing is lost and a caller can stop or count and skip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.readers import Qrels, check_id, iter_json_records
from data_prep.schema import Candidate, DataError, RankingExample

# meta keys the listwise builder understands
META_PASSAGE_REASONS = "passage_reasons"  # {docid: [reason, ...]}: rendered per view with the prompt's ids
META_REASONING_ID_BASE = "reasoning_id_base"  # passage numbers inside reasoning: 0- or 1-based positions
META_TEACHER_ORDERED = "teacher_ordered"  # candidates are listed in teacher order (shuffle before showing)
META_GRADES = "grades"  # {docid: graded relevance} from qrels: the windows' grades for GRPO's ranking reward


@dataclass(frozen=True)
class ReadOptions:
    """What some formats need besides the file: the qrels (``qrels``) and the responses' id base."""

    qrels: Qrels | None = None
    response_id_base: int = 1


@dataclass(frozen=True)
class TeacherFormat:
    """One registry entry: the ``--format`` name, its one-line help, the reader, the auto-detector.

    ``detect(first_record)`` returns why the record looks like this format (logged by ``--format auto``)
    or None; formats that fields cannot tell apart (``qrels``) have none.
    """

    name: str
    description: str
    read: Callable[[Path, ReadOptions], Iterator[TeacherRecord]]
    detect: Callable[[dict[str, Any]], str | None] | None = None


@dataclass
class TeacherRecord:
    """One input record: its place in the file and either the example or the error rejecting it."""

    index: int  # 0-based record number in the file
    line: int | None  # 1-based line number (JSONL), None for entries of one JSON document
    example: RankingExample | None = None
    error: DataError | None = None
    repairs: dict[str, int] = field(default_factory=dict)


def where(path: Path, index: int, line: int | None) -> dict[str, Any]:
    return {"path": str(path) if line is not None else f"{path} (entry #{index})", "line": line}


def require(rec: Any, keys: tuple[str, ...], fix: str) -> None:
    if not isinstance(rec, dict):
        raise DataError(f"expected a JSON object, got {type(rec).__name__}", fix=fix, reason="missing_field")
    missing = [k for k in keys if k not in rec or rec[k] is None]
    if missing:
        raise DataError(f"missing field(s) {missing}", qid=qid_of(rec), fix=fix, reason="missing_field")


def qid_of(rec: Any) -> str | None:
    if isinstance(rec, dict):
        for k in ("qid", "query_id", "id"):
            if rec.get(k) is not None:
                return str(rec[k])
    return None


def candidate(obj: Any, i: int, qid: str | None) -> Candidate:
    if not isinstance(obj, dict) or obj.get("docid") is None or obj.get("text", obj.get("content")) is None:
        raise DataError(f"candidate #{i} needs 'docid' and 'text'", qid=qid, reason="missing_field",
                        fix='each candidate is {"docid": str, "text": str, "title"?: str}')
    score = obj.get("score")
    return Candidate(docid=str(obj["docid"]), text=str(obj.get("text", obj.get("content"))),
                     title=obj.get("title") or None,
                     score=float(score) if isinstance(score, (int, float)) else None)


def validate_candidates(qid: str, query: str, candidates: tuple[Candidate, ...]) -> None:
    """Reject what no ranking prompt can show (empty query, no candidates, empty or duplicate passages) and
    ids no TREC file can hold (empty, whitespace, control characters: :func:`data_prep.readers.check_id`)."""
    check_id(qid, "qid", qid=None if qid is None else str(qid))
    for c in candidates:
        check_id(c.docid, "docid", qid=qid)
    if not str(query).strip():
        raise DataError("empty query", qid=qid, reason="empty_query", fix="give the query text or drop the record")
    if not candidates:
        raise DataError("no candidates", qid=qid, reason="no_candidates", fix="give at least one candidate")
    seen: set[str] = set()
    for c in candidates:
        if not c.passage().strip():
            raise DataError(f"empty passage for docid {c.docid!r}", qid=qid, reason="empty_passage",
                            fix="give the passage text or remove the candidate")
        if c.docid in seen:
            raise DataError(f"docid {c.docid!r} appears twice among the candidates", qid=qid,
                            reason="duplicate_docid", fix="candidate docids must be unique within a query")
        seen.add(c.docid)


def resolve_ranking(qid: str, candidates: tuple[Candidate, ...], ranking: list[Any]) -> tuple[tuple[str, ...],
                                                                                                 Counter[str]]:
    """A full ranking of the candidates' docids: unknown docids are an error; duplicates are dropped and
    candidates the ranking leaves out are appended in candidate order (both counted as repairs)."""
    known = {c.docid for c in candidates}
    repairs: Counter[str] = Counter()
    out: list[str] = []
    seen: set[str] = set()
    for d in ranking:
        d = str(d)
        if d not in known:
            raise DataError(f"ranking names unknown docid {d!r}", qid=qid, reason="unknown_docid",
                            fix="the ranking may only name docids of the record's candidates")
        if d in seen:
            repairs["duplicate"] += 1
            continue
        seen.add(d)
        out.append(d)
    missing = [c.docid for c in candidates if c.docid not in seen]
    if missing:
        repairs["missing"] += len(missing)
        out.extend(missing)
    return tuple(out), repairs


def records(path: Path, convert: Callable[[Any], tuple[RankingExample, Counter[str]]]) -> Iterator[TeacherRecord]:
    """Run ``convert(obj) -> (example, repairs)`` over every record, turning errors into records."""
    for index, line, obj in iter_json_records(path):
        place = where(path, index, line)
        if isinstance(obj, DataError):
            yield TeacherRecord(index=index, line=line, error=obj)
            continue
        try:
            example, repairs = convert(obj)
        except DataError as err:
            yield TeacherRecord(index=index, line=line, error=err.located(qid=qid_of(obj), **place))
            continue
        yield TeacherRecord(index=index, line=line, example=example, repairs=dict(repairs))
