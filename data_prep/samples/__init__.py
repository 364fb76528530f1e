"""The license-clean sample shipped inside the package (NovelEval-2306, Apache-2.0)."""

from __future__ import annotations

from pathlib import Path

from data_prep.readers import Qrels, read_qrels, read_rankgpt_json
from data_prep.schema import RerankRequest

NOVELEVAL_DIR = Path(__file__).parent / "noveleval"


def noveleval_paths() -> tuple[Path, Path]:
    """(RankGPT JSON, qrels) of the embedded NovelEval sample."""
    return NOVELEVAL_DIR / "data.json", NOVELEVAL_DIR / "qrels.txt"


def load_noveleval_sample() -> tuple[list[RerankRequest], Qrels]:
    """21 queries x 20 passages in search-engine order, with graded qrels. Query ids are "0".."20"."""
    data, qrels = noveleval_paths()
    return read_rankgpt_json(data), read_qrels(qrels)
