"""`dear prep listwise|pointwise`: dispatch to the two dataset builders.

``score_teacher`` (for ``pointwise --teacher-model``) is passed in by the `dear` CLI layer
(``dear_train.prep_cli``), since ``data_prep`` imports no model code.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from data_prep.pointwise_cli import TeacherScorer

SUBCOMMANDS = {
    "listwise": ("data_prep.listwise_cli", "listwise SFT records from teacher permutations"),
    "pointwise": ("data_prep.pointwise_cli", "pointwise distillation groups from teacher scores"),
}


def main(argv: list[str] | None = None, *, score_teacher: TeacherScorer | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        lines = ["usage: dear prep {listwise,pointwise} [options]", ""]
        lines += [f"  {k:<10} {h}" for k, (_, h) in SUBCOMMANDS.items()]
        print("\n".join(lines), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    if argv[0] == "pointwise":
        return int(module.main(argv[1:], score_teacher=score_teacher) or 0)
    return int(module.main(argv[1:]) or 0)
