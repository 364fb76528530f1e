"""`dear eval` comparing runs: the figures equal ranx's compare() and PyTerrier's Experiment on the shared DL19
runs, missing queries score 0 and are said, costs come from what `dear rerank` wrote, charts are drawn, and
bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_path

from data_prep.readers import read_qrels, write_run
from inference import cli_eval
from inference.evaluation.report import build_report, load_run

pytest.importorskip("scipy")
pytest.importorskip("statsmodels")

METRICS = ["ndcg@10", "map", "recall@100"]


@pytest.fixture(scope="module")
def dl19(tmp_path_factory) -> dict:
    """DL19 BM25 (TREC run), SPLADE++ (RankGPT JSON) and a third run: SPLADE++ with ranks 1 and 3 swapped."""
    qrels = str(shared_path("trec-dl19", "qrels.dl19-passage.txt"))
    bm25 = str(shared_path("trec-dl19", "trec_results_dl19_top100.txt"))
    splade = str(shared_path("trec-dl19", "splade_pp_ed.retrieve_results_dl19_top100.json"))
    swapped, ranked = {}, {}
    for qid, docs in load_run(splade).items():
        order = [d for d, _ in docs]
        ranked[qid] = [(d, float(len(order) - i)) for i, d in enumerate(order)]
        order[0], order[2] = order[2], order[0]
        swapped[qid] = [(d, float(len(order) - i)) for i, d in enumerate(order)]
    folder = tmp_path_factory.mktemp("runs")
    write_run(folder / "splade_swap13.trec", swapped)
    # SPLADE++ has 17 tied scores, which trec_eval and ranx order differently (docid vs their sort): scored
    # by its rank, the run reads the same in every tool
    write_run(folder / "splade_ranked.trec", ranked)
    return {"qrels": qrels, "runs": [bm25, splade, str(folder / "splade_swap13.trec")],
            "tie_free": [bm25, str(folder / "splade_ranked.trec"), str(folder / "splade_swap13.trec")]}


def _ranx_run(path: str, name: str):
    from ranx import Run

    return Run({q: {d: s for d, s in docs} for q, docs in load_run(path).items()}, name=name)


@pytest.mark.slow  # ranx compiles with numba on its first call (~30-70 s on 2 shared cores)
def test_figures_equal_ranx_compare(dl19) -> None:
    ranx = pytest.importorskip("ranx")
    runs = dl19["tie_free"]
    report, _ = build_report(runs, dl19["qrels"], METRICS, compare_runs=True, test="t", correction="none",
                             alpha=0.05)
    names = [report["runs"][r]["name"] for r in runs]
    ranx_runs = [_ranx_run(r, n) for r, n in zip(runs, names, strict=True)]
    ref = ranx.compare(ranx.Qrels(read_qrels(dl19["qrels"])), ranx_runs, METRICS, stat_test="student", max_p=0.05)
    for r, n in zip(runs, names, strict=True):
        for m in METRICS:
            assert report["runs"][r]["metrics"][m] == pytest.approx(ref.results[n][m], abs=1e-12), (n, m)
            # the letters: significantly better than the runs with those letters, as ranx marks them
            ours = report["runs"][r]["marks"][m]
            assert ours == "".join(ref.get_superscript_for_table(n, m).translate(_FROM_SUPERSCRIPT)), (n, m)
    assert sum(len(report["runs"][r]["marks"][m]) for r in runs for m in METRICS) >= 4  # letters were given
    by_name = {report["runs"][r]["name"]: r for r in runs}
    for pair in report["comparison"]["pairs"]:
        a, b = report["runs"][pair["run"]]["name"], report["runs"][pair["other"]]["name"]
        ref_p = ref.comparisons[a, b][pair["metric"]]["p_value"]
        if ref_p != ref_p:  # scipy's NaN for two identical score lists (recall@100 of the two SPLADEs): we say 1
            assert pair["p_value"] == 1.0 and pair["improved"] == pair["degraded"] == 0
        else:
            assert pair["p_value"] == pytest.approx(ref_p, rel=1e-9)
        wtl = ref.win_tie_loss[(a, b)][pair["metric"]]
        assert (pair["improved"], pair["tied"], pair["degraded"]) == (wtl["W"], wtl["T"], wtl["L"])
    assert len(by_name) == 3 and len(report["comparison"]["pairs"]) == 3 * len(METRICS)


_FROM_SUPERSCRIPT = str.maketrans("ᵃᵇᶜᵈᵉ", "abcde")


def _pt_frames(runs: list[str], qrels_path: str, topics_path: str):
    import pandas as pd

    topics = pd.read_csv(topics_path, sep="\t", names=["qid", "query"], dtype=str)
    text = dict(zip(topics.qid, topics["query"], strict=True))
    qrels = pd.DataFrame([(q, d, g) for q, docs in read_qrels(qrels_path).items() for d, g in docs.items()],
                         columns=["qid", "docno", "label"])
    frames = []
    for path in runs:
        rows = [(q, text.get(q, ""), d, s, i) for q, docs in load_run(path).items() for i, (d, s) in enumerate(docs)]
        frames.append(pd.DataFrame(rows, columns=["qid", "query", "docno", "score", "rank"]))
    return topics, qrels, frames


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_figures_equal_pyterrier_experiment(dl19, test) -> None:
    pt = pytest.importorskip("pyterrier")
    from ir_measures import nDCG

    runs = dl19["runs"]
    topics, qrels, frames = _pt_frames(runs, dl19["qrels"], str(shared_path("trec-dl19", "topics.dl19-passage.txt")))
    names = ["bm25", "splade", "swap"]
    ref = pt.Experiment([pt.Transformer.from_df(f) for f in frames], topics, qrels, eval_metrics=[nDCG @ 10],
                        names=names, baseline=0, test=test, correction="holm", correction_alpha=0.05)
    ref = ref.set_index("name")
    # PyTerrier corrects per metric; with one metric its family (2 runs against the baseline) is ours
    report, _ = build_report(runs, dl19["qrels"], ["ndcg@10"], compare_runs=True, baseline=runs[0], test=test,
                             correction="holm", alpha=0.05)
    for path, name in zip(runs, names, strict=True):
        assert report["runs"][path]["metrics"]["ndcg@10"] == pytest.approx(ref.loc[name, "nDCG@10"], abs=1e-12)
    pairs = {p["run"]: p for p in report["comparison"]["pairs"]}
    for path, name in zip(runs[1:], names[1:], strict=True):
        p = pairs[path]
        assert p["p_value"] == pytest.approx(ref.loc[name, "nDCG@10 p-value"], rel=1e-9)
        assert p["p_corrected"] == pytest.approx(ref.loc[name, "nDCG@10 p-value corrected"], rel=1e-9)
        assert p["significant"] == bool(ref.loc[name, "nDCG@10 reject"])
        assert (p["improved"], p["degraded"]) == (ref.loc[name, "nDCG@10 +"], ref.loc[name, "nDCG@10 -"])
    assert pairs[runs[1]]["significant"] and pairs[runs[1]]["p_corrected"] > pairs[runs[1]]["p_value"]


def test_family_is_every_run_and_metric_against_the_baseline(dl19) -> None:
    from statsmodels.stats.multitest import multipletests

    runs = dl19["runs"]
    report, _ = build_report(runs, dl19["qrels"], METRICS, compare_runs=True, baseline=runs[0], correction="holm")
    comp = report["comparison"]
    assert comp["family_size"] == 2 * len(METRICS) and {p["other"] for p in comp["pairs"]} == {runs[0]}
    raw = [p["p_value"] for p in comp["pairs"]]
    assert [p["p_corrected"] for p in comp["pairs"]] == pytest.approx(multipletests(raw, method="holm")[1])
    bonf, _ = build_report(runs, dl19["qrels"], METRICS, compare_runs=True, baseline=runs[0],
                           correction="bonferroni")
    assert [p["p_corrected"] for p in bonf["comparison"]["pairs"]] == pytest.approx([min(1, 6 * p) for p in raw])
    # the baseline row has no mark; a significant run has the dagger on that metric
    assert set(report["runs"][runs[0]]["marks"].values()) == {""}
    assert report["runs"][runs[1]]["marks"]["ndcg@10"] == "\u2020"


def test_a_run_lacking_judged_queries_scores_zero_there_and_the_output_says_so(dl19, tmp_path, capsys) -> None:
    bm25, splade = dl19["runs"][:2]
    run = load_run(splade)
    dropped = sorted(run)[:3]
    partial = tmp_path / "splade_partial.trec"
    write_run(partial, {q: docs for q, docs in run.items() if q not in dropped})
    out = tmp_path / "eval.json"
    rc = cli_eval.main(["--run", bm25, str(partial), "--qrels", dl19["qrels"], "--baseline", bm25,
                        "--metrics", "ndcg@10", "--out", str(out)])
    text = capsys.readouterr()
    assert rc == 0
    assert "splade_partial.trec lacks 3 of the 43 judged queries: it scores 0 on them (trec_eval -c)" in text.out
    assert "40/43" in text.out and "--common-queries" in text.err
    report = json.loads(out.read_text())
    full, _ = build_report([splade], dl19["qrels"], ["ndcg@10"], per_query=True)
    per = full["runs"][splade]["per_query"]["ndcg@10"]
    entry = report["runs"][str(partial)]
    assert entry["missing_queries"] == 3 and entry["queries"] == 40
    assert entry["metrics"]["ndcg@10"] == pytest.approx(sum(v for q, v in per.items() if q not in dropped) / 43)
    # --common-queries: both runs on the 40 queries they share, the test paired over those
    rc = cli_eval.main(["--run", bm25, str(partial), "--qrels", dl19["qrels"], "--baseline", bm25,
                        "--metrics", "ndcg@10", "--common-queries", "--format", "json"])
    common = json.loads(capsys.readouterr().out)
    assert rc == 0 and common["queries"] == 40 and common["runs"][str(partial)]["missing_queries"] == 0
    pair = common["comparison"]["pairs"][0]
    assert pair["improved"] + pair["tied"] + pair["degraded"] == 40
    assert common["runs"][str(partial)]["metrics"]["ndcg@10"] == pytest.approx(
        sum(v for q, v in per.items() if q not in dropped) / 40)


def test_single_run_output_is_unchanged_and_judged_at_10_is_beside_it(dl19, capsys) -> None:
    bm25 = dl19["runs"][0]
    assert cli_eval.main(["--run", bm25, "--qrels", dl19["qrels"], "--metrics", "ndcg@10", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    entry = report["runs"][bm25]
    assert round(100 * entry["metrics"]["ndcg@10"], 2) == 50.58 and entry["queries"] == 43
    assert report["comparison"] is None
    # judged@10 is ir_measures' Judged@10: the share of the top 10 that the qrels judge
    qrels = read_qrels(dl19["qrels"])
    run = load_run(dl19["runs"][1])
    share = sum(sum(1 for d, _ in run[q][:10] if d in qrels[q]) / 10 for q in qrels) / len(qrels)
    report, _ = build_report([dl19["runs"][1]], dl19["qrels"], ["ndcg@10"])
    assert report["runs"][dl19["runs"][1]]["judged@10"] == pytest.approx(share) and share < 1


def test_markdown_and_latex_carry_the_marks_and_the_notes(dl19, capsys) -> None:
    runs = dl19["runs"][:2]
    assert cli_eval.main(["--run", *runs, "--qrels", dl19["qrels"], "--metrics", "ndcg@10", "--format",
                          "markdown", "--baseline", runs[0]]) == 0
    md = capsys.readouterr().out
    assert "| b | splade_pp_ed.retrieve_results_dl19_top100.json | 43 | 73.08<sup>\u2020</sup> |" in md
    assert "Holm correction over 1 test (1 run x 1 metric), alpha 0.05" in md
    assert "| splade_pp_ed.retrieve_results_dl19_top100.json | ndcg@10 | +22.50 |" in md
    assert cli_eval.main(["--run", *runs, "--qrels", dl19["qrels"], "--metrics", "ndcg@10", "--format", "latex",
                          "--test", "fisher", "--permutations", "2000"]) == 0
    tex = capsys.readouterr().out
    assert tex.startswith("\\begin{table}") and tex.count("\\begin{tabular}") == 2
    assert "trec\\_results\\_dl19\\_top100.txt" in tex and "73.08$^{a}$" in tex
    assert "2,000 random sign flips per test, seed 0" in tex and "$\\pm$" in tex


def test_a_missing_eval_extra_is_one_line(dl19, capsys, monkeypatch) -> None:
    import sys

    runs = dl19["runs"][:2]
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # import statsmodels now raises ImportError
    assert cli_eval.main(["--run", *runs, "--qrels", dl19["qrels"], "--baseline", runs[0]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'dear-reranker[eval]'" in err and "statsmodels" in err
    # only several runs, no test asked for by name: the means, and a note that the tests were skipped
    assert cli_eval.main(["--run", *runs, "--qrels", dl19["qrels"], "--format", "json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["comparison"] is None and "no significance tests" in out.err


def _rerank_with_sidecars(tmp_path: Path, n_queries: int = 3) -> tuple[Path, Path]:
    """A real `dear rerank` run of DL19 queries (scripted backend: no model) with its JSONL and summary."""
    from _infer_helpers import ScriptedBackend

    from data_prep.readers import read_rankgpt_json
    from inference import cli_rerank
    from inference.reranker import ListwiseReranker

    reqs = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:n_queries]
    reranker = ListwiseReranker(None, None, "dear-card", window=10, stride=5, top_k=20, batch_size=4,
                                backend=ScriptedBackend(lambda req: "[2] > [1] > [0]"))
    out, jsonl = tmp_path / "rerank.trec", tmp_path / "rerank.jsonl"
    summary = cli_rerank.run_rerank(reranker, reqs, out=str(out), jsonl=str(jsonl), settings={"x": 1},
                                    progress=False)
    cli_rerank.write_summary(summary, str(out))
    return out, jsonl


def test_costs_come_from_the_rerank_summary_and_jsonl(dl19, tmp_path) -> None:
    from inference.evaluation.efficiency import read_cost, record_cost

    out, jsonl = _rerank_with_sidecars(tmp_path)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    cost = read_cost(str(out), {r["qid"] for r in records})
    windows = [w for r in records for w in r["windows"]]
    assert cost is not None and cost.queries == 3
    assert cost.model_calls == sum(1 for w in windows if w["raw"] is not None) / 3 == summary["model_calls"] / 3
    assert cost.prompt_tokens == sum(w["prompt_tokens"] for w in windows) / 3 and cost.prompt_tokens > 0
    assert cost.generated_tokens == summary["generated_tokens"] / 3
    assert cost.seconds == pytest.approx(summary["wall_s"] / summary["ranked"])
    # a record that carries its own totals (newer `dear rerank`) is read as it is
    own = {**records[0], "model_calls": 7, "prompt_tokens": 1234, "generated_tokens": 56, "rounds": 3}
    assert record_cost(own) == {"model_calls": 7.0, "prompt_tokens": 1234.0, "generated_tokens": 56.0,
                                "rounds": 3.0}
    # what a strategy other than sliding writes: its totals under "cost", its windows' rounds beside them
    assert record_cost({"qid": "1", "strategy": "tdpart", "cost": {"model_calls": 4, "prompt_tokens": 900,
                        "generated_tokens": 30, "rounds": 2}}) == {"model_calls": 4.0, "prompt_tokens": 900.0,
                                                                  "generated_tokens": 30.0, "rounds": 2.0}
    # without totals: a window of one candidate (raw None) was no model call; its tokens still count
    windows2 = [{"raw": None, "prompt_tokens": 0, "generated_tokens": 0},
                {"raw": "[1] > [0]", "prompt_tokens": 300, "generated_tokens": 9}]
    assert record_cost({"qid": "1", "windows": windows2}) == {"model_calls": 1.0, "prompt_tokens": 300.0,
                                                             "generated_tokens": 9.0, "rounds": 1.0}
    # a record without windows or totals is unknown, not zero
    assert record_cost({"qid": "1"}) == dict.fromkeys(("model_calls", "prompt_tokens", "generated_tokens", "rounds"))
    # no sidecars: no cost
    assert read_cost(dl19["runs"][0], {"1"}) is None


def test_plots_per_query_differences_and_quality_against_cost(dl19, tmp_path, capsys) -> None:
    import matplotlib.image

    from inference.evaluation.plots import sorted_differences

    rerank, _ = _rerank_with_sidecars(tmp_path)
    bm25, splade = dl19["runs"][:2]
    plots = tmp_path / "plots"
    rc = cli_eval.main(["--run", bm25, splade, str(rerank), "--qrels", dl19["qrels"], "--baseline", bm25,
                        "--metrics", "ndcg@10", "map", "--plot", str(plots), "--out", str(tmp_path / "e.json")])
    out = capsys.readouterr()
    assert rc == 0
    written = json.loads((tmp_path / "e.json").read_text())["plots"]
    assert sorted(Path(p).name for p in written) == ["per_query_ndcg_10.png", "quality_vs_cost.png"]
    for p in written:
        assert f"wrote {p}" in out.err
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
        assert Path(p).stat().st_size < 200_000
    assert "calls/q" in out.out and "prompt tok/q" in out.out
    # the bars: one per query, run minus baseline, largest first
    _, scores = build_report([bm25, splade], dl19["qrels"], ["ndcg@10"])
    diffs = sorted_differences(scores, splade, bm25, "ndcg@10")
    expected = [s - b for s, b in zip(scores.values[splade]["ndcg@10"], scores.values[bm25]["ndcg@10"], strict=True)]
    assert list(diffs) == sorted(expected, reverse=True) and len(diffs) == 43
    # no baseline: no per-query chart, and the output says why
    rc = cli_eval.main(["--run", bm25, splade, "--qrels", dl19["qrels"], "--plot", str(tmp_path / "p2")])
    err = capsys.readouterr().err
    assert rc == 0 and "needs --baseline" in err and "no run has a rerank summary" in err


SMALL = ["--top-k", "12", "--window", "5", "--stride", "2", "--depth", "2", "--max-new-tokens", "10",
         "--device", "cpu", "--dtype", "float32", "--no-progress"]


def test_rounds_and_strategy_of_real_runs_of_two_strategies(dl19, tiny_model_dir, tmp_path, capsys,
                                                             one_torch_thread) -> None:
    """`dear rerank` on the tiny model, sliding and tdpart, 3 DL19 queries: rounds/q and the strategy in the
    table and JSON, equal to what the runs recorded; an old file without them reads "-"."""
    from _serve_helpers import short_requests

    from data_prep.readers import read_rankgpt_json, write_rankgpt_json
    from inference import cli_rerank
    from inference.evaluation.efficiency import read_cost

    reqs = short_requests(read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))[:3],
                          16, 150)
    write_rankgpt_json(tmp_path / "in.json", reqs)
    runs = {}
    for strategy in ("sliding", "tdpart"):
        out = tmp_path / f"{strategy}.trec"
        assert cli_rerank.main(["--model", str(tiny_model_dir), "--input", str(tmp_path / "in.json"), "--out",
                                str(out), "--jsonl", f"{out}.jsonl", *SMALL, "--strategy", strategy]) == 0
        runs[strategy] = out
    qids = {r.qid for r in reqs}
    sliding, tdpart = (read_cost(str(runs[s]), qids) for s in ("sliding", "tdpart"))
    summaries = {s: json.loads(Path(f"{runs[s]}.summary.json").read_text()) for s in runs}
    # tdpart records cost.rounds; sliding's rounds are its model-call windows, one after another
    assert tdpart.strategy == "tdpart" and tdpart.rounds == summaries["tdpart"]["sequential_rounds"] / 3
    assert sliding.strategy == "sliding" and sliding.rounds == summaries["sliding"]["sequential_rounds"] / 3
    assert sliding.rounds == sliding.model_calls and tdpart.rounds < tdpart.model_calls  # tdpart batches windows
    # the summary alone (no JSONL) gives the same figures
    Path(f"{runs['tdpart']}.jsonl").rename(tmp_path / "away.jsonl")
    alone = read_cost(str(runs["tdpart"]), qids)
    assert alone.rounds == tdpart.rounds and alone.strategy == "tdpart"
    Path(tmp_path / "away.jsonl").rename(f"{runs['tdpart']}.jsonl")
    # an old summary without rounds or strategy, no JSONL: "-"
    old = tmp_path / "old.trec"
    old.write_bytes(runs["sliding"].read_bytes())
    legacy = {k: v for k, v in summaries["sliding"].items() if k not in ("sequential_rounds", "strategy",
                                                                           "prompt_tokens")}
    Path(f"{old}.summary.json").write_text(json.dumps(legacy))
    assert read_cost(str(old), qids).rounds is None and read_cost(str(old), qids).strategy is None

    paths = [str(runs["sliding"]), str(runs["tdpart"]), str(old)]
    out_json = tmp_path / "e.json"
    assert cli_eval.main(["--run", *paths, "--qrels", dl19["qrels"], "--metrics", "ndcg@10", "--out",
                          str(out_json), "--plot", str(tmp_path / "plots")]) == 0
    table = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    got = {Path(p).stem: report["runs"][p]["cost"] for p in paths}
    assert got["tdpart"]["rounds"] == tdpart.rounds and got["tdpart"]["strategy"] == "tdpart"
    assert got["old"]["rounds"] is None and got["old"]["strategy"] is None
    assert "rounds/q" in table and "strategy" in table
    assert cli_eval.main(["--run", *paths, "--qrels", dl19["qrels"], "--metrics", "ndcg@10",
                          "--format", "markdown"]) == 0
    text = capsys.readouterr().out.split("\n\n")[0]  # the runs table (the tests table follows)
    lines = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in lines[0]]
    rows = {cells[1].strip(): {h: c.strip() for h, c in zip(header, cells, strict=True)} for cells in lines[1:]}
    assert rows["tdpart.trec"]["strategy"] == "tdpart" and rows["sliding.trec"]["strategy"] == "sliding"
    assert float(rows["tdpart.trec"]["rounds/q"]) == pytest.approx(tdpart.rounds, abs=0.05)
    assert float(rows["sliding.trec"]["rounds/q"]) == pytest.approx(sliding.rounds, abs=0.05)
    assert rows["old.trec"]["strategy"] == "-" and rows["old.trec"]["rounds/q"] == "-"  # old files: unknown
    assert sorted(Path(p).name for p in report["plots"]) == ["quality_vs_cost.png"]
