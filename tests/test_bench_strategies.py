"""scripts/bench_strategies.py: the simulated ranker is the qrels order without noise (every strategy is then exact
for the top 10, so all tie sliding on nDCG@10), noise is seeded, and the target verdict reads the rows."""

from __future__ import annotations

import importlib.util
import types

from conftest import REPO, shared_path


def _bench():
    spec = importlib.util.spec_from_file_location("bench_strategies", REPO / "scripts" / "bench_strategies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_simulated_ranker_without_noise_is_exact_and_noise_is_seeded(tiny_model_dir):
    shared_path("trec-dl19", "qrels.dl19-passage.txt")
    bench = _bench()
    args = types.SimpleNamespace(datasets=["dl19"], noise=[0.0, 1.0], noise_kind=["call"], seed=0, limit=1)
    rows = bench.simulated(args)
    clean = [r for r in rows if r["noise"] == 0.0]
    assert [r["strategy"] for r in clean] == [label for label, _ in bench.STRATEGIES]
    for r in clean:
        assert r["unknown_passages"] == 0 and r["repairs"] == 0
        # grade ties among duplicated passages aside, an exact top 10 is an exact top 10
        assert abs(r["ndcg@10_minus_sliding"]) < 1.0, r
    by = {r["strategy"]: r for r in clean}
    assert by["sliding w20 s10"]["model_calls"] == by["sliding w20 s10"]["rounds"] == 9.0
    assert by["single (whole top-k)"]["model_calls"] == 1.0
    again = bench.simulated(args)
    assert [r["ndcg@10"] for r in again] == [r["ndcg@10"] for r in rows]  # seeded
    noisy = [r for r in rows if r["noise"] == 1.0]
    assert noisy[0]["ndcg@10"] < clean[0]["ndcg@10"]  # the noise does something
    verdict = bench.target_verdict(rows)
    assert verdict.startswith("call noise: target met by")
