"""Teacher scores from a sequence-classification model: the ``--teacher-model`` step of `dear prep pointwise`.

Scoring candidates with a model is inference, so it lives here and not in ``data_prep`` (which imports
neither other package); the `dear` CLI hands this function to ``data_prep.pointwise_cli`` (see
``dear_train.prep_cli``). The output is the ``qid docid score`` TSV that ``data_prep.pointwise`` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_prep.io.atomic import write_text_atomic
from data_prep.schema import RerankRequest

logger = logging.getLogger(__name__)


def _done_qids(path: Path) -> set[str]:
    """Queries already complete in a resumable score file; a torn last line (crash mid-write) is cut off."""
    from data_prep.io import complete_lines

    done_marker = "# done "
    return {line[len(done_marker):].strip() for line in complete_lines(path) if line.startswith(done_marker)}


def score_with_teacher_model(
    model_path: str | Path,
    requests: Iterable[RerankRequest],
    out_path: str | Path,
    *,
    batch_size: int = 32,
    dtype: str = "auto",
    device_map: str | None = "auto",
    base_model: str | None = None,
    pair_format: Any | None = None,
) -> Path:
    """Score every candidate with a sequence-classification teacher into a ``qid docid score`` TSV.

    Resumable: each query's lines are appended and flushed, then a ``# done <qid>`` line; a rerun skips the
    queries marked done (and discards a half-written query).
    """
    from data_prep.io import OutputLock
    from inference.pointwise import PointwiseReranker

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # one writer: a second job would rewrite the file under this one and interleave queries
    with OutputLock(out, what="teacher scores"):
        done = _done_qids(out)
        # a query whose lines were written but whose marker was not: drop its lines before rescoring
        if out.is_file():
            lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [ln for ln in lines if ln.startswith("#") or ln.split("\t", 1)[0] in done]
            if len(kept) != len(lines):
                write_text_atomic(out, "".join(kept))
        todo = [r for r in requests if r.qid not in done]
        logger.info("teacher scoring: %d queries done, %d to score -> %s", len(done), len(todo), out)
        if not todo:
            return out
        teacher = PointwiseReranker.from_pretrained(model_path, base_model=base_model, dtype=dtype,
                                                    device_map=device_map, batch_size=batch_size,
                                                    pair_format=pair_format)
        with out.open("a", encoding="utf-8") as f:
            for req in todo:
                values = teacher.score(req.query, list(req.candidates))
                f.write("".join(f"{req.qid}\t{c.docid}\t{s:.6f}\n" for c, s in zip(req.candidates, values, strict=True)))
                f.write(f"# done {req.qid}\n")
                f.flush()
        return out
