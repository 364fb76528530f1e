"""Resumable output of `dear rerank`: a TREC run and a JSONL of per-query records, appended per query.

Each finished query is written to the JSONL first, then to the run, each flushed and fsynced; the run file is
the commit record. On restart with the same ``--out`` a query counts as done only when its full block (one
line per candidate) is in the run; partial blocks and JSONL records of unfinished queries are dropped, so no
query is repeated or lost. A sidecar ``RUN.meta.json`` holds the settings, and a rerun with different
settings is refused instead of mixing two rankers in one file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from data_prep.io import complete_lines, write_lines_atomic
from data_prep.readers import run_lines
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

# settings that may change between a run and its resumption without changing any ranking
RESUME_NEUTRAL = ("batch_size", "progress", "device")


def meta_path(out: str | Path) -> Path:
    return Path(str(out) + ".meta.json")


def prepare_resume(
    out: str | Path,
    jsonl: str | Path | None,
    expected: Mapping[str, int],
    settings: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> set[str]:
    """Make ``out`` (and ``jsonl``) hold only fully finished queries and return their qids.

    ``expected`` maps each qid to its number of run lines. A run made with other settings raises a DataError
    (use ``overwrite`` to start over).
    """
    out = Path(out)
    jpath = Path(jsonl) if jsonl else None
    mpath = meta_path(out)
    if overwrite:
        for p in (out, jpath, mpath):
            if p is not None and p.exists():
                p.unlink()
    comparable = {k: v for k, v in settings.items() if k not in RESUME_NEUTRAL}
    if out.exists() and mpath.is_file():
        old = json.loads(mpath.read_text(encoding="utf-8"))
        old_cmp = {k: v for k, v in old.get("settings", {}).items() if k not in RESUME_NEUTRAL}
        if old_cmp != comparable:
            changed = sorted(k for k in set(old_cmp) | set(comparable) if old_cmp.get(k) != comparable.get(k))
            raise DataError(f"the existing run was made with other settings ({', '.join(changed)})",
                            path=str(out), reason="resume_mismatch",
                            fix="rerun with the same settings to resume, or pass --overwrite / a new --out")
    elif out.exists() and out.stat().st_size > 0:
        raise DataError("the output run exists but has no settings file, so it cannot be resumed safely",
                        path=str(out), reason="resume_mismatch", fix="pass --overwrite or a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    mpath.write_text(json.dumps({"settings": dict(settings)}, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    blocks: dict[str, list[str]] = {}
    order: list[str] = []
    for line in complete_lines(out):
        parts = line.split()
        if len(parts) != 6:
            continue
        if parts[0] not in blocks:
            order.append(parts[0])
        blocks.setdefault(parts[0], []).append(line)
    done = {q for q in order if q in expected and len(blocks[q]) == expected[q]}
    dropped = [q for q in order if q not in done]
    if dropped:
        logger.warning("%s: %d partly written or unknown queries dropped and redone: %s", out, len(dropped),
                       dropped[:5])
    write_lines_atomic(out, [line for q in order if q in done for line in blocks[q]])
    if jpath is not None:
        kept, seen = [], set()
        for line in complete_lines(jpath):
            try:
                qid = str(json.loads(line)["qid"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if qid in done and qid not in seen:
                seen.add(qid)
                kept.append(line)
        jpath.parent.mkdir(parents=True, exist_ok=True)
        write_lines_atomic(jpath, kept)
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
