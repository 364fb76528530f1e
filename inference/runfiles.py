"""Resumable output of `dear rerank`: a TREC run and a JSONL of per-query records, appended per query.

Each finished query is written to the JSONL first, then to the run, each flushed and fsynced; the run file is
the commit record. On restart with the same ``--out`` a query counts as done only when its full block (one
line per candidate) is in the run; partial blocks and JSONL records of unfinished queries are dropped, so no
query is repeated or lost. A sidecar ``RUN.meta.json`` holds the settings, and a rerun with different
settings is refused instead of mixing two rankers in one file.

A run over many processes (:mod:`inference.parallel`) appends to per-rank part files next to the run
(``RUN.part-R`` and ``RUN.part-R.jsonl``, same format). :func:`consolidate` folds the run, the JSONL and every
part into the run and JSONL in the input's query order and removes the parts: rank 0 calls it at the end of a
job, and every start calls it first, so a rerun with any number of processes (one included) continues from
whatever a killed job left behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from data_prep.io import OutputLock, complete_lines, write_lines_atomic
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


def check_settings(out: str | Path, settings: Mapping[str, Any]) -> None:
    """Refuse to resume ``out`` made with other settings; record ``settings`` beside it."""
    out = Path(out)
    mpath = meta_path(out)
    comparable = {k: v for k, v in settings.items() if k not in RESUME_NEUTRAL}
    has_rows = (out.exists() and out.stat().st_size > 0) or any(
        p.exists() and p.stat().st_size > 0 for _, p, _ in existing_parts(out))
    if mpath.is_file() and (out.exists() or has_rows):
        old = json.loads(mpath.read_text(encoding="utf-8"))
        old_cmp = {k: v for k, v in old.get("settings", {}).items() if k not in RESUME_NEUTRAL}
        if old_cmp != comparable:
            changed = sorted(k for k in set(old_cmp) | set(comparable) if old_cmp.get(k) != comparable.get(k))
            raise DataError(f"the existing run was made with other settings ({', '.join(changed)})",
                            path=str(out), reason="resume_mismatch",
                            fix="rerun with the same settings to resume, or pass --overwrite / a new --out")
    elif has_rows:
        raise DataError("the output run exists but has no settings file, so it cannot be resumed safely",
                        path=str(out), reason="resume_mismatch", fix="pass --overwrite or a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    mpath.write_text(json.dumps({"settings": dict(settings)}, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def prepare_resume(
    out: str | Path,
    jsonl: str | Path | None,
    expected: Mapping[str, int],
    settings: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> set[str]:
    """Make ``out`` (and ``jsonl``) hold only fully finished queries and return their qids.

    ``expected`` maps each qid (in input order) to its number of run lines. A run made with other settings
    raises a DataError (use ``overwrite`` to start over). Part files of an interrupted many-process job are
    folded in (see :func:`consolidate`).
    """
    out = Path(out)
    if overwrite:
        for p in (out, Path(jsonl) if jsonl else None, meta_path(out),
                  *(p for _, run, rec in existing_parts(out) for p in (run, rec))):
            if p is not None and p.exists():
                p.unlink()
    check_settings(out, settings)
    return consolidate(out, jsonl, expected)


def consolidate(out: str | Path, jsonl: str | Path | None, expected: Mapping[str, int]) -> set[str]:
    """Rewrite ``out`` and ``jsonl`` with every fully finished query found in them and in the part files, in
    the order of ``expected``; remove the parts; return the finished qids.

    A query is finished when its whole block (``expected[qid]`` lines) is in the run or in one run part; its
    JSONL record may come from the JSONL or any JSONL part. Torn tails are cut, duplicates (a crash between
    writing the merged files and removing the parts) are kept once. A part still held by a live writer
    raises :class:`data_prep.io.OutputLocked`.
    """
    out = Path(out)
    jpath = Path(jsonl) if jsonl else None
    parts = existing_parts(out)
    for _, run_part, _ in parts:  # a live writer still appends to its part: refuse rather than lose its rows
        with OutputLock(run_part, what="run part"):
            pass
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
            if q not in blocks and q in expected and len(lines) == expected[q]:
                blocks[q] = lines
    done = set(blocks)
    dropped = [q for q in seen_qids if q not in done]
    if dropped:
        logger.warning("%s: %d partly written or unknown queries dropped and redone: %s", out, len(dropped),
                       dropped[:5])
    order = [q for q in expected if q in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    if jpath is not None:
        records: dict[str, str] = {}
        for path in (jpath, *(rec for _, _, rec in parts)):
            for line in complete_lines(path):
                try:
                    qid = str(json.loads(line)["qid"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if qid in done:
                    records.setdefault(qid, line)
        jpath.parent.mkdir(parents=True, exist_ok=True)
        write_lines_atomic(jpath, [records[q] for q in order if q in records])
    write_lines_atomic(out, [line for q in order for line in blocks[q]])  # the run last: the commit record
    for _, run_part, rec_part in parts:
        run_part.unlink(missing_ok=True)
        rec_part.unlink(missing_ok=True)
    return done



class RunAppender:
    """Appends one query at a time to the run (and JSONL), flushed and fsynced before returning."""

    def __init__(self, out: str | Path, jsonl: str | Path | None = None, *, tag: str = "dear") -> None:
        self.tag = tag
        self._run: IO[str] = Path(out).open("a", encoding="utf-8")
        self._jsonl: IO[str] | None = Path(jsonl).open("a", encoding="utf-8") if jsonl else None

    def write(self, qid: str, ranked: list[tuple[str, float]], record: Mapping[str, Any] | None = None) -> None:
        if self._jsonl is not None and record is not None:
            self._jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._jsonl.flush()
            os.fsync(self._jsonl.fileno())
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
