"""Domain types shared by data prep, training and inference.

Ids are always ``str`` (TREC qids/docids are not numbers: "0-3", "D1555982"), indices are 0-based in code.
Every text the types hold can be written as UTF-8 (:func:`check_text`, run when they are built): a lone surrogate
(``"\\ud800"`` in JSON) is refused where it enters, by the reader or the server that builds the type, and never
reaches a tokenizer or an output file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def check_text(value: object, what: str, docid: str | None = None) -> None:
    """Refuse text that cannot be encoded as UTF-8 (lone surrogates, the only such ``str`` values): tokenizers
    raise on it deep inside a batch and files cannot hold it. ``what`` names the field (``docid``: whose)."""
    if not isinstance(value, str) or value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        where = what if docid is None else f"{what} of document {docid!r}"
        raise DataError(
            f"{where} holds text that cannot be encoded as UTF-8: a lone surrogate U+{ord(value[err.start]):04X} at "
            f"character {err.start}", reason="unencodable_text", field=what,
            fix="send valid Unicode (a surrogate is only valid as half of a pair: JSON \\ud83d\\ude00 is one emoji); "
                "repair or drop the record") from None


@dataclass(frozen=True)
class Query:
    qid: str
    text: str

    def __post_init__(self) -> None:
        check_text(self.qid, "qid")
        check_text(self.text, "query")


@dataclass(frozen=True)
class Candidate:
    docid: str
    text: str
    title: str | None = None
    score: float | None = None  # first-stage score, kept for TREC runs

    def __post_init__(self) -> None:
        try:  # the common case first, cheaply: a corpus builds millions of these
            if self.text.isascii() and self.docid.isascii() and (self.title is None or self.title.isascii()):
                return
        except AttributeError:  # a field that is not text: check_text leaves it to the caller
            pass
        check_text(self.docid, "docid")
        check_text(self.text, "text", self.docid)
        check_text(self.title, "title", self.docid)

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

    def __post_init__(self) -> None:
        check_text(self.qid, "qid")
        check_text(self.query, "query")
        check_text(self.reasoning, "reasoning")

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

    def __post_init__(self) -> None:
        check_text(self.qid, "qid")
        check_text(self.query, "query")


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
        # a located id may itself hold a lone surrogate: the message stays printable and loggable
        return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")

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
