"""``responses``: ``{"qid","query","candidates":[...],"response": raw teacher text}``; the ranking is parsed
with :func:`data_prep.ranking.parse_ranking` and every repair counted.
"""

from __future__ import annotations

import re
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
    validate_candidates,
)
from data_prep.ranking import parse_ranking
from data_prep.schema import DataError, RankingExample


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
        require(rec, ("qid", "query", "candidates", "response"), fix)
        qid = str(rec["qid"])
        if not isinstance(rec["candidates"], list):
            raise DataError("'candidates' must be a list", qid=qid, reason="missing_field", fix=fix)
        cands = tuple(candidate(c, i, qid) for i, c in enumerate(rec["candidates"]))
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

    return records(Path(path), convert)


def _detect(rec: dict[str, Any]) -> str | None:
    if "response" in rec and "candidates" in rec:
        return "records have 'candidates' and a raw 'response' text"
    return None


def _read(path: Path, options: ReadOptions) -> Iterator[TeacherRecord]:
    return read_responses(path, id_base=options.response_id_base)


FORMAT = TeacherFormat(
    name="responses",
    description='{"qid","query","candidates":[...],"response": raw teacher text}, parsed and repaired',
    read=_read,
    detect=_detect,
)
