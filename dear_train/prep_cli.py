"""`dear prep`: the ``data_prep`` dataset builders, wired to the model scorer ``--teacher-model`` needs.

``data_prep`` imports neither ``inference`` nor ``dear_train``, yet ``dear prep pointwise --teacher-model``
scores candidates with a model. This module sits in the layer that may import both and hands
``inference.teacher_scores.score_with_teacher_model`` down, imported only when that flag is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_prep.schema import RerankRequest


def _score_with_teacher_model(model_path: str | Path, requests: Iterable[RerankRequest], out_path: str | Path,
                              **options: Any) -> Path:
    from inference.teacher_scores import score_with_teacher_model

    return score_with_teacher_model(model_path, requests, out_path, **options)


def main(argv: list[str] | None = None) -> int:
    from data_prep.cli import main as prep_main

    return prep_main(argv, score_teacher=_score_with_teacher_model)
