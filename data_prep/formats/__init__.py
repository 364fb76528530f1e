"""Readers for the teacher outputs people have, all turned into :class:`RankingExample` streams.

One module per format (``canonical`` = ``jsonl``, ``rankgpt``, ``rankllm``, ``reason_to_rank``,
``responses``, ``qrels``), each with a ``FORMAT`` entry in :mod:`.registry` (name, one-line help, reader,
detector); :mod:`.records` holds what they share. Files are read with ``data_prep.readers``' JSON/JSONL
readers. Each reader yields one :class:`TeacherRecord` per input record, holding the example or the
:class:`DataError` rejecting it, so a caller can stop at the first error or count and skip.

Why ``data_prep.formats`` and not ``data_prep.teacher.formats``: ``data_prep.teacher`` is the `dear teacher`
generator (endpoint client, rate limits, pricing); these readers serve `dear prep listwise` and read what
any teacher wrote (RankGPT, rank_llm, Reason-to-Rank, qrels), most of it never produced by `dear teacher`.
"""

from data_prep.formats.rankllm import parse_rankllm_prompt
from data_prep.formats.records import (
    META_GRADES,
    META_PASSAGE_REASONS,
    META_REASONING_ID_BASE,
    META_TEACHER_ORDERED,
    ReadOptions,
    TeacherFormat,
    TeacherRecord,
    resolve_ranking,
    validate_candidates,
)
from data_prep.formats.registry import DETECTION_ORDER, FORMATS, REGISTRY, detect_format, read_teacher
from data_prep.formats.responses import split_response

__all__ = [
    "DETECTION_ORDER", "FORMATS", "META_GRADES", "META_PASSAGE_REASONS", "META_REASONING_ID_BASE", "META_TEACHER_ORDERED",
    "REGISTRY", "ReadOptions", "TeacherFormat", "TeacherRecord", "detect_format", "parse_rankllm_prompt",
    "read_teacher", "resolve_ranking", "split_response", "validate_candidates",
]
