"""The parser against a hand-checked reference over every distinct real GPT-3.5 / GPT-4 RankGPT response.

tests/data/parser_reference.jsonl holds, per response, what a careful reader takes as the answer: the ids
it states (``expected``, 1-based, before repair) and the ids it names as irrelevant (``excluded``);
tests/data/PARSER_REFERENCE.md says how it was labelled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from _prep_helpers import read_rankgpt_log
from conftest import shared_path

from data_prep.ranking import parse_ranking, repair_ids

REFERENCE = Path(__file__).parent / "data" / "parser_reference.jsonl"
LOGS = [
    "correct_malform_debug_1_dl19_gpt-3.5-turbo_1_0.log",
    "correct_malform_debug_1_dl19_gpt-4-0314_1_0.log",
    "correct_malform_debug_1_dl20_gpt-3.5-turbo_1_0.log",
    "correct_malform_debug_1_dl20_gpt-4-0314_1_0.log",
    "cot_prompt_debug_12_dl19_gpt-4-0314_0.log",
]


def _records() -> list[dict]:
    return [json.loads(line) for line in REFERENCE.read_text(encoding="utf-8").splitlines()]


def _wanted(rec: dict) -> list[int]:
    return repair_ids(rec["expected"], rec["n"], base=rec["base"], last=rec["excluded"])[0]


def _naive(text: str, n: int) -> list[int]:
    """RankGPT's / rank_llm's reading: every digit run in the text, in order, deduped."""
    return repair_ids([int(x) for x in re.findall(r"\d+", text)], n, base=1)[0]


def test_reference_records_are_well_formed():
    recs = _records()
    assert len(recs) == 421
    assert len({r["text"] for r in recs}) == len(recs)
    for r in recs:
        assert set(r) == {"log", "line", "n", "base", "text", "expected", "excluded", "label_note"}
        assert r["log"] in LOGS and r["n"] == 20 and r["base"] == 1
        assert all(1 <= i <= r["n"] for i in r["expected"] + r["excluded"])


def test_parser_agrees_with_the_careful_reader_on_at_least_99_percent():
    recs = _records()
    misses = []
    for r in recs:
        got = parse_ranking(r["text"], r["n"], base=r["base"]).order
        if got != _wanted(r):
            misses.append(f"{r['log']}:{r['line']} want {[i + 1 for i in _wanted(r)]} got {[i + 1 for i in got]}")
    agreement = 1 - len(misses) / len(recs)
    naive = sum(_naive(r["text"], r["n"]) == _wanted(r) for r in recs) / len(recs)
    print(f"parser agreement {agreement:.1%} ({len(recs) - len(misses)}/{len(recs)}), all-digits reading {naive:.1%}")
    print("\n".join(misses))
    assert agreement >= 0.99, "\n".join(misses)
    assert naive < 0.7  # the logs are full of digits in reasoning: reading them all is far off


def test_reference_covers_every_distinct_logged_response():
    recs = {(r["log"], r["line"]): r["text"] for r in _records()}
    seen: dict[str, tuple[str, int]] = {}
    for name in LOGS:
        for resp in read_rankgpt_log(shared_path("rankgpt-llm-response-logs", name)):
            seen.setdefault(resp.text, (name, resp.line))
    assert len(seen) == len(recs) == 421
    for text, where in seen.items():
        assert recs[where] == text, f"{where}: reference text differs from the log"
