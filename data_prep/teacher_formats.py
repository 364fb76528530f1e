"""Readers for the teacher outputs people have, all turned into :class:`RankingExample` streams.

One reader per format; each yields one :class:`TeacherRecord` per input record (a line of a JSONL file,
an entry of a JSON list), holding either the example or the :class:`DataError` that rejects it, so a
caller can stop at the first error or count and skip. Nothing is lost: every input record comes back.

Formats:

- ``jsonl``: canonical ``{"qid","query","candidates":[{"docid","text","title"?}],"ranking":[docid...],
  "reasoning"?}`` (what :meth:`RankingExample.to_json` writes).
- ``rankgpt``: RankGPT JSON ``[{"query","hits":[{"docid","content",...}]}]`` whose hit order is the
  teacher's ranking.
- ``rankllm``: rank_llm / RankZephyr conversations (``{"conversations":[{"from","value"}...]}`` or
  ``{"messages":[{"role","content"}...]}``): a user prompt with ``[i] passage`` lines and an answer
  ``[a] > [b] > ...`` (1-based).
- ``reason-to-rank``: Reason-to-Rank records (``unsorted_docs`` in prompt order, ``re_rank_id`` the 1-based
  teacher permutation over them, ``sorted_docids`` the docids in teacher order, ``reason.ranked_passages``
  per-passage reasons).
- ``responses``: ``{"qid","query","candidates":[...],"response": raw teacher text}``; the ranking is parsed
  with :func:`data_prep.ranking.parse_ranking` and every repair counted.
- ``qrels``: judgments as teacher: RankGPT JSON or canonical JSONL candidates plus a TREC qrels file;
  candidates are ordered by grade, first-stage order kept within a grade.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.ranking import parse_ranking
from data_prep.readers import Qrels, check_input_file, open_text
from data_prep.schema import Candidate, DataError, RankingExample

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "rankgpt", "rankllm", "reason-to-rank", "responses", "qrels")

# meta keys the listwise builder understands
META_PASSAGE_REASONS = "passage_reasons"  # {docid: [reason, ...]}: rendered per view with the prompt's ids
META_REASONING_ID_BASE = "reasoning_id_base"  # passage numbers inside reasoning: 0- or 1-based positions
META_TEACHER_ORDERED = "teacher_ordered"  # candidates are listed in teacher order (shuffle before showing)


@dataclass
class TeacherRecord:
    """One input record: its place in the file and either the example or the error rejecting it."""

    index: int  # 0-based record number in the file
    line: int | None  # 1-based line number (JSONL), None for entries of one JSON document
    example: RankingExample | None = None
    error: DataError | None = None
    repairs: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helpers


def _iter_json_records(path: Path) -> Iterator[tuple[int, int | None, Any]]:
    """(index, line, object-or-DataError) for a JSONL file, or for the entries of a JSON list file."""
    with open_text(path) as f:
        head = f.read(4096)
        f.seek(0)
        if head.lstrip().startswith("["):
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON: {err.msg} at column {err.colno}", path=str(path),
                                line=err.lineno, fix="the file must be one valid JSON list",
                                reason="malformed_json") from err
            if not isinstance(data, list):
                raise DataError("expected a JSON list of records", path=str(path), reason="malformed_json",
                                fix="write a JSON list or one JSON object per line")
            for i, item in enumerate(data):
                yield i, None, item
            return
        index = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj: Any = json.loads(line)
            except json.JSONDecodeError as err:
                obj = DataError(f"malformed JSON: {err.msg} at column {err.colno}", path=str(path), line=lineno,
                                fix="repair or remove the line", reason="malformed_json")
            yield index, lineno, obj
            index += 1


def _where(path: Path, index: int, line: int | None) -> dict[str, Any]:
    return {"path": str(path) if line is not None else f"{path} (entry #{index})", "line": line}


def _require(rec: Any, keys: tuple[str, ...], fix: str) -> None:
    if not isinstance(rec, dict):
        raise DataError(f"expected a JSON object, got {type(rec).__name__}", fix=fix, reason="missing_field")
    missing = [k for k in keys if k not in rec or rec[k] is None]
    if missing:
        raise DataError(f"missing field(s) {missing}", qid=_qid_of(rec), fix=fix, reason="missing_field")


def _qid_of(rec: Any) -> str | None:
    if isinstance(rec, dict):
        for k in ("qid", "query_id", "id"):
            if rec.get(k) is not None:
                return str(rec[k])
    return None


def _candidate(obj: Any, i: int, qid: str | None) -> Candidate:
    if not isinstance(obj, dict) or obj.get("docid") is None or obj.get("text", obj.get("content")) is None:
        raise DataError(f"candidate #{i} needs 'docid' and 'text'", qid=qid, reason="missing_field",
                        fix='each candidate is {"docid": str, "text": str, "title"?: str}')
    score = obj.get("score")
    return Candidate(docid=str(obj["docid"]), text=str(obj.get("text", obj.get("content"))),
                     title=obj.get("title") or None,
                     score=float(score) if isinstance(score, (int, float)) else None)


def validate_candidates(qid: str, query: str, candidates: tuple[Candidate, ...]) -> None:
    """Reject what no ranking prompt can show: empty query, no candidates, empty or duplicate passages."""
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


def _records(path: Path, convert) -> Iterator[TeacherRecord]:
    """Run ``convert(obj) -> (example, repairs)`` over every record, turning errors into records."""
    for index, line, obj in _iter_json_records(path):
        where = _where(path, index, line)
        if isinstance(obj, DataError):
            yield TeacherRecord(index=index, line=line, error=obj)
            continue
        try:
            example, repairs = convert(obj)
        except DataError as err:
            yield TeacherRecord(index=index, line=line, error=err.located(qid=_qid_of(obj), **where))
            continue
        yield TeacherRecord(index=index, line=line, example=example, repairs=dict(repairs))


# --------------------------------------------------------------------------------------------- readers


def read_canonical(path: str | Path) -> Iterator[TeacherRecord]:
    fix = 'each line is {"qid", "query", "candidates": [{"docid", "text"}], "ranking": [docid, ...]}'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        _require(rec, ("qid", "query", "candidates", "ranking"), fix)
        qid = str(rec["qid"])
        if not isinstance(rec["candidates"], list) or not isinstance(rec["ranking"], list):
            raise DataError("'candidates' and 'ranking' must be lists", qid=qid, reason="missing_field", fix=fix)
        cands = tuple(_candidate(c, i, qid) for i, c in enumerate(rec["candidates"]))
        validate_candidates(qid, rec["query"], cands)
        ranking, repairs = resolve_ranking(qid, cands, rec["ranking"])
        meta: dict[str, Any] = {}
        if rec.get("reasoning"):
            meta[META_REASONING_ID_BASE] = int(rec.get(META_REASONING_ID_BASE, 0))
        if rec.get("source_qid") is not None:  # window records of one query (from `dear teacher`)
            meta["source_qid"] = str(rec["source_qid"])
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands, ranking=ranking,
                              reasoning=rec.get("reasoning") or None, meta=meta), repairs

    return _records(Path(path), convert)


def read_rankgpt(path: str | Path) -> Iterator[TeacherRecord]:
    """RankGPT JSON whose hit order is the teacher's ranking (e.g. RankGPT's own reranked output)."""
    fix = 'each entry is {"query": str, "hits": [{"docid", "content", "qid"?}, ...]}'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        _require(rec, ("query", "hits"), fix)
        qid, cands = _rankgpt_candidates(rec, fix)
        validate_candidates(qid, rec["query"], cands)
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands,
                              ranking=tuple(c.docid for c in cands),
                              meta={META_TEACHER_ORDERED: True}), Counter()

    return _records(Path(path), convert)


def _rankgpt_candidates(rec: dict[str, Any], fix: str) -> tuple[str, tuple[Candidate, ...]]:
    hits = rec["hits"]
    if not isinstance(hits, list):
        raise DataError("'hits' must be a list", qid=_qid_of(rec), reason="missing_field", fix=fix)
    qid = rec.get("qid", hits[0].get("qid") if hits and isinstance(hits[0], dict) else None)
    if qid is None:
        raise DataError("no qid (neither the entry nor its first hit has 'qid')", reason="missing_field", fix=fix)
    qid = str(qid)
    return qid, tuple(_candidate(h, i, qid) for i, h in enumerate(hits))


_PASSAGE_LINE = re.compile(r"^\[(\d+)\] ?", re.MULTILINE)
_QUERY_PATTERNS = (
    re.compile(r"relevance to the search query: (.*?)\.\n", re.DOTALL),
    re.compile(r"relevance to query: (.*?)\.\n", re.DOTALL),
    re.compile(r"Search Query: (.*?)\.\s*\n", re.DOTALL),
)


def _messages(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) pairs of a ShareGPT (``conversations``/from/value) or OpenAI (``messages``) record."""
    turns = rec.get("conversations", rec.get("messages"))
    if not isinstance(turns, list):
        raise DataError("no 'conversations' or 'messages' list", reason="missing_field",
                        fix='use rank_llm\'s {"conversations": [{"from", "value"}, ...]}')
    roles = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
    out = []
    for t in turns:
        if not isinstance(t, dict):
            raise DataError("a conversation turn is not an object", reason="missing_field",
                            fix='turns are {"from", "value"} or {"role", "content"}')
        role = t.get("from", t.get("role"))
        text = t.get("value", t.get("content"))
        if role not in roles or not isinstance(text, str):
            raise DataError(f"turn with unknown role {role!r} or no text", reason="missing_field",
                            fix="roles are system/human/gpt or system/user/assistant")
        out.append((roles[role], text))
    return out


def parse_rankllm_prompt(text: str) -> tuple[str, list[str]]:
    """(query, passages in prompt order) from a rank_llm / RankGPT single-turn listwise user prompt."""
    query = None
    for pat in _QUERY_PATTERNS:
        m = pat.search(text)
        if m:
            query = m.group(1).strip()
            break
    if query is None:
        raise DataError("cannot find the query in the prompt", reason="missing_field",
                        fix="the user turn must say '... relevance to the search query: {query}.'")
    tail = text.rfind("Search Query:")
    body = text[: tail if tail >= 0 else len(text)]
    marks = list(_PASSAGE_LINE.finditer(body))
    passages: list[str] = []
    for k, m in enumerate(marks):
        if int(m.group(1)) != k + 1:
            raise DataError(f"passage identifiers out of sequence at [{m.group(1)}] (expected [{k + 1}])",
                            reason="malformed_prompt", fix="passages must be numbered [1], [2], ... in order")
        end = marks[k + 1].start() if k + 1 < len(marks) else len(body)
        passages.append(body[m.end():end].strip())
    if not passages:
        raise DataError("no '[i] passage' lines in the prompt", reason="missing_field",
                        fix="the user turn must list passages as '[1] text' lines")
    return query, passages


def read_rankllm(path: str | Path) -> Iterator[TeacherRecord]:
    """rank_llm / RankZephyr training conversations: system, user prompt, assistant ``[a] > [b]`` answer."""

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        if not isinstance(rec, dict):
            raise DataError("expected a JSON object", reason="missing_field", fix="one conversation per line")
        turns = _messages(rec)
        users = [t for r, t in turns if r == "user"]
        answers = [t for r, t in turns if r == "assistant"]
        if not users or not answers:
            raise DataError("needs a user prompt and an assistant answer", reason="missing_field",
                            qid=_qid_of(rec), fix="a record is system?, user (passages), assistant (ranking)")
        query, passages = parse_rankllm_prompt(users[-1])
        qid = _qid_of(rec)
        if qid is None:
            raise DataError("no record id ('qid' or 'id')", reason="missing_field", fix="give each record an id")
        docids = rec.get("docids")
        if isinstance(docids, list) and len(docids) == len(passages):
            ids = [str(d) for d in docids]
        else:
            ids = [str(i + 1) for i in range(len(passages))]  # the prompt's identifiers
        cands = tuple(Candidate(docid=d, text=p) for d, p in zip(ids, passages, strict=True))
        validate_candidates(qid, query, cands)
        parsed = parse_ranking(answers[-1], len(cands), base=1)
        return RankingExample(qid=qid, query=query, candidates=cands,
                              ranking=tuple(cands[i].docid for i in parsed.order)), Counter(parsed.repairs)

    return _records(Path(path), convert)


def read_reason_to_rank(path: str | Path) -> Iterator[TeacherRecord]:
    """Reason-to-Rank records.

    ``unsorted_docs`` is the passage list in prompt order (BM25 order in the test files);
    ``re_rank_id[k]`` is the 1-based position in ``unsorted_docs`` of the teacher's k-th passage and
    ``sorted_docids[k]`` is that passage's docid, so ``sorted_docids`` is the teacher ranking as docids.
    ``reason.ranked_passages[].identifier`` uses the same 1-based positions.
    """
    fix = "a Reason-to-Rank record has qid, query, unsorted_docs, sorted_docids and re_rank_id"

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        _require(rec, ("qid", "query", "unsorted_docs", "sorted_docids", "re_rank_id"), fix)
        qid = str(rec["qid"])
        docs, docids, perm = rec["unsorted_docs"], rec["sorted_docids"], rec["re_rank_id"]
        n = len(docs) if isinstance(docs, list) else -1
        if not (isinstance(docids, list) and isinstance(perm, list) and len(docids) == n == len(perm)):
            raise DataError("unsorted_docs, sorted_docids and re_rank_id must be lists of one length",
                            qid=qid, reason="missing_field", fix=fix)
        try:
            positions = [int(p) - 1 for p in perm]
        except (TypeError, ValueError):
            raise DataError("re_rank_id must hold integers", qid=qid, reason="bad_permutation", fix=fix) from None
        if sorted(positions) != list(range(n)):
            raise DataError(f"re_rank_id {perm} is not a permutation of 1..{n}", qid=qid,
                            reason="bad_permutation", fix="re_rank_id lists every position 1..n once")
        docid_at = [""] * n
        for k, pos in enumerate(positions):
            docid_at[pos] = str(docids[k])
        cands = tuple(Candidate(docid=docid_at[i], text=str(docs[i])) for i in range(n))
        validate_candidates(qid, rec["query"], cands)
        reasons: dict[str, list[str]] = {}
        for p in (rec.get("reason") or {}).get("ranked_passages") or []:
            if not isinstance(p, dict):
                continue
            try:
                pos = int(p.get("identifier")) - 1
            except (TypeError, ValueError):
                continue
            parts = [str(p.get(k) or "").strip() for k in ("direct_reason", "listwise_reason")]
            if 0 <= pos < n and any(parts):
                reasons[docid_at[pos]] = [t for t in parts if t]
        # reasons name other passages by their 1-based position ("more relevant than passages 1 and 3")
        meta: dict[str, Any] = {META_PASSAGE_REASONS: reasons, META_REASONING_ID_BASE: 1} if reasons else {}
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands,
                              ranking=tuple(str(d) for d in docids), meta=meta), Counter()

    return _records(Path(path), convert)


def split_response(text: str) -> str | None:
    """The reasoning part of a raw teacher response: inside ``<think>``, or before the final marker."""
    end = text.rfind("</think>")
    if end >= 0:
        start = text.find("<think>")
        body = text[start + len("<think>") if 0 <= start < end else 0 : end]
        return body.strip() or None
    m = list(re.finditer(r"#+\s*final\s+re-?ranking\s*:?", text, re.IGNORECASE))
    if m:
        return text[: m[-1].start()].strip() or None
    return None


def read_responses(path: str | Path, *, id_base: int = 1) -> Iterator[TeacherRecord]:
    """Raw teacher responses with their candidates: the ranking is parsed and repaired."""
    fix = 'each line is {"qid", "query", "candidates": [{"docid", "text"}], "response": str}'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        _require(rec, ("qid", "query", "candidates", "response"), fix)
        qid = str(rec["qid"])
        if not isinstance(rec["candidates"], list):
            raise DataError("'candidates' must be a list", qid=qid, reason="missing_field", fix=fix)
        cands = tuple(_candidate(c, i, qid) for i, c in enumerate(rec["candidates"]))
        validate_candidates(qid, rec["query"], cands)
        base = int(rec.get("id_base", id_base))
        text = str(rec["response"])
        # an opened <think> means digits before the final ranking are reasoning, never the ranking
        parsed = parse_ranking(text, len(cands), base=base, cot="<think>" in text)
        reasoning = split_response(text)
        meta: dict[str, Any] = {META_REASONING_ID_BASE: base} if reasoning else {}
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands,
                              ranking=tuple(cands[i].docid for i in parsed.order), reasoning=reasoning,
                              meta=meta), Counter(parsed.repairs)

    return _records(Path(path), convert)


def graded_order(candidates: tuple[Candidate, ...], grades: dict[str, int]) -> tuple[str, ...]:
    """Docids by decreasing grade, first-stage order kept within a grade; unjudged counts as 0."""
    order = sorted(range(len(candidates)), key=lambda i: -grades.get(candidates[i].docid, 0))
    return tuple(candidates[i].docid for i in order)


def read_judged(path: str | Path, qrels: Qrels) -> Iterator[TeacherRecord]:
    """Judgments as teacher: candidates from RankGPT JSON or canonical JSONL, ranked by their qrels grade."""
    fix = 'RankGPT {"query", "hits"} entries or canonical {"qid", "query", "candidates"} lines'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        if isinstance(rec, dict) and "hits" in rec:
            _require(rec, ("query", "hits"), fix)
            qid, cands = _rankgpt_candidates(rec, fix)
        else:
            _require(rec, ("qid", "query", "candidates"), fix)
            qid = str(rec["qid"])
            if not isinstance(rec["candidates"], list):
                raise DataError("'candidates' must be a list", qid=qid, reason="missing_field", fix=fix)
            cands = tuple(_candidate(c, i, qid) for i, c in enumerate(rec["candidates"]))
        validate_candidates(qid, rec["query"], cands)
        if qid not in qrels:
            raise DataError("query has no judgments in the qrels file", qid=qid, reason="no_judgments",
                            fix="pass the qrels that match the candidates, or drop the query")
        grades = qrels[qid]
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands,
                              ranking=graded_order(cands, grades),
                              meta={"judged": sum(c.docid in grades for c in cands)}), Counter()

    return _records(Path(path), convert)


# --------------------------------------------------------------------------------------------- detection


def _first_record(path: Path, limit: int = 20) -> Any:
    with open_text(path) as f:
        head = f.read(1 << 16)
    stripped = head.lstrip()
    if stripped.startswith("["):
        # RankGPT JSON (or a JSON list of records): look at the start of the first entry.
        with open_text(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON: {err.msg}", path=str(path), line=err.lineno,
                                reason="malformed_json", fix="the file must be valid JSON or JSONL") from err
        return data[0] if isinstance(data, list) and data else None
    for n, line in enumerate(head.split("\n")):
        if n >= limit:
            break
        if line.strip():
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def detect_format(path: str | Path, *, qrels_given: bool = False) -> tuple[str, str]:
    """(format, why) for a teacher file, by the fields of its first readable record."""
    if qrels_given:
        return "qrels", "--qrels was given: judgments are the teacher"
    rec = _first_record(Path(path))
    if not isinstance(rec, dict):
        raise DataError("cannot detect the teacher format: no readable JSON record at the start",
                        path=str(path), reason="unknown_format", fix="pass --format explicitly")
    keys = set(rec)
    if "hits" in keys:
        return "rankgpt", "entries have 'query' and 'hits' (RankGPT JSON; hit order is the teacher order)"
    if "conversations" in keys or "messages" in keys:
        return "rankllm", "records hold a 'conversations'/'messages' list (rank_llm / RankZephyr)"
    if {"re_rank_id", "unsorted_docs"} <= keys:
        return "reason-to-rank", "records have 're_rank_id' and 'unsorted_docs' (Reason-to-Rank)"
    if "response" in keys and "candidates" in keys:
        return "responses", "records have 'candidates' and a raw 'response' text"
    if "candidates" in keys and "ranking" in keys:
        return "jsonl", "records have 'candidates' and 'ranking' (canonical JSONL)"
    raise DataError(f"cannot detect the teacher format from fields {sorted(keys)}", path=str(path),
                    reason="unknown_format", fix=f"pass --format, one of {list(FORMATS)}")


def read_teacher(path: str | Path, fmt: str = "auto", *, qrels: Qrels | None = None,
                 response_id_base: int = 1) -> tuple[str, Iterator[TeacherRecord]]:
    """(the format used, the record stream) for a teacher file."""
    p = check_input_file(path, "teacher file")
    if p.stat().st_size == 0:
        raise DataError("the teacher file is empty", path=str(p), reason="empty_file",
                        fix="pass the file your teacher run wrote (`dear teacher --out`); this one holds no records")
    if fmt == "auto":
        fmt, why = detect_format(p, qrels_given=qrels is not None)
        logger.info("--format auto: reading %s as %r (%s)", p, fmt, why)
    if qrels is not None and fmt != "qrels":
        raise DataError(f"--qrels makes judgments the teacher, but --format is {fmt!r}",
                        fix="use --format qrels (or auto), or leave out --qrels")
    if fmt == "jsonl":
        return fmt, read_canonical(p)
    if fmt == "rankgpt":
        return fmt, read_rankgpt(p)
    if fmt == "rankllm":
        return fmt, read_rankllm(p)
    if fmt == "reason-to-rank":
        return fmt, read_reason_to_rank(p)
    if fmt == "responses":
        return fmt, read_responses(p, id_base=response_id_base)
    if fmt == "qrels":
        if qrels is None:
            raise DataError("--format qrels needs --qrels FILE", fix="pass the TREC qrels file with --qrels")
        return fmt, read_judged(p, qrels)
    raise DataError(f"unknown teacher format {fmt!r}", fix=f"use auto or one of {list(FORMATS)}")
