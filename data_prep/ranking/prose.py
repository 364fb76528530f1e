"""Orderings written as sentences: "[3] is the most relevant, followed by [1], then [4]; [2] is the least".

A *prose chain* is a sequence of ids (never bare numbers) where every stretch of text between two ids uses
only ordering words ("followed by", "then", "next", "and finally", "is the most relevant", ...): one content
word ("mentions", "because") breaks it, so reasoning that cites passages is never read as an order. A chain
counts when the sentence of its first id says which is on top ("most relevant", "best", "highest") and the
chain says it goes on ("followed by", "then", "next", "second", "least", ...). Ids the chain calls the least
relevant go last.
"""

from __future__ import annotations

import re

from data_prep.ranking.tokens import Tok

_GAP_WORDS = frozenset("""
is are was be being the a an most more less least relevant relevance useful helpful important informative
pertinent directly highly closely slightly somewhat very followed by then next after that this it comes come
second third fourth fifth sixth seventh eighth ninth tenth last lastly finally and with while whereas both
equally in order of ranks ranked rank ranking highest lowest top best place placed position passage passages
document documents doc docs candidate candidates as well also similarly behind them they one ones i would put
at bottom remaining rest among so on slightly even still further plus than relevant followed comes coming
""".split())
_WORD = re.compile(r"[^\W\d_]+")
_TOP_CUE = re.compile(r"\b(?:most\s+(?:relevant|useful|helpful|important|informative|pertinent)|highest|best|top)\b",
                      re.IGNORECASE)
_NEXT_CUE = re.compile(r"\b(?:followed\s+by|then|next|after\s+that|second|third|finally|lastly|least|lowest)\b",
                       re.IGNORECASE)
_LEAST_AFTER = re.compile(r"^[\s,:(\-–—]*(?:(?:is|are|being|comes?|ranks?|ranked|as)\s+)*(?:the\s+)?(?:least|lowest|last)\b",
                          re.IGNORECASE)
_LEAST_BEFORE = re.compile(r"\b(?:least|lowest)(?:\s+\w+){0,2}\s+(?:is|are)[\s:]*$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n\s*\n")
_JUST_AND = re.compile(r"^\s*(?:,|and|&|,\s*and)\s*$", re.IGNORECASE)


def _gap_ok(gap: str) -> bool:
    """Text between two ids of a chain: short, one paragraph, ordering words only."""
    if len(gap) > 160 or re.search(r"\n\s*\n", gap) or re.search(r"\d", gap):
        return False
    return all(w.lower() in _GAP_WORDS for w in _WORD.findall(gap))


def _chains(text: str, toks: list[Tok]) -> list[list[Tok]]:
    ids = [t for t in toks if t.kind == "id" and not t.bare]
    chains: list[list[Tok]] = []
    cur: list[Tok] = []
    for t in ids:
        if cur and _gap_ok(text[cur[-1].end : t.start]):
            cur.append(t)
        else:
            if len(cur) >= 2:
                chains.append(cur)
            cur = [t]
    if len(cur) >= 2:
        chains.append(cur)
    return chains


def read_prose(text: str, toks: list[Tok]) -> tuple[list[int], list[int]] | None:
    """(ids in order, ids called least relevant) of the last prose chain, or None."""
    found = None
    id_ends = [t.end for t in toks if t.kind == "id"]
    for chain in _chains(text, toks):
        # the clause before the first id: from the sentence start or the id before it, whichever is later
        ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, chain[0].start)]
        ends += [e for e in id_ends if e <= chain[0].start]
        lead = text[max(ends, default=0) : chain[0].start]
        stop = _SENTENCE_END.search(text, chain[-1].end)
        tail = text[chain[-1].end : stop.start() if stop else len(text)]
        gaps = [text[a.end : b.start] for a, b in zip(chain, chain[1:], strict=False)]
        inner = " ".join([*gaps, tail])
        # the top cue belongs to the first id: "[3] is the most relevant, ..." or "the most relevant is [3]"
        cues = list(_TOP_CUE.finditer(lead))
        top = bool(_TOP_CUE.search(gaps[0])) or bool(cues and _gap_ok(lead[cues[-1].end():]))
        if not (top and _NEXT_CUE.search(inner)):
            continue
        is_least = [False] * len(chain)
        for k in reversed(range(len(chain))):
            after = gaps[k] if k < len(gaps) else tail
            before = gaps[k - 1] if k else lead
            # "[3] is the least", "the least relevant is [3]"; not "[1]; the least relevant is [3]" for [1]
            is_least[k] = bool((_LEAST_AFTER.match(after) and not (k < len(gaps) and _LEAST_BEFORE.search(after)))
                               or _LEAST_BEFORE.search(before)
                               or (k < len(gaps) and is_least[k + 1] and _JUST_AND.match(after)))
        found = ([t.value for t, x in zip(chain, is_least, strict=True) if not x], [t.value for t, x in zip(chain, is_least, strict=True) if x])
    return found
