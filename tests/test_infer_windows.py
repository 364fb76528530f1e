import random

import pytest

from inference.windows import apply_window, window_plan


def test_rankgpt_default_plan_is_back_to_front():
    plan = window_plan(100, 20, 10)
    assert plan == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40), (10, 30), (0, 20)]


def test_k_not_a_multiple_of_stride_still_covers_the_top():
    # RankGPT's loop would stop after (5, 25) and never rank positions 0..4.
    assert window_plan(95, 20, 10)[-2:] == [(5, 25), (0, 15)]
    assert window_plan(25, 20, 10) == [(5, 25), (0, 15)]


def test_small_k_edge_cases():
    assert window_plan(10, 20, 10) == [(0, 10)]  # rank_llm's loop ranks nothing here
    assert window_plan(5, 20, 10) == [(0, 5)]
    assert window_plan(1, 20, 10) == [(0, 1)]
    assert window_plan(0, 20, 10) == []
    assert window_plan(20, 20, 10) == [(0, 20)]
    assert window_plan(30, 20, 20) == [(10, 30), (0, 10)]


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="stride"):
        window_plan(100, 10, 20)
    with pytest.raises(ValueError):
        window_plan(100, 0, 1)
    with pytest.raises(ValueError):
        window_plan(-1)


def test_apply_window_reorders_only_the_span():
    assert apply_window([0, 1, 2, 3, 4], (2, 5), [2, 0, 1]) == [0, 1, 4, 2, 3]
    with pytest.raises(ValueError):
        apply_window([0, 1, 2], (0, 2), [0, 0])


def test_properties_for_random_k_window_stride():
    rng = random.Random(0)
    for _ in range(500):
        window = rng.randint(1, 30)
        stride = rng.randint(1, window)
        k = rng.randint(0, 150)
        plan = window_plan(k, window, stride)
        covered = set()
        for start, end in plan:
            assert 0 <= start < end <= k and end - start <= window
            covered.update(range(start, end))
        assert covered == set(range(k))  # every candidate lands in some window
        if plan:
            assert plan[0][1] == k and plan[-1][0] == 0
            assert all(a[0] > b[0] for a, b in zip(plan, plan[1:], strict=False))  # strictly moving up
        order = list(range(k))
        for start, end in plan:  # any window outputs keep a permutation
            w = list(range(end - start))
            rng.shuffle(w)
            order = apply_window(order, (start, end), w)
        assert sorted(order) == list(range(k))
