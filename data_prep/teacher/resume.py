"""Append-only output, a request cache, and repair of a file a crash left half-written.

The output JSONL gets one group of records per finished query, written with one ``write`` + ``flush``;
each record carries ``source_qid`` (the input query's qid; window records have their own ``qid``) and
``group = {"index": i, "size": m}``. On restart :func:`load_finished` reads the file,
cuts off a trailing partial line or an incomplete last group (the only damage a crash can do to an
append-only file), and returns the qids already done, so a rerun skips them and never duplicates one.

The request cache (``<out>.requests.jsonl``) keeps every accepted completion, keyed by a hash of the exact
request, flushed as it arrives: after a crash the queries that were in progress replay their finished
requests from it, so the crash loses only the requests that were in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from data_prep.io import complete_lines, cut_torn_tail
from data_prep.schema import DataError

logger = logging.getLogger(__name__)


def _complete_lines(path: Path) -> tuple[list[tuple[int, int, bytes]], int]:
    """(start offset, line number, bytes) of every line after the torn tail is cut, and the file's end."""
    cut_torn_tail(path)
    lines = []
    with path.open("rb") as f:
        pos = 3 if f.read(3) == b"\xef\xbb\xbf" else 0
    for lineno, line in enumerate(complete_lines(path, repair=False), start=1):
        raw = line.encode("utf-8")
        lines.append((pos, lineno, raw.rstrip(b"\n")))
        pos += len(raw)
    return lines, path.stat().st_size


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def _source_qid(rec: dict[str, Any]) -> str:
    return str(rec.get("source_qid", rec["qid"]))


def load_finished(path: str | Path) -> dict[str, int]:
    """Input qid -> number of records for every query already complete in ``path`` (repairing a torn
    tail)."""
    p = Path(path)
    if not p.exists():
        return {}
    lines, end = _complete_lines(p)
    records: list[tuple[int, dict[str, Any]]] = []
    for idx, (start, lineno, raw) in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as err:
            if idx == len(lines) - 1:  # a torn last line that happens to end in a newline byte
                logger.warning("%s:%d: dropping an unreadable last line", p, lineno)
                end = start
                break
            raise DataError(f"malformed JSON: {err.msg}", path=str(p), line=lineno, reason="malformed_json",
                            fix="repair or delete the line, or write to a new --out") from err
        if not isinstance(rec, dict) or "qid" not in rec:
            raise DataError("record has no 'qid'", path=str(p), line=lineno,
                            fix="--out must be a file written by `dear teacher`")
        records.append((start, rec))
    # An incomplete last group (the crash hit between the lines of one write) is cut off too.
    if records:
        last_qid = _source_qid(records[-1][1])
        tail = []
        for start, rec in reversed(records):
            if _source_qid(rec) != last_qid:
                break
            tail.append((start, rec))
        size = int((tail[0][1].get("group") or {}).get("size", len(tail)))
        if len(tail) < size:
            logger.warning("%s: dropping %d record(s) of qid %s: its group of %d was cut short",
                           p, len(tail), last_qid, size)
            end = tail[-1][0]
            records = records[: len(records) - len(tail)]
    if end != p.stat().st_size:
        _truncate(p, end)
    done: dict[str, int] = {}
    for _, rec in records:
        done[_source_qid(rec)] = done.get(_source_qid(rec), 0) + 1
    return done


class JsonlAppender:
    """Appends groups of JSON records; each group is one write followed by a flush."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = self.path.open("a", encoding="utf-8")

    def write_group(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self._f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def request_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class RequestCache:
    """Accepted completions keyed by :func:`request_key`, persisted one line per completion."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, dict[str, Any]] = {}
        self._f: IO[str] | None = None
        if self.path is None:
            return
        if self.path.exists():
            lines, end = _complete_lines(self.path)
            for _start, _lineno, raw in lines:
                try:
                    rec = json.loads(raw)
                    self._data[rec["key"]] = rec["completion"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning("%s: skipping an unreadable cache line", self.path)
            if end != self.path.stat().st_size:
                _truncate(self.path, end)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def put(self, key: str, completion: dict[str, Any]) -> None:
        self._data[key] = completion
        if self._f is not None:
            self._f.write(json.dumps({"key": key, "completion": completion}, ensure_ascii=False) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
