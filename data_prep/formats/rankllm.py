"""``rankllm``: rank_llm / RankZephyr conversations (``{"conversations":[{"from","value"}...]}`` or
``{"messages":[{"role","content"}...]}``): a user prompt with ``[i] passage`` lines and an answer
``[a] > [b] > ...`` (1-based), parsed with :func:`data_prep.ranking.parse_ranking`, repairs counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.formats.records import (
    ReadOptions,
    TeacherFormat,
    TeacherRecord,
    qid_of,
    records,
    validate_candidates,
)
from data_prep.ranking import parse_ranking
from data_prep.schema import Candidate, DataError, RankingExample

_PASSAGE_LINE = re.compile(r"^\[(\d+)\] ?", re.MULTILINE)
_QUERY_PATTERNS = (
    re.compile(r"relevance to the search query: (.*?)\.\n", re.DOTALL),
    re.compile(r"relevance to query: (.*?)\.\n", re.DOTALL),
    re.compile(r"Search Query: (.*?)\.\s*\n", re.DOTALL),
)


def _messages(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) pairs of a ShareGPT (``conversations``/from/value) or OpenAI (``messages``) record."""
    turns = rec.get("conversations", rec.get("messages"))
    if not isinstance(turns, list):
        raise DataError("no 'conversations' or 'messages' list", reason="missing_field",
                        fix='use rank_llm\'s {"conversations": [{"from", "value"}, ...]}')
    roles = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
    out = []
    for t in turns:
        if not isinstance(t, dict):
            raise DataError("a conversation turn is not an object", reason="missing_field",
                            fix='turns are {"from", "value"} or {"role", "content"}')
        role = t.get("from", t.get("role"))
        text = t.get("value", t.get("content"))
        if role not in roles or not isinstance(text, str):
            raise DataError(f"turn with unknown role {role!r} or no text", reason="missing_field",
                            fix="roles are system/human/gpt or system/user/assistant")
        out.append((roles[role], text))
    return out


def parse_rankllm_prompt(text: str) -> tuple[str, list[str]]:
    """(query, passages in prompt order) from a rank_llm / RankGPT single-turn listwise user prompt."""
    query = None
    for pat in _QUERY_PATTERNS:
        m = pat.search(text)
        if m:
            query = m.group(1).strip()
            break
    if query is None:
        raise DataError("cannot find the query in the prompt", reason="missing_field",
                        fix="the user turn must say '... relevance to the search query: {query}.'")
    tail = text.rfind("Search Query:")
    body = text[: tail if tail >= 0 else len(text)]
    marks = list(_PASSAGE_LINE.finditer(body))
    passages: list[str] = []
    for k, m in enumerate(marks):
        if int(m.group(1)) != k + 1:
            raise DataError(f"passage identifiers out of sequence at [{m.group(1)}] (expected [{k + 1}])",
                            reason="malformed_prompt", fix="passages must be numbered [1], [2], ... in order")
        end = marks[k + 1].start() if k + 1 < len(marks) else len(body)
        passages.append(body[m.end():end].strip())
    if not passages:
        raise DataError("no '[i] passage' lines in the prompt", reason="missing_field",
                        fix="the user turn must list passages as '[1] text' lines")
    return query, passages


def read_rankllm(path: str | Path) -> Iterator[TeacherRecord]:
    """rank_llm / RankZephyr training conversations: system, user prompt, assistant ``[a] > [b]`` answer."""

    def convert(rec: Any) -> tuple[RankingExample, Counter[str]]:
        if not isinstance(rec, dict):
            raise DataError("expected a JSON object", reason="missing_field", fix="one conversation per line")
        turns = _messages(rec)
        users = [t for r, t in turns if r == "user"]
        answers = [t for r, t in turns if r == "assistant"]
        if not users or not answers:
            raise DataError("needs a user prompt and an assistant answer", reason="missing_field",
                            qid=qid_of(rec), fix="a record is system?, user (passages), assistant (ranking)")
        query, passages = parse_rankllm_prompt(users[-1])
        qid = qid_of(rec)
        if qid is None:
            raise DataError("no record id ('qid' or 'id')", reason="missing_field", fix="give each record an id")
        docids = rec.get("docids")
        if isinstance(docids, list) and len(docids) == len(passages):
            ids = [str(d) for d in docids]
        else:
            ids = [str(i + 1) for i in range(len(passages))]  # the prompt's identifiers
        cands = tuple(Candidate(docid=d, text=p) for d, p in zip(ids, passages, strict=True))
        validate_candidates(qid, query, cands)
        parsed = parse_ranking(answers[-1], len(cands), base=1)
        return RankingExample(qid=qid, query=query, candidates=cands,
                              ranking=tuple(cands[i].docid for i in parsed.order)), Counter(parsed.repairs)

    return records(Path(path), convert)


def _detect(rec: dict[str, Any]) -> str | None:
    if "conversations" in rec or "messages" in rec:
        return "records hold a 'conversations'/'messages' list (rank_llm / RankZephyr)"
    return None


def _read(path: Path, options: ReadOptions) -> Iterator[TeacherRecord]:
    return read_rankllm(path)


FORMAT = TeacherFormat(
    name="rankllm",
    description='rank_llm / RankZephyr conversations: user prompt with [i] passages + "[a] > [b]" answer',
    read=_read,
    detect=_detect,
)
