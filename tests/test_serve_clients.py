"""Real clients through a live `dear serve` (tiny model, 127.0.0.1): the cohere SDK (v1 and v2 clients),
LangChain's CohereRerank, and the snippets of docs/serving.md run as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _serve_helpers import LiveServer

from inference.reranker import ListwiseReranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
DOC_URL = "http://localhost:8000"
QUERY = "how long do fleas live"
TEXTS = ["Paris is the capital of France.", "A flea can live up to a year.", "Fleas are wingless insects.",
         "The Eiffel tower is in Paris."]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", max_new_tokens=6)
    with LiveServer(rr, model_name="tiny") as s:
        yield s


def _order(server, route="/v1/rerank", **extra):
    with server.client() as c:
        resp = c.post(route, json={"query": QUERY, "documents": TEXTS, **extra})
    assert resp.status_code == 200, resp.text
    return [r["index"] for r in resp.json()["results"]]


def test_cohere_client_v2_and_v1_rerank_through_the_server(server):
    cohere = pytest.importorskip("cohere")
    expected = _order(server)
    v2 = cohere.ClientV2(api_key="unused", base_url=server.url, timeout=60)
    res = v2.rerank(model="tiny", query=QUERY, documents=TEXTS, top_n=3)
    assert [r.index for r in res.results] == expected[:3]
    assert all(0 < r.relevance_score <= 1 for r in res.results)
    v1 = cohere.Client(api_key="unused", base_url=server.url, timeout=60)
    res1 = v1.rerank(query=QUERY, documents=TEXTS, return_documents=True)
    assert [r.index for r in res1.results] == expected
    assert [r.document.text for r in res1.results] == [TEXTS[i] for i in expected]
    with pytest.raises(cohere.core.api_error.ApiError) as err:  # a 422 reaches the SDK as an API error
        v2.rerank(model="tiny", query=" ", documents=TEXTS)
    assert err.value.status_code == 422 and err.value.body["field"] == "query"


def test_langchain_cohere_rerank_compresses_documents_through_the_server(server):
    pytest.importorskip("langchain_cohere")
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    expected = _order(server, "/v2/rerank", model="tiny")
    reranker = CohereRerank(model="tiny", base_url=server.url, cohere_api_key="unused", top_n=2)
    out = reranker.compress_documents([Document(page_content=t) for t in TEXTS], query=QUERY)
    assert [d.page_content for d in out] == [TEXTS[i] for i in expected[:2]]
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)


def _snippets(lang):
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def test_the_docs_python_snippets_run_against_a_live_server(server):
    pytest.importorskip("cohere")
    pytest.importorskip("langchain_cohere")
    snippets = [s for s in _snippets("python") if "llama_index" not in s]
    assert len(snippets) == 3 and all(DOC_URL in s for s in snippets)
    for code in snippets:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace(DOC_URL, server.url), str(DOCS), "exec"), {})  # noqa: S102
        lines = out.getvalue().splitlines()
        assert len(lines) >= 2, code
        for line in lines:  # "<index or score> <score or text> ...": each printed result parses
            first = float(line.split()[0])
            assert 0 <= first <= len(TEXTS)


def test_the_docs_curl_snippet_runs_against_a_live_server(server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (snippet,) = [s for s in _snippets("bash") if s.lstrip().startswith("curl")]
    out = subprocess.run(["bash", "-c", snippet.replace(DOC_URL, server.url)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    data = json.loads(out)
    assert sorted(r["index"] for r in data["results"]) == [0, 1]
    assert {r["document"]["text"] for r in data["results"]} == {"A flea can live up to a year.",
                                                                "Paris is the capital of France."}
