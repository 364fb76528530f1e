"""Domain types shared by data prep, training and inference.

Ids are always ``str`` (TREC qids/docids are not numbers: "0-3", "D1555982"), indices are 0-based in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Query:
    qid: str
    text: str


@dataclass(frozen=True)
class Candidate:
    docid: str
    text: str
    title: str | None = None
    score: float | None = None  # first-stage score, kept for TREC runs

    def passage(self) -> str:
        """The text a ranking prompt shows: title and body joined by a space, as DeAR's stage 1 does."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True)
class RankingExample:
    """One teacher output: a query, its candidates, and the teacher's order of their docids."""

    qid: str
    query: str
    candidates: tuple[Candidate, ...]
    ranking: tuple[str, ...]
    reasoning: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def order_indices(self) -> list[int]:
        """The teacher ranking as 0-based positions into ``candidates``."""
        pos = {c.docid: i for i, c in enumerate(self.candidates)}
        return [pos[d] for d in self.ranking]

    def to_json(self) -> dict[str, Any]:
        """The canonical teacher JSONL record (what `dear prep listwise --format jsonl` reads)."""
        rec: dict[str, Any] = {
            "qid": self.qid,
            "query": self.query,
            "candidates": [_candidate_json(c) for c in self.candidates],
            "ranking": list(self.ranking),
        }
        if self.reasoning:
            rec["reasoning"] = self.reasoning
        if self.meta:
            rec.update({k: v for k, v in self.meta.items() if k not in rec})
        return rec


def _candidate_json(c: Candidate) -> dict[str, Any]:
    d: dict[str, Any] = {"docid": c.docid, "text": c.text}
    if c.title:
        d["title"] = c.title
    if c.score is not None:
        d["score"] = c.score
    return d


@dataclass(frozen=True)
class RerankRequest:
    """A query and its first-stage candidates, in first-stage order."""

    qid: str
    query: str
    candidates: tuple[Candidate, ...]


class DataError(ValueError):
    """Bad input that names where it is and how to fix it.

    ``str(err)`` reads like ``file.jsonl:12 (qid 1185869): ranking names unknown docid '7' -- fix: ...``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        qid: str | None = None,
        fix: str | None = None,
        reason: str = "invalid",
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.qid = qid
        self.fix = fix
        self.reason = reason
        self.field = field  # the option/parameter at fault, by its Python name (a CLI maps it to its flag)
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "")
        if self.qid is not None:
            where = f"{where} (qid {self.qid})" if where else f"qid {self.qid}"
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" -- fix: {self.fix}"
        return text

    def located(self, *, path: str | None = None, line: int | None = None, qid: str | None = None) -> DataError:
        """A copy with the location filled in where it was unknown at the raise site."""
        return DataError(
            self.message,
            path=self.path or path,
            line=self.line if self.line is not None else line,
            qid=self.qid or qid,
            fix=self.fix,
            reason=self.reason,
            field=self.field,
        )
