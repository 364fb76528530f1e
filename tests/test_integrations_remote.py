"""A live `dear serve` (tiny model, first-token scoring, 127.0.0.1) for clients that speak HTTP: the Text Embeddings
Inference shape on /rerank, the `rerankers` library's own API ranker (Cohere, Jina and TEI providers) unchanged,
and the remote snippets of docs/integrations.md. Each returns the order the in-process reranker gives."""

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

from inference.integrations.ranking import text_request
from inference.reranker import ListwiseReranker
from inference.serve.scores import result_relevance

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
DOC_URL = "http://localhost:8000"
QUERY = "how long do fleas live"
TEXTS = ["Paris is the capital of France.", "A flea can live up to a year.", "Fleas are wingless insects.",
         "The Eiffel tower is in Paris.", "Cats eat fish.", "Dogs bark at night."]


@pytest.fixture(scope="module")
def reranker(tiny_model_dir):
    return ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32",
                                            scoring="first-token")


@pytest.fixture(scope="module")
def server(reranker):
    with LiveServer(reranker, model_name="tiny", scoring="first-token", max_document_chars=200) as s:
        yield s


@pytest.fixture(scope="module")
def expected(reranker):
    (result,) = reranker.rerank_batch([text_request(QUERY, TEXTS)])
    order = [int(d) for d in result.docids]
    assert order != list(range(len(TEXTS)))
    return order, result_relevance(result, probabilities=True), list(result.scores)


def test_tei_shape_on_rerank_gives_a_bare_list_in_the_reranker_order(server, expected):
    order, scores, run_scores = expected
    with server.client() as c:
        plain = c.post("/rerank", json={"query": QUERY, "texts": TEXTS})
        full = c.post("/rerank", json={"query": QUERY, "texts": TEXTS, "raw_scores": True, "return_text": True,
                                       "truncation_direction": "Right"})  # TEI fields we do not use are ignored
        jina = c.post("/rerank", json={"query": QUERY, "documents": TEXTS, "texts": ["ignored"]})
    assert plain.status_code == 200 and full.status_code == 200, (plain.text, full.text)
    body = plain.json()
    assert isinstance(body, list) and [r["index"] for r in body] == order
    assert [r["score"] for r in body] == pytest.approx(scores)
    assert all(set(r) == {"index", "score"} for r in body)
    assert [r["score"] for r in full.json()] == pytest.approx(run_scores)  # raw: the run scores of `dear rerank`
    assert [r["text"] for r in full.json()] == [TEXTS[i] for i in order]
    assert [r["index"] for r in jina.json()["results"]] == order  # documents given: the Jina shape, as before


def test_tei_shape_refusals_name_the_texts_field(server):
    with server.client() as c:
        wrong_type = c.post("/rerank", json={"query": QUERY, "texts": ["a", 3]})
        empty = c.post("/rerank", json={"query": QUERY, "texts": []})
        blank = c.post("/rerank", json={"query": " ", "texts": ["a"]})
        long = c.post("/rerank", json={"query": QUERY, "texts": ["a", "x" * 300]})
        cut = c.post("/rerank", json={"query": QUERY, "texts": ["a", "x" * 300], "truncate": True, "return_text": True})
        bad_flag = c.post("/rerank", json={"query": QUERY, "texts": ["a"], "raw_scores": "yes"})
    assert (wrong_type.status_code, wrong_type.json()["field"]) == (422, "texts.1")
    assert (empty.status_code, empty.json()) == (422, {"message": "texts: must hold at least one text", "field": "texts"})
    assert (blank.status_code, blank.json()["field"]) == (422, "query")
    assert long.status_code == 422 and long.json() == {
        "message": "texts.1: is 300 characters; the limit is 200 (send truncate: true to cut it instead)",
        "field": "texts.1"}
    assert cut.status_code == 200 and sorted(r["index"] for r in cut.json()) == [0, 1]
    assert {r["text"] for r in cut.json()} == {"a", "x" * 300}  # the text as sent comes back
    assert (bad_flag.status_code, bad_flag.json()["field"]) == (422, "raw_scores")


@pytest.mark.parametrize(("provider", "route"), [("cohere", "/v1/rerank"), ("jina", "/rerank"),
                                                 ("text-embeddings-inference", "/rerank")])
def test_the_rerankers_api_ranker_works_against_dear_serve_unchanged(server, expected, provider, route):
    pytest.importorskip("rerankers")
    from rerankers import Reranker

    order, scores, _ = expected
    ranker = Reranker("dear", model_type=provider, api_key="unused", url=server.url + route, verbose=0)
    results = ranker.rank(QUERY, TEXTS, doc_ids=[f"d{i}" for i in range(len(TEXTS))])
    assert [r.doc_id for r in results] == [f"d{i}" for i in order]
    assert [r.text for r in results] == [TEXTS[i] for i in order]
    assert [r.score for r in results] == pytest.approx(scores)


def _snippets(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_docs_remote_snippets_run_against_a_live_server(server):
    pytest.importorskip("rerankers")
    (snippet,) = [s for s in _snippets("python") if DOC_URL in s]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet.replace(DOC_URL, server.url), str(DOCS), "exec"), {})  # noqa: S102
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert [int(rank) for rank, _, _ in lines] == [1, 2]
    assert sorted(int(doc_id) for _, doc_id, _ in lines) == [0, 1]
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (curl,) = [s for s in _snippets("bash") if s.lstrip().startswith("curl")]
    data = json.loads(subprocess.run(["bash", "-c", curl.replace(DOC_URL, server.url)], capture_output=True,
                                     text=True, timeout=60, check=True).stdout)
    assert isinstance(data, list) and sorted(r["index"] for r in data) == [0, 1]
    assert {r["text"] for r in data} == {"Paris is the capital of France.", "A flea can live up to a year."}


def test_tei_raw_scores_are_the_run_scores_and_plain_scores_the_relevance(server, reranker):
    texts = [f"passage {i} about fleas and {i % 7} cats" for i in range(25)]  # two windows: rank-derived scores
    (result,) = reranker.rerank_batch([text_request(QUERY, texts)])
    with server.client() as c:
        plain = c.post("/rerank", json={"query": QUERY, "texts": texts}).json()
        raw = c.post("/rerank", json={"query": QUERY, "texts": texts, "raw_scores": True}).json()
    order = [int(d) for d in result.docids]
    assert [r["index"] for r in plain] == [r["index"] for r in raw] == order
    assert [r["score"] for r in raw] == [float(25 - i) for i in range(25)] == list(result.scores)
    assert [r["score"] for r in plain] == pytest.approx([(25 - i) / 25 for i in range(25)])
