"""Readers for the IR files users already have: RankGPT JSON, TREC runs, qrels, topics and corpora.

Every reader raises :class:`DataError` naming the file, the line and the fix; ids come back as ``str``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from data_prep.schema import Candidate, DataError, RerankRequest

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[tuple[str, float]]]  # qid -> [(docid, score)] in rank order


def open_text(path: str | Path) -> IO[str]:
    """Open a text file, transparently un-gzipping ``*.gz``."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(p), fix="check the path")
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8")
    return p.open("r", encoding="utf-8")


def _malformed_line(err: json.JSONDecodeError, path: str | Path, lineno: int) -> DataError:
    return DataError(f"malformed JSON: {err.msg} at column {err.colno}", path=str(path), line=lineno,
                     fix="repair or remove the line", reason="malformed_json")


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or the :class:`DataError` of a malformed line) per non-blank JSONL line.

    For readers that count and skip bad records instead of stopping (``--on-error skip``).
    """
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj: Any = json.loads(line)
            except json.JSONDecodeError as err:
                obj = _malformed_line(err, path, lineno)
            yield lineno, obj


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; a malformed line raises with its number."""
    for lineno, obj in iter_json_lines(path):
        if isinstance(obj, DataError):
            raise obj
        yield lineno, obj


def load_json(path: str | Path, *, fix: str) -> Any:
    """One JSON document (``.gz`` ok); malformed JSON raises naming the line and ``fix``."""
    with open_text(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed JSON: {err.msg} at column {err.colno}", path=str(path), line=err.lineno,
                            fix=fix, reason="malformed_json") from err


def is_json_list(path: str | Path) -> bool:
    """Whether the file is one JSON list (its first non-blank character is ``[``) rather than JSONL."""
    with open_text(path) as f:
        return f.read(4096).lstrip().startswith("[")


def iter_json_records(path: str | Path) -> Iterator[tuple[int, int | None, Any]]:
    """(index, line, object or DataError) for the entries of a JSON list file or the lines of a JSONL file.

    ``line`` is None for entries of a JSON list (one document has no per-record line); a malformed JSONL
    line comes back as its :class:`DataError`, a malformed JSON list raises (nothing in it is readable).
    """
    if is_json_list(path):
        data = load_json(path, fix="the file must be one valid JSON list")
        for i, item in enumerate(data):
            yield i, None, item
        return
    for index, (lineno, obj) in enumerate(iter_json_lines(path)):
        yield index, lineno, obj


def _rankgpt_hit(hit: Any, path: str, qidx: int, hidx: int) -> Candidate:
    if not isinstance(hit, dict) or "docid" not in hit or "content" not in hit:
        raise DataError(
            f"query #{qidx} hit #{hidx} lacks 'docid' or 'content'",
            path=path, fix='each hit needs {"docid": ..., "content": ...}', reason="missing_field",
        )
    return Candidate(docid=str(hit["docid"]), text=str(hit["content"]), title=hit.get("title") or None,
                     score=float(hit["score"]) if hit.get("score") is not None else None)


def read_rankgpt_json(path: str | Path) -> list[RerankRequest]:
    """RankGPT JSON ``[{"query", "hits": [{"content", "qid", "docid", "rank", "score"}]}]`` in hit order."""
    data = load_json(path, fix="the file must be one JSON list of {query, hits}")
    if not isinstance(data, list):
        raise DataError("expected a JSON list of {query, hits}", path=str(path), fix="use RankGPT's format")
    out = []
    for qidx, item in enumerate(data):
        if not isinstance(item, dict) or "query" not in item or "hits" not in item:
            raise DataError(f"entry #{qidx} lacks 'query' or 'hits'", path=str(path), reason="missing_field",
                            fix='each entry is {"query": str, "hits": [...]}')
        hits = item["hits"]
        qid = str(item.get("qid", hits[0].get("qid") if hits else qidx))
        cands = tuple(_rankgpt_hit(h, str(path), qidx, i) for i, h in enumerate(hits))
        out.append(RerankRequest(qid=qid, query=str(item["query"]), candidates=cands))
    return out


def write_rankgpt_json(path: str | Path, requests: list[RerankRequest]) -> None:
    data = [
        {"query": r.query, "qid": r.qid,
         "hits": [{"qid": r.qid, "docid": c.docid, "content": c.text, "rank": i + 1,
                   "score": c.score if c.score is not None else 0.0} for i, c in enumerate(r.candidates)]}
        for r in requests
    ]
    Path(path).write_text(json.dumps(data), encoding="utf-8")


def read_qrels(path: str | Path) -> Qrels:
    """TREC qrels ``qid 0 docid rel`` (whitespace separated)."""
    qrels: Qrels = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise DataError(f"expected 4 columns 'qid iter docid rel', got {len(parts)}",
                                path=str(path), line=lineno, fix="use TREC qrels format")
            try:
                rel = int(parts[3])
            except ValueError:
                raise DataError(f"relevance {parts[3]!r} is not an integer", path=str(path), line=lineno,
                                fix="grades are integers (0, 1, 2, 3)") from None
            qrels.setdefault(parts[0], {})[parts[2]] = rel
    return qrels


def read_run(path: str | Path) -> Run:
    """A TREC run ``qid Q0 docid rank score tag``, returned in rank order per query."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataError(f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}",
                                path=str(path), line=lineno, fix="use TREC run format")
            try:
                rank, score = int(parts[3]), float(parts[4])
            except ValueError:
                raise DataError("rank must be an integer and score a number", path=str(path), line=lineno,
                                fix="use TREC run format") from None
            rows.setdefault(parts[0], []).append((rank, parts[2], score))
    run: Run = {}
    for qid, items in rows.items():
        items.sort(key=lambda t: (t[0], -t[2]))
        run[qid] = [(d, s) for _, d, s in items]
    return run


def run_lines(qid: str, docs: list[tuple[str, float]], tag: str = "dear") -> str:
    """One query's block of TREC run lines (what :func:`write_run` writes; used to append per query)."""
    return "".join(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n" for rank, (docid, score) in enumerate(docs, 1))


def write_run(path: str | Path, results: dict[str, list[tuple[str, float]]], tag: str = "dear") -> None:
    """Write a TREC run; scores must already be monotone with rank."""
    with Path(path).open("w", encoding="utf-8") as f:
        for qid, docs in results.items():
            f.write(run_lines(qid, docs, tag))


def read_topics(path: str | Path) -> dict[str, str]:
    """Topics as ``qid<TAB>text`` TSV, or JSONL with ``_id``/``qid`` and ``text``/``query``."""
    topics: dict[str, str] = {}
    p = str(path)
    if p.endswith((".jsonl", ".jsonl.gz")):
        for lineno, rec in iter_jsonl(path):
            qid = rec.get("_id", rec.get("qid"))
            text = rec.get("text", rec.get("query"))
            if qid is None or text is None:
                raise DataError("topic needs '_id' or 'qid' and 'text' or 'query'", path=p, line=lineno,
                                fix="add the missing field")
            topics[str(qid)] = str(text)
        return topics
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t", 1)
            if len(parts) != 2:
                raise DataError("expected 'qid<TAB>query'", path=p, line=lineno, fix="use a TSV topics file")
            topics[parts[0].strip()] = parts[1].strip()
    return topics


def read_corpus(path: str | Path) -> dict[str, Candidate]:
    """A corpus as ``docid<TAB>text[<TAB>title]`` TSV, or BEIR JSONL (``_id``, ``text``, ``title``)."""
    corpus: dict[str, Candidate] = {}
    p = str(path)
    if p.endswith((".jsonl", ".jsonl.gz")):
        for lineno, rec in iter_jsonl(path):
            docid = rec.get("_id", rec.get("docid"))
            if docid is None or "text" not in rec:
                raise DataError("document needs '_id' (or 'docid') and 'text'", path=p, line=lineno,
                                fix="add the missing field")
            corpus[str(docid)] = Candidate(docid=str(docid), text=str(rec["text"]), title=rec.get("title") or None)
        return corpus
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise DataError("expected 'docid<TAB>text[<TAB>title]'", path=p, line=lineno,
                                fix="use a TSV corpus file")
            title = parts[2] if len(parts) > 2 and parts[2] else None
            corpus[parts[0]] = Candidate(docid=parts[0], text=parts[1], title=title)
    return corpus


def requests_from_run(run: Run, topics: dict[str, str], corpus: dict[str, Candidate],
                      run_path: str = "run") -> list[RerankRequest]:
    """Join a TREC run with topics and corpus texts into rerank requests (first-stage order kept)."""
    out = []
    for qid, docs in run.items():
        if qid not in topics:
            raise DataError("query of the run is not in the topics file", path=run_path, qid=qid,
                            fix="pass the topics file that matches the run")
        cands = []
        for docid, score in docs:
            if docid not in corpus:
                raise DataError(f"docid {docid!r} is not in the corpus", path=run_path, qid=qid,
                                fix="pass the corpus the run was retrieved from")
            c = corpus[docid]
            cands.append(Candidate(docid=docid, text=c.text, title=c.title, score=score))
        out.append(RerankRequest(qid=qid, query=topics[qid], candidates=tuple(cands)))
    return out
