"""``reason-to-rank``: Reason-to-Rank records (``unsorted_docs`` in prompt order, ``re_rank_id`` the 1-based
teacher permutation over them, ``sorted_docids`` the docids in teacher order, ``reason.ranked_passages``
per-passage reasons).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.formats.records import (
    META_PASSAGE_REASONS,
    META_REASONING_ID_BASE,
    ReadOptions,
    TeacherFormat,
    TeacherRecord,
    records,
    require,
    validate_candidates,
)
from data_prep.schema import Candidate, DataError, RankingExample


def read_reason_to_rank(path: str | Path) -> Iterator[TeacherRecord]:
    """Reason-to-Rank records.

    ``unsorted_docs`` is the passage list in prompt order (BM25 order in the test files);
    ``re_rank_id[k]`` is the 1-based position in ``unsorted_docs`` of the teacher's k-th passage and
    ``sorted_docids[k]`` is that passage's docid, so ``sorted_docids`` is the teacher ranking as docids.
    ``reason.ranked_passages[].identifier`` uses the same 1-based positions.
    """
    fix = "a Reason-to-Rank record has qid, query, unsorted_docs, sorted_docids and re_rank_id"

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        require(rec, ("qid", "query", "unsorted_docs", "sorted_docids", "re_rank_id"), fix)
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

    return records(Path(path), convert)


def _detect(rec: dict[str, Any]) -> str | None:
    if {"re_rank_id", "unsorted_docs"} <= set(rec):
        return "records have 're_rank_id' and 'unsorted_docs' (Reason-to-Rank)"
    return None


def _read(path: Path, options: ReadOptions) -> Iterator[TeacherRecord]:
    return read_reason_to_rank(path)


FORMAT = TeacherFormat(
    name="reason-to-rank",
    description='Reason-to-Rank records (re_rank_id, unsorted_docs, sorted_docids, per-passage reasons)',
    read=_read,
    detect=_detect,
)
