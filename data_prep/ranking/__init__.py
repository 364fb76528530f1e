"""Ranking strings: the one formatter and the one parser that training targets and inference share.

``format`` writes targets, ``parse`` reads what models really write (docs/parser.md), ``repair`` turns the
ids read into a full permutation and counts every repair by kind.
"""

from data_prep.ranking.format import FINAL_MARKER, format_ranking, format_target
from data_prep.ranking.parse import (
    ParsedRanking,
    Reading,
    extract_ids,
    is_complete_ranking,
    parse_ranking,
    read_ranking,
)
from data_prep.ranking.repair import REPAIR_KINDS, add_repairs, repair_ids

__all__ = [
    "FINAL_MARKER", "REPAIR_KINDS", "ParsedRanking", "Reading", "add_repairs", "extract_ids", "format_ranking",
    "format_target", "is_complete_ranking", "parse_ranking", "read_ranking", "repair_ids",
]
