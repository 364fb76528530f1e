"""``rankgpt``: RankGPT JSON ``[{"query","hits":[{"docid","content",...}]}]`` whose hit order is the teacher's
ranking (shown to the model in a seeded shuffle, so the target is not the identity).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.formats.records import (
    META_TEACHER_ORDERED,
    ReadOptions,
    TeacherFormat,
    TeacherRecord,
    candidate,
    qid_of,
    records,
    require,
    validate_candidates,
)
from data_prep.schema import Candidate, DataError, RankingExample


def read_rankgpt(path: str | Path) -> Iterator[TeacherRecord]:
    """RankGPT JSON whose hit order is the teacher's ranking (e.g. RankGPT's own reranked output)."""
    fix = 'each entry is {"query": str, "hits": [{"docid", "content", "qid"?}, ...]}'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        require(rec, ("query", "hits"), fix)
        qid, cands = rankgpt_candidates(rec, fix)
        validate_candidates(qid, rec["query"], cands)
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands,
                              ranking=tuple(c.docid for c in cands),
                              meta={META_TEACHER_ORDERED: True}), Counter()

    return records(Path(path), convert)


def rankgpt_candidates(rec: dict[str, Any], fix: str) -> tuple[str, tuple[Candidate, ...]]:
    hits = rec["hits"]
    if not isinstance(hits, list):
        raise DataError("'hits' must be a list", qid=qid_of(rec), reason="missing_field", fix=fix)
    qid = rec.get("qid", hits[0].get("qid") if hits and isinstance(hits[0], dict) else None)
    if qid is None:
        raise DataError("no qid (neither the entry nor its first hit has 'qid')", reason="missing_field", fix=fix)
    qid = str(qid)
    return qid, tuple(candidate(h, i, qid) for i, h in enumerate(hits))


def _detect(rec: dict[str, Any]) -> str | None:
    if "hits" in rec:
        return "entries have 'query' and 'hits' (RankGPT JSON; hit order is the teacher order)"
    return None


def _read(path: Path, options: ReadOptions) -> Iterator[TeacherRecord]:
    return read_rankgpt(path)


FORMAT = TeacherFormat(
    name="rankgpt",
    description=(
        'RankGPT JSON [{"query","hits":[{"docid","content"}]}], hit order = teacher order '
        '(shown to the model in a seeded shuffle, so the target is not the identity)'
    ),
    read=_read,
    detect=_detect,
)
