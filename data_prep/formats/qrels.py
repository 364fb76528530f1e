"""``qrels``: judgments as teacher: RankGPT JSON or canonical JSONL candidates plus a TREC qrels file;
candidates are ordered by grade, first-stage order kept within a grade. Chosen by ``--qrels``, never by
the fields of a record (the candidates alone look like RankGPT JSON or canonical JSONL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.formats.rankgpt import rankgpt_candidates
from data_prep.formats.records import (
    META_GRADES,
    ReadOptions,
    TeacherFormat,
    TeacherRecord,
    candidate,
    records,
    require,
    validate_candidates,
)
from data_prep.readers import Qrels
from data_prep.schema import Candidate, DataError, RankingExample


def graded_order(candidates: tuple[Candidate, ...], grades: dict[str, int]) -> tuple[str, ...]:
    """Docids by decreasing grade, first-stage order kept within a grade; unjudged counts as 0."""
    order = sorted(range(len(candidates)), key=lambda i: -grades.get(candidates[i].docid, 0))
    return tuple(candidates[i].docid for i in order)


def read_judged(path: str | Path, qrels: Qrels) -> Iterator[TeacherRecord]:
    """Judgments as teacher: candidates from RankGPT JSON or canonical JSONL, ranked by their qrels grade."""
    fix = 'RankGPT {"query", "hits"} entries or canonical {"qid", "query", "candidates"} lines'

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        if isinstance(rec, dict) and "hits" in rec:
            require(rec, ("query", "hits"), fix)
            qid, cands = rankgpt_candidates(rec, fix)
        else:
            require(rec, ("qid", "query", "candidates"), fix)
            qid = str(rec["qid"])
            if not isinstance(rec["candidates"], list):
                raise DataError("'candidates' must be a list", qid=qid, reason="missing_field", fix=fix)
            cands = tuple(candidate(c, i, qid) for i, c in enumerate(rec["candidates"]))
        validate_candidates(qid, rec["query"], cands)
        if qid not in qrels:
            raise DataError("query has no judgments in the qrels file", qid=qid, reason="no_judgments",
                            fix="pass the qrels that match the candidates, or drop the query")
        grades = qrels[qid]
        return RankingExample(qid=qid, query=str(rec["query"]), candidates=cands,
                              ranking=graded_order(cands, grades),
                              meta={"judged": sum(c.docid in grades for c in cands),
                                    META_GRADES: {c.docid: int(grades[c.docid]) for c in cands
                                                  if c.docid in grades}}), Counter()

    return records(Path(path), convert)


def _qrels(options: ReadOptions) -> Qrels:
    if options.qrels is None:
        raise DataError("--format qrels needs --qrels FILE", fix="pass the TREC qrels file with --qrels")
    return options.qrels


def _read(path: Path, options: ReadOptions) -> Iterator[TeacherRecord]:
    return read_judged(path, _qrels(options))


FORMAT = TeacherFormat(
    name="qrels",
    description='candidates (RankGPT JSON or canonical JSONL) + --qrels: graded order, stable in a grade',
    read=_read,
    detect=None,
)
