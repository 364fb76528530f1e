"""`dear eval`'s statistics: the library's p-values exactly, the randomization test against full enumeration,
the corrections against hand-computed figures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inference.evaluation.stats import correct, paired_test, randomization_test, win_tie_loss

scipy_stats = pytest.importorskip("scipy.stats")
pytest.importorskip("statsmodels")


def _pairs(n: int, seed: int, effect: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Per-query scores of two correlated systems (like two rerankings of the same first stage)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, n)
    return np.clip(base + effect + rng.normal(0, 0.1, n), 0, 1), base


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t_and_wilcoxon_p_values_are_scipys(seed: int) -> None:
    x, y = _pairs(43, seed)
    assert paired_test(x, y, "t").p_value == scipy_stats.ttest_rel(x, y).pvalue
    assert paired_test(x, y, "t").statistic == scipy_stats.ttest_rel(x, y).statistic
    assert paired_test(x, y, "wilcoxon").p_value == scipy_stats.wilcoxon(x, y).pvalue
    # per-query metrics tie often (both 0, both 1): zero differences are dropped, as scipy's default does
    xr, yr = np.round(x, 1), np.round(y, 1)
    assert (xr == yr).any() and (xr != yr).any()
    assert paired_test(xr, yr, "wilcoxon").p_value == scipy_stats.wilcoxon(xr, yr).pvalue
    assert paired_test(xr, yr, "t").p_value == scipy_stats.ttest_rel(xr, yr).pvalue
    # the order is run first: the statistic's sign follows it, the two-sided p does not
    assert paired_test(y, x, "t").statistic == -paired_test(x, y, "t").statistic


def test_identical_runs_have_p_one_and_ties_are_counted() -> None:
    x = [0.5, 0.25, 1.0]
    for test in ("t", "wilcoxon", "fisher"):
        assert paired_test(x, list(x), test).p_value == 1.0
    assert win_tie_loss([0.5, 0.2, 0.9, 0.1], [0.4, 0.2, 1.0, 0.1]) == (1, 2, 1)
    with pytest.raises(ValueError, match="same length"):
        paired_test([0.1, 0.2], [0.1], "t")


def _exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of the paired randomization test by enumerating all 2^n sign flips of the differences."""
    d = x - y
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    means = np.abs(signs @ d) / len(d)
    return float(np.mean(means >= abs(d.mean()) * (1 - 1e-12)))


@pytest.mark.parametrize("seed,effect", [(3, 0.05), (3, 0.03), (6, 0.05), (4, 0.05)])  # exact p 0.004-0.47
def test_randomization_p_is_within_its_monte_carlo_error_of_the_exact_p(seed: int, effect: float) -> None:
    x, y = _pairs(14, seed, effect)  # 2^14 = 16,384 sign patterns, more than the 10,000 drawn
    exact = _exact_p(x, y)
    assert 0.001 < exact < 0.6  # a p-value where the Monte Carlo error matters
    res = randomization_test(x, y, permutations=10_000, seed=0)
    assert not res.exact and res.mc_se == pytest.approx(np.sqrt(res.p_value * (1 - res.p_value) / 10_000))
    assert abs(res.p_value - exact) <= 4 * np.sqrt(exact * (1 - exact) / 10_000), (res.p_value, exact)
    # seeded: the same seed gives the same p-value
    assert randomization_test(x, y, permutations=10_000, seed=0).p_value == res.p_value


def test_randomization_is_exact_when_the_permutations_cover_every_sign_pattern() -> None:
    x, y = _pairs(10, 7, 0.04)  # 1,024 patterns < 10,000 permutations: scipy enumerates them
    res = paired_test(x, y, "fisher", permutations=10_000, seed=0)
    assert res.exact and res.mc_se == 0.0
    assert res.p_value == pytest.approx(_exact_p(x, y), rel=1e-9)


def test_holm_and_bonferroni_match_a_hand_computed_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Bonferroni: each p times 4, capped at 1
    corrected, reject = correct(p, "bonferroni", 0.05)
    assert corrected == pytest.approx([0.04, 0.16, 0.12, 0.02]) and reject == [True, False, False, True]
    # Holm, by hand: sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    corrected, reject = correct(p, "holm", 0.05)
    assert corrected == pytest.approx([0.03, 0.06, 0.06, 0.02]) and reject == [True, False, False, True]
    corrected, reject = correct(p, "none", 0.05)
    assert corrected == p and reject == [True, True, True, True]
    assert correct(p, "holm", 0.01)[1] == [False, False, False, False]
    with pytest.raises(ValueError, match="correction must be one of"):
        correct(p, "sidak")
