"""GRPO's reward functions: hand-computed nDCG, ir_measures on real DL19 windows, and the format cases (clean,
repaired, unparseable, chain of thought)."""

from __future__ import annotations

import math
import random

import pytest

from data_prep.prompts import get_prompt_spec
from dear_train.grpo.rewards import (
    format_reward,
    length_reward,
    ndcg_at_k,
    ranking_reward,
    reward_functions,
    reward_names,
)

GRADES = [3, 0, 2, 1]  # prompt order: [0] grade 3, [1] grade 0, [2] grade 2, [3] grade 1


def _log2(x: float) -> float:
    return math.log(x, 2)


def test_ndcg_by_hand():
    ideal = 3 + 2 / _log2(3) + 1 / _log2(4)
    assert ndcg_at_k([0, 2, 3, 1], GRADES, 10) == pytest.approx(1.0)
    # [1] > [0] > [2] > [3]: gains 0, 3, 2, 1 at ranks 1..4
    assert ndcg_at_k([1, 0, 2, 3], GRADES, 10) == pytest.approx((3 / _log2(3) + 2 / _log2(4) + 1 / _log2(5)) / ideal)
    # the cut: @1 only the first gain counts, against the ideal first gain
    assert ndcg_at_k([2, 0, 3, 1], GRADES, 1) == pytest.approx(2 / 3)
    assert ndcg_at_k([1, 0, 2, 3], GRADES, 1) == 0.0
    assert ndcg_at_k([3, 2, 1, 0], [0, 0, 0, 0], 10) == 0.0  # nothing relevant: 0 whatever the order


def test_ndcg_equals_ir_measures_on_real_dl19_windows(shared_data):
    """trec_eval's nDCG@10 (ir_measures) on 20-passage windows of DL19 BM25 with their qrels, random orders."""
    import ir_measures
    from ir_measures import nDCG

    from data_prep.readers import read_qrels, read_rankgpt_json

    requests = read_rankgpt_json(shared_data / "trec-dl19" / "retrieve_results_dl19_top100.json")
    qrels = read_qrels(shared_data / "trec-dl19" / "qrels.dl19-passage.txt")
    rng = random.Random(0)
    checked = 0
    for req in [r for r in requests if r.qid in qrels][:10]:
        for start in (0, 40, 80):
            window = req.candidates[start:start + 20]
            grades = [max(0, qrels[req.qid].get(c.docid, 0)) for c in window]
            for _ in range(5):
                order = list(range(len(window)))
                rng.shuffle(order)
                run = [ir_measures.ScoredDoc(req.qid, window[i].docid, float(len(order) - r))
                       for r, i in enumerate(order)]
                judged = [ir_measures.Qrel(req.qid, c.docid, g) for c, g in zip(window, grades, strict=True)]
                expected = ir_measures.calc_aggregate([nDCG @ 10], judged, run).get(nDCG @ 10, 0.0)
                assert ndcg_at_k(order, grades, 10) == pytest.approx(expected, abs=1e-12)
                checked += 1
    assert checked == 150


def test_clean_repaired_and_unparseable_answers():
    """dear-card: ids from 0, completions are plain strings (with the spec's leading space)."""
    answers = [
        " [0] > [2] > [3] > [1]",  # the ideal order, clean
        " [2] > [2] > [0]",  # a duplicate and two missing ids: repaired to [2, 0, 1, 3]
        " [0] > [2] > [3] > [1] > [7]",  # an out-of-range id: dropped by the repair
        " I cannot rank these passages.",  # nothing to read
    ]
    grades = [GRADES] * len(answers)
    ideal = 3 + 2 / _log2(3) + 1 / _log2(4)
    repaired = (2 + 3 / _log2(3) + 0 + 1 / _log2(5)) / ideal
    assert ranking_reward(answers, grades, id_base=0, k=10) == pytest.approx([1.0, repaired, 1.0, 0.0])
    assert format_reward(answers, grades, id_base=0) == [1.0, 0.0, 0.0, 0.0]


def test_chat_completions_and_one_based_ids():
    """rankgpt: ids from 1, TRL hands chat completions as message lists."""
    spec = get_prompt_spec("rankgpt")
    ranking, fmt = reward_functions(spec, k=10)
    completions = [[{"role": "assistant", "content": "[1] > [3] > [4] > [2]"}],
                   [{"role": "assistant", "content": "[0] > [1] > [2] > [3]"}]]  # 0 is no id here: repaired
    assert ranking(completions=completions, grades=[GRADES, GRADES]) == pytest.approx(
        [1.0, ndcg_at_k([0, 1, 2, 3], GRADES, 10)])
    assert fmt(completions=completions, grades=[GRADES, GRADES]) == [1.0, 0.0]


def test_chain_of_thought_needs_reasoning_then_the_final_marker():
    spec = get_prompt_spec("dear-cot")  # 1-based, "### Final Reranking:" after the reasoning
    ranking, fmt = reward_functions(spec, k=10)
    answers = [
        "[1] answers the query directly; [3] is close.\n### Final Reranking: [1] > [3] > [4] > [2]",
        "### Final Reranking: [1] > [3] > [4] > [2]",  # no reasoning before the marker
        "[1] is best, then [3], then [4] and [2]",  # no marker: digits in reasoning are no ranking
    ]
    msgs = [[{"role": "assistant", "content": a}] for a in answers]
    grades = [GRADES] * 3
    assert fmt(completions=msgs, grades=grades) == [1.0, 0.0, 0.0]
    assert ranking(completions=msgs, grades=grades) == pytest.approx([1.0, 1.0, 0.0])
    think = get_prompt_spec("dear-card", cot=True)  # <think> ... </think> then the ranking
    _, think_fmt = reward_functions(think)
    assert think_fmt(completions=[" <think>\n[0] is best\n</think>\n[0] > [2] > [3] > [1]",
                                  " <think>\n</think>\n[0] > [2] > [3] > [1]",
                                  " [0] > [2] > [3] > [1]"], grades=grades) == [1.0, 0.0, 0.0]


def test_length_reward_and_the_names_trl_logs():
    ids = [[1] * 10, [1] * 15, [1] * 25]
    assert length_reward(["a"] * 3, ids, target_tokens=10) == [1.0, 0.5, 0.0]
    spec = get_prompt_spec("dear-cot")
    assert reward_names(reward_functions(spec)) == ["ranking_reward", "format_reward"]
    assert reward_names(reward_functions(spec, length_target_tokens=512)) == [
        "ranking_reward", "format_reward", "length_reward"]
    from trl.trainer.utils import get_callable_name

    assert [get_callable_name(f) for f in reward_functions(spec, length_target_tokens=512)] == [
        "ranking_reward", "format_reward", "length_reward"]
