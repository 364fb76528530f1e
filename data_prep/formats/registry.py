"""The teacher-format registry: ``--format`` name -> reader, detector and one-line help.

Adding a format is one module with a ``FORMAT`` entry plus a line here; ``dear prep listwise`` takes its
``--format`` choices and help from :data:`FORMATS`, and ``--format auto`` asks the detectors in
:data:`DETECTION_ORDER`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.formats import canonical, qrels, rankgpt, rankllm, reason_to_rank, responses
from data_prep.formats.records import ReadOptions, TeacherFormat, TeacherRecord
from data_prep.readers import Qrels, check_input_file, is_json_list, iter_json_records, load_json
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

REGISTRY: dict[str, TeacherFormat] = {
    f.name: f for f in (canonical.FORMAT, rankgpt.FORMAT, rankllm.FORMAT, reason_to_rank.FORMAT,
                        responses.FORMAT, qrels.FORMAT)
}
FORMATS: tuple[str, ...] = tuple(REGISTRY)

# Most telling fields first; canonical JSONL last, since a responses record may carry a 'ranking' too.
DETECTION_ORDER: tuple[str, ...] = ("rankgpt", "rankllm", "reason-to-rank", "responses", "jsonl")


def _first_record(path: Path, limit: int = 20) -> Any:
    """The first readable record: a JSON list's first entry, else the first parseable of the first lines."""
    if is_json_list(path):
        data = load_json(path, fix="the file must be valid JSON or JSONL")
        return data[0] if isinstance(data, list) and data else None
    for index, _line, obj in iter_json_records(path):
        if index >= limit:
            break
        if not isinstance(obj, DataError):
            return obj
    return None


def detect_format(path: str | Path, *, qrels_given: bool = False) -> tuple[str, str]:
    """(format, why) for a teacher file, by the fields of its first readable record."""
    if qrels_given:
        return "qrels", "--qrels was given: judgments are the teacher"
    rec = _first_record(Path(path))
    if not isinstance(rec, dict):
        raise DataError("cannot detect the teacher format: no readable JSON record at the start",
                        path=str(path), reason="unknown_format", fix="pass --format explicitly")
    for name in DETECTION_ORDER:
        detect = REGISTRY[name].detect
        why = detect(rec) if detect is not None else None
        if why:
            return name, why
    raise DataError(f"cannot detect the teacher format from fields {sorted(rec)}", path=str(path),
                    reason="unknown_format", fix=f"pass --format, one of {list(FORMATS)}")


def read_teacher(path: str | Path, fmt: str = "auto", *, qrels: Qrels | None = None,
                 response_id_base: int = 1) -> tuple[str, Iterator[TeacherRecord]]:
    """(the format used, the record stream) for a teacher file."""
    p = check_input_file(path, "teacher file")
    if p.stat().st_size == 0:
        raise DataError("the teacher file is empty", path=str(p), reason="empty_file",
                        fix="pass the file your teacher run wrote (`dear teacher --out`); this one holds no records")
    if fmt == "auto":
        fmt, why = detect_format(p, qrels_given=qrels is not None)
        logger.info("--format auto: reading %s as %r (%s)", p, fmt, why)
    if qrels is not None and fmt != "qrels":
        raise DataError(f"--qrels makes judgments the teacher, but --format is {fmt!r}",
                        fix="use --format qrels (or auto), or leave out --qrels")
    if fmt not in REGISTRY:
        raise DataError(f"unknown teacher format {fmt!r}", fix=f"use auto or one of {list(FORMATS)}")
    return fmt, REGISTRY[fmt].read(p, ReadOptions(qrels=qrels, response_id_base=response_id_base))
