"""Hypothesis strategies for the values that break tools at a boundary: ids, numbers and paths.

Shared by the boundary tests (files and options here; the server's request models can draw from the same
ids and numbers). Each ``bad_*`` strategy yields values a boundary must refuse with a clear message; each
``good_*`` strategy yields values it must take unchanged.
"""

from __future__ import annotations

import math
import sys

from hypothesis import strategies as st

# every character Python's str.split() splits on: a TREC reader would see other columns (or none)
WHITESPACE = tuple(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
# C0/C1 control characters that are not whitespace: invisible, and cut strings in C tools (trec_eval)
CONTROL = tuple(c for c in map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]) if not c.isspace())

# ids as real collections write them: letters (any script), digits, punctuation, symbols; never whitespace,
# control or format characters (a leading U+FEFF would be read as a byte-order mark)
good_ids = st.text(alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=12)


@st.composite
def bad_ids(draw: st.DrawFn) -> str:
    """An id no TREC file can hold: empty, only whitespace, or an id with whitespace or a control character."""
    kind = draw(st.sampled_from(["empty", "blank", "whitespace", "control"]))
    if kind == "empty":
        return ""
    if kind == "blank":
        return "".join(draw(st.lists(st.sampled_from(WHITESPACE), min_size=1, max_size=3)))
    base = draw(good_ids)
    at = draw(st.integers(0, len(base)))
    bad = draw(st.sampled_from(WHITESPACE if kind == "whitespace" else CONTROL))
    return base[:at] + bad + base[at:]


# numbers: what a score or a float option must refuse, and what it must take
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
huge_ints = st.integers(min_value=10**309, max_value=10**400) | st.integers(max_value=-(10**309), min_value=-(10**400))
good_scores = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def bad_json_scores(draw: st.DrawFn) -> object:
    """A JSON score that is not a real number: NaN/inf (Python's json writes them), an int too big for a
    float, text, a list, an object, a boolean."""
    return draw(st.one_of(
        non_finite, huge_ints, st.sampled_from(["", "high", "1,5", "nan", "inf", "0x1p3"]),
        st.lists(good_scores, max_size=2), st.dictionaries(st.sampled_from(["v"]), good_scores, max_size=1),
        st.booleans()))


def bad_number_text() -> st.SearchStrategy[str]:
    """A float option's command-line value that argparse takes but no setting can use."""
    return st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999"])


# how an output can be an input of the same command: the very path, a symlink to it, a hard link, or a
# folder the command writes that holds the input
PATH_RELATIONS = ("same", "symlink", "hardlink", "dot-dot", "inside")
path_relations = st.sampled_from(PATH_RELATIONS)
