"""`dear teacher` against a real OpenAI-compatible HTTP server on loopback (tests/_fake_openai_server.py).

The server ranks the passages of each prompt by query-word overlap and answers with chain-of-thought text
ending in ``### Final Reranking: ...``; tests script 429/500/truncated/slow/garbage answers and crashes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path

import pytest
from _fake_openai_server import FakeOpenAI, overlap_order
from conftest import REPO, shared_path

from data_prep.prompts import get_prompt_spec, render_prompt, training_record
from data_prep.ranking import FINAL_MARKER, format_target, parse_ranking
from data_prep.readers import read_qrels, read_rankgpt_json, write_rankgpt_json, write_run
from data_prep.schema import Candidate, RankingExample, RerankRequest
from data_prep.teacher.aggregate import aggregate, borda, footrule, kendall_tau
from data_prep.teacher.client import RetryPolicy, parse_retry_after
from data_prep.teacher.generate import split_reasoning
from data_prep.teacher.pricing import load_prices, price_for
from data_prep.teacher.ratelimit import TokenBucket
from data_prep.teacher_cli import main as teacher_main
from data_prep.windows import window_plan

KEY = "sk-test-0123456789abcdefSECRET"
NOVELEVAL = REPO / "data_prep" / "samples" / "noveleval"


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture()
def fake():
    server = FakeOpenAI()
    url = server.start()
    server.url = url
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dl19_small(tmp_path_factory) -> Path:
    """The first 6 DL19 queries, BM25 top-30 with passage text (RankGPT JSON)."""
    reqs = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:6]
    reqs = [RerankRequest(r.qid, r.query, r.candidates[:30]) for r in reqs]
    path = tmp_path_factory.mktemp("dl19") / "dl19_top30.json"
    write_rankgpt_json(path, reqs)
    return path


def run(fake: FakeOpenAI, out: Path, *extra: str, key: str = KEY) -> int:
    """`dear teacher` in-process against the fake server, with ``key`` in $OPENAI_API_KEY."""
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = key
    try:
        return teacher_main(["--out", str(out), "--endpoint", fake.url, "--model", "gpt-4o",
                             "--backoff-base", "0.01", "--no-progress", *extra])
    finally:
        if saved is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = saved


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def report_of(out: Path) -> dict:
    return json.loads(out.with_suffix(".report.json").read_text(encoding="utf-8"))


def as_example(rec: dict) -> RankingExample:
    cands = tuple(Candidate(docid=c["docid"], text=c["text"], title=c.get("title"), score=c.get("score"))
                  for c in rec["candidates"])
    return RankingExample(qid=rec["qid"], query=rec["query"], candidates=cands, ranking=tuple(rec["ranking"]),
                          reasoning=rec.get("reasoning"))


def expected_final(req: RerankRequest, top_k: int, window: int, stride: int) -> list[str]:
    """The sliding-window result of the fake teacher, computed independently of the driver."""
    cands = list(req.candidates[:top_k])
    for start, end in window_plan(len(cands), window, stride):
        shown = cands[start:end]
        passages = render_prompt(get_prompt_spec("dear-cot"), req.query, [c.passage() for c in shown]).passages
        order, _ = overlap_order(req.query, list(enumerate(passages)))
        cands[start:end] = [shown[p] for p in order]
    return [c.docid for c in cands]


def assert_no_key(*texts: str) -> None:
    for t in texts:
        assert KEY not in t


# -- units ------------------------------------------------------------------------------------------
def test_dear_cot_spec_asks_for_final_line_and_round_trips():
    spec = get_prompt_spec("dear-cot")
    assert spec.cot and spec.final_marker and spec.style == "chat" and spec.id_base == 1
    p = render_prompt(spec, "what is x", ["alpha", "beta", "gamma"])
    tail = p.messages[-1]["content"]
    assert FINAL_MARKER in tail and "step by step" in tail and "all 3 identifiers" in tail
    rec = training_record(spec, p, [2, 0, 1], reasoning="Passage [3] answers it.")
    target = rec["completion"][0]["content"]
    assert target == f"Passage [3] answers it.\n{FINAL_MARKER} [3] > [1] > [2]"
    assert parse_ranking(target, 3, base=1, cot=True).order == [2, 0, 1]
    assert split_reasoning(target, spec) == "Passage [3] answers it."
    # rankgpt is untouched: no final-marker instruction, think-style targets
    rk = get_prompt_spec("rankgpt", cot=True)
    assert FINAL_MARKER not in render_prompt(rk, "q", ["a"]).messages[-1]["content"]
    assert format_target([1, 0], reasoning="r", cot=True) == "<think>\nr\n</think>\n[1] > [0]"


def test_kendall_footrule_and_aggregation():
    assert kendall_tau([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert kendall_tau([0, 1, 2, 3], [3, 2, 1, 0]) == -1.0
    assert kendall_tau([0, 1, 2], [1, 0, 2]) == pytest.approx(1 / 3)
    assert footrule([0, 1, 2], [2, 1, 0]) == 4
    a, b, c = [0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [4, 3, 2, 1, 0]
    agg = aggregate([c, a, b], "consistency")
    assert agg.order == b and agg.chosen == 2  # B agrees best with the others (mean tau 0.0 vs -0.1, -0.9)
    assert borda([a, b, c]) == [1, 0, 2, 3, 4]
    x, y = [0, 1, 2, 3], [1, 0, 3, 2]
    agg = aggregate([x, y], "borda")  # consensus [0, 1, 2, 3] by tie-breaking == x
    assert agg.order == [0, 1, 2, 3] and agg.reasoning_matches
    agg = aggregate([[2, 0, 1], [1, 2, 0], [0, 2, 1]], "borda")
    assert agg.order == [2, 0, 1] and agg.chosen == 0 and agg.reasoning_matches


def test_token_bucket_spaces_requests_at_the_rate():
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    bucket = TokenBucket(2.0, capacity=1.0, clock=lambda: now[0], sleep=fake_sleep)

    async def go() -> None:
        for _ in range(5):
            await bucket.acquire()

    asyncio.run(go())
    assert now[0] == pytest.approx(2.0)  # 1 free token, then 4 more at 2/s
    assert len(slept) == 4


def test_retry_after_and_backoff():
    import random

    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 50 < parse_retry_after({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                                time.gmtime(time.time() + 60))}) <= 60
    assert parse_retry_after({}) is None
    pol = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    rng = random.Random(0)
    for attempt, hi in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 8.0)]:
        d = pol.delay(attempt, None, rng)
        assert hi / 2 <= d <= hi
    assert pol.delay(0, 7.5, rng) == 7.5


def test_price_table(tmp_path):
    table, src = load_prices()
    assert src and src.endswith("data_prep/teacher/prices.yaml")
    assert price_for("gpt-4o-2024-08-06", table) == table["gpt-4o"]
    assert price_for("gpt-4o-mini", table) == table["gpt-4o-mini"]
    assert price_for("my-local-model", table) is None
    assert table["gpt-4o"].cost(1_000_000, 100_000) == pytest.approx(2.5 + 1.0)
    bad = tmp_path / "p.yaml"
    bad.write_text("models:\n  m: {input: 1}\n")
    with pytest.raises(Exception, match="exactly 'input' and 'output'"):
        load_prices(bad)


# -- end to end -------------------------------------------------------------------------------------
def test_sliding_windows_records_match_an_independent_simulation(fake, tmp_path, dl19_small):
    out = tmp_path / "t.jsonl"
    rc = run(fake, out, "--input", str(dl19_small), "--limit", "3", "--top-k", "30")
    assert rc == 0
    recs = records(out)
    reqs = read_rankgpt_json(dl19_small)[:3]
    assert len(recs) == 6  # 2 windows (10-30, 0-20) per query
    by_q: dict[str, list[dict]] = {}
    for r in recs:
        by_q.setdefault(r["source_qid"], []).append(r)
    spec = get_prompt_spec("dear-cot")
    for req in reqs:
        wins = by_q[req.qid]
        assert [(w["window"]["start"], w["window"]["end"]) for w in wins] == [(10, 30), (0, 20)]
        assert [w["qid"] for w in wins] == [f"{req.qid}@10-30", f"{req.qid}@0-20"]  # unique per record
        final = expected_final(req, 30, 20, 10)
        for w in wins:
            assert w["query_ranking"] == final
            ex = as_example(w)
            assert sorted(ex.ranking) == sorted(c.docid for c in ex.candidates)
            assert len(ex.candidates) == 20 and ex.reasoning and "Passage [" in ex.reasoning
            assert FINAL_MARKER in w["raw_response"] and w["repairs"] == {} and w["reasoning_id_base"] == 1
            assert w["usage"]["prompt_tokens"] > 0 and w["teacher"]["prompt"] == "dear-cot"
            # the record is a training example whose target parses back to the teacher order
            prompt = render_prompt(spec, ex.query, [c.passage() for c in ex.candidates])
            target = training_record(spec, prompt, ex.order_indices(), ex.reasoning)["completion"][0]["content"]
            assert parse_ranking(target, 20, base=1, cot=True).order == ex.order_indices()
        # the front window shows the survivors of the back window in their new order
        back, front = wins
        assert [c["docid"] for c in front["candidates"]][10:] == back["ranking"][:10]
        assert front["ranking"] == final[:20]
    rep = report_of(out)
    assert rep["queries"] == {"total": 3, "written": 3, "resumed": 0, "filtered": 0, "failed": 0}
    assert rep["requests"]["sent"] == 6 and rep["tokens"]["total"] > 0
    assert rep["cost_usd"] == pytest.approx((rep["tokens"]["prompt"] * 2.5 + rep["tokens"]["completion"] * 10) / 1e6)


def test_query_records_hold_the_final_permutation(fake, tmp_path, dl19_small):
    out = tmp_path / "q.jsonl"
    assert run(fake, out, "--input", str(dl19_small), "--limit", "2", "--top-k", "30", "--records", "query") == 0
    reqs = read_rankgpt_json(dl19_small)[:2]
    recs = records(out)
    assert sorted(r["qid"] for r in recs) == sorted(r.qid for r in reqs)
    for rec in recs:
        req = next(r for r in reqs if r.qid == rec["qid"])
        assert [c["docid"] for c in rec["candidates"]] == [c.docid for c in req.candidates[:30]]
        assert rec["ranking"] == expected_final(req, 30, 20, 10)
        assert "reasoning" not in rec and len(rec["windows"]) == 2
        assert all(w["reasoning"] for w in rec["windows"])


def test_retries_on_429_500_truncated_garbage_and_timeouts(fake, tmp_path, dl19_small):
    # The timed-out request hangs instead of sleeping a set time, so the timeout can be long enough that no
    # other answer reaches it on a loaded 2-core CI machine (0.5 s once turned "garbage" into a timeout there).
    fake.plan.extend([("429", 0.3), ("500",), ("truncated",), ("garbage",), ("hang",)])
    out = tmp_path / "r.jsonl"
    rc = run(fake, out, "--input", str(dl19_small), "--limit", "4", "--concurrency", "1", "--timeout", "3")
    assert rc == 0
    rep = report_of(out)
    assert rep["requests"]["retries"] == {"rate_limited": 1, "http_500": 1, "truncated_json": 1,
                                          "unparseable": 1, "timeout": 1}
    assert rep["queries"]["written"] == 4 and rep["queries"]["failed"] == 0
    assert len(records(out)) == 4 and len({r["qid"] for r in records(out)}) == 4
    # Retry-After was honoured: the retry came at least 0.3 s after the 429
    first, second = fake.seen[0], fake.seen[1]
    assert first.action == "429" and second.at - first.at >= 0.3


def test_failures_are_accounted_and_the_key_never_leaks(fake, tmp_path, dl19_small, caplog, capsys):
    reqs = read_rankgpt_json(dl19_small)
    fake.always[reqs[1].query] = ("500",)
    fake.always[reqs[3].query] = ("echo_key_401",)
    fake.always[reqs[4].query] = ("length",)
    out = tmp_path / "f.jsonl"
    caplog.set_level(logging.DEBUG)
    os.environ["MY_TEACHER_KEY"] = KEY
    try:
        rc = teacher_main(["--input", str(dl19_small), "--out", str(out), "--endpoint", fake.url, "--model", "m",
                           "--api-key-env", "MY_TEACHER_KEY", "--max-retries", "2", "--backoff-base", "0.01"])
    finally:
        os.environ.pop("MY_TEACHER_KEY")
    assert rc == 1
    rep = report_of(out)
    assert rep["queries"]["written"] + rep["queries"]["failed"] == rep["queries"]["total"] == 6
    failed = {f["qid"]: f for f in rep["failed"]}
    assert failed[reqs[1].qid]["reason"] == "http_500"
    assert failed[reqs[3].qid]["reason"] == "http_401" and "***" in failed[reqs[3].qid]["message"]
    assert len(fake.requests_for(reqs[1].query)) == 3  # first try + 2 retries
    assert len(fake.requests_for(reqs[3].query)) == 1  # 401 is not retried
    assert failed[reqs[4].qid]["reason"] == "output_truncated" and "--max-tokens" in failed[reqs[4].qid]["message"]
    assert len(fake.requests_for(reqs[4].query)) == 1  # cut at the token limit: not asked again
    assert {r["qid"] for r in records(out)} == {r.qid for r in reqs} - set(failed)
    assert rep["cost_usd"] is None  # model "m" has no price
    # the key went to the server, and nowhere else
    assert {s.authorization for s in fake.seen} == {f"Bearer {KEY}"}
    captured = capsys.readouterr()
    assert "req/s" in captured.err and "6/6" in captured.err  # the progress bar ran (on stderr)
    files = [p.read_text(encoding="utf-8") for p in tmp_path.iterdir() if p.is_file()]
    assert len(files) == 3  # output, report, request cache
    assert_no_key(*files, captured.out, captured.err, caplog.text,
                  *(str(r.args) for r in caplog.records))
    # a rerun retries only the failed queries (the server has recovered)
    fake.always.clear()
    assert run(fake, out, "--input", str(dl19_small)) == 0
    rep = report_of(out)
    assert rep["queries"] == {"total": 6, "written": 3, "resumed": 3, "filtered": 0, "failed": 0}
    assert Counter(r["qid"] for r in records(out)) == Counter({r.qid: 1 for r in reqs})


def test_resume_skips_finished_queries_and_repairs_a_torn_tail(fake, tmp_path, dl19_small):
    out = tmp_path / "res.jsonl"
    assert run(fake, out, "--input", str(dl19_small), "--limit", "3") == 0
    reqs = read_rankgpt_json(dl19_small)
    assert len(fake.seen) == 3
    with out.open("a", encoding="utf-8") as f:  # a crash in the middle of writing a record
        f.write('{"qid": "' + reqs[4].qid + '", "query": "half a reco')
    assert run(fake, out, "--input", str(dl19_small)) == 0
    assert len(fake.seen) == 6
    assert sorted(s.query for s in fake.seen[3:]) == sorted(r.query for r in reqs[3:])
    recs = records(out)
    assert Counter(r["qid"] for r in recs) == Counter({r.qid: 1 for r in reqs})
    # a third run has nothing to do
    assert run(fake, out, "--input", str(dl19_small)) == 0
    assert len(fake.seen) == 6 and report_of(out)["queries"]["resumed"] == 6


@pytest.mark.multiprocess
def test_kill_mid_run_loses_only_in_flight_requests(fake, tmp_path, dl19_small, subprocess_env, dear_cmd):
    reqs = read_rankgpt_json(dl19_small)
    victim = reqs[2]
    fake.by_query[victim.query] = deque([("ok",), ("hang",)])  # its second window never answers
    out = tmp_path / "k.jsonl"
    env = dict(subprocess_env, OPENAI_API_KEY=KEY)
    cmd = [*dear_cmd, "teacher", "--input", str(dl19_small), "--out", str(out), "--endpoint", fake.url,
           "--model", "gpt-4o", "--top-k", "30", "--concurrency", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(s.action == "hang" for s in fake.seen):
            time.sleep(0.05)
        assert any(s.action == "hang" for s in fake.seen), "the run never reached the hanging request"
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert KEY not in err.decode()
    assert sorted({r["source_qid"] for r in records(out)}) == sorted(r.qid for r in reqs[:2])
    assert len(fake.requests_for(victim.query)) == 2
    assert run(fake, out, "--input", str(dl19_small), "--top-k", "30") == 0
    # the victim's finished first window came from the cache: only its in-flight request was repeated
    assert len(fake.requests_for(victim.query)) == 3
    rep = report_of(out)
    assert rep["requests"]["from_cache"] == 1
    assert rep["queries"] == {"total": 6, "written": 4, "resumed": 2, "filtered": 0, "failed": 0}
    recs = records(out)
    assert Counter(r["source_qid"] for r in recs) == Counter({r.qid: 2 for r in reqs})
    assert len({r["qid"] for r in recs}) == len(recs) == 12
    assert [r["query_ranking"] for r in recs if r["source_qid"] == victim.qid][0] == expected_final(victim, 30, 20, 10)


def test_samples_keep_the_most_consistent_permutation(fake, tmp_path):
    reqs = read_rankgpt_json(NOVELEVAL / "data.json")[:2]
    a, b, c = [0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [4, 3, 2, 1, 0]
    for r in reqs:
        fake.by_query[r.query] = deque([("order", a), ("order", b), ("order", c)])
    out = tmp_path / "s.jsonl"
    rc = run(fake, out, "--input", str(NOVELEVAL / "data.json"), "--limit", "2", "--top-k", "5",
             "--window", "5", "--stride", "2", "--samples", "3", "--temperature", "0.8")
    assert rc == 0
    for rec in records(out):
        ex = as_example(rec)
        assert ex.order_indices() == b
        assert sorted(map(tuple, (s["order"] for s in rec["samples"]))) == sorted([tuple(a), tuple(b), tuple(c)])
        assert rec["consistency"]["mean_kendall_tau"][rec["consistency"]["chosen"]] == pytest.approx(0.0)
        assert rec["raw_response"] == rec["samples"][rec["consistency"]["chosen"]]["raw_response"]
        assert parse_ranking(rec["raw_response"], 5, base=1, cot=True).order == b
        assert all(s.body["temperature"] == 0.8 for s in fake.seen)
    rep = report_of(out)
    assert rep["requests"]["sent"] == 6 and rep["quality"]["mean_consistency_kendall_tau"] == pytest.approx(0.0)


def test_borda_vote_over_real_perturbed_samples(fake, tmp_path):
    out = tmp_path / "b.jsonl"
    rc = run(fake, out, "--input", str(NOVELEVAL / "data.json"), "--limit", "3", "--samples", "4",
             "--temperature", "1.0", "--aggregate", "borda")
    assert rc == 0
    for rec in records(out):
        orders = [s["order"] for s in rec["samples"]]
        assert len(orders) == 4 and len({tuple(o) for o in orders}) > 1  # the samples really differ
        assert as_example(rec).order_indices() == borda(orders)
        matches = rec["consistency"]["reasoning_matches_ranking"]
        assert matches == (orders[rec["consistency"]["chosen"]] == borda(orders))
        assert (rec.get("reasoning") is not None) == matches


def test_qrels_filter_uses_trec_eval_ndcg(fake, tmp_path):
    import pytrec_eval

    qrels_path = NOVELEVAL / "qrels.txt"
    out = tmp_path / "n.jsonl"
    rc = run(fake, out, "--input", str(NOVELEVAL / "data.json"), "--qrels", str(qrels_path), "--min-ndcg", "0.6")
    assert rc == 0
    qrels = read_qrels(qrels_path)
    rep = report_of(out)
    recs = records(out)

    def trec_ndcg(qid: str, ranking: list[str]) -> float:
        sub = {qid: {d: qrels[qid][d] for d in ranking if d in qrels[qid]}}
        ev = pytrec_eval.RelevanceEvaluator(sub, {"ndcg_cut.10"})
        run_ = {qid: {d: float(len(ranking) - i) for i, d in enumerate(ranking)}}
        return ev.evaluate(run_)[qid]["ndcg_cut_10"]

    for rec in recs:
        assert rec["ndcg@10"] == pytest.approx(trec_ndcg(rec["qid"], rec["ranking"]))
        assert rec["ndcg@10"] >= 0.6
    assert rep["records"]["filtered"] == len(rep["filtered"]) > 0 and len(recs) > 0
    for f in rep["filtered"]:
        assert f["ndcg@10"] < 0.6
    q = rep["queries"]
    assert q["written"] + q["filtered"] + q["failed"] == q["total"] == 21
    assert {r["qid"] for r in recs}.isdisjoint({f["qid"] for f in rep["filtered"]})
    assert rep["quality"]["judged_queries"] > 0 and 0 < rep["quality"]["teacher_ndcg@10"] <= 1


def test_trec_run_input_and_rate_limit(fake, tmp_path):
    reqs = read_rankgpt_json(NOVELEVAL / "data.json")[:6]
    run_path = tmp_path / "run.txt"
    write_run(run_path, {r.qid: [(c.docid, 100.0 - i) for i, c in enumerate(r.candidates)] for r in reqs})
    out = tmp_path / "run.jsonl"
    rc = run(fake, out, "--run", str(run_path), "--topics", str(shared_path("noveleval", "queries.tsv")),
             "--corpus", str(shared_path("noveleval", "corpus.tsv")), "--top-k", "10", "--window", "10",
             "--stride", "5", "--concurrency", "6", "--max-requests-per-minute", "240")
    assert rc == 0
    # 4 requests/s with a burst of 4: the 6th request leaves 0.5 s after the 1st (unlimited: ~0.05 s).
    # Arrival times at the server carry connection jitter on a busy 2-core machine, hence the margin; the
    # refill arithmetic itself is checked with a fake clock in test_token_bucket_spaces_requests_at_the_rate.
    at = sorted(s.at for s in fake.seen)
    assert len(at) == 6 and at[-1] - at[0] >= 0.3
    recs = records(out)
    assert sorted(r["qid"] for r in recs) == sorted(r.qid for r in reqs)
    assert all(len(r["candidates"]) == 10 for r in recs)


def test_bad_arguments_exit_2_with_a_fix(fake, tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert run(fake, out, "--input", str(NOVELEVAL / "data.json"), "--samples", "3") == 2
    assert "--temperature" in capsys.readouterr().err
    assert run(fake, out, "--input", str(NOVELEVAL / "data.json"), "--min-ndcg", "0.5") == 2
    assert "--qrels" in capsys.readouterr().err
    assert run(fake, out) == 2 and "--input" in capsys.readouterr().err
    reqs = read_rankgpt_json(NOVELEVAL / "data.json")[:2]
    dup = tmp_path / "dup.json"
    write_rankgpt_json(dup, [reqs[0], reqs[1], reqs[0]])
    assert run(fake, out, "--input", str(dup)) == 2 and "appears twice" in capsys.readouterr().err
    assert not fake.seen and not out.exists()


def test_the_dear_dispatcher_runs_teacher_help(subprocess_env, dear_cmd):
    res = subprocess.run([*dear_cmd, "teacher", "--help"], env=subprocess_env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "--max-requests-per-minute" in res.stdout
    res = subprocess.run([sys.executable, "-c", "import sys, data_prep.teacher_cli as m; "
                          "print('openai' in sys.modules, 'torch' in sys.modules)"],
                         env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert res.stdout.split() == ["False", "False"]


def test_load_finished_cuts_a_group_that_a_crash_cut_short(tmp_path):
    from data_prep.teacher.resume import load_finished

    out = tmp_path / "g.jsonl"
    lines = [{"qid": "a", "group": {"index": 0, "size": 2}}, {"qid": "a", "group": {"index": 1, "size": 2}},
             {"qid": "b", "group": {"index": 0, "size": 3}}, {"qid": "b", "group": {"index": 1, "size": 3}}]
    intact = "".join(json.dumps(x) + "\n" for x in lines[:2])
    out.write_text(intact + "".join(json.dumps(x) + "\n" for x in lines[2:]) + '{"qid": "b", "gr')
    assert load_finished(out) == {"a": 2}
    assert out.read_text() == intact  # b's partial group is gone, a's complete one kept
    out.write_text(intact + "not json\n" + intact)
    with pytest.raises(Exception, match=r"g.jsonl:3"):
        load_finished(out)


def test_plain_prompt_spec_is_sent_as_one_user_message(fake, tmp_path):
    reqs = read_rankgpt_json(NOVELEVAL / "data.json")[:2]
    out = tmp_path / "card.jsonl"
    assert run(fake, out, "--input", str(NOVELEVAL / "data.json"), "--limit", "2", "--prompt", "dear-card") == 0
    spec = get_prompt_spec("dear-card")
    for seen, rec in zip(sorted(fake.seen, key=lambda s: s.query), sorted(records(out), key=lambda r: r["query"]),
                         strict=True):
        req = next(r for r in reqs if r.qid == rec["qid"])
        prompt = render_prompt(spec, req.query, [c.passage() for c in req.candidates])
        assert seen.body["messages"] == [{"role": "user", "content": prompt.text}]
        assert "reasoning" not in rec and rec["teacher"]["id_base"] == 0
        order, _ = overlap_order(req.query, list(enumerate(prompt.passages)))  # over the 300-char cuts
        assert rec["ranking"] == [req.candidates[p].docid for p in order]


@pytest.mark.multiprocess
def test_ctrl_c_writes_the_report_and_exits_130(fake, tmp_path, subprocess_env, dear_cmd):
    reqs = read_rankgpt_json(NOVELEVAL / "data.json")[:5]
    src = tmp_path / "five.json"
    write_rankgpt_json(src, reqs)
    fake.always[reqs[2].query] = ("hang",)
    out = tmp_path / "c.jsonl"
    cmd = [*dear_cmd, "teacher", "--input", str(src), "--out", str(out), "--endpoint", fake.url, "--model", "m",
           "--concurrency", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=subprocess_env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(s.action == "hang" for s in fake.seen):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Rerun the same command" in err
    rep = report_of(out)
    assert rep["interrupted"] is True and rep["queries"]["written"] == 2
    fake.always.clear()
    assert run(fake, out, "--input", str(src)) == 0
    assert Counter(r["qid"] for r in records(out)) == Counter({r.qid: 1 for r in reqs})


def test_bad_queries_fail_alone_and_are_reported(fake, tmp_path):
    reqs = read_rankgpt_json(NOVELEVAL / "data.json")[:3]
    src = tmp_path / "bad.json"
    data = [{"query": r.query, "qid": r.qid,
             "hits": [{"qid": r.qid, "docid": c.docid, "content": c.text} for c in r.candidates]} for r in reqs]
    data[1]["query"] = "   "
    data.append({"query": "no hits", "qid": "nohits", "hits": []})
    src.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "bad.jsonl"
    assert run(fake, out, "--input", str(src)) == 1
    rep = report_of(out)
    assert {f["qid"]: f["reason"] for f in rep["failed"]} == {reqs[1].qid: "invalid", "nohits": "no_candidates"}
    assert sorted(r["qid"] for r in records(out)) == sorted([reqs[0].qid, reqs[2].qid])
    assert rep["queries"]["written"] + rep["queries"]["failed"] == 4


def test_teacher_output_feeds_dear_prep_listwise(fake, tmp_path, dl19_small):
    """Window records go through `dear prep listwise --format jsonl --cot` with their reasoning intact.

    Skipped until the listwise prep command (data_prep.listwise_cli, a separate branch) is merged.
    """
    import importlib.util

    if importlib.util.find_spec("data_prep.listwise_cli") is None:
        pytest.skip("data_prep.listwise_cli is not in this checkout yet")
    from data_prep.cli import main as prep_main

    out = tmp_path / "t.jsonl"
    assert run(fake, out, "--input", str(dl19_small), "--limit", "3", "--top-k", "30") == 0
    teacher = {r["qid"]: r for r in records(out)}
    prep = tmp_path / "prep"
    assert prep_main(["listwise", "--teacher", str(out), "--format", "jsonl", "--out", str(prep),
                      "--prompt", "rankgpt", "--cot", "--eval-fraction", "0.3"]) == 0
    rows = records(prep / "train.jsonl") + records(prep / "eval.jsonl")
    assert sorted(r["qid"] for r in rows) == sorted(teacher)
    for row in rows:
        rec = teacher[row["qid"]]
        assert sorted(row["docids"]) == sorted(c["docid"] for c in rec["candidates"])
        target = row["completion"][0]["content"]
        order = parse_ranking(target, len(row["docids"]), base=1, cot=True).order
        assert [row["docids"][i] for i in order] == rec["ranking"]
        # the reasoning survived, renumbered to the ids this prompt shows
        top = rec["ranking"][0]
        assert f"Passage [{row['docids'].index(top) + 1}]" in target.split("</think>")[0]
