"""Every in-process snippet of docs/integrations.md runs as written against the real libraries, with the tiny model
in place of ``runs/listwise`` and the shared DL19 files in place of ``trec-dl19/`` (the remote snippets run
against a live server in test_integrations_remote.py)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # before any test imports haystack
pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = REPO / "docs" / "integrations.md"
MODEL = '"runs/listwise"'
LIBRARY = {"import pyterrier": "pyterrier", "inference.integrations.rerankers": "rerankers",
           "inference.integrations.langchain": "langchain_core", "inference.integrations.llamaindex": "llama_index.core",
           "inference.integrations.haystack": "haystack", "from mcp import": "mcp"}


def _snippets() -> dict[str, str]:
    """The python snippets that run in-process, by the library each one needs."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
    local = [b for b in blocks if "localhost:8000" not in b]
    out = {}
    for block in local:
        (library,) = {lib for marker, lib in LIBRARY.items() if marker in block}
        out[library] = block
    assert set(out) == set(LIBRARY.values()) and len(local) == len(LIBRARY)  # one snippet per framework
    return out


SNIPPETS = _snippets()


def _run(code: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOCS), "exec"), {"__name__": "__snippet__"})  # noqa: S102
    return out.getvalue().splitlines()


def _with_model(code: str, model_dir: Path) -> str:
    assert MODEL in code
    return code.replace(MODEL, repr(str(model_dir)))


@pytest.mark.parametrize("library", ["rerankers", "langchain_core", "llama_index.core", "haystack"])
def test_the_docs_snippet_runs(library, tiny_model_dir):
    pytest.importorskip(library)
    lines = _run(_with_model(SNIPPETS[library], tiny_model_dir))
    if library == "rerankers":  # "<rank> <doc_id> <score>" for the three documents, best first
        assert [int(line.split()[0]) for line in lines] == [1, 2, 3]
        assert sorted(line.split()[1] for line in lines) == ["flea-kind", "flea-life", "paris"]
    else:  # "<score> <source> <text>": top 2, scores in [0, 1] and decreasing
        assert len(lines) == 2
        scores = [float(line.split()[0]) for line in lines]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
        assert all(line.split()[1] in ("wiki", "vet") for line in lines)


def test_the_pyterrier_snippet_runs_an_experiment_on_dl19(tiny_model_dir):
    pytest.importorskip("pyterrier")
    dl19 = shared_path("trec-dl19")
    code = _with_model(SNIPPETS["pyterrier"], tiny_model_dir).replace('"trec-dl19/', f'"{dl19}/')
    lines = _run(code)
    rows = {" ".join(line.split()[1:-1]): float(line.split()[-1]) for line in lines[1:]}  # "0  BM25  0.57"
    assert set(rows) == {"BM25", "BM25 >> DeAR"} and all(0 <= v <= 1 for v in rows.values()), lines


def test_the_mcp_snippet_runs_against_dear_mcp(tiny_model_dir, subprocess_env):
    pytest.importorskip("mcp")
    code = _with_model(SNIPPETS["mcp"], tiny_model_dir)
    spawn = 'command="dear", args=["mcp",'
    assert spawn in code  # run `dear mcp` from this checkout: the interpreter running the tests, the repo on the path
    code = code.replace(spawn, f"command={sys.executable!r}, env={subprocess_env!r}, "
                               'args=["-m", "dear_train.cli", "mcp", "--device", "cpu",')
    lines = _run(code)
    indices = [int(line.split()[0]) for line in lines]  # "<index> <score> <text>": the best two of three
    assert len(indices) == 2 and len(set(indices)) == 2 and set(indices) <= {0, 1, 2}
    assert all(0 < float(line.split()[1]) <= 1 for line in lines)
