"""`dear rerank` over many processes (inference.parallel): byte-identical merge, resume after a killed rank
with another process count, failures reported by rank 0, one writer per --out. Multi-process tests launch
torchrun / accelerate on CPU (one thread per process) with the tiny model on the real DL19 top-100."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import shared_path

from data_prep.io import OutputLock, OutputLocked
from data_prep.readers import read_run
from inference import cli_rerank
from inference.parallel import Group, PeerFailed, shard
from inference.parallel.rerank import merge_summary
from inference.runfiles import consolidate, existing_parts, part_paths

REPO = Path(__file__).resolve().parents[1]
N_QUERIES = 12
LISTWISE = ["--top-k", "20", "--window", "10", "--stride", "5", "--max-new-tokens", "8", "--batch-size", "4",
            "--device", "cpu", "--no-progress", "--limit", str(N_QUERIES)]


def _dl19() -> str:
    return str(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))


def _qrels() -> str:
    return str(shared_path("trec-dl19", "qrels.dl19-passage.txt"))


def _torchrun(n: int, args: list[str], *, script: bool = False) -> list[str]:
    entry = [str(REPO / "tests" / "_rerank_worker.py")] if script else ["-m", "inference.rerank"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
            *entry, *args]


def _run(cmd: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _fail(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory, one_torch_thread):
    """The one-process `dear rerank` of the first 12 DL19 queries: run and JSONL bytes."""
    d = tmp_path_factory.mktemp("ref")
    args = ["--model", str(tiny_model_dir), "--input", _dl19(), "--out", str(d / "run.trec"),
            "--jsonl", str(d / "run.jsonl"), *LISTWISE, "--qrels", _qrels()]
    assert cli_rerank.main(args) == 0
    return (d / "run.trec").read_bytes(), (d / "run.jsonl").read_bytes(), d


def _block(qid: str, n: int, tag: str = "dear") -> str:
    return "".join(f"{qid} Q0 d{i} {i + 1} {float(n - i):.6f} {tag}\n" for i in range(n))


def _record(qid: str) -> str:
    return json.dumps({"qid": qid, "docids": []}) + "\n"


# -- the merge, the lock and the coordination, in one process ------------------------------------------

def test_consolidate_folds_parts_in_input_order_once_each(tmp_path):
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    expected = {"q0": 3, "q1": 3, "q2": 3, "q3": 3}
    out.write_text(_block("q2", 3))
    jl.write_text(_record("q2"))
    p0, j0 = part_paths(out, 0)
    p1, j1 = part_paths(out, 1)
    p0.write_text(_block("q0", 3) + "q3 Q0 d0 1 3.0")  # a torn last line
    j0.write_text(_record("q0") + _record("q3"))  # q3's record written, its block not: not done
    p1.write_text(_block("q1", 3) + _block("q2", 3))  # q2 also in the run: a crash between merge and cleanup
    j1.write_text(_record("q1") + '{"qid": "q')
    assert [r for r, _, _ in existing_parts(out)] == [0, 1]
    assert consolidate(out, jl, expected) == {"q0", "q1", "q2"}
    assert out.read_text() == _block("q0", 3) + _block("q1", 3) + _block("q2", 3)
    assert jl.read_text() == _record("q0") + _record("q1") + _record("q2")
    assert existing_parts(out) == [] and sorted(os.listdir(tmp_path)) == ["run.jsonl", "run.trec"]


def test_a_part_still_written_by_a_live_rank_is_not_merged(tmp_path):
    out = tmp_path / "run.trec"
    part, _ = part_paths(out, 1)
    part.write_text(_block("q0", 2))
    with OutputLock(part, what="run part"), pytest.raises(OutputLocked, match="run part"):
        consolidate(out, None, {"q0": 2})
    assert part.exists()
    assert consolidate(out, None, {"q0": 2}) == {"q0"} and not part.exists()


def test_shard_is_static_interleaving():
    items = list(range(7))
    shares = [shard(items, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for s in shares for x in s) == items


def _groups(n: int, **kwargs):
    import torch.distributed as dist

    store = dist.HashStore()
    return [Group(store, r, n, beat_s=0.05, poll_s=0.01, **kwargs) for r in range(n)]


def test_a_failed_rank_stops_the_waiters_and_rank_0_reports_it_once():
    seen = []
    g0, g1, g2 = _groups(3, on_failure=seen.append)
    try:
        g1.publish("status/1", {"ok": True})
        g2.fail("RuntimeError: CUDA error on rank 2", code=1)
        assert g1.fail("a later failure", code=3)["message"].startswith("RuntimeError")  # the first one stands
        with pytest.raises(PeerFailed, match="CUDA error") as err:
            g0.wait({"status/1": 1, "status/2": 2})
        assert err.value.info["rank"] == 2 and err.value.info["code"] == 1
        assert g2.wait_reported(timeout_s=5)  # rank 0 acknowledged: now rank 2 may exit
        assert [i["message"] for i in seen] == ["RuntimeError: CUDA error on rank 2"]
    finally:
        for g in (g0, g1, g2):
            g.close()


def test_rank_0_reports_a_failure_while_busy_through_its_heartbeat_thread():
    seen = threading.Event()
    reported = []
    g0, g1 = _groups(2, on_failure=lambda info: (reported.append(info), seen.set()))
    try:
        g1.fail("boom", code=1)
        assert seen.wait(5)  # rank 0 never called wait() or check(): its heartbeat thread saw the flag
        assert [i["message"] for i in reported] == ["boom"]
        assert g1.wait_reported(timeout_s=5)
    finally:
        g0.close()
        g1.close()


def test_a_rank_that_vanished_is_reported_not_waited_for():
    seen = []
    g0, g1 = _groups(2, stale_s=0.5, on_failure=seen.append)
    g1.close()  # its heartbeat stops, as when the process is killed without a launcher to notice
    t0 = time.monotonic()
    try:
        with pytest.raises(PeerFailed, match="rank 1 stopped responding") as err:
            g0.wait({"status/1": 1})
        assert time.monotonic() - t0 < 5
        assert {k: err.value.info[k] for k in ("rank", "host", "pid", "code")} == {"rank": 1, "host": "?",
                                                                                   "pid": None, "code": 1}
        assert [i["rank"] for i in seen] == [1]  # rank 0 reported it (once)
    finally:
        g0.close()


def test_a_live_rank_that_is_slow_to_report_is_waited_for():
    """Heartbeats that keep coming mean the rank is alive, however long past ``stale_s`` its key takes: only a
    heartbeat that stops counts as a vanished rank."""
    g0, g1 = _groups(2)
    g0.stale_s = 0.6  # 12 beats: a loaded 2-core CI machine may delay a few, never twelve
    timer = threading.Timer(2.4, g1.publish, args=("status/1", {"ok": True}))
    timer.start()
    t0 = time.monotonic()
    try:
        assert g0.wait({"status/1": 1}) == [{"ok": True}]
        assert time.monotonic() - t0 >= 2.0  # four times stale_s went by with rank 1 beating
    finally:
        timer.cancel()
        g0.close()
        g1.close()


def test_the_merge_refuses_a_job_whose_ranks_left_queries_unwritten(tmp_path):
    """Rank 0's merge: a query no part holds (a rank that reported success without writing it) stops the
    job with the fix, and the summary is not written as if the run were whole."""
    import argparse

    from data_prep.schema import Candidate, DataError, RerankRequest
    from inference.parallel.rerank import _finish

    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    p0, j0 = part_paths(out, 0)
    p0.write_text(_block("q0", 2))
    j0.write_text(_record("q0"))
    requests = [RerankRequest(qid=q, query="x", candidates=(Candidate("d0", "a"), Candidate("d1", "b")))
                for q in ("q0", "q1")]
    args = argparse.Namespace(out=str(out), jsonl=str(jl), qrels=None)
    status = {"rank": 0, "queries": 2, "ranked": 2, "windows": 2, "model_calls": 2, "generated_tokens": 2,
              "repairs": {}, "wall_s": 1.0, "backend": {}}
    with pytest.raises(DataError, match="1 queries missing after the merge: \\['q1'\\]") as err:
        _finish(args, {"done": [], "start": time.time()}, [status], requests)
    assert (str(err.value.path), err.value.reason) == (str(out), "merge_incomplete")
    assert err.value.fix == "run the same command again to rank them"
    assert out.read_text() == _block("q0", 2)  # what was ranked is kept, for the rerun
    assert not Path(str(out) + ".summary.json").exists()


def test_the_merge_of_a_whole_job_writes_the_run_and_its_summary(tmp_path):
    """Rank 0's merge when every query is there: the parts become the run, and the summary counts the job
    (queries, resumed, merge and job times, versions, metrics against the qrels)."""
    import argparse

    from data_prep.schema import Candidate, RerankRequest
    from inference.parallel.rerank import _finish

    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    for rank, q in enumerate(("q0", "q1")):
        p, j = part_paths(out, rank)
        p.write_text(_block(q, 2))
        j.write_text(_record(q))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q0 0 d0 1\nq1 0 d1 1\n")
    requests = [RerankRequest(qid=q, query="x", candidates=(Candidate("d0", "a"), Candidate("d1", "b")))
                for q in ("q0", "q1")]
    args = argparse.Namespace(out=str(out), jsonl=str(jl), qrels=str(qrels), metrics=["ndcg@10"],
                              strategy="sliding")
    status = {"rank": 0, "queries": 2, "ranked": 1, "windows": 2, "model_calls": 2, "generated_tokens": 2,
              "repairs": {}, "wall_s": 1.0, "backend": {}}
    _finish(args, {"done": ["q9"], "start": time.time() - 30}, [status, {**status, "rank": 1}], requests)
    assert out.read_text() == _block("q0", 2) + _block("q1", 2) and existing_parts(out) == []
    s = json.loads(Path(str(out) + ".summary.json").read_text())
    assert (s["queries"], s["resumed"], s["ranked"], s["world_size"]) == (2, 1, 2, 2)
    assert 0 <= s["merge_s"] < 2 and 30 <= s["job_wall_s"] < 300
    assert "torch" in s["versions"]
    assert s["metrics"]["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2, abs=1e-4)


def test_the_first_failure_is_published_at_once_with_its_details():
    g0, g1 = _groups(2)
    try:
        t0 = time.monotonic()
        info = g1.fail("boom", code=3)
        assert time.monotonic() - t0 < 2  # no waiting for a failure that is already its own
        assert info == g0.failure() and {k: info[k] for k in ("rank", "message", "code")} == {
            "rank": 1, "message": "boom", "code": 3}
        assert info["host"] and info["pid"] == os.getpid()
        assert str(PeerFailed(info)) == "boom" and str(PeerFailed({})) == "a rank failed"
    finally:
        g0.close()
        g1.close()


def test_merge_summary_totals_and_imbalance():
    ranks = [{"rank": 0, "queries": 3, "ranked": 3, "windows": 9, "model_calls": 9, "generated_tokens": 70,
              "repairs": {"missing": 2}, "wall_s": 3.0, "backend": {"prefill_s": 1.0, "prefills": 9}},
             {"rank": 1, "queries": 2, "ranked": 2, "windows": 6, "model_calls": 5, "generated_tokens": 40,
              "repairs": {"missing": 1, "duplicate": 4}, "wall_s": 1.0, "backend": {"prefill_s": 0.5, "prefills": 5}}]
    s = merge_summary(ranks, queries=7, resumed=2)
    assert (s["ranked"], s["windows"], s["model_calls"], s["generated_tokens"]) == (5, 15, 14, 110)
    assert s["repairs"] == {"duplicate": 4, "missing": 3} and s["backend"] == {"prefill_s": 1.5, "prefills": 14}
    assert s["wall_s"] == 3.0 and s["queries_per_s"] == round(5 / 3, 3)
    assert s["imbalance"] == {"queries": [3, 2], "wall_s": [3.0, 1.0], "max_over_mean": 1.5, "idle_s": 2.0}


def test_merge_summary_edges_cpu_per_rank_fields_and_stages():
    """Sub-second and zero wall times, CPU seconds summed, each rank's own fields (only those it reported), and
    the two-stage timings summed over ranks."""
    ranks = [{"rank": 0, "host": "a", "device": "cpu", "queries": 2, "ranked": 2, "windows": 4, "model_calls": 4,
              "generated_tokens": 9, "wall_s": 0.5, "cpu_s": 0.25, "load_s": 1.5, "pointwise_s": 0.2, "pairs": 40,
              "total_s": 2.5, "backend": {"decode_s": 0.123456}},
             {"rank": 1, "host": "b", "device": "cpu", "queries": 1, "ranked": 1, "windows": 2, "model_calls": 2,
              "generated_tokens": 5, "wall_s": 0.25, "cpu_s": 0.5, "load_s": 1.25, "pointwise_s": 0.3, "pairs": 20,
              "total_s": 2.0}]
    s = merge_summary(ranks, queries=3, resumed=0)
    assert s["wall_s"] == 0.5 and s["queries_per_s"] == 6.0 and s["cpu_s"] == 0.75
    assert s["imbalance"]["max_over_mean"] == round(0.5 / 0.375, 4) and s["imbalance"]["idle_s"] == 0.25
    assert s["backend"] == {"decode_s": 0.1235} and s["world_size"] == 2
    assert s["ranks"][1] == {k: ranks[1][k] for k in ("rank", "host", "device", "queries", "windows",
                                                      "generated_tokens", "load_s", "pointwise_s", "wall_s",
                                                      "cpu_s", "total_s")}
    assert s["stages"]["pointwise"]["wall_s"] == 0.5 and s["stages"]["pointwise"]["pairs"] == 60
    assert s["stages"]["listwise"]["wall_s"] == 0.75 and s["stages"]["summed_over_ranks"] is True
    assert s["stages"]["queries"] == 3
    idle = merge_summary([{**ranks[1], "wall_s": 0.0, "ranked": 0}], queries=1, resumed=1)
    assert idle["queries_per_s"] is None and idle["imbalance"]["max_over_mean"] is None
    assert "stages" not in merge_summary([{k: v for k, v in ranks[0].items() if k != "pointwise_s"}],
                                         queries=2, resumed=0)
    empty = merge_summary([], queries=0, resumed=0)
    assert empty["wall_s"] == 0.0 and empty["imbalance"]["max_over_mean"] is None


def test_dear_rerank_refuses_an_out_another_job_writes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run.trec"
    args = ["--model", str(tiny_model_dir), "--input", _dl19(), "--out", str(out), *LISTWISE[:-2], "--limit", "1"]
    out.write_text("")
    with OutputLock(out, what="run"):
        assert cli_rerank.main(args) == 2
    err = capsys.readouterr().err
    assert f"another job is writing this run: pid {os.getpid()}" in err and "run.trec.lock" in err
    assert out.read_text() == "" and not (tmp_path / "run.trec.meta.json").exists()  # nothing touched


# -- launched jobs ------------------------------------------------------------------------------------

@pytest.mark.multiprocess
def test_two_processes_write_the_one_process_run_byte_for_byte(reference, tiny_model_dir, tmp_path,
                                                               subprocess_env):
    ref_run, ref_jsonl, ref_dir = reference
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    proc = _run(_torchrun(2, ["--model", str(tiny_model_dir), "--input", _dl19(), "--out", str(out),
                              "--jsonl", str(jl), *LISTWISE,
                              "--qrels", _qrels()]),
                subprocess_env)
    assert proc.returncode == 0, _fail(proc)
    assert out.read_bytes() == ref_run and jl.read_bytes() == ref_jsonl
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    ref_summary = json.loads((ref_dir / "run.trec.summary.json").read_text())
    assert summary["world_size"] == 2 and [r["rank"] for r in summary["ranks"]] == [0, 1]
    assert summary["imbalance"]["queries"] == [6, 6] and summary["imbalance"]["max_over_mean"] >= 1.0
    for key in ("queries", "ranked", "windows", "model_calls", "generated_tokens", "repairs", "metrics"):
        assert summary[key] == ref_summary[key], key
    assert proc.stderr.count("dear rerank -> ") == 1  # rank 0 alone prints the summary
    assert sorted(os.listdir(tmp_path)) == ["run.jsonl", "run.trec", "run.trec.meta.json", "run.trec.summary.json"]


@pytest.mark.multiprocess
def test_two_stage_under_accelerate_equals_one_process(tiny_model_dir, tmp_path, subprocess_env,
                                                       one_torch_thread):
    from tests._pointwise_helpers import build_tiny_classifier

    cls = build_tiny_classifier(tiny_model_dir, tmp_path / "cls")
    opts = ["--pointwise", str(cls), "--listwise", str(tiny_model_dir), "--input", _dl19(), "--pointwise-depth",
            "20", "--listwise-depth", "10", "--window", "10", "--stride", "5", "--max-new-tokens", "8",
            "--device", "cpu", "--no-progress", "--limit", "8"]
    ref, out = tmp_path / "ref.trec", tmp_path / "run.trec"
    assert cli_rerank.main([*opts, "--out", str(ref), "--jsonl", str(tmp_path / "ref.jsonl")]) == 0
    first = {r.qid: [c.docid for c in r.candidates[:20]]
             for r in cli_rerank.load_requests(_dl19(), limit=8)}
    assert any([d for d, _ in docs[:20]] != first[q] for q, docs in read_run(ref).items())  # stage 1 moved them
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", str(_free_port()), "-m", "inference.rerank",
           *opts, "--out", str(out), "--jsonl", str(tmp_path / "run.jsonl")]
    proc = _run(cmd, {**subprocess_env, "ACCELERATE_USE_CPU": "true"})
    assert proc.returncode == 0, _fail(proc)
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "run.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    assert summary["world_size"] == 2 and summary["stages"]["pointwise"]["pairs"] == 8 * 20
    assert all(r["pointwise_s"] > 0 for r in summary["ranks"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _complete_blocks(path: Path, lines_per_query: int) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n") // lines_per_query


@pytest.mark.multiprocess
def test_killed_rank_then_rerun_with_two_then_three_processes(reference, tiny_model_dir, tmp_path,
                                                              subprocess_env):
    ref_run, ref_jsonl, _ = reference
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    args = ["--model", str(tiny_model_dir), "--input", _dl19(), "--out", str(out), "--jsonl", str(jl), *LISTWISE]
    slow = [*args, "--batch-size", "1"]  # one window at a time: the kill lands mid-run
    # 1. two processes; SIGKILL rank 1 once its part holds a finished query (the pid is in its part's lock)
    job = subprocess.Popen(_torchrun(2, slow), env=subprocess_env, cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    part1, _ = part_paths(out, 1)
    lock1 = Path(str(part1) + ".lock")
    deadline = time.monotonic() + 180
    while _complete_blocks(part1, 100) < 1 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = json.loads(lock1.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0, err[-3000:]
    left = existing_parts(out)
    assert [r for r, _, _ in left] == [0, 1]
    done_after_kill = sum(_complete_blocks(p, 100) for _, p, _ in left)
    assert 1 <= done_after_kill < N_QUERIES
    # 2. rerun with two processes; rank 1 fails after one more query: rank 0 reports it and the job ends
    t0 = time.monotonic()
    proc = _run(_torchrun(2, args, script=True), {**subprocess_env, "DEAR_TEST_FAIL_RANK": "1",
                                                  "DEAR_TEST_FAIL_AFTER": "1"})
    assert proc.returncode != 0 and time.monotonic() - t0 < 150, _fail(proc)
    assert "dear rerank: error: RuntimeError: injected failure on rank 1 after 1 queries (rank 1 on" in proc.stderr
    # 3. rerun with three processes: finishes; every query exactly once, equal to the uninterrupted run
    proc = _run(_torchrun(3, args), subprocess_env)
    assert proc.returncode == 0, _fail(proc)
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    assert summary["world_size"] == 3 and summary["resumed"] > done_after_kill
    assert summary["resumed"] + summary["ranked"] == N_QUERIES
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 100 * N_QUERIES
    assert out.read_bytes() == ref_run and jl.read_bytes() == ref_jsonl
    assert existing_parts(out) == []


@pytest.mark.multiprocess
def test_a_second_job_on_the_same_out_is_refused(reference, tiny_model_dir, tmp_path, subprocess_env):
    ref_run, _, _ = reference
    out = tmp_path / "run.trec"
    out.write_bytes(ref_run)
    before = out.read_bytes()
    args = ["--model", str(tiny_model_dir), "--input", _dl19(), "--out", str(out), *LISTWISE, "--overwrite"]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom data_prep.io import OutputLock\n"
        f"with OutputLock({str(out)!r}, what='run'):\n    print('locked', flush=True)\n    sys.stdin.readline()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=subprocess_env, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = _run(_torchrun(2, args), subprocess_env, timeout=150)
    finally:
        holder.communicate("\n", timeout=30)
    assert proc.returncode != 0, _fail(proc)
    refusals = [line for line in proc.stderr.splitlines() if line.startswith("dear rerank: error: ")]
    assert len(refusals) == 1 and f"another job is writing this run: pid {holder.pid}" in refusals[0], _fail(proc)
    assert out.read_bytes() == before  # even --overwrite did not touch the other job's run


def test_a_rank_that_cannot_see_rank_0s_files_stops_with_the_fix(tmp_path):
    from inference.parallel.rerank import _check_shared_output

    out = tmp_path / "run.trec"
    (g0,) = _groups(1)
    try:
        with OutputLock(out, what="run"):
            _check_shared_output(str(out), {"owner": {"pid": os.getpid(), "host": g0.host}}, g0)  # same files
            with pytest.raises(Exception, match="does not see the lock rank 0 holds") as err:
                _check_shared_output(str(out), {"owner": {"pid": 1, "host": "node-a"}}, g0, wait_s=0.6)
        assert "file system every node mounts" in str(err.value)
    finally:
        g0.close()


def test_dear_rerank_started_as_several_processes_points_to_the_module(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli_rerank.main(["--model", "m", "--input", "in.json", "--out", str(tmp_path / "run.trec")]) == 2
    assert "-m inference.rerank" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_the_many_process_path_in_one_process_reports_bad_input_as_dear_rerank_does(tmp_path, capsys):
    from inference.parallel.rerank import run_distributed

    corpus, topics, run = tmp_path / "corpus.tsv", tmp_path / "topics.tsv", tmp_path / "bm25.trec"
    corpus.write_text("a\tfirst passage\n")
    topics.write_text("8\t   \n")
    run.write_text("8 Q0 a 1 3.0 bm25\n")
    args = ["--model", "m", "--input", str(run), "--corpus", str(corpus), "--topics", str(topics),
            "--out", str(tmp_path / "out.trec")]
    assert cli_rerank.main(args) == 2
    single = capsys.readouterr().err
    (g0,) = _groups(1)
    try:
        assert run_distributed(cli_rerank.build_parser().parse_args(args), g0) == 2
    finally:
        g0.close()
    many = capsys.readouterr().err
    assert "empty query" in single and many == single
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25.trec", "corpus.tsv", "topics.tsv"]


def test_the_many_process_path_in_one_process_writes_the_same_bytes(reference, tiny_model_dir, tmp_path):
    from inference.parallel.rerank import run_distributed

    ref_run, ref_jsonl, _ = reference
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    args = cli_rerank.build_parser().parse_args(["--model", str(tiny_model_dir), "--input", _dl19(), "--out",
                                                 str(out), "--jsonl", str(jl), *LISTWISE])
    (g0,) = _groups(1)
    try:
        assert run_distributed(args, g0) == 0
    finally:
        g0.close()
    assert out.read_bytes() == ref_run and jl.read_bytes() == ref_jsonl
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    assert summary["world_size"] == 1 and summary["ranks"][0]["queries"] == N_QUERIES


_LOST_STORE_SCRIPT = r"""
import os, socket, subprocess, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
# the launcher's store (torchrun's agent hosts it): a separate process, killed below
agent = subprocess.Popen([sys.executable, "-c", f'''
import time
from datetime import timedelta
import torch.distributed as dist
store = dist.TCPStore("127.0.0.1", {port}, 2, True, timeout=timedelta(seconds=30), wait_for_workers=False)
print("up", flush=True)
time.sleep(600)
'''], stdout=subprocess.PIPE, text=True)
assert agent.stdout.readline().strip() == "up"
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="1", WORLD_SIZE="2", LOCAL_RANK="1",
                  TORCHELASTIC_USE_AGENT_STORE="True")
from inference.cli_rerank import RerankOptions
from inference.parallel import Group
from inference.parallel.rerank import run_distributed

group = Group.from_env(timeout_s=30, beat_s=0.2)  # rank 1: waits for rank 0's plan, which never comes
agent.kill()
agent.wait()
sys.exit(run_distributed(RerankOptions(model="m", input="in.json", out=sys.argv[1]), group))
"""


def test_killing_the_launcher_alone_is_one_line_per_process_not_tracebacks(tmp_path, subprocess_env):
    """The torchrun agent (which hosts the store) killed while the ranks run: each rank says so in one line
    (naming where the finished queries are), exit 1; no Python traceback and no C++ stack from torch."""
    env = {**subprocess_env, "PYTHONPATH": str(REPO)}
    env.pop("TORCH_CPP_LOG_LEVEL", None)  # Group.from_env must quiet torch's own store warnings itself
    proc = subprocess.run([sys.executable, "-c", _LOST_STORE_SCRIPT, str(tmp_path / "run.trec")], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, _fail(proc)
    assert len(lines) == 1 and lines[0].startswith("dear rerank: error: rank 1 lost contact with the launcher"), \
        _fail(proc)
    assert "run the same command again to resume" in lines[0] and str(tmp_path / "run.trec") in lines[0]


def test_a_lost_store_fails_every_later_call_at_once():
    from inference.parallel.group import StoreLost

    class Dead:
        calls = 0

        def add(self, *a):
            Dead.calls += 1
            if Dead.calls > 1:  # the first beat (in the constructor) reaches it; then the server is gone
                raise RuntimeError("Broken pipe")
            return 1

    g = Group(Dead(), 0, 2, beat_s=30)
    try:
        with pytest.raises(StoreLost, match="rank 0 lost contact"):
            g.fail("x")
        calls = Dead.calls
        with pytest.raises(StoreLost):
            g.check()
        assert Dead.calls == calls  # not tried again
    finally:
        g.close()


def test_a_refusal_is_handed_to_torchrun_as_the_root_cause(tmp_path, capsys, monkeypatch):
    """torchrun prints its own ChildFailedError report and exits 1 whatever a rank does; the rank's one line
    goes into torchrun's error file so the report names it (instead of a link) with the rank's exit code."""
    from inference.parallel.rerank import run_distributed

    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    args = cli_rerank.build_parser().parse_args(["--model", "m", "--input", str(tmp_path / "none.json"),
                                                 "--out", str(tmp_path / "run.trec"), "--window", "1"])
    (g0,) = _groups(1)
    try:
        assert run_distributed(args, g0) == 2
    finally:
        g0.close()
    line = capsys.readouterr().err.strip()
    assert line.startswith("dear rerank: error: --window must be >= 2") and "\n" not in line
    record = json.loads(error_file.read_text())["message"]
    assert record["extraInfo"]["py_callstack"] == line and record["errorCode"] == 2
