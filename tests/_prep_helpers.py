"""Helpers for the data-prep tests: fixture files built from the real data, and the RankGPT log reader."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# rank_llm's RankListwiseOSLLM prompt (RankZephyr / RankVicuna training and inference), 1-based ids
RANKLLM_SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query."


def rankllm_user_prompt(query: str, passages: list[str]) -> str:
    num = len(passages)
    text = (f"I will provide you with {num} passages, each indicated by a numerical identifier []. "
            f"Rank the passages based on their relevance to the search query: {query}.\n\n")
    for i, p in enumerate(passages, 1):
        text += f"[{i}] {p}\n"
    text += (f"Search Query: {query}.\nRank the {num} passages above based on their relevance to the search "
             "query. All the passages should be included and listed using identifiers, in descending order "
             "of relevance. The output format should be [] > [], e.g., [4] > [2], Answer concisely and "
             "directly and only respond with the ranking results, do not say any word or explain.")
    return text


def write_rankllm_fixture(path: Path, dl19: list[dict[str, Any]], qrels: dict[str, dict[str, int]],
                          n_queries: int = 6, window: int = 20) -> list[dict[str, Any]]:
    """RankZephyr-style conversation records built from real DL19 BM25 windows, answered by the qrels order.

    Record 1 answers with a duplicate and a missing id (a malformed teacher answer, as real ones are).
    Returns the source windows (qid, query, docids, passages, answer order 0-based) for checking.
    """
    out, sources = [], []
    for k, item in enumerate(dl19[:n_queries]):
        hits = item["hits"][:window]
        qid = str(hits[0]["qid"])
        passages = [" ".join(h["content"].split()) for h in hits]
        grades = qrels.get(qid, {})
        order = sorted(range(len(hits)), key=lambda i: -grades.get(hits[i]["docid"], 0))
        answer = " > ".join(f"[{i + 1}]" for i in order)
        if k == 1:  # a malformed answer: first id repeated, last one missing
            answer = " > ".join(f"[{i + 1}]" for i in [order[0], *order[:-1]])
        out.append({
            "id": qid,
            "conversations": [
                {"from": "system", "value": RANKLLM_SYSTEM},
                {"from": "human", "value": rankllm_user_prompt(item["query"], passages)},
                {"from": "gpt", "value": answer},
            ],
        })
        sources.append({"qid": qid, "query": item["query"], "docids": [h["docid"] for h in hits],
                        "passages": passages, "order": order})
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return sources


# ------------------------------------------------------------------------------------ RankGPT logs

_COUNTS = re.compile(r"^current_rep_passage_cnt: (\d+), current_miss_passage_cnt: (\d+)"
                     r"(?:, current_mismatch_query_cnt: (\d+))?$")
_WINDOW = re.compile(r"provide you with (\d+) passages")


@dataclass
class LoggedResponse:
    line: int  # 1-based line of " original response:" in the log
    text: str  # the raw model text
    window: int  # passages in the window it answered
    repeated: int  # the log's count of repeated ids for this window
    missing: int  # the log's count of missing ids
    original_rank: list[int] | None  # the ids the logging code read (1-based), when it printed them
    clean_rank: list[int] | None  # the logging code's cleaned 0-based order


def read_rankgpt_log(path: Path) -> list[LoggedResponse]:
    """Every ` original response:` of a RankGPT debug log, with the log's own counts for its window.

    The log prints, per malformed window: a counts line, "repetition, missing or mismatch:", then
    " original response: " + the raw (multi-line) text, then "original response rank: 1 2 ..." and
    " clean response rank: [0, 1, ...]" (the CoT log prints neither rank line).
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    m = _WINDOW.search("\n".join(lines[:60]))
    if m is None:
        raise ValueError(f"{path}: no 'provide you with N passages' in the header")
    window = int(m.group(1))
    out: list[LoggedResponse] = []
    counts = (0, 0)
    i = 0
    while i < len(lines):
        c = _COUNTS.match(lines[i])
        if c:
            counts = (int(c.group(1)), int(c.group(2)))
        if lines[i].startswith(" original response:"):
            start = i
            buf = [lines[i][len(" original response:"):].lstrip(" ")]
            i += 1
            while (i < len(lines) and not lines[i].startswith("original response rank:")
                   and not _COUNTS.match(lines[i]) and not lines[i].startswith("chat_cnt:")):
                buf.append(lines[i])
                i += 1
            orig = clean = None
            if i < len(lines) and lines[i].startswith("original response rank:"):
                orig = [int(x) for x in lines[i].split(":", 1)[1].split()]
                if i + 1 < len(lines) and lines[i + 1].startswith(" clean response rank:"):
                    clean = json.loads(lines[i + 1].split(":", 1)[1])
            out.append(LoggedResponse(line=start + 1, text="\n".join(buf).rstrip("\n"), window=window,
                                      repeated=counts[0], missing=counts[1], original_rank=orig,
                                      clean_rank=clean))
            continue
        i += 1
    return out
