"""`dear rerank` / `dear eval`: files written, resume after a crash, bad input handled."""

import json
import subprocess
import sys

import pytest
from _infer_helpers import ScriptedBackend, rank_by_relevance
from conftest import shared_path

from data_prep.readers import read_rankgpt_json, read_run, write_rankgpt_json
from data_prep.schema import Candidate, DataError, RerankRequest
from inference import cli_eval, cli_rerank
from inference.reranker import ListwiseReranker


@pytest.fixture(scope="module")
def dl19_small(tmp_path_factory):
    """Two DL19 BM25 queries with their 100 passages, as RankGPT JSON."""
    reqs = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:2]
    path = tmp_path_factory.mktemp("dl19") / "two.json"
    write_rankgpt_json(path, reqs)
    return path, reqs


def test_dear_rerank_end_to_end_and_rerun_resumes(tiny_model_dir, dl19_small, tmp_path, dear_cmd, subprocess_env):
    path, reqs = dl19_small
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    cmd = dear_cmd + ["rerank", "--model", str(tiny_model_dir), "--input", str(path), "--out", str(out),
                      "--jsonl", str(jl), "--top-k", "30", "--max-new-tokens", "6", "--batch-size", "2",
                      "--qrels", str(shared_path("trec-dl19", "qrels.dl19-passage.txt")), "--no-progress"]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tokens generated" in proc.stderr and "ndcg@10" in proc.stderr
    run = read_run(out)
    assert set(run) == {r.qid for r in reqs}
    for r in reqs:
        docids = [d for d, _ in run[r.qid]]
        assert sorted(docids) == sorted(c.docid for c in r.candidates)
        assert docids[30:] == [c.docid for c in r.candidates[30:]]  # past top-k: first-stage order
        scores = [s for _, s in run[r.qid]]
        assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    records = [json.loads(line) for line in jl.read_text().splitlines()]
    assert sorted(rec["qid"] for rec in records) == sorted(r.qid for r in reqs)
    assert all(len(rec["windows"]) == 2 and rec["windows"][0]["raw"] is not None for rec in records)
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    assert summary["windows"] == 4 and summary["generated_tokens"] > 0 and "ndcg@10" in summary["metrics"]
    before = out.read_text()
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 ranked now, 2 resumed" in proc.stderr
    assert out.read_text() == before


def _requests(n=6, k=7):
    return [RerankRequest(qid=f"q{j}", query=f"query {j}",
                          candidates=tuple(Candidate(f"d{j}-{i}", f"rel={(5 * i + j) % k} text") for i in range(k)))
            for j in range(n)]


class _Crash(Exception):
    pass


def _crashing(after):
    calls = {"n": 0}

    def script(req):
        calls["n"] += 1
        if calls["n"] > after:
            raise _Crash("simulated crash")
        return rank_by_relevance(req)

    return script


def _reranker(script):
    return ListwiseReranker(None, None, "dear-card", window=4, stride=2, batch_size=3,
                            backend=ScriptedBackend(script))


SETTINGS = {"model": "scripted", "window": 4, "stride": 2}


def test_crash_then_resume_never_repeats_or_loses_a_query(tmp_path):
    reqs = _requests()
    ref_out = tmp_path / "ref.trec"
    cli_rerank.run_rerank(_reranker(rank_by_relevance), reqs, out=str(ref_out), jsonl=None, settings=SETTINGS,
                          progress=False)
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    with pytest.raises(_Crash):
        cli_rerank.run_rerank(_reranker(_crashing(after=7)), reqs, out=str(out), jsonl=str(jl),
                              settings=SETTINGS, progress=False)
    partial = read_run(out)
    assert 0 < len(partial) < len(reqs)
    # a second crash in the middle of writing a block: half a query and half a line on disk
    first_done = next(iter(partial))
    with out.open("a") as f:
        f.write("q5 Q0 d5-0 1 7.000000 dear\nq5 Q0 d5-")
    summary = cli_rerank.run_rerank(_reranker(rank_by_relevance), reqs, out=str(out), jsonl=str(jl),
                                    settings=SETTINGS, progress=False)
    assert summary["resumed"] == len(partial) and summary["ranked"] == len(reqs) - len(partial)
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)) == sum(len(r.candidates) for r in reqs)
    assert read_run(out) == read_run(ref_out)  # same rankings as the uninterrupted run
    qids = [json.loads(line)["qid"] for line in jl.read_text().splitlines()]
    assert sorted(qids) == sorted(r.qid for r in reqs) and first_done in qids


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run.trec"
    cli_rerank.run_rerank(_reranker(rank_by_relevance), _requests(2), out=str(out), jsonl=None,
                          settings=SETTINGS, progress=False)
    with pytest.raises(DataError, match="other settings") as err:
        cli_rerank.run_rerank(_reranker(rank_by_relevance), _requests(2), out=str(out), jsonl=None,
                              settings={**SETTINGS, "window": 5}, progress=False)
    assert "window" in str(err.value)
    summary = cli_rerank.run_rerank(_reranker(rank_by_relevance), _requests(2), out=str(out), jsonl=None,
                                    settings={**SETTINGS, "window": 5}, overwrite=True, progress=False)
    assert summary["ranked"] == 2


def test_trec_run_input_and_bad_inputs(tiny_model_dir, tmp_path, capsys):
    corpus, topics, run = tmp_path / "corpus.tsv", tmp_path / "topics.tsv", tmp_path / "bm25.trec"
    corpus.write_text("a\tfirst passage\nb\tsecond passage\tTitle B\nc\tthird\n")
    topics.write_text("7\twhat is first\n8\t   \n")
    run.write_text("7 Q0 b 1 3.0 bm25\n7 Q0 a 2 2.0 bm25\n7 Q0 c 3 1.0 bm25\n")
    out = tmp_path / "out.trec"

    def args(inp, *, model=tiny_model_dir, to=out):
        return ["--input", str(inp), "--model", str(model), "--corpus", str(corpus), "--topics", str(topics),
                "--out", str(to), "--max-new-tokens", "4", "--no-progress", "--device", "cpu"]

    assert cli_rerank.main([*args(run), "--tag", "bm25>dear"]) == 0
    assert sorted(d for d, _ in read_run(out)["7"]) == ["a", "b", "c"]
    assert [line.split()[5] for line in out.read_text().splitlines()] == ["bm25>dear"] * 3
    # an unknown docid in the run: a clear error before any work; the finished run is kept
    bad = tmp_path / "bad.trec"
    bad.write_text("7 Q0 zz 1 3.0 bm25\n")
    assert cli_rerank.main(args(bad)) == 2
    assert "'zz' is not in the corpus" in capsys.readouterr().err
    assert len(read_run(out)["7"]) == 3
    # an empty query
    empty = tmp_path / "empty.trec"
    empty.write_text("8 Q0 a 1 3.0 bm25\n")
    assert cli_rerank.main(args(empty, to=tmp_path / "e.trec")) == 2
    assert "empty query" in capsys.readouterr().err
    # a model folder without weights: refused before the output is touched
    nomodel = tmp_path / "noweights"
    nomodel.mkdir()
    (nomodel / "config.json").write_text("{}")
    before = out.read_text()
    assert cli_rerank.main(args(run, model=nomodel)) == 2
    assert "no weights" in capsys.readouterr().err and out.read_text() == before


def test_dear_eval_table_and_json(tmp_path, capsys):
    out = tmp_path / "eval.json"
    bm25 = str(shared_path("trec-dl20", "trec_results_dl20_top100.txt"))
    code = cli_eval.main(["--run", bm25, "--qrels", str(shared_path("trec-dl20", "qrels.dl20-passage.txt")),
                          "--metrics", "ndcg@10", "map", "recall@100", "--out", str(out)])
    assert code == 0
    assert "47.96" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert round(100 * report["runs"][bm25]["metrics"]["ndcg@10"], 2) == 47.96
    assert report["runs"][bm25]["queries"] == 54
    assert cli_eval.main(["--run", bm25, "--qrels", bm25]) == 2  # a run passed as qrels: clear error


def test_inference_imports_neither_torch_nor_dear_train_and_help_is_instant(subprocess_env):
    code = ("import sys, inference, inference.cli_rerank, inference.cli_eval, inference.metrics; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'dear_train')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--top-k" in cli_rerank.build_parser().format_help()


def test_killed_mid_run_then_rerun_loses_and_repeats_nothing(tiny_model_dir, tmp_path, dear_cmd, subprocess_env):
    import signal
    import time

    reqs = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:8]
    src = tmp_path / "eight.json"
    write_rankgpt_json(src, reqs)
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    cmd = dear_cmd + ["rerank", "--model", str(tiny_model_dir), "--input", str(src), "--out", str(out),
                      "--jsonl", str(jl), "--top-k", "40", "--max-new-tokens", "8", "--batch-size", "1",
                      "--no-progress"]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 100:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = out.read_text()
    finished = {line.split()[0] for line in before.splitlines()}
    assert 1 <= len(finished) < len(reqs), "the run should be killed part-way"
    done = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 100 * len(reqs)
    run = read_run(out)
    assert set(run) == {r.qid for r in reqs} and all(len(v) == 100 for v in run.values())
    complete_before = [q for q in finished if sum(1 for x in before.splitlines() if x.split()[0] == q) == 100]
    for q in complete_before:  # finished queries were kept as written, not redone
        assert [x for x in lines if x.split()[0] == q] == [x for x in before.splitlines() if x.split()[0] == q]
    qids = [json.loads(x)["qid"] for x in jl.read_text().splitlines()]
    assert sorted(qids) == sorted(r.qid for r in reqs)
