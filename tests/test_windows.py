"""The one window planner (data_prep.windows) and proof that prep, teacher and inference all follow it."""

import asyncio
import random

import pytest
from _infer_helpers import ScriptedBackend

from data_prep.listwise import ListwiseOptions, example_views
from data_prep.prompts import get_prompt_spec
from data_prep.ranking import format_ranking
from data_prep.schema import Candidate, RankingExample, RerankRequest
from data_prep.teacher.client import Completion
from data_prep.teacher.generate import Sample, Teacher, TeacherSettings, WindowResult
from data_prep.teacher.resume import RequestCache
from data_prep.windows import apply_window, variable_window_plan, window_plan
from inference.reranker import ListwiseReranker


def test_rankgpt_default_plan_is_back_to_front():
    plan = window_plan(100, 20, 10)
    assert plan == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40), (10, 30), (0, 20)]


def test_k_not_a_multiple_of_stride_still_covers_the_top_with_a_full_front_window():
    # RankGPT's loop would stop after (5, 25) and never rank positions 0..4; the front window is full.
    assert window_plan(95, 20, 10)[-2:] == [(5, 25), (0, 20)]
    assert window_plan(25, 20, 10) == [(5, 25), (0, 20)]


def test_small_k_edge_cases():
    assert window_plan(10, 20, 10) == [(0, 10)]  # rank_llm's loop ranks nothing here
    assert window_plan(5, 20, 10) == [(0, 5)]
    assert window_plan(1, 20, 10) == [(0, 1)]
    assert window_plan(0, 20, 10) == []
    assert window_plan(20, 20, 10) == [(0, 20)]
    assert window_plan(30, 20, 20) == [(10, 30), (0, 20)]


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="stride"):
        window_plan(100, 10, 20)
    with pytest.raises(ValueError):
        window_plan(100, 0, 1)
    with pytest.raises(ValueError, match="window must be >= 2"):
        window_plan(100, 1, 1)
    with pytest.raises(ValueError):
        window_plan(-1)


def test_apply_window_reorders_only_the_span():
    assert apply_window([0, 1, 2, 3, 4], (2, 5), [2, 0, 1]) == [0, 1, 4, 2, 3]
    with pytest.raises(ValueError):
        apply_window([0, 1, 2], (0, 2), [0, 0])


def test_properties_for_random_k_window_stride():
    rng = random.Random(0)
    for _ in range(500):
        window = rng.randint(2, 30)
        stride = rng.randint(1, window)
        k = rng.randint(0, 150)
        plan = window_plan(k, window, stride)
        covered = set()
        for start, end in plan:
            assert 0 <= start < end <= k and end - start == min(k, window)  # every window is full
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


def test_variable_windows_cover_every_position():
    rng = random.Random(0)
    for n in (3, 7, 20, 57, 100):
        wins = variable_window_plan(n, 20, 10, 4, rng)
        covered = set()
        for s, e in wins:
            assert min(4, n) <= e - s <= 20 and 0 <= s < e <= n
            covered.update(range(s, e))
        assert covered == set(range(n))
    lengths = {e - s for s, e in variable_window_plan(400, 20, 10, 4, random.Random(1))}
    assert len(lengths) > 5  # lengths really vary


def test_the_defaults_are_deans_window_20_and_stride_10():
    assert window_plan(100) == window_plan(100, 20, 10) and window_plan(100, 20) == window_plan(100, 20, 10)


def test_errors_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match="k must be >= 0, got -1"):
        window_plan(-1)
    with pytest.raises(ValueError, match=r"window order \[0, 0\] is not a permutation of 2 items"):
        apply_window([0, 1, 2], (0, 2), [0, 0])
    with pytest.raises(ValueError, match="min_window must be between 2 and the window \\(20\\), got 21"):
        variable_window_plan(50, 20, 10, 21, random.Random(0))


def test_variable_windows_boundaries():
    """min_window may be exactly 2 or exactly the window, not 1 or more; an empty list has no window, a list
    of one a window of one; and exactly one window (the last) ends at the list's end, even when a drawn
    window reaches it exactly."""
    rng = random.Random(0)
    assert variable_window_plan(10, 5, 5, 2, rng) and variable_window_plan(10, 5, 5, 5, rng)
    for bad in (1, 6):
        with pytest.raises(ValueError, match="min_window"):
            variable_window_plan(10, 5, 5, bad, rng)
    assert variable_window_plan(0, 20, 10, 4, rng) == []
    assert variable_window_plan(1, 20, 10, 4, rng) == [(0, 1)]
    assert variable_window_plan(10, 5, 5, 5, random.Random(0)) == [(0, 5), (5, 10)]
    for seed in range(200):
        n = 5 + seed % 40
        wins = variable_window_plan(n, 6, 6, 2, random.Random(seed))
        assert [e for _, e in wins].count(n) == 1 and wins[-1][1] == n, (seed, wins)


# -- prep, teacher and inference show the model the same windows -------------------------------------

def _inference_spans(k: int, window: int, stride: int) -> list[tuple[int, int]]:
    req = RerankRequest(qid="q", query="q", candidates=tuple(Candidate(f"d{i}", f"p{i}") for i in range(k)))
    identity = ScriptedBackend(lambda r: " " + " > ".join(f"[{i}]" for i in range(r.text.count("\n[") + 1)))
    reranker = ListwiseReranker(None, None, get_prompt_spec("dear-card"), window=window, stride=stride,
                                top_k=k, backend=identity)
    return [(w.start, w.end) for w in reranker.rerank_batch([req])[0].windows]


def _prep_spans(k: int, window: int, stride: int) -> list[tuple[int, int]]:
    ex = RankingExample(qid="q", query="q", candidates=tuple(Candidate(f"d{i}", f"p{i}") for i in range(k)),
                        ranking=tuple(f"d{i}" for i in range(k)))
    views = example_views(ex, ListwiseOptions(window=window, stride=stride), random.Random(0))
    spans = []
    for shown, kind in views:
        assert kind == "window" and shown == list(range(shown[0], shown[-1] + 1))
        spans.append((shown[0], shown[-1] + 1))
    return spans


def _teacher_spans(k: int, window: int, stride: int) -> list[tuple[int, int]]:
    teacher = Teacher(TeacherSettings(spec=get_prompt_spec("dear-cot"), model="m", window=window, stride=stride,
                                      top_k=k), client=None, cache=RequestCache(None))
    seen: list[tuple[int, int]] = []

    async def window_fn(query, shown, start, end):  # the teacher answers the identity order
        seen.append((start, end))
        order = list(range(len(shown)))
        sample = Sample(Completion(format_ranking(order, base=1), "stop", 1, 1), order, {}, 1, False)
        return WindowResult(start, end, shown, order, [sample], 0, [1.0], True, [])

    teacher._window = window_fn
    records, _ = asyncio.run(teacher.run_query(RerankRequest(
        qid="q", query="q", candidates=tuple(Candidate(f"d{i}", f"p{i}") for i in range(k)))))
    assert len(records) == len(seen)  # one record per planned window
    return seen


@pytest.mark.parametrize("window,stride", [(2, 1), (3, 2), (5, 5), (20, 10), (20, 7), (20, 20), (10, 3)])
def test_prep_teacher_and_inference_plan_the_same_windows(window, stride):
    for k in range(1, 3 * window + 2):
        plan = window_plan(k, window, stride)
        assert _inference_spans(k, window, stride) == plan, (k, window, stride)
        assert _teacher_spans(k, window, stride) == plan, (k, window, stride)
        # prep writes the same windows (one record each) in the same order
        assert _prep_spans(k, window, stride) == plan, (k, window, stride)
