"""``jsonl``: the canonical record, what :meth:`RankingExample.to_json` and `dear teacher` write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.formats.records import (
    META_REASONING_ID_BASE,
    ReadOptions,
    TeacherFormat,
    TeacherRecord,
    candidate,
    records,
    require,
    resolve_ranking,
    validate_candidates,
)
from data_prep.schema import DataError, RankingExample


def read_canonical(path: str | Path) -> Iterator[TeacherRecord]:
    fix = 'each line is {"qid", "query", "candidates": [{"docid", "text"}], "ranking": [docid, ...]}'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        require(rec, ("qid", "query", "candidates", "ranking"), fix)
        qid = str(rec["qid"])
        if not isinstance(rec["candidates"], list) or not isinstance(rec["ranking"], list):
            raise DataError("'candidates' and 'ranking' must be lists", qid=qid, reason="missing_field", fix=fix)
        cands = tuple(candidate(c, i, qid) for i, c in enumerate(rec["candidates"]))
        validate_candidates(qid, rec["query"], cands)
        ranking, repairs = resolve_ranking(qid, cands, rec["ranking"])
        meta: dict[str, Any] = {}
        if rec.get("reasoning"):
            meta[META_REASONING_ID_BASE] = int(rec.get(META_REASONING_ID_BASE, 0))
        if rec.get("source_qid") is not None:  # window records of one query (from `dear teacher`)
            meta["source_qid"] = str(rec["source_qid"])
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands, ranking=ranking,
                              reasoning=rec.get("reasoning") or None, meta=meta), repairs

    return records(Path(path), convert)


def _detect(rec: dict[str, Any]) -> str | None:
    if "candidates" in rec and "ranking" in rec:
        return "records have 'candidates' and 'ranking' (canonical JSONL)"
    return None


def _read(path: Path, options: ReadOptions) -> Iterator[TeacherRecord]:
    return read_canonical(path)


FORMAT = TeacherFormat(
    name="jsonl",
    description='{"qid","query","candidates":[{"docid","text","title"?}],"ranking":[docid,...],"reasoning"?}',
    read=_read,
    detect=_detect,
)
