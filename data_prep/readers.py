"""Readers for the IR files users already have: RankGPT JSON, TREC runs, qrels, topics and corpora.

Every reader raises :class:`DataError` naming the file, the line and the fix; ids come back as ``str``.
Every text input goes through :func:`open_text`, so all of them read the same way: a UTF-8 byte-order mark is
skipped (Windows editors write one; it would otherwise stick to the first qid), ``*.gz`` is un-gzipped, and a
binary, non-UTF-8 or corrupt file is one DataError naming the file, line and byte offset instead of a traceback.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import unicodedata
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.schema import Candidate, DataError, RerankRequest, check_text

Qrels = dict[str, dict[str, int]]
_INT32 = 2**31  # trec_eval and pytrec_eval hold grades in a C int
Run = dict[str, list[tuple[str, float]]]  # qid -> [(docid, score)] in rank order

BOM = "\ufeff"
_GZIP_MAGIC = b"\x1f\x8b"
# the errors a corrupt or truncated .gz raises from inside a read
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a readable regular file, else a DataError that says which of not-found, folder or
    permission it is (each has a different fix)."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"is a folder, but a {what} is expected here", path=str(p), reason="is_a_directory",
                        fix="pass the file inside it, not the folder")
    if not p.exists():
        raise DataError(f"{what} not found", path=str(p), reason="not_found", fix="check the path")
    if not p.is_file():
        raise DataError(f"not a regular file (a {what} is expected)", path=str(p), reason="not_a_file",
                        fix="pass a regular file")
    try:
        with p.open("rb"):
            pass
    except PermissionError:
        raise DataError(f"permission denied reading this {what}", path=str(p), reason="permission",
                        fix=f"make it readable (chmod u+r {p})") from None
    return p


ID_FIX = ("TREC runs and qrels separate their columns by whitespace, so ids hold no whitespace or control "
          "characters: rename the id (e.g. replace spaces with '_') in every file that names it")


def check_id(value: Any, what: str = "docid", *, path: str | Path | None = None, line: int | None = None,
             qid: str | None = None, where: str = "") -> str:
    """``value`` as an id (``str``), or a DataError naming the record: an id must be a non-empty string or
    integer without whitespace or control characters (a TREC file could not hold it: its reader would see
    other columns, or none) and writable as UTF-8."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{prefix}{what} must be a string or an integer, got {type(value).__name__} {value!r:.40}",
                        path=None if path is None else str(path), line=line, qid=qid, reason="bad_id", fix=ID_FIX)
    text = str(value)
    if text and text.isprintable() and " " not in text:  # the fast path: every ordinary id
        return text
    bad = ""
    if not text.strip():
        bad = "is empty" if not text else "is only whitespace"
    elif any(c.isspace() for c in text):
        bad = "contains whitespace"
    elif any(unicodedata.category(c) == "Cc" for c in text):
        bad = "contains a control character"
    elif any(unicodedata.category(c) == "Cs" for c in text):
        bad = "contains a lone surrogate (not writable as UTF-8)"
    if bad:
        raise DataError(f"{prefix}{what} {text!r:.60} {bad}", path=None if path is None else str(path), line=line,
                        qid=qid, reason="bad_id", fix=ID_FIX)
    return text  # other non-printable characters (e.g. zero-width joiners) are part of some real ids


def check_score(value: Any, *, path: str | Path, line: int | None = None, qid: str | None = None,
                where: str = "") -> float:
    """``value`` as a finite float (a number, or a string holding one), else a DataError naming the record."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"{prefix}score {value!r:.40} is not a number", path=str(path), line=line, qid=qid,
                        reason="bad_score", fix="every score must be a real number (or leave the score out)")
    try:
        score = float(value)
    except (ValueError, OverflowError):
        raise DataError(f"{prefix}score {value!r:.40} is not a number", path=str(path), line=line, qid=qid,
                        reason="bad_score", fix="every score must be a real number (or leave the score out)") from None
    if not math.isfinite(score):
        raise DataError(f"{prefix}score {value!r:.40} is not a finite number", path=str(path), line=line, qid=qid,
                        reason="bad_score", fix="every score must be a real number (NaN/inf order nothing)")
    return score


def _text_field(value: Any, what: str, *, path: str, where: str = "", qid: str | None = None,
                line: int | None = None, optional: bool = False) -> str | None:
    """A text field of a JSON record: a string (numbers are written as text); anything else is refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        prefix = f"{where}: " if where else ""
        raise DataError(f"{prefix}{what} must be text, got {type(value).__name__}", path=path, line=line, qid=qid,
                        reason="bad_field", fix=f"give '{what}' as a JSON string")
    return str(value)


class TextFile:
    """A read-only UTF-8 text file (BOM skipped, universal newlines, like ``open(..., "r")``) whose decode
    and gzip errors become one DataError naming the file, line and byte offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._gz = path.suffix == ".gz"
        raw = gzip.open(path, "rb") if self._gz else path.open("rb")
        self._f = io.TextIOWrapper(raw, encoding="utf-8-sig", newline=None)

    def _fail(self, err: Exception) -> DataError:
        if isinstance(err, UnicodeDecodeError):
            return _decode_error(self.path, self._gz)
        return DataError(f"corrupt or truncated gzip file ({err})", path=str(self.path), reason="bad_gzip",
                         fix="download or compress the file again (gzip -t FILE checks it)")

    def read(self, size: int = -1) -> str:
        try:
            return self._f.read(size)
        except (UnicodeDecodeError, *_GZIP_ERRORS) as err:
            raise self._fail(err) from None

    def readline(self) -> str:
        try:
            return self._f.readline()
        except (UnicodeDecodeError, *_GZIP_ERRORS) as err:
            raise self._fail(err) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self._f:
                # a BOM inside the file: text files concatenated with `cat`, each saved with a mark
                yield line[1:] if line.startswith(BOM) else line
        except (UnicodeDecodeError, *_GZIP_ERRORS) as err:
            raise self._fail(err) from None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode_error(path: Path, gz: bool) -> DataError:
    """Find the first byte that is not UTF-8 (only on the error path) and say what the file probably is."""
    bad, where_line, where_byte = 0, 1, 0
    with (gzip.open(path, "rb") if gz else path.open("rb")) as raw:
        head = raw.read(4)
        raw.seek(0)
        offset = 0
        for lineno, chunk in enumerate(raw, 1):
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as err:
                bad, where_line, where_byte = chunk[err.start], lineno, offset + err.start
                break
            offset += len(chunk)
    if head.startswith(_GZIP_MAGIC):
        return DataError("the file is gzip-compressed but its name does not end in .gz", path=str(path),
                         reason="not_utf8", fix="rename it to end in .gz, or decompress it (gunzip)")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return DataError("the file is UTF-16 text, not UTF-8", path=str(path), reason="not_utf8",
                         fix="save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8`)")
    if b"\x00" in head or head.startswith((b"PK\x03\x04", b"\x89PNG", b"%PDF")):
        return DataError("a binary file, not text", path=str(path), line=where_line, reason="not_utf8",
                         fix="pass the text file this option expects (see --help)")
    return DataError(f"not UTF-8 text: byte 0x{bad:02x} at byte offset {where_byte}", path=str(path),
                     line=where_line, reason="not_utf8",
                     fix="save the file as UTF-8 (e.g. `iconv -f latin1 -t UTF-8 FILE > FILE.utf8`)")


def open_text(path: str | Path, what: str = "file") -> TextFile:
    """Open a text input (UTF-8, BOM skipped, ``*.gz`` un-gzipped); errors name the file and the fix."""
    return TextFile(check_input_file(path, what))


def read_text(path: str | Path, what: str = "file") -> str:
    """A whole text input as one string, read as :func:`open_text` reads."""
    with open_text(path, what) as f:
        return f.read()


def _malformed_line(err: json.JSONDecodeError, path: str | Path, lineno: int) -> DataError:
    return DataError(f"malformed JSON: {err.msg} at column {err.colno}", path=str(path), line=lineno,
                     fix="repair or remove the line", reason="malformed_json")


def iter_json_lines(path: str | Path, what: str = "JSONL file") -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or the :class:`DataError` of a malformed line) per non-blank JSONL line.

    For readers that count and skip bad records instead of stopping (``--on-error skip``).
    """
    with open_text(path, what) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj: Any = json.loads(line)
            except json.JSONDecodeError as err:
                obj = _malformed_line(err, path, lineno)
            yield lineno, obj


def iter_jsonl(path: str | Path, what: str = "JSONL file") -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; a malformed line raises with its number."""
    for lineno, obj in iter_json_lines(path, what):
        if isinstance(obj, DataError):
            raise obj
        yield lineno, obj


def load_json(path: str | Path, what: str = "JSON file", fix: str = "repair the JSON") -> Any:
    """One JSON document read as :func:`open_text` reads; malformed JSON names its line."""
    text = read_text(path, what)
    if not text.strip():
        raise DataError(f"the {what} is empty", path=str(path), reason="empty_file", fix=fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON: {err.msg} at column {err.colno}", path=str(path), line=err.lineno,
                        reason="malformed_json", fix=fix) from err


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


def _rankgpt_hit(hit: Any, path: str, qidx: int, hidx: int, qid: str) -> Candidate:
    if not isinstance(hit, dict) or "docid" not in hit or "content" not in hit:
        raise DataError(
            f"query #{qidx} hit #{hidx} lacks 'docid' or 'content'",
            path=path, fix='each hit needs {"docid": ..., "content": ...}', reason="missing_field",
        )
    where = f"entry #{qidx} hit #{hidx}"
    score = hit.get("score")
    return Candidate(docid=check_id(hit["docid"], "docid", path=path, qid=qid, where=where),
                     text=_text_field(hit["content"], "content", path=path, where=where, qid=qid) or "",
                     title=_text_field(hit.get("title"), "title", path=path, where=where, qid=qid, optional=True) or None,
                     score=check_score(score, path=path, qid=qid, where=where) if score is not None else None)


def read_rankgpt_json(path: str | Path) -> list[RerankRequest]:
    """RankGPT JSON ``[{"query", "hits": [{"content", "qid", "docid", "rank", "score"}]}]`` in hit order."""
    data = load_json(path, "RankGPT JSON file", fix="the file must be one JSON list of {query, hits}")
    if not isinstance(data, list):
        raise DataError("expected a JSON list of {query, hits}", path=str(path), fix="use RankGPT's format")
    out = []
    for qidx, item in enumerate(data):
        if not isinstance(item, dict) or "query" not in item or "hits" not in item:
            raise DataError(f"entry #{qidx} lacks 'query' or 'hits'", path=str(path), reason="missing_field",
                            fix='each entry is {"query": str, "hits": [...]}')
        hits = item["hits"]
        if not isinstance(hits, list):
            raise DataError(f"entry #{qidx}: 'hits' is not a list", path=str(path), reason="missing_field",
                            fix='each entry is {"query": str, "hits": [...]}')
        qid = item.get("qid")
        if qid is None and hits and isinstance(hits[0], dict):
            qid = hits[0].get("qid")
        if qid is None:  # an index would be a made-up id: wrong against qrels, and unstable across files
            raise DataError(f"entry #{qidx} has no qid (neither on the entry nor on its hits)", path=str(path),
                            reason="missing_qid", fix='add "qid": ... to the entry or to its hits')
        qid = check_id(qid, "qid", path=path, where=f"entry #{qidx}")
        try:  # the schema refuses text that cannot be encoded (check_text): located here
            cands = tuple(_rankgpt_hit(h, str(path), qidx, i, qid) for i, h in enumerate(hits))
        except DataError as err:
            raise err.located(path=str(path), qid=qid) from None
        seen: set[str] = set()
        for i, c in enumerate(cands):
            if c.docid in seen:  # trec_eval refuses it; a run could not hold the query's ranking either
                raise DataError(f"entry #{qidx} hit #{i}: docid {c.docid!r} appears twice in this query",
                                path=str(path), qid=qid, reason="duplicate_docid",
                                fix="each docid once per query: remove the duplicate hit")
            seen.add(c.docid)
        query = _text_field(item["query"], "query", path=str(path), where=f"entry #{qidx}", qid=qid) or ""
        try:
            out.append(RerankRequest(qid=qid, query=query, candidates=cands))
        except DataError as err:
            raise err.located(path=str(path), qid=qid) from None
    return out


def rankgpt_json(requests: list[RerankRequest]) -> list[dict[str, Any]]:
    """Requests as RankGPT JSON entries (what :func:`read_rankgpt_json` reads back; titles are kept)."""
    return [
        {"query": r.query, "qid": r.qid,
         "hits": [{"qid": r.qid, "docid": c.docid, "content": c.text, "rank": i + 1,
                   "score": c.score if c.score is not None else 0.0, **({"title": c.title} if c.title else {})}
                  for i, c in enumerate(r.candidates)]}
        for r in requests
    ]


def write_rankgpt_json(path: str | Path, requests: list[RerankRequest]) -> None:
    Path(path).write_text(json.dumps(rankgpt_json(requests)), encoding="utf-8")


def read_qrels(path: str | Path) -> Qrels:
    """TREC qrels ``qid 0 docid rel`` (whitespace separated)."""
    qrels: Qrels = {}
    with open_text(path, "qrels file") as f:
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
            if not -_INT32 <= rel < _INT32:
                raise DataError(f"relevance {parts[3]!r:.30} is out of range", path=str(path), line=lineno,
                                qid=parts[0], reason="bad_grade", fix="grades are small integers (0, 1, 2, 3)")
            qid = check_id(parts[0], "qid", path=path, line=lineno)
            docid = check_id(parts[2], "docid", path=path, line=lineno, qid=qid)
            judged = qrels.setdefault(qid, {})
            if docid in judged:  # trec_eval refuses it too: which grade counts would be a guess
                raise DataError(f"docid {docid!r} is judged twice for this query", path=str(path), line=lineno,
                                qid=qid, reason="duplicate_judgment",
                                fix="keep one line per (qid, docid): remove the duplicate judgment")
            judged[docid] = rel
    return qrels


def read_run(path: str | Path) -> Run:
    """A TREC run ``qid Q0 docid rank score tag``, returned in rank order per query."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    seen: dict[str, set[str]] = {}
    with open_text(path, "run file") as f:
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
            if not math.isfinite(score):
                raise DataError(f"score {parts[4]!r} is not a finite number", path=str(path), line=lineno,
                                qid=parts[0], reason="bad_score",
                                fix="every score must be a real number (NaN/inf order nothing)")
            qid = check_id(parts[0], "qid", path=path, line=lineno)
            docid = check_id(parts[2], "docid", path=path, line=lineno, qid=qid)
            docs = seen.setdefault(qid, set())
            if docid in docs:  # trec_eval refuses it; keeping either copy would change the metrics
                raise DataError(f"docid {docid!r} appears twice in this query's ranking", path=str(path),
                                line=lineno, qid=qid, reason="duplicate_docid",
                                fix="each docid once per query: remove the duplicate line")
            docs.add(docid)
            rows.setdefault(qid, []).append((rank, docid, score))
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
        for lineno, rec in iter_jsonl(path, "topics file"):
            if not isinstance(rec, dict):
                raise DataError("expected a JSON object per line", path=p, line=lineno,
                                fix='one {"_id": ..., "text": ...} object per line')
            qid = rec.get("_id", rec.get("qid"))
            text = rec.get("text", rec.get("query"))
            if qid is None or text is None:
                raise DataError("topic needs '_id' or 'qid' and 'text' or 'query'", path=p, line=lineno,
                                fix="add the missing field")
            text = _text_field(text, "text", path=p, line=lineno) or ""
            try:
                check_text(text, "query")
            except DataError as err:
                raise err.located(path=p, line=lineno) from None
            _add_topic(topics, check_id(qid, "qid", path=p, line=lineno), text, p, lineno)
        return topics
    with open_text(path, "topics file") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t", 1)
            if len(parts) != 2:
                raise DataError("expected 'qid<TAB>query'", path=p, line=lineno, fix="use a TSV topics file")
            _add_topic(topics, check_id(parts[0].strip(), "qid", path=p, line=lineno), parts[1].strip(), p, lineno)
    return topics


def _add_topic(topics: dict[str, str], qid: str, text: str, path: str, line: int) -> None:
    if qid in topics:  # which text is the query would be a guess
        raise DataError("the same qid appears twice in the topics", path=path, line=line, qid=qid,
                        reason="duplicate_qid", fix="keep one line per qid")
    topics[qid] = text


def _add_doc(corpus: dict[str, Candidate], doc: Candidate, path: str, line: int) -> None:
    old = corpus.get(doc.docid)
    if old is not None and (old.text, old.title) != (doc.text, doc.title):  # identical copies are harmless
        raise DataError(f"docid {doc.docid!r} appears twice with different text", path=path, line=line,
                        reason="duplicate_docid", fix="keep one line per docid")
    corpus[doc.docid] = doc


def read_corpus(path: str | Path) -> dict[str, Candidate]:
    """A corpus as ``docid<TAB>text[<TAB>title]`` TSV, or BEIR JSONL (``_id``, ``text``, ``title``)."""
    corpus: dict[str, Candidate] = {}
    p = str(path)
    if p.endswith((".jsonl", ".jsonl.gz")):
        for lineno, rec in iter_jsonl(path, "corpus file"):
            if not isinstance(rec, dict):
                raise DataError("expected a JSON object per line", path=p, line=lineno,
                                fix='one {"_id": ..., "text": ..., "title": ...} object per line')
            docid = rec.get("_id", rec.get("docid"))
            if docid is None or "text" not in rec:
                raise DataError("document needs '_id' (or 'docid') and 'text'", path=p, line=lineno,
                                fix="add the missing field")
            docid = check_id(docid, "docid", path=p, line=lineno)
            text = _text_field(rec["text"], "text", path=p, line=lineno) or ""
            title = _text_field(rec.get("title"), "title", path=p, line=lineno, optional=True) or None
            try:
                doc = Candidate(docid=docid, text=text, title=title)
            except DataError as err:
                raise err.located(path=p, line=lineno) from None
            _add_doc(corpus, doc, p, lineno)
        return corpus
    with open_text(path, "corpus file") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise DataError("expected 'docid<TAB>text[<TAB>title]'", path=p, line=lineno,
                                fix="use a TSV corpus file")
            title = parts[2] if len(parts) > 2 and parts[2] else None
            docid = check_id(parts[0], "docid", path=p, line=lineno)
            _add_doc(corpus, Candidate(docid=docid, text=parts[1], title=title), p, lineno)
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
