"""Runs compared query by query: against one baseline, or every pair (ranx-style letters).

One family of tests: every compared pair x every metric tested, corrected together (Holm by default), so the
chance of any false "significant" in the whole table stays at alpha. ``judged@10`` is a diagnostic, not tested.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from inference.evaluation.scores import QueryScores
from inference.evaluation.stats import DEFAULT_PERMUTATIONS, correct, paired_test, win_tie_loss


@dataclass(frozen=True)
class PairResult:
    """``run`` against ``other`` on ``metric``: differences are run minus other."""

    run: str
    other: str
    metric: str
    mean_run: float
    mean_other: float
    p_value: float
    p_corrected: float
    significant: bool
    improved: int
    tied: int
    degraded: int
    mc_se: float | None = None

    @property
    def difference(self) -> float:
        return self.mean_run - self.mean_other

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "difference": self.difference}


@dataclass(frozen=True)
class Comparison:
    runs: tuple[str, ...]
    metrics: tuple[str, ...]
    baseline: str | None
    test: str
    correction: str
    alpha: float
    permutations: int
    seed: int
    pairs: tuple[PairResult, ...]
    exact: bool = False  # the randomization tests enumerated every sign pattern

    def letters(self) -> dict[str, str]:
        """a, b, c, ... for the runs in order (ranx's labels), aa, ab, ... past 26."""
        abc = string.ascii_lowercase
        return {r: abc[i] if i < 26 else abc[i // 26 - 1] + abc[i % 26] for i, r in enumerate(self.runs)}

    def find(self, run: str, other: str, metric: str) -> PairResult | None:
        for p in self.pairs:
            if p.metric == metric and {p.run, p.other} == {run, other}:
                return p
        return None

    def better_than(self, run: str, metric: str) -> list[str]:
        """Runs that ``run`` beats significantly on ``metric`` (its superscript letters)."""
        out = []
        for other in self.runs:
            pair = self.find(run, other, metric) if other != run else None
            if pair is not None and pair.significant:
                mine, theirs = (pair.mean_run, pair.mean_other) if pair.run == run else (pair.mean_other,
                                                                                        pair.mean_run)
                if mine > theirs:
                    out.append(other)
        return out

    @property
    def family_size(self) -> int:
        return len(self.pairs)

    def as_dict(self) -> dict[str, object]:
        return {"baseline": self.baseline, "test": self.test, "correction": self.correction, "alpha": self.alpha,
                "permutations": self.permutations if self.test == "fisher" else None,
                "seed": self.seed if self.test == "fisher" else None, "exact": self.exact,
                "family_size": self.family_size, "letters": self.letters(),
                "pairs": [p.as_dict() for p in self.pairs]}


def compare(scores: QueryScores, runs: Sequence[str], metrics: Sequence[str], *, baseline: str | None = None,
            test: str = "t", correction: str = "holm", alpha: float = 0.05,
            permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> Comparison:
    """Paired tests of each run against ``baseline`` (or of every pair of runs), corrected as one family."""
    if baseline is not None:
        pairs = [(r, baseline) for r in runs if r != baseline]
    else:
        pairs = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]]
    raw = []
    for run, other in pairs:
        for m in metrics:
            x, y = scores.values[run][m], scores.values[other][m]
            raw.append((run, other, m, paired_test(x, y, test, permutations=permutations, seed=seed),
                        win_tie_loss(x, y)))
    corrected, rejected = correct([r[3].p_value for r in raw], correction, alpha)
    results = tuple(
        PairResult(run=run, other=other, metric=m, mean_run=scores.mean(run, m), mean_other=scores.mean(other, m),
                   p_value=res.p_value, p_corrected=pc, significant=rej, improved=w, tied=t, degraded=lo,
                   mc_se=res.mc_se)
        for (run, other, m, res, (w, t, lo)), pc, rej in zip(raw, corrected, rejected, strict=True))
    exact = test == "fisher" and bool(raw) and all(r[3].exact for r in raw)
    return Comparison(runs=tuple(runs), metrics=tuple(metrics), baseline=baseline, test=test,
                      correction=correction, alpha=alpha, permutations=permutations, seed=seed, pairs=results,
                      exact=exact)
