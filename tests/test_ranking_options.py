"""One `RankingOptions` for `dear rerank`, `dear serve` and `-m inference.rerank`: the same flags, defaults and
checks, run before any model loads; a run's settings name the strategy and only the knobs it reads."""

from __future__ import annotations

import dataclasses

import pytest

from data_prep.cli_options import checked, flags_of
from data_prep.schema import DataError


def _ranking_fields():
    from inference.ranking.options import RankingOptions

    return {f.name: f for f in dataclasses.fields(RankingOptions)}


def test_rerank_and_serve_declare_the_ranking_options_once():
    from inference.cli_rerank import RerankOptions
    from inference.cli_rerank import build_parser as rerank_parser
    from inference.serve.cli import ServeOptions
    from inference.serve.cli import build_parser as serve_parser

    ranking = _ranking_fields()
    for cls in (RerankOptions, ServeOptions):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, f in ranking.items():
            if name == "model":
                continue
            assert fields[name].default == f.default and fields[name].metadata == f.metadata, (cls, name)
    r = {a.dest: a for a in rerank_parser()._actions}
    s = {a.dest: a for a in serve_parser()._actions}
    for name in ranking:
        assert r[name].default == s[name].default and r[name].choices == s[name].choices, name
        assert r[name].option_strings[0] == s[name].option_strings[0]
    assert set(r["strategy"].choices) == {"sliding", "single", "tdpart", "setwise"}


@pytest.mark.parametrize("argv,flag", [
    (["--window", "1"], "--window"),
    (["--stride", "30"], "--stride"),
    (["--top-k", "1"], "--top-k"),
    (["--strategy", "tdpart", "--depth", "20"], "--depth"),
    (["--strategy", "setwise", "--set-size", "1"], "--set-size"),
    (["--depth", "0"], "--depth"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_dear_serve_refuses_bad_ranking_options_before_the_model_loads(argv, flag, tmp_path, capsys, monkeypatch):
    from inference.serve import cli

    loaded = []
    monkeypatch.setattr(cli, "load_reranker", lambda *a, **k: loaded.append(a))
    assert cli.main(["--model", str(tmp_path / "no-such-model"), *argv]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("dear serve: error: ") and flag in line, err
    assert "no-such-model" not in line and not loaded  # the model folder was never looked at


def test_dear_rerank_refuses_strategy_knobs_that_cannot_work(tmp_path, capsys):
    from inference import cli_rerank

    inp = tmp_path / "in.json"
    inp.write_text("[]")
    base = ["--model", "m", "--input", str(inp), "--out", str(tmp_path / "run.trec")]
    assert cli_rerank.main([*base, "--strategy", "tdpart", "--window", "8", "--depth", "8"]) == 2
    assert "--depth must be between 1 and the window - 1 (7), got 8" in capsys.readouterr().err
    assert cli_rerank.main([*base, "--strategy", "setwise", "--set-size", "1"]) == 2
    assert "--set-size must be >= 2" in capsys.readouterr().err
    assert not (tmp_path / "run.trec").exists()


def test_settings_record_the_strategy_and_only_its_knobs():
    from inference.cli_rerank import RerankOptions

    base = dict(model="m", input="i.json", out="o.trec")
    sliding = RerankOptions(**base).settings()
    assert "strategy" not in sliding and "depth" not in sliding and "set_size" not in sliding  # as before
    td = RerankOptions(**base, strategy="tdpart", depth=5).settings()
    assert td["strategy"] == "tdpart" and td["depth"] == 5 and "set_size" not in td and "setwise_sort" not in td
    sw = RerankOptions(**base, strategy="setwise", setwise_sort="bubblesort").settings()
    assert (sw["set_size"], sw["setwise_sort"], sw["depth"]) == (3, "bubblesort", 10)
    assert RerankOptions(**base, strategy="single").settings()["strategy"] == "single"


def test_python_api_takes_the_same_options(tiny_model_dir):
    from inference.ranking.options import RankingOptions, load_reranker

    opts = checked(RankingOptions(model=str(tiny_model_dir), strategy="setwise", set_size=4, depth=3,
                                  device="cpu", max_new_tokens=4))
    rr = load_reranker(opts)
    assert rr.strategy.name == "setwise" and rr.strategy.set_size == 4 and rr.strategy.depth == 3
    with pytest.raises(DataError, match="window: window must be >= 2|window must be >= 2"):
        checked(RankingOptions(model="m", window=1))
    assert "--set-size" in flags_of(RankingOptions).values()
