"""Paired significance tests and multiple-comparison corrections, from scipy and statsmodels.

``t``: scipy's ``ttest_rel``; ``wilcoxon``: scipy's ``wilcoxon`` (signed ranks, zero differences dropped);
``fisher``: Fisher's randomization test as scipy's ``permutation_test`` over paired samples (each query's two
values swapped at random, i.e. the sign of its difference flipped), seeded. The statistic is the absolute mean
difference and the p-value the share of sign patterns at least as extreme (scipy's ``alternative='greater'`` on
it; a two-sided test, counted once rather than doubled from one side, which halves the Monte Carlo variance
near p = 0.5). The p-value is a Monte Carlo estimate, (k + 1) / (permutations + 1), with standard error
sqrt(p (1 - p) / permutations); exact (error 0) when the permutations cover all 2^n sign patterns. Corrections: statsmodels' ``multipletests`` (Holm,
Bonferroni). All tests are two-sided and take the run first, the one it is compared with second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TESTS = ("t", "wilcoxon", "fisher")
CORRECTIONS = ("holm", "bonferroni", "none")
TEST_NAMES = {"t": "paired t-test (scipy.stats.ttest_rel)",
              "wilcoxon": "Wilcoxon signed-rank test (scipy.stats.wilcoxon)",
              "fisher": "Fisher's randomization test (scipy.stats.permutation_test, paired)"}
CORRECTION_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no"}
DEFAULT_PERMUTATIONS = 10_000


@dataclass(frozen=True)
class TestResult:
    p_value: float
    statistic: float
    mc_se: float | None = None  # Monte Carlo standard error of the p-value (randomization test only)
    exact: bool = False  # the randomization test enumerated every sign pattern


def paired_test(x: Sequence[float], y: Sequence[float], test: str = "t", *,
                permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> TestResult:
    """Two-sided paired test of ``x`` against ``y`` (same queries, same order).

    Two identical score lists have p = 1 (scipy gives NaN for a t-test on all-zero differences: no
    evidence of a difference, not a failure)."""
    import warnings

    import numpy as np

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two lists of the same length, got {a.shape} and {b.shape}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if not np.any(a != b):
        return TestResult(p_value=1.0, statistic=0.0, mc_se=0.0 if test == "fisher" else None,
                          exact=test == "fisher")
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant differences: scipy warns, the answer stands
        if test == "t":
            res = stats.ttest_rel(a, b)
            return TestResult(p_value=float(res.pvalue), statistic=float(res.statistic))
        if test == "wilcoxon":
            res = stats.wilcoxon(a, b)
            return TestResult(p_value=float(res.pvalue), statistic=float(res.statistic))
    return randomization_test(a, b, permutations=permutations, seed=seed)


def randomization_test(x: Sequence[float], y: Sequence[float], *, permutations: int = DEFAULT_PERMUTATIONS,
                       seed: int = 0) -> TestResult:
    """Fisher's paired randomization test (scipy ``permutation_test``, ``permutation_type='samples'``)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def abs_mean_difference(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.abs(np.mean(u - v, axis=axis))

    batch = max(1, min(permutations, 2_000_000 // max(len(a), 1)))  # ~32 MB of draws at a time, any query count
    res = stats.permutation_test((a, b), abs_mean_difference, permutation_type="samples", vectorized=True,
                                 n_resamples=permutations, batch=batch, alternative="greater",
                                 rng=np.random.default_rng(seed))
    p = float(res.pvalue)
    exact = permutations >= 2 ** len(a)  # scipy enumerates every pattern then (its rule for paired samples)
    se = 0.0 if exact else math.sqrt(p * (1 - p) / permutations)
    return TestResult(p_value=p, statistic=float(np.mean(a - b)), mc_se=se, exact=exact)


def correct(p_values: Sequence[float], method: str = "holm", alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """(corrected p-values, rejected) over one family of tests; ``none`` leaves p as it is (p <= alpha)."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    if not p_values:
        return [], []
    if method == "none":
        return [float(p) for p in p_values], [bool(p <= alpha) for p in p_values]
    from statsmodels.stats.multitest import multipletests

    reject, corrected, _, _ = multipletests(list(p_values), alpha=alpha, method=method)
    return [float(p) for p in corrected], [bool(r) for r in reject]


def win_tie_loss(x: Sequence[float], y: Sequence[float]) -> tuple[int, int, int]:
    """Queries where ``x`` is above, equal to, below ``y``."""
    up = sum(1 for a, b in zip(x, y, strict=True) if a > b)
    down = sum(1 for a, b in zip(x, y, strict=True) if a < b)
    return up, len(x) - up - down, down
