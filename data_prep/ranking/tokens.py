"""Cutting an answer into tokens: ids, separators, notes, words (the rules that read them are in parse.py).

Ids are written ``[4]``, ``Passage 4``, ``passage [4]``, ``doc4``, ``[doc4]``, ``第4段`` or bare ``4``; bare ids
joined without spaces (``4-2-1-3``, ``4,2,1,3``) come from one *chain* match and are split here. Before
tokenizing, full-width and small-form ASCII variants (``［３］＞［１］``) are folded to ASCII one character for
one (their NFKC form), so character offsets still point into the original text; superscripts are left alone
(they are footnote marks, not digits).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


def _fold_table() -> dict[int, str]:
    """Full-width forms (U+FF01-FF5E), small forms (U+FE50-FE6B) and the ideographic space, mapped to the one
    ASCII character NFKC gives them; CJK lenticular/tortoise-shell brackets and the ideographic comma too."""
    table: dict[int, str] = {}
    for cp in [*range(0xFF01, 0xFF5F), *range(0xFE50, 0xFE6C), 0x3000]:
        folded = unicodedata.normalize("NFKC", chr(cp))
        if len(folded) == 1 and folded.isascii():
            table[cp] = folded
    table.update({ord("【"): "[", ord("】"): "]", ord("〔"): "[", ord("〕"): "]", ord("、"): ","})
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """``text`` with full-width forms folded to ASCII, same length (offsets stay valid)."""
    return text.translate(_FOLD)


_TOKEN_RE = re.compile(
    r"""
     (?P<nl>\n)
    |(?P<start>\[\s*start\s*\])
    |(?P<end>\[\s*end\s*\])
    |\[\s*(?:(?:passage|doc(?:ument)?|id)\s*[-_\#]?\s*)?(?P<bid>\d+)\s*\]
    |(?P<pword>(?:\b(?:passages?|docs?|documents?|candidates?|ids?)(?:\b\s*(?:\#|no\.)?\s*|[-_]?(?=\d))))
        (?:\[\s*(?P<pidb>\d+)\s*\]|(?P<pidn>\d+)(?![\w%]|[.,:/]\d))
    |(?P<cjk>第\s*(?P<cjkn>\d+)\s*(?:段落?|篇|个|個|条|條|号|號|项|項|位)?
        |(?:文档|文檔|文章|段落|文段|候选|文書|文献|パッセージ)\s*(?:\[\s*(?P<cjkb>\d+)\s*\]|(?P<cjkd>\d+)))
    |(?P<item>^[ \t]*(?:\d{1,3}[.)]|[-*•])(?=[ \t])|\[\s*rank\s*\d+\s*\])
    |(?P<gt>->|=>|>+|≻|→)
    |(?P<lt><-|<+(?![\w/!?])|≺|←)
    |(?P<eq>=)
    |(?P<chain>(?<![\w.\-/$\#%,])\d{1,3}(?:[-–—]\d{1,3}){2,}(?![\w%°\-–—]|[.,:/]\d)
        |(?<![\w.\-/$\#%,])\d{1,3}(?:,\d{1,3}){2,}(?![\w%°,]|[.:/\-]\d))
    |(?P<dash>[-–—]+)
    |(?P<comma>[,;|]|\band\b)
    |(?P<note>\([^()\n]{0,80}\)|[*†‡¹²³⁴⁵⁶⁷⁸⁹⁰_`]+|\^\d+|\[\^?[a-z*]\])
    |(?P<colon>:)
    |(?P<score>(?<![\w.])\d+\.\d+(?![\w.]))
    |(?P<bare>(?<![\w.\-/$\#%])\d+(?![\w%°]|[.,:/\-]\d))
    |(?P<other>[^\s\[\]()<>=,;:|*_`\-–—]+|\S)
    """,
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
_CHAIN_SPLIT = re.compile(r"\d+|[-–—]|,")


@dataclass
class Tok:
    """One token: ``kind`` is id | nl | start | end | gt | lt | eq | dash | comma | note | item | colon | score
    | other; an id carries its ``value`` and whether it was written ``bare`` (a plain number)."""

    kind: str
    start: int
    end: int
    value: int = -1
    bare: bool = False


def _chain(m: re.Match[str]) -> list[Tok] | None:
    """The ids of ``4-2-1-3`` / ``4,2,1,3`` as separate tokens, or None when it reads as a number instead:
    a repeated value (``1-1-2``) or thousands groups (``1,000,000``)."""
    parts = [(p.group(), m.start() + p.start(), m.start() + p.end()) for p in _CHAIN_SPLIT.finditer(m.group())]
    nums = [p for p in parts if p[0].isdigit()]
    values = [int(p[0]) for p in nums]
    if len(set(values)) < len(values):
        return None
    if "," in m.group() and all(len(p[0]) == 3 for p in nums[1:]):
        return None
    out = []
    for s, a, b in parts:
        if s.isdigit():
            out.append(Tok("id", a, b, int(s), bare=True))
        else:
            out.append(Tok("comma" if s == "," else "dash", a, b))
    return out


_MAX_ID_DIGITS = 9  # a longer number is no passage id (and int() refuses past 4,300 digits)


def tokens(text: str) -> list[Tok]:
    """``text`` (already folded) as tokens."""
    out: list[Tok] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "other"
        digits = m.group(kind) if kind in ("bid", "pidb", "pidn", "bare") else \
            (m.group("cjkn") or m.group("cjkb") or m.group("cjkd")) if kind == "cjk" else ""
        if len(digits) > _MAX_ID_DIGITS:
            out.append(Tok("other", m.start(), m.end()))
        elif kind in ("bid", "pidb", "pidn", "cjk"):  # "[4]"; "Passage 4", "passage [4]", "doc4"; "第4段"
            out.append(Tok("id", m.start(), m.end(), int(digits)))
        elif kind == "chain":
            split = _chain(m)
            out.extend(split if split is not None else [Tok("other", m.start(), m.end())])
        elif kind == "bare":
            out.append(Tok("id", m.start(), m.end(), int(digits), bare=True))
        else:
            out.append(Tok(kind, m.start(), m.end()))
    return out


def single_id(text: str) -> int | None:
    """The one id a short string names (``"3"``, ``"[3]"``, ``"doc3"``, ``"Passage 3"``), else None."""
    ids = [t.value for t in tokens(fold(text.strip())) if t.kind == "id"]
    return ids[0] if len(ids) == 1 else None
