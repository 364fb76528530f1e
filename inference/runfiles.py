"""Resumable output of `dear rerank`: a TREC run and a JSONL of per-query records, appended per query.

Each finished query is written to the JSONL first, then to the run, each flushed and fsynced; the run file is
the commit record. On restart with the same ``--out`` a query counts as done only when its full block (one
line per candidate) is in the run; partial blocks and JSONL records of unfinished queries are dropped, so no
query is repeated or lost. A sidecar ``RUN.meta.json`` holds the settings, and a rerun with different
settings is refused instead of mixing two rankers in one file.

What a resume keeps (``docs/errors.md``, "What is guaranteed about outputs"):

* every finished query, also those the current invocation does not ask for (``--limit``, a shorter input):
  they stay in the run, after the asked queries (which follow the input's order), in their previous order;
* ``RUN.meta.json`` records each query's number of run lines and a fingerprint of its input (query text, and
  the candidates' docids, titles and texts in first-stage order: :func:`query_fingerprint`); a query whose
  fingerprint changed under the same qid is redone (its old block and record are dropped), so a run never
  keeps the ranking of candidates that are no longer there;
* the JSONL belongs to the run when ``RUN.meta.json`` names it (``"jsonl"``, its resolved path); any other
  non-empty file at ``--jsonl`` is refused unless ``--overwrite``, never truncated (runs recorded before
  the JSONL was named: when every line is a record with a qid).

A run over many processes (:mod:`inference.parallel`) appends to per-rank part files next to the run
(``RUN.part-R`` and ``RUN.part-R.jsonl``, same format). :func:`consolidate` folds the run, the JSONL and every
part into the run and JSONL in the input's query order and removes the parts: rank 0 calls it at the end of a
job, and every start calls it first, so a rerun with any number of processes (one included) continues from
whatever a killed job left behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from data_prep.io import OutputLock, complete_lines, naming, write_json_atomic, write_lines_atomic
from data_prep.readers import run_lines
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

# settings that may change between a run and its resumption without changing any ranking
RESUME_NEUTRAL = ("batch_size", "progress", "device")


def meta_path(out: str | Path) -> Path:
    return Path(str(out) + ".meta.json")


def part_paths(out: str | Path, rank: int) -> tuple[Path, Path]:
    """Rank ``rank``'s part files: (run part, JSONL part)."""
    return Path(f"{out}.part-{rank}"), Path(f"{out}.part-{rank}.jsonl")


def existing_parts(out: str | Path) -> list[tuple[int, Path, Path]]:
    """The part files a (possibly killed) job left next to ``out``: (rank, run part, JSONL part), by rank."""
    out = Path(out)
    pattern = re.compile(re.escape(out.name) + r"\.part-(\d+)(\.jsonl)?$")
    ranks: set[int] = set()
    if out.parent.is_dir():
        for p in out.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                ranks.add(int(m.group(1)))
    return [(r, *part_paths(out, r)) for r in sorted(ranks)]


def query_fingerprint(request: Any) -> str:
    """What a query's ranking depends on in the input: its text and its candidates (docid, title, text) in
    first-stage order, as a short sha256."""
    payload = [request.query, [[c.docid, c.title, c.text] for c in request.candidates]]
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:24]


def expected_lines(requests: Sequence[Any]) -> dict[str, int]:
    """qid -> its number of run lines (one per distinct candidate), in input order."""
    return {r.qid: len({c.docid for c in r.candidates}) for r in requests}


def query_fingerprints(requests: Sequence[Any]) -> dict[str, str]:
    return {r.qid: query_fingerprint(r) for r in requests}


def read_meta(out: str | Path) -> dict[str, Any] | None:
    """The run's ``RUN.meta.json`` when it describes rows on disk (a stale one beside no run is ignored)."""
    out = Path(out)
    mpath = meta_path(out)
    has_rows = out.exists() or any(p.exists() and p.stat().st_size > 0 for _, p, _ in existing_parts(out))
    if not (mpath.is_file() and has_rows):
        return None
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"the run's settings file is unreadable ({err})", path=str(mpath), reason="resume_mismatch",
                        fix="pass --overwrite or a new --out") from None
    if not isinstance(meta, dict):
        raise DataError("the run's settings file is not a JSON object", path=str(mpath), reason="resume_mismatch",
                        fix="pass --overwrite or a new --out")
    return meta


def check_settings(out: str | Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """Refuse to resume ``out`` made with other settings; returns the run's recorded meta (None when new)."""
    out = Path(out)
    comparable = {k: v for k, v in settings.items() if k not in RESUME_NEUTRAL}
    has_rows = (out.exists() and out.stat().st_size > 0) or any(
        p.exists() and p.stat().st_size > 0 for _, p, _ in existing_parts(out))
    old = read_meta(out)
    if old is not None:
        old_cmp = {k: v for k, v in old.get("settings", {}).items() if k not in RESUME_NEUTRAL}
        if old_cmp != comparable:
            changed = sorted(k for k in set(old_cmp) | set(comparable) if old_cmp.get(k) != comparable.get(k))
            raise DataError(f"the existing run was made with other settings ({', '.join(changed)})",
                            path=str(out), reason="resume_mismatch",
                            fix="rerun with the same settings to resume, or pass --overwrite / a new --out")
    elif has_rows:
        raise DataError("the output run exists but has no settings file, so it cannot be resumed safely",
                        path=str(out), reason="resume_mismatch", fix="pass --overwrite or a new --out")
    return old


def check_jsonl_owner(out: str | Path, jsonl: str | Path | None, meta: Mapping[str, Any] | None) -> None:
    """Refuse a non-empty ``jsonl`` that is not this run's: a resume rewrites the JSONL with the run's records
    only, which would cut an unrelated file (or another run's JSONL) down to nothing."""
    if jsonl is None:
        return
    path = Path(jsonl)
    if not path.is_file() or path.stat().st_size == 0:
        return
    if meta is not None and "jsonl" in meta:
        if meta["jsonl"] is not None and os.path.realpath(meta["jsonl"]) == os.path.realpath(path):
            return
        named = f"it names {meta['jsonl']}" if meta["jsonl"] else "it names no JSONL"
    elif meta is not None:  # a run recorded before the JSONL was named: its lines must all be run records
        if all(_record_qid(line) is not None for line in complete_lines(path, repair=False)):
            return
        named = "and the file holds lines that are not per-query records"
    else:
        named = "there is no run to resume"
    raise DataError(f"the JSONL exists and is not this run's ({meta_path(out).name}: {named})", path=str(path),
                    reason="output_exists", fix="pass --overwrite to replace it, or another --jsonl path")


def _record_qid(line: str) -> str | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return str(rec["qid"]) if isinstance(rec, dict) and "qid" in rec else None


def prepare_resume(
    out: str | Path,
    jsonl: str | Path | None,
    expected: Mapping[str, int],
    settings: Mapping[str, Any],
    *,
    overwrite: bool = False,
    fingerprints: Mapping[str, str] | None = None,
) -> set[str]:
    """Make ``out`` (and ``jsonl``) hold only fully finished queries; return those of ``expected`` (the asked
    queries) that are done.

    ``expected`` maps each asked qid (in input order) to its number of run lines, ``fingerprints`` each to
    :func:`query_fingerprint` of its input. A run made with other settings, or a JSONL that is not the run's,
    raises a DataError (use ``overwrite`` to start over). Finished queries that are not asked are kept; asked
    queries whose fingerprint changed are dropped (and so redone). Part files of an interrupted many-process
    job are folded in (see :func:`consolidate`).
    """
    out = Path(out)
    if overwrite:
        for p in (out, Path(jsonl) if jsonl else None, meta_path(out),
                  *(p for _, run, rec in existing_parts(out) for p in (run, rec))):
            if p is not None and p.exists():
                p.unlink()
    old = check_settings(out, settings)
    check_jsonl_owner(out, jsonl, old)
    recorded: dict[str, Any] = dict((old or {}).get("queries") or {})
    changed = []
    if fingerprints is not None:
        for q, fp in fingerprints.items():
            was = recorded.get(q)
            if isinstance(was, dict) and (was.get("fingerprint") not in (None, fp)
                                          or was.get("lines") not in (None, expected[q])):
                changed.append(q)
    if changed:
        logger.warning("%s: %d queries changed in the input since they were ranked (other query text or "
                       "candidates under the same qid); they are ranked again: %s", out, len(changed), changed[:5])
    order = _consolidate(out, jsonl, expected, drop=changed)  # before the new meta: a crash in between redoes them
    done = set(order)
    queries: dict[str, dict[str, Any]] = {
        q: {"lines": n, "fingerprint": (fingerprints or {}).get(q)} for q, n in expected.items()}
    for q in order:  # the others, in the run's order
        if q not in queries:
            was = recorded.get(q)
            queries[q] = was if isinstance(was, dict) else {"lines": None, "fingerprint": None}
    jsonl_name = str(Path(jsonl).resolve()) if jsonl else (old or {}).get("jsonl")
    write_json_atomic(meta_path(out), {"settings": dict(settings), "jsonl": jsonl_name, "queries": queries})
    return {q for q in expected if q in done}


def consolidate(out: str | Path, jsonl: str | Path | None, expected: Mapping[str, int], *,
                drop: Sequence[str] = ()) -> set[str]:
    """Rewrite ``out`` and ``jsonl`` with every fully finished query found in them and in the part files;
    remove the parts; return the finished qids (asked or not).

    Order: the queries of ``expected`` in its order, then the finished queries it does not name, in the order
    they had (they are never dropped: a run asked for fewer queries keeps the others). A query is finished
    when its whole block is in the run or in one run part: ``expected[qid]`` lines, or for a query not asked
    now the number ``RUN.meta.json`` recorded (runs recorded before that: whatever whole lines are there).
    Its JSONL record may come from the JSONL or any JSONL part. Queries in ``drop`` (changed in the input)
    are removed. Torn tails are cut, duplicates (a crash between writing the merged files and removing the
    parts) are kept once. A part still held by a live writer raises :class:`data_prep.io.OutputLocked`.
    """
    return set(_consolidate(out, jsonl, expected, drop=drop))


def _consolidate(out: str | Path, jsonl: str | Path | None, expected: Mapping[str, int], *,
                 drop: Sequence[str] = ()) -> list[str]:
    """:func:`consolidate`; returns the finished qids in the order of the rewritten run."""
    out = Path(out)
    jpath = Path(jsonl) if jsonl else None
    parts = existing_parts(out)
    for _, run_part, _ in parts:  # a live writer still appends to its part: refuse rather than lose its rows
        with OutputLock(run_part, what="run part"):
            pass
    meta = read_meta(out)
    recorded = {q: v.get("lines") for q, v in ((meta or {}).get("queries") or {}).items() if isinstance(v, dict)}
    dropping = set(drop)
    blocks: dict[str, list[str]] = {}
    seen_qids: dict[str, None] = {}
    for path in (out, *(run for _, run, _ in parts)):
        local: dict[str, list[str]] = {}
        for line in complete_lines(path):
            fields = line.split()
            if len(fields) != 6:
                continue
            local.setdefault(fields[0], []).append(line)
        for q, lines in local.items():
            seen_qids.setdefault(q)
            if q in blocks or q in dropping:
                continue
            want = expected[q] if q in expected else recorded.get(q)
            if want is None or len(lines) == want:
                blocks[q] = lines
    done = set(blocks)
    dropped = [q for q in seen_qids if q not in done and q not in dropping]
    if dropped:
        logger.warning("%s: %d partly written queries dropped (redone when asked for): %s", out, len(dropped),
                       dropped[:5])
    order = [q for q in expected if q in done] + [q for q in seen_qids if q in done and q not in expected]
    out.parent.mkdir(parents=True, exist_ok=True)
    if jpath is not None:
        records: dict[str, str] = {}
        for path in (jpath, *(rec for _, _, rec in parts)):
            for line in complete_lines(path):
                qid = _record_qid(line)
                if qid in done:
                    records.setdefault(qid, line)
        jpath.parent.mkdir(parents=True, exist_ok=True)
        write_lines_atomic(jpath, [records[q] for q in order if q in records])
    write_lines_atomic(out, [line for q in order for line in blocks[q]])  # the run last: the commit record
    for _, run_part, rec_part in parts:
        run_part.unlink(missing_ok=True)
        rec_part.unlink(missing_ok=True)
    return order


class RunAppender:
    """Appends one query at a time to the run (and JSONL), flushed and fsynced before returning."""

    def __init__(self, out: str | Path, jsonl: str | Path | None = None, *, tag: str = "dear") -> None:
        self.tag = tag
        self._run: IO[str] = Path(out).open("a", encoding="utf-8")
        self._jsonl: IO[str] | None = Path(jsonl).open("a", encoding="utf-8") if jsonl else None

    def write(self, qid: str, ranked: list[tuple[str, float]], record: Mapping[str, Any] | None = None) -> None:
        if self._jsonl is not None and record is not None:
            with naming(self._jsonl.name):  # a full disk names the file it could not write
                self._jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._jsonl.flush()
                os.fsync(self._jsonl.fileno())
        with naming(self._run.name):
            self._run.write(run_lines(qid, ranked, self.tag))
            self._run.flush()
            os.fsync(self._run.fileno())

    def close(self) -> None:
        self._run.close()
        if self._jsonl is not None:
            self._jsonl.close()

    def __enter__(self) -> RunAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
